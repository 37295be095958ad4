"""The certified local SDCA kernel: ``sdca_round(..., shrink=, gap_target=, gap_rtol=)``.

For one task with ``Sigma = [[1]]``, ``rho = 1`` and ``W = 0`` the local subproblem is the
whole dual of ``P(w) = mean_i l(y_i, w.x_i) + (lam/2)||w||^2``, and the local gap the
kernel certifies is the duality gap, so ``P(w) - P* <= gap``. Tolerances below are derived
from certified gaps, plus the reference solver's own accuracy where one is involved.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_tasks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmtl.losses import LOSS_NAMES, get_loss
from fmtl.reference import solve_fixed_sigma
from fmtl.relationships import mean_regularized_sigma, resolve_sigma_prime
from fmtl.solvers import pack_tasks
from fmtl.solvers.sdca import sdca_round

# Clarabel's ladder stops at gap tolerances <= 1e-8 (fmtl.reference); its objective is
# re-evaluated in numpy at its W, so it is >= P* and within ~1e-8 relative of it. 1e-7
# leaves a factor 10 for the re-evaluation.
REF_RTOL = 1e-7
# rounding slack when comparing an independently recomputed gap with the kernel's: sums of
# n terms of size ~1 in double precision
ROUND = 1e-12


def _problem(loss: str, n=120, d=13, seed=0, m=1, sparse=False, density=0.6):
    """Tasks with d = 13 (not a multiple of 8: the dot's tail), some exact zeros."""
    Xs, ys = random_tasks(m=m, n=n, d=d, seed=seed, regression=loss == "squared")
    rng = np.random.default_rng(seed + 100)
    Xs = [X * (rng.random(X.shape) < density) for X in Xs]
    Xs = [X / max(1.0, np.sqrt((X**2).sum(1)).max()) for X in Xs]
    if sparse:
        Xs = [sp.csr_matrix(X) for X in Xs]
    return Xs, ys


def _run(
    tasks,
    loss,
    lam,
    *,
    steps,
    alpha=None,
    W=None,
    sigma_diag=None,
    rho=1.0,
    seed=0,
    parallel=False,
    theta=0.0,
    feedback=True,
    record_gaps=True,
    **options,
):
    m, d = tasks.n_tasks, tasks.n_features
    loss = get_loss(loss, gamma=0.5)
    out = {
        "alpha": np.zeros(tasks.y.shape[0]) if alpha is None else alpha.copy(),
        "dB": np.full((m, d), np.nan),
        "steps_done": np.full(m, -1, dtype=np.int64),
        "gap_start": np.empty(m),
        "gap_end": np.empty(m),
        "terms": (np.empty(m), np.empty(m)),
        "stats": np.empty((m, 4), dtype=np.int64),
    }
    W = np.zeros((m, d)) if W is None else W
    sigma_diag = np.ones(m) if sigma_diag is None else sigma_diag
    extra = {}
    if options:  # the certified kernel, with its optional outputs
        extra = {"terms": out["terms"], "stats": out["stats"], **options}
    sdca_round(
        *tasks.kernel_args,
        out["alpha"],
        W,
        np.array(sigma_diag, dtype=float),  # a writeable copy: np.diag views are read-only
        rho,
        lam,
        loss.code,
        loss.param,
        np.broadcast_to(np.asarray(steps, dtype=np.int64), (m,)).copy(),
        np.random.default_rng(seed).integers(0, 2**63, size=m, dtype=np.uint64),
        np.ones(m, dtype=bool),
        theta,
        np.zeros(m, dtype=np.int64),
        feedback,
        record_gaps,
        out["dB"],
        out["steps_done"],
        out["gap_start"],
        out["gap_end"],
        parallel=parallel,
        **extra,
    )
    return out


def _local_gaps(Xs, ys, loss, lam, W, sigma_diag, rho, alpha, dB):
    """Each task's local Fenchel gap at v = w_t + kappa db_t, in numpy."""
    loss = get_loss(loss, gamma=0.5)
    gaps, off = [], 0
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        a = alpha[off : off + len(y)]
        off += len(y)
        v = W[t] + rho * sigma_diag[t] / lam * dB[t]
        z = np.asarray(X @ v).ravel()
        gaps.append(np.mean(loss.value(y, z) - loss.neg_conjugate(y, a) + a * z))
    return np.array(gaps)


def _assert_feasible(loss, y, alpha):
    if loss != "squared":
        b = alpha * y
        assert np.all(b >= 0.0) and np.all(b <= 1.0)


def _same(a, b):
    for key in ("alpha", "dB", "steps_done", "gap_start", "gap_end", "stats"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for x, y in zip(a["terms"], b["terms"], strict=True):
        np.testing.assert_array_equal(x, y)


_REFERENCE: dict = {}


def _reference(loss, lam):
    if (loss, lam) not in _REFERENCE:
        Xs, ys = _problem(loss)
        _REFERENCE[loss, lam] = solve_fixed_sigma(Xs, ys, np.eye(1), lam, loss, gamma=0.5)
    return _REFERENCE[loss, lam]


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_single_task_reaches_certified_target_and_reference(loss, sparse):
    lam, rtol = 0.01, 1e-6
    Xs, ys = _problem(loss, sparse=sparse)
    tasks = pack_tasks(Xs, ys)
    n = tasks.y.shape[0]
    out = _run(tasks, loss, lam, steps=10_000 * n, shrink=True, gap_rtol=rtol)
    _assert_feasible(loss, tasks.y, out["alpha"])
    assert out["steps_done"][0] < 10_000 * n  # stopped on the target, not the budget
    w = out["dB"][0] / lam
    z = np.asarray(Xs[0] @ w).ravel()
    lo = get_loss(loss, gamma=0.5)
    P = np.mean(lo.value(ys[0], z)) + 0.5 * lam * w @ w
    D = np.mean(lo.neg_conjugate(ys[0], out["alpha"])) - 0.5 * lam * w @ w
    gap = out["gap_end"][0]
    # the certificate is the duality gap, recomputed independently; and it met its target
    assert abs((P - D) - gap) <= ROUND
    assert 0.0 <= gap <= rtol * P + ROUND
    # terms: the mean loss at v = w and the mean -l*(-a), as a caller would recompute them
    assert abs(out["terms"][0][0] - np.mean(lo.value(ys[0], z))) <= ROUND
    assert abs(out["terms"][1][0] - np.mean(lo.neg_conjugate(ys[0], out["alpha"]))) <= ROUND
    # against cvxpy/Clarabel: D <= P* <= P_ref and P - P* <= gap
    ref = _reference(loss, lam).objective
    assert D <= ref + ROUND
    assert P <= ref + gap + ROUND
    assert P >= ref - REF_RTOL * abs(ref)


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("shrink", [True, False])
def test_dense_csr_serial_parallel_and_seed_bits(loss, shrink):
    # m = 4 tasks, general Sigma: every layout/launch gives the same bits; a seed repeats
    m = 4
    lam = 0.05
    Sigma = mean_regularized_sigma(m, 2.0)
    rho = resolve_sigma_prime("gershgorin", Sigma)
    runs = {}
    for sparse in (False, True):
        Xs, ys = _problem(loss, n=50, m=m, sparse=sparse, seed=3)
        tasks = pack_tasks(Xs, ys)
        W = np.random.default_rng(1).normal(size=(m, tasks.n_features)) * 0.3
        for parallel in (False, True):
            runs[sparse, parallel] = _run(
                tasks, loss, lam, steps=40 * 60, W=W, sigma_diag=np.diag(Sigma), rho=rho,
                parallel=parallel, shrink=shrink, gap_target=1e-8, seed=5,
            )  # fmt: skip
        again = _run(
            tasks, loss, lam, steps=40 * 60, W=W, sigma_diag=np.diag(Sigma), rho=rho,
            shrink=shrink, gap_target=1e-8, seed=5,
        )  # fmt: skip
        _same(runs[sparse, False], again)
    base = runs[False, False]
    for r in runs.values():
        _same(base, r)
    assert np.all(base["steps_done"] > 0)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_feasible_after_every_call_and_budget(loss):
    # rounds of a single task's solve with small budgets: feasibility after every call,
    # steps_done <= steps, visits = updates + n * certifications, and db = X^T da / n
    Xs, ys = _problem(loss, n=80)
    tasks = pack_tasks(Xs, ys)
    n, lam = 80, 1e-3
    alpha, W = np.zeros(n), np.zeros((1, tasks.n_features))
    for r, steps in enumerate([1, 7, n // 2, n, 2 * n + 3, 5 * n, 40 * n]):
        out = _run(tasks, loss, lam, steps=steps, alpha=alpha, W=W, seed=r, shrink=True,
                   gap_rtol=1e-9)  # fmt: skip
        _assert_feasible(loss, tasks.y, out["alpha"])
        done, st = out["steps_done"][0], out["stats"][0]
        assert 0 <= done <= steps
        assert done == st[0] + n * st[1]
        np.testing.assert_allclose(
            out["dB"][0], Xs[0].T @ (out["alpha"] - alpha) / n, rtol=0, atol=1e-14
        )
        g = _local_gaps(Xs, ys, loss, lam, W, [1.0], 1.0, out["alpha"], out["dB"])
        assert abs(g[0] - out["gap_end"][0]) <= ROUND
        alpha, W = out["alpha"], W + out["dB"] / lam
    # a warm start already at its target does no work
    out = _run(tasks, loss, lam, steps=n, alpha=alpha, W=W, shrink=True, gap_target=1.0)
    assert out["steps_done"][0] == 0 and out["gap_end"][0] == out["gap_start"][0]
    np.testing.assert_array_equal(out["alpha"], alpha)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_multitask_local_optimum_same_with_and_without_shrinking(loss):
    # m = 4, learned-looking Sigma (random SPD, trace 1), safe sigma' from Gershgorin. The
    # local objective is -(1/n) sum l*(-a) - db.w - (kappa/2)||db||^2: kappa-strongly
    # concave in db, so G* - G(a) >= (kappa/2)||db - db*||^2 and two solutions with gaps
    # g1, g2 have ||db1 - db2|| <= sqrt(2 g1 / kappa) + sqrt(2 g2 / kappa).
    m, lam = 4, 0.02
    rng = np.random.default_rng(7)
    A = rng.normal(size=(m, m))
    Sigma = A @ A.T + 0.5 * np.eye(m)
    Sigma /= np.trace(Sigma)
    rho = resolve_sigma_prime("gershgorin", Sigma)
    Xs, ys = _problem(loss, n=60, m=m, seed=11)
    tasks = pack_tasks(Xs, ys)
    W = rng.normal(size=(m, tasks.n_features)) * 0.5
    alpha0 = np.zeros(tasks.y.shape[0])
    if loss != "squared":  # a feasible interior start
        alpha0 = 0.3 * tasks.y
    kw = dict(W=W, sigma_diag=np.diag(Sigma), rho=rho, alpha=alpha0)
    big = 100_000 * 60
    shr = _run(tasks, loss, lam, steps=big, shrink=True, gap_target=1e-11, **kw)
    # the original kernel: stop at a local gap <= 1e-9 of the start, checked at pass ends
    old = _run(tasks, loss, lam, steps=big, theta=1e-9, **kw)
    kappa = rho * np.diag(Sigma) / lam
    for out in (shr, old):
        g = _local_gaps(Xs, ys, loss, lam, W, np.diag(Sigma), rho, out["alpha"], out["dB"])
        np.testing.assert_allclose(g, out["gap_end"], rtol=0, atol=ROUND)
        _assert_feasible(loss, tasks.y, out["alpha"])
    assert np.all(shr["gap_end"] <= 1e-11)
    assert np.all(shr["steps_done"] < big)
    for t in range(m):
        g1, g2 = max(shr["gap_end"][t], 0.0), max(old["gap_end"][t], 0.0)
        bound = np.sqrt(2 * g1 / kappa[t]) + np.sqrt(2 * g2 / kappa[t]) + 1e-12
        assert np.linalg.norm(shr["dB"][t] - old["dB"][t]) <= bound


def test_default_options_run_the_original_kernel():
    # no option given: the original kernel (bit for bit what it always was); the new
    # kernel is only used when asked, and both move towards the same optimum
    Xs, ys = _problem("hinge", n=40)
    tasks = pack_tasks(Xs, ys)
    a = _run(tasks, "hinge", 0.1, steps=3 * 40)
    b = _run(tasks, "hinge", 0.1, steps=3 * 40)
    _same_keys = ("alpha", "dB", "steps_done", "gap_start", "gap_end")
    for key in _same_keys:
        np.testing.assert_array_equal(a[key], b[key])
    c = _run(tasks, "hinge", 0.1, steps=3 * 40, shrink=False)  # any option: the new kernel
    assert c["stats"][0, 2] == 3  # the certified kernel ran (its stats output was written)


def test_feedback_false_accumulates_db():
    Xs, ys = _problem("logistic", n=50)
    tasks = pack_tasks(Xs, ys)
    W = np.full((1, tasks.n_features), 0.1)
    out = _run(tasks, "logistic", 0.1, steps=120, W=W, feedback=False, shrink=True,
               gap_target=0.0)  # fmt: skip
    np.testing.assert_allclose(out["dB"][0], Xs[0].T @ out["alpha"] / 50, rtol=0, atol=1e-14)


def test_rejects_bad_options():
    Xs, ys = _problem("hinge", n=10)
    tasks = pack_tasks(Xs, ys)
    with pytest.raises(ValueError, match="gap_rtol"):
        _run(tasks, "hinge", 0.1, steps=10, gap_rtol=-1.0)
    with pytest.raises(ValueError, match="gap_target"):
        _run(tasks, "hinge", 0.1, steps=10, gap_target=np.nan)
    with pytest.raises(TypeError, match="stats"):
        _run(tasks, "hinge", 0.1, steps=10, shrink=True, stats=np.zeros((1, 4)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip
@given(
    loss=st.sampled_from(LOSS_NAMES),
    m=st.integers(1, 3),
    n=st.integers(1, 25),
    d=st.integers(1, 11),
    density=st.floats(0.0, 1.0),
    lam=st.sampled_from([1e-4, 1e-2, 1.0]),
    passes=st.integers(0, 30),
    shrink=st.booleans(),
    target=st.sampled_from([None, 0.0, 1e-6, 1e-2]),
    rtol=st.sampled_from([0.0, 1e-4]),
    seed=st.integers(0, 2**31),
)
def test_invariants_property(loss, m, n, d, density, lam, passes, shrink, target, rtol, seed):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n + t, d)) * (rng.random((n + t, d)) < density) for t in range(m)]
    if loss == "squared":
        ys = [rng.normal(size=n + t) for t in range(m)]
    else:
        ys = [np.where(rng.random(n + t) < 0.5, 1.0, -1.0) for t in range(m)]
    W = rng.normal(size=(m, d)) * 0.2
    Sigma = mean_regularized_sigma(m, 1.0)
    rho = resolve_sigma_prime("gershgorin", Sigma)
    steps = np.array([passes * (n + t) + t for t in range(m)])
    kw = dict(W=W, sigma_diag=np.diag(Sigma), rho=rho, seed=seed, shrink=shrink,
              gap_target=target, gap_rtol=rtol)  # fmt: skip
    outs = []
    for sparse in (False, True):
        tasks = pack_tasks([sp.csr_matrix(X) for X in Xs] if sparse else Xs, ys)
        for parallel in (False, True):
            outs.append(_run(tasks, loss, lam, steps=steps, parallel=parallel, **kw))
    for o in outs[1:]:
        _same(outs[0], o)
    out = outs[0]
    _assert_feasible(loss, np.concatenate(ys), out["alpha"])
    assert np.all(out["steps_done"] <= steps) and np.all(out["steps_done"] >= 0)
    g = _local_gaps(Xs, ys, loss, lam, W, np.diag(Sigma), rho, out["alpha"], out["dB"])
    np.testing.assert_allclose(g, out["gap_end"], rtol=1e-9, atol=ROUND)
    assert np.all(out["gap_end"] >= -ROUND)
    tgt = -np.inf if target is None else target
    kappa = rho * np.diag(Sigma) / lam
    # a task stops before its budget only on a certified target, or when less than one
    # certification's worth of visits (n_t) is left
    for t in np.flatnonzero(out["steps_done"] < steps):
        v = W[t] + kappa[t] * out["dB"][t]
        p_t = out["terms"][0][t] + v @ v / (2 * kappa[t])
        met = out["gap_end"][t] <= max(tgt, rtol * p_t if rtol else -np.inf) + ROUND
        assert met or steps[t] - out["steps_done"][t] < n + t


def test_logistic_logodds_step_matches_the_original_step():
    # the certified kernel's logistic step (Newton in the log-odds) maximises the same 1-D
    # objective as the original (Newton in b, to 1e-12 in b): never worse by more than
    # rounding, over curvatures q from 1e-6 (large n lam) to 1e4 (tiny tasks)
    from fmtl.losses.logistic import neg_conjugate, sdca_delta, sdca_delta_logodds

    rng = np.random.default_rng(0)
    for _ in range(20_000):
        y = rng.choice([-1.0, 1.0])
        b = rng.choice([0.0, 1.0, rng.random(), 10 ** rng.uniform(-12, 0)])
        a, xv, q = y * b, rng.normal() * 10 ** rng.uniform(-3, 2), 10 ** rng.uniform(-6, 4)
        d_old, d_new = sdca_delta(y, a, xv, q, 0.0), sdca_delta_logodds(y, a, xv, q, 0.0)
        assert 0.0 <= (a + d_new) * y <= 1.0

        def obj(d, y=y, a=a, xv=xv, q=q):
            return neg_conjugate(y, a + d, 0.0) - d * xv - 0.5 * q * d * d

        assert obj(d_new) >= obj(d_old) - 1e-12 * (1.0 + abs(obj(d_old)))


def test_bench_certified_row_smoke(monkeypatch):
    # the benchmark's row on a tiny problem: finite times, and its fmtl solution is a
    # certified 1e-4 relative gap (so within 1e-4 of P*, which the tight run brackets to
    # 1e-9). Wall times are never asserted.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_certified as bc

    X, y = bc.text_problem(300, 400, 0.05, seed=1)
    for loss in ("hinge", "logistic"):
        row = bc.certified_row("tiny", X, y, loss, 1e-2, repeats=1)
        assert row["fmtl_certified_rel_gap"] <= bc.RTOL
        assert -1e-9 <= row["fmtl_rel_subopt"] <= bc.RTOL
        assert row["D_lower"] <= row["P_star"] + ROUND
        assert np.isfinite(row["fmtl_seconds"]) and np.isfinite(row["old_seconds"])
