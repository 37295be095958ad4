"""MOCHA against exact references: cvxpy optima, duality-gap certificates, closed forms."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_tasks

from fmtl.federated import certificates, mocha
from fmtl.reference import primal_objective, solve_fixed_sigma, solve_joint
from fmtl.relationships import mean_regularized_sigma, omega_update, safety_rho

LOSSES = ["hinge", "smoothed_hinge", "squared", "logistic"]


def _random_spd_sigma(m, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, m))
    S = A @ A.T + 0.5 * np.eye(m)
    return S / np.trace(S)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sigma_kind", ["mean", "random"])
def test_fixed_sigma_reaches_cvxpy_optimum(loss, sigma_kind):
    m = 5
    Xs, ys = random_tasks(m=m, n=25, d=6, seed=1, regression=loss == "squared")
    Sigma = mean_regularized_sigma(m, 3.0) if sigma_kind == "mean" else _random_spd_sigma(m, 2)
    lam = 0.05
    res = mocha(
        Xs,
        ys,
        lam,
        loss,
        gamma=0.5,
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=20000,
        local_frac=2.0,
        tol=1e-10,
        random_state=0,
    )
    last = res.history.last
    ref = solve_fixed_sigma(Xs, ys, Sigma, lam, loss=loss, gamma=0.5)
    assert last["gap"] <= 1e-8 * last["primal"]
    assert last["primal"] == pytest.approx(ref.objective, rel=1e-6)
    # reported primal equals an independent numpy evaluation at the returned model
    P = primal_objective(Xs, ys, res.coef.T, res.omega, lam, loss=loss, gamma=0.5)
    assert last["primal"] == pytest.approx(P, rel=1e-12)
    # weak duality against the solver's optimum
    assert last["dual"] <= ref.objective * (1 + 1e-9)


def test_squared_loss_fixed_sigma_matches_linear_system():
    # closed form: (1/n_t) X_t^T (X_t w_t - y_t) + lam (W Omega)_t = 0 for every t
    m, d, lam = 4, 5, 0.1
    Xs, ys = random_tasks(m=m, n=20, d=d, seed=3, regression=True)
    Sigma = _random_spd_sigma(m, 4)
    Omega = np.linalg.inv(Sigma)
    H = np.kron(lam * Omega, np.eye(d))  # vec(W) stacks w_1, ..., w_m
    rhs = np.zeros(m * d)
    for t in range(m):
        H[t * d : (t + 1) * d, t * d : (t + 1) * d] += Xs[t].T @ Xs[t] / len(ys[t])
        rhs[t * d : (t + 1) * d] = Xs[t].T @ ys[t] / len(ys[t])
    W_exact = np.linalg.solve(H, rhs).reshape(m, d)
    res = mocha(
        Xs,
        ys,
        lam,
        "squared",
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=5000,
        tol=1e-13,
        random_state=0,
    )
    # strong convexity lam * lmin(Omega) turns the certified gap into a distance bound
    gap = res.history.last["gap"]
    bound = np.sqrt(2 * gap / (lam * np.linalg.eigvalsh(Omega)[0]))
    err = np.linalg.norm(res.coef - W_exact)
    assert err <= bound + 1e-12
    assert err <= 1e-6


def test_learned_sigma_full_rank_reaches_joint_optimum():
    # d >= m: the optimal Sigma has full rank and the alternation converges fast
    Xs, ys = random_tasks(m=6, n=30, d=12, seed=0)
    lam, eps = 0.01, 1e-6
    ref = solve_joint(Xs, ys, lam, loss="hinge", eps=eps)
    res = mocha(
        Xs,
        ys,
        lam,
        "hinge",
        outer_iters=15,
        inner_iters=2000,
        local_frac=5,
        tol=1e-9,
        sigma_floor=eps,
        random_state=0,
    )
    last = res.history.last
    assert (last["primal"] - ref.objective) / ref.objective <= 1e-4
    # the joint certificate is a valid lower bound on the SDP optimum
    assert np.all(res.history["joint_dual"] <= ref.objective * (1 + 1e-8))
    # feasible Sigma: trace 1, floor respected
    assert np.trace(res.sigma) == pytest.approx(1.0, abs=1e-12)
    assert np.linalg.eigvalsh(res.sigma)[0] >= eps * (1 - 1e-9)


def test_learned_sigma_on_small_reaches_joint_optimum(small):
    # d = 9 < m = 29: Sigma* is singular up to its floor; with eps = 0.02 (floor mass
    # m * eps = 0.58) the alternation reaches 1e-4 in ~20 outer rounds. Smaller floors
    # creep (docs: eps = 1e-2 is 7.9e-4 above after 40 rounds at lam = 0.01).
    lam, eps = 0.1, 0.02
    ref = solve_joint(
        small.X, small.y, lam, loss="hinge", eps=eps, tol_gap_abs=1e-9, tol_gap_rel=1e-9
    )
    res = mocha(
        small.X,
        small.y,
        lam,
        "hinge",
        outer_iters=25,
        inner_iters=1000,
        local_frac=5,
        tol=1e-8,
        sigma_floor=eps,
        random_state=0,
    )
    rel = (res.history.last["primal"] - ref.objective) / ref.objective
    assert -1e-8 <= rel <= 1e-4


def test_primal_decreases_across_outer_rounds():
    Xs, ys = random_tasks(m=5, n=30, d=8, seed=5)
    res = mocha(
        Xs,
        ys,
        0.05,
        "smoothed_hinge",
        outer_iters=8,
        inner_iters=2000,
        tol=1e-11,
        sigma_floor=1e-6,
        random_state=0,
    )
    h = res.history
    ends = [np.where(h["outer"] == k)[0][-1] for k in range(8)]
    P = h["primal"][ends]
    assert np.all(np.diff(P) <= 1e-9 * P[:-1])


def test_certificates_equal_direct_formulas():
    Xs, ys = random_tasks(m=4, n=15, d=3, seed=6)
    lam = 0.2
    res = mocha(Xs, ys, lam, "hinge", outer_iters=3, inner_iters=5, random_state=0)
    # W is exactly W(alpha) = Sigma B / lam, and B = X^T alpha / n per task
    offs = np.cumsum([0] + [len(y) for y in ys])
    B = np.stack([Xs[t].T @ res.dual_coef[offs[t] : offs[t + 1]] / len(ys[t]) for t in range(4)])
    np.testing.assert_allclose(res.B, B, atol=1e-13)
    np.testing.assert_allclose(res.coef, res.sigma @ B / lam, atol=1e-13)
    last = res.history.last
    conj = sum(
        np.mean(a * y)
        for a, y in ((res.dual_coef[offs[t] : offs[t + 1]], ys[t]) for t in range(4))
    )
    dual = conj - np.trace(B.T @ res.sigma @ B) / (2 * lam)
    # B is accumulated round by round on the server: rounding at 1e-13 is expected
    assert last["dual"] == pytest.approx(dual, rel=1e-10)
    P = primal_objective(Xs, ys, res.coef.T, res.omega, lam, loss="hinge")
    # learned Sigma may have condition number up to 1/sigma_floor: rounding ~ cond * 1e-16
    assert last["primal"] == pytest.approx(P, rel=1e-16 * np.linalg.cond(res.sigma) * 100)


def test_dense_and_csr_give_identical_iterates():
    Xs, ys = random_tasks(m=4, n=20, d=10, seed=7)
    rng = np.random.default_rng(0)
    Xs = [X * (rng.random(X.shape) < 0.3) for X in Xs]
    kw = dict(outer_iters=3, inner_iters=10, random_state=42)
    dense = mocha(Xs, ys, 0.05, "logistic", **kw)
    csr = mocha([sp.csr_matrix(X) for X in Xs], ys, 0.05, "logistic", **kw)
    assert np.array_equal(dense.dual_coef, csr.dual_coef)
    assert np.array_equal(dense.coef, csr.coef)
    assert np.array_equal(dense.history["primal"], csr.history["primal"])


def test_same_seed_is_bit_identical_serial_and_parallel(monkeypatch):
    import sys

    # force the threaded kernels even on this small problem
    monkeypatch.setattr(sys.modules["fmtl.federated._loop"], "PARALLEL_MIN_WORK", 0)
    Xs, ys = random_tasks(m=7, n=25, d=5, seed=8)
    kw = dict(outer_iters=3, inner_iters=10, random_state=123)
    serial = mocha(Xs, ys, 0.05, "hinge", n_threads=1, **kw)
    parallel = mocha(Xs, ys, 0.05, "hinge", n_threads=2, **kw)
    again = mocha(Xs, ys, 0.05, "hinge", n_threads=2, **kw)
    other = mocha(Xs, ys, 0.05, "hinge", n_threads=2, **{**kw, "random_state": 124})
    assert np.array_equal(serial.coef, parallel.coef)
    assert np.array_equal(parallel.coef, again.coef)
    assert not np.array_equal(parallel.coef, other.coef)


def test_history_records_local_work_and_theta():
    Xs, ys = random_tasks(m=3, n=20, d=4, seed=9)
    res = mocha(
        Xs,
        ys,
        0.1,
        "hinge",
        outer_iters=2,
        inner_iters=4,
        local_frac=0.5,
        record_local_gaps=True,
        random_state=0,
    )
    h = res.history
    assert len(h) == 8
    np.testing.assert_array_equal(h["local_steps"][0], np.floor(0.5 * np.array([20, 23, 26])))
    # local Fenchel gaps are certificates: never negative
    assert np.all(h["local_gap_start"] >= -1e-15) and np.all(h["local_gap_end"] >= -1e-15)
    assert np.all(np.isfinite(h["local_gap_ratio"]))
    assert np.all(np.diff(h["wall_time"]) >= 0)
    assert np.all(h["gap"] >= -1e-12)


def test_omega_update_matches_constrained_minimiser():
    # brute force: tr(Sigma^{-1} A) at the closed form is below random feasible Sigmas
    rng = np.random.default_rng(10)
    Wt = rng.normal(size=(5, 2))  # rank 2 < m: the floor is active
    eps = 0.05
    Sigma, Omega = omega_update(Wt, eps)
    A = Wt @ Wt.T
    assert np.trace(Sigma) == pytest.approx(1.0, abs=1e-12)
    assert np.linalg.eigvalsh(Sigma)[0] >= eps - 1e-12
    np.testing.assert_allclose(Sigma @ Omega, np.eye(5), atol=1e-9)
    best = np.trace(Omega @ A)
    for _ in range(200):
        Q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
        s = eps + rng.dirichlet(np.ones(5)) * (1 - 5 * eps)
        S = (Q * s) @ Q.T
        assert np.trace(np.linalg.solve(S, A)) >= best - 1e-10
    # without a floor: the paper's A^{1/2} / tr(A^{1/2}) on a full-rank W
    Wt = rng.normal(size=(3, 6))
    S0, _ = omega_update(Wt, 0.0)
    a, V = np.linalg.eigh(Wt @ Wt.T)
    half = (V * np.sqrt(a)) @ V.T
    np.testing.assert_allclose(S0, half / np.trace(half), atol=1e-12)


def test_safety_rho_bounds_the_cross_task_term():
    rng = np.random.default_rng(11)
    Sigma = _random_spd_sigma(6, 12)
    rho = safety_rho(Sigma)
    for _ in range(200):
        dB = rng.normal(size=(6, 4))
        lhs = np.trace(dB.T @ Sigma @ dB)
        rhs = rho * np.sum(np.diag(Sigma) * np.sum(dB * dB, axis=1))
        assert lhs <= rhs * (1 + 1e-12)


def test_certificates_function_validates_against_mocha():
    Xs, ys = random_tasks(m=3, n=10, d=3, seed=13)
    from fmtl.losses import get_loss
    from fmtl.solvers import pack_tasks

    res = mocha(Xs, ys, 0.3, "squared", outer_iters=2, inner_iters=3, random_state=0)
    c = certificates(
        pack_tasks(Xs, ys), res.dual_coef, res.B, res.sigma, 0.3, get_loss("squared"), 1e-6
    )
    assert c["primal"] == pytest.approx(res.history.last["primal"], rel=1e-14)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(lam=0.0), "lam"),
        (dict(lam=float("nan")), "lam"),
        (dict(loss="foo"), "loss"),
        (dict(outer_iters=0), "outer_iters"),
        (dict(local_frac=-1.0), "local_frac"),
        (dict(relationship="magic"), "relationship"),
        (dict(sigma_floor=0.5), "sigma_floor"),
    ],
)
def test_mocha_rejects_bad_arguments(bad, match):
    Xs, ys = random_tasks(m=3, n=10, d=3, seed=14)
    kw = dict(lam=0.1, loss="hinge")
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        mocha(Xs, ys, **kw)


def test_fixed_sigma_must_be_spd():
    Xs, ys = random_tasks(m=3, n=10, d=3, seed=15)
    with pytest.raises(ValueError, match="sigma"):
        mocha(Xs, ys, 0.1, relationship="fixed", sigma=-np.eye(3))
    with pytest.raises(ValueError, match="sigma"):
        mocha(Xs, ys, 0.1, relationship="fixed", sigma=np.eye(2))


def test_local_theta_stops_each_node_at_its_relative_local_gap():
    Xs, ys = random_tasks(m=4, n=30, d=5, seed=16)
    theta = 0.3
    res = mocha(
        Xs,
        ys,
        0.05,
        "smoothed_hinge",
        outer_iters=2,
        inner_iters=5,
        local_frac=20.0,
        local_theta=theta,
        record_local_gaps=True,
        random_state=0,
    )
    h = res.history
    budget = np.ceil(20.0 * np.array([len(y) for y in ys]))
    stopped_early = h["local_steps"] < budget
    assert stopped_early.any()
    # a node that stopped before its budget did so at the end of a pass, with gap <= theta * g0
    ok = h["local_gap_end"] <= theta * h["local_gap_start"] * (1 + 1e-12)
    assert np.all(ok[stopped_early])
    assert np.all(
        h["local_steps"][stopped_early]
        % np.array([len(y) for y in ys])[None, :].repeat(len(h), 0)[stopped_early]
        == 0
    )


def test_importing_fmtl_compiles_nothing():
    import subprocess
    import sys

    code = (
        "import fmtl, fmtl.reference, fmtl.datasets, numba, sys\n"
        "from numba.core.registry import CPUDispatcher\n"
        "bad = [f'{m}.{k}' for m, mod in list(sys.modules.items()) if m.startswith('fmtl')\n"
        "       for k, v in vars(mod).items() if isinstance(v, CPUDispatcher) and v.signatures]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("loss", ["hinge", "smoothed_hinge", "logistic"])
def test_debug_mode_asserts_dual_feasibility_every_round(loss, monkeypatch):
    import sys

    loop = sys.modules["fmtl.federated._loop"]
    monkeypatch.setattr(loop, "DEBUG", True)
    calls = []
    real = loop.check_dual_feasible
    monkeypatch.setattr(
        loop, "check_dual_feasible", lambda *a, **k: (calls.append(1), real(*a, **k))
    )
    Xs, ys = random_tasks(m=4, n=15, d=3, seed=17)
    Xs = [X * 1e3 for X in Xs]  # large curvature: steps hit the box edges
    mocha(Xs, ys, 1e-4, loss, outer_iters=2, inner_iters=5, random_state=0)
    assert len(calls) == 10
    with pytest.raises(AssertionError, match="box"):
        real(np.array([0.5, 1.5]), np.array([1.0, 1.0]), __import__("fmtl").get_loss(loss))


@pytest.mark.parametrize("scale", [1e-200, 1e-12, 1.0, 1e12, 1e200])
def test_omega_update_is_scale_invariant(scale):
    rng = np.random.default_rng(18)
    Wt = rng.normal(size=(4, 3))
    Wt[3] = Wt[2]  # duplicated task: W W^T singular
    S1, O1 = omega_update(Wt, 1e-3)
    S2, O2 = omega_update(Wt * scale, 1e-3)
    np.testing.assert_allclose(S2, S1, rtol=1e-10, atol=1e-14)
    assert np.all(np.isfinite(O2))
    assert np.linalg.eigvalsh(S2)[0] >= 1e-3 * (1 - 1e-9)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda Xs, ys: (Xs, ys[:-1]), "Xs has 3 tasks but ys has 2"),
        (lambda Xs, ys: (Xs, [ys[0][:-1], ys[1], ys[2]]), r"ys\[0\] has"),
        (lambda Xs, ys: ([], []), "empty"),
        (lambda Xs, ys: ([Xs[0][:, 0], *Xs[1:]], ys), r"Xs\[0\] must be 2-D"),
        (lambda Xs, ys: ([Xs[0], Xs[1][:, :2], Xs[2]], ys), r"Xs\[1\] has 2 features"),
        (lambda Xs, ys: ([np.where(Xs[0] > 1, np.nan, Xs[0]), *Xs[1:]], ys), "NaN"),
        (lambda Xs, ys: (Xs, [2 * ys[0], *ys[1:]]), "-1/\\+1"),
        (lambda Xs, ys: (Xs, [np.full(len(ys[0]), np.inf), *ys[1:]]), "NaN or inf"),
    ],
)
def test_mocha_validates_per_task_data(make, match):
    # mismatched lengths once reached the kernel and corrupted memory
    Xs, ys = random_tasks(m=3, n=10, d=3, seed=19)
    Xs, ys = make(Xs, ys)
    with pytest.raises(ValueError, match=match):
        mocha(Xs, ys, 0.1, "hinge", outer_iters=1, inner_iters=1)
