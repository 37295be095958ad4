"""Golden results of the dual methods, across refactors of their engine and across machines.

``tests/data/engine_golden.json`` holds every result array and every History column
(``wall_time`` aside) of ~20 small fits, first recorded before the dual methods moved onto
one engine (fmtl.federated.engine). A refactor that changes what a fit computes fails here.

Integer and boolean values (rounds, local steps, dropped / failed nodes, never-reported
nodes, History's column list) must agree exactly: no BLAS call decides them in these fits.
Floating-point values are compared with a tolerance, because every path below goes through
BLAS/LAPACK, whose last bits depend on the CPU (OpenBLAS picks AVX2, AVX-512, ... kernels
at load time, and they sum in different orders) and on the library build:

- every MOCHA / CoCoA / mb-SDCA / mb-SGD case: ``W = M B / lam`` (gemm) after each round, the
  primal's margins ``X w`` (gemv) and the joint bound's ``lambda_max(B B^T)`` (``eigvalsh``);
- learned Sigma (``mocha_*``, ``protocol_mocha_*``): the Sigma-step's ``eigh`` of ``W^T W``
  (``omega_update``) or the SVD of ``W`` (``sigma_step="lowrank"``), and ``Omega = V diag V^T``;
- fixed Sigma (``mocha_fixed_*``, ``mbsdca_systems``): ``Omega`` from ``eigh(Sigma)``;
- kernel MOCHA (``kernel_mocha_*``): the Gram matrix (``pairwise_kernels``: gemm, and for
  ``rbf`` squared distances from it), the per-task quadratic forms ``b K_t b`` and ``eigh`` of
  ``Sigma L / lam`` in the Sigma-step.

The numba SDCA kernels themselves are plain loops with ``fastmath=False`` (no reassociation),
so one machine gives the same bits for the same seed, serial or parallel: that property is
tested bit for bit elsewhere (serial = parallel in ``test_mocha.py`` and ``test_fedavg.py``,
resume = uninterrupted in ``test_checkpoint*.py``, Dask and Flower = in-process in
``test_dask.py`` and ``test_flower.py``, the same seed twice in
``test_kernel_estimators.py``); here only agreement to the stored values is asked.

The tolerance (``RTOL``) is measured, not guessed. A BLAS kernel changes a product by a
few units in the last place (~1e-16 relative); these fits are a few contractive rounds, and
recomputed under OpenBLAS's Prescott, Sandybridge, Haswell, SkylakeX and Zen kernels (with
numpy's AVX-512 loops on and off, and numba compiling for a CPU without AVX-512) the stored
values moved by at most ``MEASURED`` relative to their scale: 2e-12 on models and duals,
5e-13 on gaps, 2e-11 on the local-gap ratios (quotients of two gaps, each a difference of
nearly equal objectives, so cancellation amplifies the rounding). ``RTOL`` is 500 times
that, and it still catches real changes: a relative change of 1e-7 in ``lam`` fails 21 of
the 23 cases (mb-SGD's few steps barely depend on ``lam``). A new golden case whose values
move more than that between kernels (a fit that ends on a stopping rule decided near its
threshold, say) has to be made less fragile, not given a looser tolerance;
``test_the_goldens_hold_under_another_blas_kernel`` (slow) recomputes every case under
another OpenBLAS kernel on the machine at hand.

Regenerate (only when a change of results is intended and explained)::

    PYTHONPATH=.:tests python tests/test_engine_golden.py --write
"""

from __future__ import annotations

import functools
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

pytestmark = pytest.mark.filterwarnings("ignore:nodes .* never reported:RuntimeWarning")
GOLDEN = Path(__file__).parent / "data" / "engine_golden.json"
MEASURED = 2e-11  # largest scaled difference seen across BLAS kernels (module docstring)
RTOL = 1e-8  # allowed: |got - want| <= RTOL * (|want| + max |want| of the array)
LAM = 0.05
_tasks = functools.partial(random_tasks, m=4, n=18, d=5)  # the golden runs' sizes


def _array(a) -> np.ndarray:
    if isinstance(a, LowRankSigma):
        return np.concatenate([[a.c0], a.U.ravel(), a.c])
    return np.asarray(a)


# columns added after the goldens were recorded, zero in every golden fit (no faulty node)
ADDED_COLUMNS = ("screened",)


def _summary(res, fields) -> dict:
    out = {f: _array(getattr(res, f)) for f in fields}
    out["history_columns"] = np.array([c for c in res.history.columns if c not in ADDED_COLUMNS])
    for c in res.history.columns:
        if c in ADDED_COLUMNS:
            assert not np.any(res.history[c]), c
        elif c != "wall_time":
            out[f"history/{c}"] = np.asarray(res.history[c])
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
        out["alpha"] = np.concatenate([c.alpha for c in clients])
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


def platform_info() -> dict:
    """Where a golden was computed: what decides its BLAS/LAPACK bits."""
    import numba
    from threadpoolctl import threadpool_info

    blas = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    from numpy._core._multiarray_umath import __cpu_features__ as feats

    return {
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "blas": blas,
        "numpy_avx512": bool(feats.get("AVX512F")),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def save(path: Path, results: dict) -> None:
    """Every array as dtype, shape and its values (repr floats: exact; NaN and inf as
    JSON's extensions), with the platform that computed them."""
    cases = {
        case: {k: {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.ravel().tolist()}
               for k, a in ((k, np.asarray(v)) for k, v in out.items())}
        for case, out in results.items()
    }  # fmt: skip
    path.write_text(
        json.dumps({"platform": platform_info(), "cases": cases}, sort_keys=True) + "\n"
    )


def load(path: Path) -> tuple[dict, dict]:
    stored = json.loads(path.read_text())
    cases = {
        case: {k: np.array(v["data"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in f.items()}
        for case, f in stored["cases"].items()
    }
    return cases, stored["platform"]


def mismatch(got: np.ndarray, want: np.ndarray) -> str | None:
    """Why ``got`` is not ``want`` (exact for integers and booleans, ``RTOL`` for floats)."""
    if got.shape != want.shape or got.dtype.kind != want.dtype.kind:
        return f"{got.dtype}{got.shape} vs stored {want.dtype}{want.shape}"
    if want.dtype.kind != "f":
        return None if np.array_equal(got, want) else "differs (compared exactly)"
    fin = np.isfinite(want)
    if not np.array_equal(np.isfinite(got), fin) or not np.array_equal(
        got[~fin], want[~fin], equal_nan=True
    ):
        return "non-finite values differ"
    if not fin.any():
        return None
    err = np.abs(got[fin] - want[fin])
    scale = np.abs(want[fin]) + np.max(np.abs(want[fin]))
    if np.all(err <= RTOL * scale):
        return None
    worst = float(np.max(err / np.maximum(scale, np.finfo(float).tiny)))
    return f"off by {worst:.2e} relative to its scale (> RTOL = {RTOL:g})"


def mismatches(got: dict, want: dict) -> dict:
    """Field -> why, for every stored field of one case that ``got`` does not reproduce."""
    return {k: why for k in sorted(want) if (why := mismatch(got[k], want[k]))}


@pytest.fixture(scope="module")
def stored() -> tuple[dict, dict]:
    return load(GOLDEN)


@pytest.fixture(scope="module")
def computed() -> dict:
    return compute()


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_match_the_golden_ones(name, stored, computed):
    golden, info = stored
    got, want = computed[name], golden[name]
    assert set(got) == set(want), f"{name}: fields {sorted(set(got) ^ set(want))}"
    bad = mismatches(got, want)
    assert not bad, f"{name}: {bad}\nstored on {info}\nhere {platform_info()}"


def test_the_comparison_tells_a_real_change_from_rounding():
    want = np.array([1.0, -2.0, 3e-9, 0.0])
    assert mismatch(want * (1 + 1e-11), want) is None  # a BLAS kernel's rounding
    assert mismatch(want + 1e-11, want) is None
    assert "off by" in mismatch(want * (1 + 1e-7), want)  # an algorithmic change
    assert "off by" in mismatch(want + np.array([0, 0, 0, 1e-7]), want)
    assert "exactly" in mismatch(np.array([1, 2]), np.array([1, 3]))
    assert "vs stored" in mismatch(np.zeros(3), np.zeros(4))
    assert "non-finite" in mismatch(np.array([np.nan]), np.array([1.0]))
    assert "non-finite" in mismatch(np.array([-np.inf]), np.array([np.inf]))
    assert mismatch(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) is None


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 kernels")
def test_the_goldens_hold_under_another_blas_kernel(tmp_path, stored):
    # OPENBLAS_CORETYPE is read when the library loads, hence a child process; Sandybridge
    # (AVX) is in every x86-64 OpenBLAS build and is not what a current machine picks itself
    path = tmp_path / "sandybridge.json"
    root = Path(__file__).parents[1]
    env = {**os.environ, "OPENBLAS_CORETYPE": "Sandybridge"}
    env["PYTHONPATH"] = os.pathsep.join(map(str, (root, root / "tests")))
    run = subprocess.run(
        [sys.executable, __file__, "--print", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    got, info = load(path)
    assert any("Sandybridge" in b for b in info["blas"]), info
    golden, _ = stored
    bad = {c: why for c in golden if (why := mismatches(got[c], golden[c]))}
    assert not bad, bad


if __name__ == "__main__" and "--print" in sys.argv:
    save(Path(sys.argv[-1]), compute())

if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.parent.mkdir(exist_ok=True)
    save(GOLDEN, compute())
    print(f"wrote {GOLDEN}")
