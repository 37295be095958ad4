"""Type-stable kernels: after a first set of fits, fits of other sizes, dense or CSR, any
loss, any algorithm, serial or threaded, compile nothing more (no re-JIT between fits)."""

import importlib
import pkgutil

import numba
import numpy as np
import scipy.sparse as sp

import fmtl
from fmtl.datasets import make_multitask_classification
from fmtl.federated import cocoa, fedavg, mbsdca, mbsgd, mocha
from fmtl.federated._loop import DualRound, as_tasks
from fmtl.losses import LOSS_NAMES, get_loss
from fmtl.solvers.sdca import sdca_round


def _dispatchers():
    for info in pkgutil.walk_packages(fmtl.__path__, "fmtl."):
        mod = importlib.import_module(info.name)
        for name in dir(mod):
            f = getattr(mod, name)
            if isinstance(f, numba.core.registry.CPUDispatcher) and f.__module__ == mod.__name__:
                yield f"{mod.__name__}.{name}", f


def _fit_everything(m: int, n: int, d: int, seed: int) -> None:
    ds = make_multitask_classification(n_tasks=m, n_samples=n, n_features=d, random_state=seed)
    sparse = [sp.csr_matrix(X) for X in ds.X]
    for loss in LOSS_NAMES:
        for Xs in (ds.X, sparse):
            mocha(
                Xs,
                ds.y,
                0.1,
                loss,
                outer_iters=2,
                inner_iters=2,
                record_local_gaps=True,
                local_theta=0.5,
            )
            mocha(Xs, ds.y, 0.1, loss, outer_iters=1, inner_iters=2, sigma_step="lowrank")
            cocoa(Xs, ds.y, 0.1, loss, rounds=2)
            mbsdca(Xs, ds.y, 0.1, loss, rounds=2)
            mbsgd(Xs, ds.y, 0.1, loss, rounds=2)
            fedavg(Xs, ds.y, 0.1, loss, rounds=2, finetune_epochs=1)
            # the threaded launch too (fits use it only for large problems)
            tasks = as_tasks(Xs, ds.y, get_loss(loss))
            dual = DualRound(tasks, get_loss(loss), 0.1, True)
            sdca_round(
                *tasks.kernel_args,
                dual.alpha,
                np.zeros((m, d)),
                np.ones(m),
                1.0,
                0.1,
                dual.loss.code,
                dual.loss.param,
                np.full(m, n),
                np.arange(m, dtype=np.uint64),
                np.ones(m, dtype=bool),
                0.0,
                dual.no_checks,
                True,
                True,
                dual.dB,
                dual.steps_done,
                dual.gap0,
                dual.gap1,
                parallel=True,
            )


def test_no_recompilation_between_fits():
    _fit_everything(4, 20, 5, seed=0)
    before = {name: len(f.signatures) for name, f in _dispatchers()}
    # other sizes, seeds, dense and CSR again: nothing new may be compiled
    _fit_everything(6, 13, 3, seed=1)
    after = {name: len(f.signatures) for name, f in _dispatchers()}
    assert after == before
    # and the round kernel, called from Python, has exactly one signature
    assert after["fmtl.solvers.sdca._sdca_round_parallel"] == 1
    assert after["fmtl.solvers.sdca._objective_parallel"] == 1
