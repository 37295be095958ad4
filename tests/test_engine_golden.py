"""Golden results of the dual methods, bit for bit, across refactors of their engine.

``tests/data/engine_golden.json`` holds SHA-256 digests of every result array and every
History column (``wall_time`` aside) of ~20 small fits, recorded before the dual methods
moved onto one engine (fmtl.federated.engine). A refactor that changes one bit of a
model, a dual variable, Sigma or a History value fails here.

OpenBLAS picks its kernels by CPU (AVX2, AVX-512, ...) and they round differently, so the
goldens are results of OpenBLAS's Haswell (AVX2) kernels, which every x86-64 machine of the
last decade runs: the test computes them in a child process with ``OPENBLAS_CORETYPE``
pinned (read when numpy loads). Regenerate (only when a change of results is intended and
explained)::

    OPENBLAS_CORETYPE=Haswell PYTHONPATH=. python tests/test_engine_golden.py --write
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_tasks  # the suite's related-tasks generator

from fmtl.federated import SystemsModel, cocoa, kernel_mocha, mbsdca, mbsgd, mocha
from fmtl.relationships import LowRankSigma

GOLDEN = Path(__file__).parent / "data" / "engine_golden.json"
CORETYPE = "Haswell"  # the OpenBLAS kernels the goldens were computed with
LAM = 0.05
_tasks = functools.partial(random_tasks, m=4, n=18, d=5)  # the golden runs' sizes


def _digest(a) -> str:
    if isinstance(a, LowRankSigma):
        return _digest(np.concatenate([[a.c0], a.U.ravel(), a.c]))
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(repr((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()


# columns added after the goldens were recorded, zero in every golden fit (no faulty node)
ADDED_COLUMNS = ("screened",)


def _summary(res, fields) -> dict:
    out = {f: _digest(getattr(res, f)) for f in fields}
    out["history_columns"] = [c for c in res.history.columns if c not in ADDED_COLUMNS]
    for c in res.history.columns:
        if c in ADDED_COLUMNS:
            assert not np.any(res.history[c]), c
        elif c != "wall_time":
            out[f"history/{c}"] = _digest(res.history[c])
    return out


LINEAR = ("coef", "dual_coef", "sigma", "omega", "B", "never_reported")
HIGH_DROP = SystemsModel(heterogeneity="high", drop_prob=0.25, dead_nodes=(3,))


def _mocha(**kw):
    def run():
        Xs, ys = _tasks(regression=kw.get("loss") == "squared")
        return _summary(mocha(Xs, ys, LAM, **kw), LINEAR)

    return run


def _mocha_sparse():
    Xs, ys = _tasks(seed=4)
    Xs = [sp.csr_matrix(np.where(np.abs(X) > 0.7, X, 0.0)) for X in Xs]
    return _summary(mocha(Xs, ys, LAM, outer_iters=2, inner_iters=4, random_state=2), LINEAR)


def _mocha_warm():
    Xs, ys = _tasks(seed=5)
    first = mocha(Xs, ys, 0.2, outer_iters=2, inner_iters=4, random_state=1)
    res = mocha(Xs, ys, LAM, outer_iters=2, inner_iters=4, random_state=2, warm_start=first)
    return _summary(res, LINEAR)


def _fixed(fn, **kw):
    def run():
        Xs, ys = _tasks(seed=6, regression=kw.get("loss") == "squared")
        return _summary(fn(Xs, ys, LAM, **kw), LINEAR)

    return run


def _kernel(**kw):
    def run():
        Xs, ys = _tasks(m=3, n=12, seed=7, regression=kw.get("loss") == "squared")
        res = kernel_mocha(Xs, ys, LAM, **kw)
        return _summary(res, ("dual_coef", "sigma", "omega", "expansion_coef", "task_gram"))

    return run


def _protocol(method, fails=(), **kw):
    def run():
        from fmtl.distributed.protocol import MochaClientState, make_server, run_local

        Xs, ys = _tasks(seed=8)
        clients = [MochaClientState(X, y, LAM) for X, y in zip(Xs, ys, strict=True)]
        server = make_server(method, [len(y) for y in ys], Xs[0].shape[1], LAM, **kw)
        fail = None
        if fails:
            fail = lambda r, t, ph: (r, t, ph) in fails  # noqa: E731
        res = run_local(server, clients, fail)
        out = _summary(res, ("coef", "sigma", "omega", "B", "never_reported"))
        out["alpha"] = _digest(np.concatenate([c.alpha for c in clients]))
        return out

    return run


CASES = {
    "mocha_learned_dense_hinge": _mocha(outer_iters=3, inner_iters=4, random_state=0),
    "mocha_learned_lowrank_squared": _mocha(
        loss="squared", sigma_step="lowrank", outer_iters=3, inner_iters=3, random_state=1
    ),
    "mocha_fixed_logistic": _mocha(
        loss="logistic",
        relationship="fixed",
        sigma=np.eye(4) / 4 + 0.02,
        outer_iters=2,
        inner_iters=4,
        random_state=2,
    ),
    "mocha_smoothed_systems_drops_dead": _mocha(
        loss="smoothed_hinge",
        gamma=0.5,
        systems=HIGH_DROP,
        outer_iters=3,
        inner_iters=4,
        random_state=3,
    ),
    "mocha_theta_eval_every": _mocha(
        local_theta=0.3,
        eval_every=3,
        record_local_gaps=True,
        outer_iters=3,
        inner_iters=5,
        local_frac=2.0,
        random_state=4,
    ),
    "mocha_tol_outer_tol": _mocha(
        loss="squared", tol=1e-3, outer_tol=1e-2, outer_iters=6, inner_iters=40, random_state=5
    ),
    "mocha_spectral": _mocha(sigma_prime="spectral", outer_iters=2, inner_iters=3, random_state=6),
    "mocha_sigma_prime_number": _mocha(
        sigma_prime=1.5, local_frac=0.5, outer_iters=2, inner_iters=3, random_state=7
    ),
    "mocha_lowrank_systems": _mocha(
        sigma_step="lowrank",
        systems=SystemsModel(heterogeneity="low", drop_prob=0.2, network="3g"),
        outer_iters=3,
        inner_iters=3,
        random_state=8,
    ),
    "mocha_sparse": _mocha_sparse,
    "mocha_warm_start": _mocha_warm,
    "cocoa": _fixed(cocoa, rounds=6, random_state=0),
    "cocoa_systems_tol": _fixed(
        cocoa,
        loss="squared",
        theta=0.2,
        check_every=3,
        tol=1e-4,
        rounds=30,
        eval_every=2,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.3),
        random_state=1,
    ),
    "mbsdca": _fixed(mbsdca, rounds=6, random_state=0),
    "mbsdca_systems": _fixed(
        mbsdca,
        loss="logistic",
        sigma=np.eye(4) / 4 + 0.03,
        scaling=3.0,
        eval_every=2,
        rounds=7,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.2, dead_nodes=(0,)),
        random_state=1,
    ),
    "mbsgd": _fixed(mbsgd, rounds=6, eval_every=2, random_state=0),
    "mbsgd_systems": _fixed(
        mbsgd,
        loss="squared",
        systems=SystemsModel(heterogeneity="low", drop_prob=0.2),
        rounds=5,
        random_state=1,
    ),
    "kernel_mocha_rbf_learned": _kernel(
        kernel="rbf", kernel_params={"gamma": 0.5}, outer_iters=3, inner_iters=3, random_state=0
    ),
    "kernel_mocha_linear_fixed_systems": _kernel(
        loss="squared",
        relationship="fixed",
        local_theta=0.4,
        record_local_gaps=True,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.2),
        eval_every=2,
        tol=1e-6,
        outer_iters=1,
        inner_iters=7,
        random_state=1,
    ),
    "kernel_mocha_outer_tol": _kernel(
        kernel="poly", outer_tol=1e-2, outer_iters=8, inner_iters=4, random_state=2
    ),
    "protocol_mocha_failures": _protocol(
        "mocha",
        fails={(2, 1, "train"), (5, 0, "train"), (3, 2, "evaluate")},
        outer_iters=3,
        inner_iters=3,
        local_theta=0.3,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.2),
        random_state=3,
    ),
    "protocol_cocoa": _protocol("cocoa", rounds=5, eval_every=2, random_state=4),
    "protocol_local": _protocol("local", outer_iters=2, inner_iters=3, random_state=5),
}


def compute() -> dict:
    return {name: run() for name, run in CASES.items()}


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def computed() -> dict:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"the goldens are OpenBLAS {CORETYPE} (x86-64) results: {platform.machine()}")
    root = str(Path(__file__).parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OPENBLAS_CORETYPE": CORETYPE, "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, __file__, "--print"], env=env, capture_output=True, text=True, timeout=900
    )
    if run.returncode:
        pytest.fail(f"computing the golden cases failed:\n{run.stderr[-4000:]}")
    return json.loads(run.stdout)


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_are_bit_identical_to_the_golden_ones(name, golden, computed):
    got, want = computed[name], golden[name]
    assert got["history_columns"] == want["history_columns"]
    diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    assert not diff, f"{name}: differs in {diff}"


if __name__ == "__main__" and "--print" in sys.argv:
    print(json.dumps(compute()))

if __name__ == "__main__" and "--write" in sys.argv:
    if os.environ.get("OPENBLAS_CORETYPE") != CORETYPE:
        sys.exit(f"set OPENBLAS_CORETYPE={CORETYPE} (see the module docstring)")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
