"""Mini-batch SDCA (the reference's baseline) on the W-problem for a fixed Sigma.

Each node takes its local SDCA steps independently from the round's starting model (no
local feedback, ``sigma' = 1``); the server applies the average change,
``alpha += s (alpha_local - alpha)`` and ``B += s dB`` with
``s = scaling / sum_t steps_t`` (so ``alpha`` stays dual feasible for ``s <= 1``).
"""

from __future__ import annotations

import numpy as np

from .._random import rng_from
from ._fixed import setup
from ._loop import DualRound, check_frac, numba_threads
from .engine import DualEngine, run_engine
from .mocha import MochaResult, dual_result, resume_or_warm_start
from .systems import SystemsModel, SystemsRuntime


def mbsdca(
    Xs,
    ys,
    lam: float,
    loss="hinge",
    *,
    gamma: float = 1.0,
    sigma: np.ndarray | None = None,
    local_frac: float = 0.5,
    scaling: float = 10.0,
    rounds: int = 100,
    systems: SystemsModel | None = None,
    random_state=None,
    n_threads: int | None = None,
    executor=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
    warm_start: MochaResult | None = None,
) -> MochaResult:
    """Fit the W-problem for a fixed Sigma with mini-batch SDCA (certified gaps).

    Parameters
    ----------
    Xs, ys, lam, loss, gamma, sigma
        As :func:`fmtl.federated.cocoa.cocoa`.
    local_frac : float, default=0.5
        Local steps per round as a fraction of ``n_t`` (the mini-batch size).
    scaling : float, default=10.0
        Aggregation ``s = scaling / total steps`` (capped at 1 to keep duals feasible).
    rounds : int, default=100
        Federated rounds.
    systems : SystemsModel, optional
        Heterogeneous mini-batch sizes, drops, cost (flops factor 6).
    random_state : int, Generator or None
        Seeds the per-round coordinate orders and draws.
    n_threads : int, optional
        Numba threads for the local solves (results do not depend on it).
    executor : DaskExecutor, optional
        Runs each round's local solves elsewhere instead of in this process, e.g. on a
        ``dask.distributed`` cluster (:class:`fmtl.distributed.dask.DaskExecutor`, extra
        ``dask``); results are bit-identical to the in-process fit.
    eval_every : int, default=1
        Evaluate certificates every this many rounds (and at the last one).
    callback : callable, optional
        Called with each History record.

    checkpoint_dir, checkpoint_every, resume
        Checkpoint / resume, as :func:`fmtl.federated.mocha`.
    warm_start : MochaResult, optional
        Start from an earlier fit's dual variables on the same data (any ``lam``), as
        :func:`fmtl.federated.mocha`'s ``warm_start`` (its ``sigma`` is not used).

    Returns
    -------
    MochaResult
        Models, dual variables and History (records carry the aggregation ``scale``).

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``; ``lam``, ``rounds`` or ``eval_every`` out
        of range; invalid data (no tasks, mismatched lengths, non-2-D or non-finite
        arrays, labels not in {-1, +1} for a classification loss); a ``sigma`` of the
        wrong shape or not symmetric positive definite;
        a non-positive ``local_frac`` or ``scaling``; a ``systems`` model that does
        not fit the tasks; a negative ``checkpoint_every`` or one without
        ``checkpoint_dir``; an unreadable checkpoint or one of another problem; or a
        ``warm_start`` whose dual variables do not fit the data.
    TypeError
        For non-numeric data or ``sigma``, ``ys`` None with unpacked ``Xs``, a
        ``systems`` that is not a :class:`~fmtl.federated.SystemsModel`, or an
        ``executor`` without ``bind``, ``sdca_round`` and ``minibatch_gradients``, or a
        ``warm_start`` without ``dual_coef``.
    RuntimeError
        If a node fails its local solve more than ``systems.max_failures`` times.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.mbsdca import mbsdca
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(3)]
    >>> ys = [np.sign(X @ np.ones(4)) for X in Xs]
    >>> h = mbsdca(Xs, ys, lam=0.1, rounds=50, random_state=0).history
    >>> bool(h["gap"][-1] < h["gap"][0])
    True
    """
    tasks, loss, lam, Sigma, Omega = setup(Xs, ys, lam, loss, gamma, sigma, rounds, eval_every)
    local_frac = check_frac("local_frac", local_frac)
    scaling = check_frac("scaling", scaling)
    runtime = SystemsRuntime(systems, tasks.n_samples, local_frac, flops_factor=6.0)
    m = tasks.n_tasks
    pool = DualRound(tasks, loss, lam, record_gaps=False, executor=executor)
    # no local feedback and sigma' = 1: each node steps from the round's starting model;
    # the server keeps the fraction s = min(1, scaling / total steps) of the sum
    engine = DualEngine(
        np.zeros((m, tasks.n_features)),
        Sigma,
        lam,
        runtime,
        rng_from(random_state),
        sigma_prime=1.0,
        inner_iters=rounds,
        eval_every=eval_every,
        feedback=False,
        scaling=scaling,
        callback=callback,
    )
    ckpt = engine.checkpointer(
        checkpoint_dir,
        checkpoint_every,
        tasks,
        "mbsdca",
        random_state,
        lam=lam,
        loss=[loss.name, loss.param],
        sigma=Sigma,
        local_frac=local_frac,
        scaling=scaling,
        rounds=rounds,
        systems=systems,
        eval_every=eval_every,
    )
    resume_or_warm_start(engine, pool, ckpt, resume, warm_start, tasks, loss)
    with numba_threads(n_threads):
        run_engine(engine, pool, ckpt)
    return dual_result(engine, pool, Sigma, Omega)
