"""Tests for fmtl.reference: independent checks of the cvxpy reference solvers."""

from __future__ import annotations

import dataclasses
import doctest

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.svm import LinearSVC

import fmtl.reference as ref
from fmtl.reference import (
    LOSS_NAMES,
    ReferenceSolution,
    ReferenceSolveError,
    cvxpy_loss,
    primal_objective,
    solve_fixed_sigma,
    solve_joint,
)

# --------------------------------------------------------------------------------------------
# helpers (independent of the module under test)
# --------------------------------------------------------------------------------------------


def make_tasks(m, d, n, seed=0, classification=True, ns=None):
    """Related tasks: w_t = w0 + small per-task perturbation (so Sigma is non-trivial)."""
    rng = np.random.default_rng(seed)
    ns = [n] * m if ns is None else ns
    w0 = rng.standard_normal(d)
    Xs, ys = [], []
    for t in range(m):
        X = rng.standard_normal((ns[t], d))
        w_t = w0 + 0.5 * rng.standard_normal(d) + (t % 2) * w0
        z = X @ w_t + 0.3 * rng.standard_normal(ns[t])
        Xs.append(X)
        ys.append(np.where(z >= 0, 1.0, -1.0) if classification else z)
    return Xs, ys


def random_spd(m, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, m))
    S = A @ A.T + 0.5 * np.eye(m)
    return S / np.trace(S)


def loss_formula(name, z, y, gamma):
    """Elementwise losses written out directly (independent of fmtl.reference)."""
    out = []
    for zi, yi in zip(z, y, strict=True):
        if name == "hinge":
            out.append(max(0.0, 1.0 - yi * zi))
        elif name == "smoothed_hinge":
            r = 1.0 - yi * zi
            if r <= 0:
                out.append(0.0)
            elif r < gamma:
                out.append(r * r / (2 * gamma))
            else:
                out.append(r - gamma / 2)
        elif name == "squared":
            out.append(0.5 * (zi - yi) ** 2)
        else:
            out.append(float(np.log1p(np.exp(-yi * zi))))
    return np.array(out)


def closed_form_squared_W(Xs, ys, Omega, lam):
    """Stationarity for squared loss with fixed Omega (a linear system in vec(W)).

    For each t: (1/n_t) X_t^T (X_t w_t - y_t) + lam * (W Omega)[:, t] = 0, where
    vec(W Omega) = (Omega^T kron I_d) vec(W) (column stacking).  Empty tasks contribute no
    data term.
    """
    m, d = len(Xs), Xs[0].shape[1]
    A = lam * np.kron(Omega.T, np.eye(d))
    b = np.zeros(m * d)
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        n_t = X.shape[0]
        if n_t == 0:
            continue
        A[t * d : (t + 1) * d, t * d : (t + 1) * d] += X.T @ X / n_t
        b[t * d : (t + 1) * d] = X.T @ y / n_t
    return np.linalg.solve(A, b).reshape(m, d).T


def optimal_sigma_given_W(W, eps):
    """argmin tr(Sigma^{-1} W^T W) s.t. Sigma >= eps I, tr Sigma = 1 (eigen-space, bisection).

    Sigma = V diag(max(eps, sqrt(a_i) / mu)) V^T with mu chosen so that the trace is 1.
    """
    a, V = np.linalg.eigh(W.T @ W)
    r = np.sqrt(np.maximum(a, 0.0))
    lo, hi = r.sum(), r.max() / eps  # trace(lo) >= 1 >= m * eps = trace(hi)
    for _ in range(300):
        mu = 0.5 * (lo + hi)
        if np.maximum(eps, r / mu).sum() > 1.0:
            lo = mu
        else:
            hi = mu
    s = np.maximum(eps, r / (0.5 * (lo + hi)))
    return (V * s) @ V.T


def rel_close(a, b, rtol):
    return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))


# --------------------------------------------------------------------------------------------
# single task against scikit-learn (m = 1, Sigma = [[1]])
# --------------------------------------------------------------------------------------------

N1, D1, LAM1 = 40, 5, 0.1


@pytest.fixture(scope="module")
def single_task_data():
    Xs, ys_cls = make_tasks(1, D1, N1, seed=3, classification=True)
    _, ys_reg = make_tasks(1, D1, N1, seed=3, classification=False)
    return Xs[0], ys_cls[0], ys_reg[0]


def test_squared_matches_sklearn_ridge(single_task_data):
    X, _, y = single_task_data
    sol = solve_fixed_sigma([X], [y], np.eye(1), LAM1, loss="squared")
    # (1/n) sum 1/2 (x^T w - y)^2 + lam/2 ||w||^2, times 2n, is ||y - Xw||^2 + n*lam ||w||^2,
    # i.e. Ridge with alpha = n * lam.
    ridge = Ridge(alpha=N1 * LAM1, fit_intercept=False, solver="cholesky").fit(X, y)
    np.testing.assert_allclose(sol.W[:, 0], ridge.coef_, atol=1e-6, rtol=0)


def test_logistic_matches_sklearn(single_task_data):
    X, y, _ = single_task_data
    sol = solve_fixed_sigma([X], [y], np.eye(1), LAM1, loss="logistic")
    # sklearn minimises 1/2 ||w||^2 + C sum log(1 + exp(-y x^T w)); dividing our objective
    # (1/n) sum log(...) + lam/2 ||w||^2 by lam gives C = 1 / (n * lam).
    clf = LogisticRegression(
        C=1.0 / (N1 * LAM1), fit_intercept=False, solver="newton-cg", tol=1e-12, max_iter=10_000
    ).fit(X, y)
    np.testing.assert_allclose(sol.W[:, 0], clf.coef_.ravel(), atol=1e-6, rtol=0)


def test_hinge_matches_sklearn_linearsvc(single_task_data):
    X, y, _ = single_task_data
    sol = solve_fixed_sigma([X], [y], np.eye(1), LAM1, loss="hinge")
    # sklearn minimises 1/2 ||w||^2 + C sum max(0, 1 - y x^T w), so C = 1 / (n * lam).
    svc = LinearSVC(
        loss="hinge",
        dual=True,
        C=1.0 / (N1 * LAM1),
        fit_intercept=False,
        tol=1e-10,
        max_iter=10**6,
    ).fit(X, y)
    np.testing.assert_allclose(sol.W[:, 0], svc.coef_.ravel(), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------
# fixed Sigma
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_fixed_sigma_objective_reevaluation(loss):
    Xs, ys = make_tasks(3, 4, 15, seed=1, classification=loss != "squared")
    sol = solve_fixed_sigma(Xs, ys, random_spd(3, seed=1), 0.2, loss=loss, gamma=0.5)
    assert isinstance(sol, ReferenceSolution)
    assert sol.status == "optimal" and sol.solver == "CLARABEL"
    assert sol.W.shape == (4, 3) and sol.solve_time > 0
    assert rel_close(sol.objective, sol.solver_objective, 1e-7)
    # perturbing W must not decrease the (numpy) objective
    Omega = np.linalg.inv(sol.Sigma)
    rng = np.random.default_rng(0)
    for _ in range(5):
        W2 = sol.W + 1e-3 * rng.standard_normal(sol.W.shape)
        assert primal_objective(Xs, ys, W2, Omega, 0.2, loss, 0.5) >= sol.objective - 1e-9


def test_fixed_sigma_squared_closed_form_with_empty_task():
    # task 2 has no samples: its column is determined by the regulariser alone
    Xs, ys = make_tasks(4, 5, 0, seed=2, classification=False, ns=[12, 25, 0, 7])
    Sigma = random_spd(4, seed=2)
    Omega = np.linalg.inv(Sigma)
    lam = 0.3
    sol = solve_fixed_sigma(Xs, ys, Sigma, lam, loss="squared")
    W_star = closed_form_squared_W(Xs, ys, Omega, lam)
    np.testing.assert_allclose(sol.W, W_star, atol=1e-7, rtol=0)
    assert rel_close(sol.objective, primal_objective(Xs, ys, W_star, Omega, lam, "squared"), 1e-9)
    # the empty task's column minimises tr(W Omega W^T) given the others
    t = 2
    others = [s for s in range(4) if s != t]
    expected = -(W_star[:, others] @ Omega[others, t]) / Omega[t, t]
    np.testing.assert_allclose(sol.W[:, t], expected, atol=1e-7, rtol=0)
    assert np.linalg.norm(sol.W[:, t]) > 1e-3


def test_fixed_sigma_sparse_equals_dense():
    Xs, ys = make_tasks(3, 6, 20, seed=4)
    Xs_sp = []
    for X in Xs:
        X = X.copy()
        X[np.abs(X) < 0.7] = 0.0
        Xs_sp.append(sp.csr_matrix(X))
    Xs_dense = [X.toarray() for X in Xs_sp]
    Sigma = random_spd(3, seed=4)
    dense = solve_fixed_sigma(Xs_dense, ys, Sigma, 0.1, loss="smoothed_hinge", gamma=0.3)
    sparse = solve_fixed_sigma(Xs_sp, ys, Sigma, 0.1, loss="smoothed_hinge", gamma=0.3)
    np.testing.assert_allclose(sparse.W, dense.W, atol=1e-7, rtol=0)
    assert rel_close(sparse.objective, dense.objective, 1e-9)
    csc = [sp.csc_array(X) for X in Xs_dense]
    assert rel_close(
        primal_objective(csc, ys, dense.W, np.eye(3), 0.1),
        primal_objective(Xs_dense, ys, dense.W, np.eye(3), 0.1),
        1e-12,
    )


def test_fixed_sigma_other_solver_and_result_is_frozen():
    Xs, ys = make_tasks(2, 3, 10, seed=5, classification=False)
    sol = solve_fixed_sigma(
        Xs,
        ys,
        np.eye(2) / 2,
        0.5,
        loss="squared",
        solver="osqp",
        eps_abs=1e-10,
        eps_rel=1e-10,
        max_iter=200_000,
    )
    assert sol.solver == "OSQP"
    W_star = closed_form_squared_W(Xs, ys, 2 * np.eye(2), 0.5)
    np.testing.assert_allclose(sol.W, W_star, atol=1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sol.objective = 0.0
    with pytest.raises(ValueError):
        sol.W[0, 0] = 1.0


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
def test_solver_failure_raises_clear_error():
    Xs, ys = make_tasks(3, 4, 15, seed=6)
    with pytest.raises(ReferenceSolveError, match="status|failed"):
        solve_fixed_sigma(Xs, ys, np.eye(3), 0.1, loss="logistic", max_iter=1)
    with pytest.raises(ReferenceSolveError):  # OSQP cannot handle the SDP
        solve_joint(Xs, ys, 0.1, solver="OSQP")


class _FlakyProblem:
    """Stand-in for cvxpy.Problem: only optimal once equilibration is switched off."""

    def __init__(self, error_first=False):
        self.calls, self.status, self.value, self.error_first = [], None, None, error_first

    def solve(self, solver, **kwargs):
        self.calls.append(kwargs)
        if self.error_first and len(self.calls) == 1:
            raise cp.error.SolverError("numerical trouble")
        ok = kwargs.get("equilibrate_enable", True) is False
        self.status = cp.OPTIMAL if ok else cp.OPTIMAL_INACCURATE
        self.value = 1.5 if ok else None


@pytest.mark.parametrize("error_first", [False, True])
def test_clarabel_ladder_falls_back(error_first):
    prob = _FlakyProblem(error_first)
    value, status, elapsed, used = ref._run(
        prob, "CLARABEL", {"verbose": False}, ref.CLARABEL_SETTINGS_JOINT
    )
    assert (value, status) == (1.5, "optimal") and elapsed >= 0
    assert len(prob.calls) == 2 and prob.calls[0] == {
        **ref.CLARABEL_SETTINGS_JOINT[0],
        "verbose": False,
    }
    assert dict(used) == {**ref.CLARABEL_SETTINGS_JOINT[1], "verbose": False}
    # user settings override every step; duplicates are not re-run
    prob = _FlakyProblem()
    with pytest.raises(ReferenceSolveError, match="did not reach status 'optimal'"):
        ref._run(
            prob,
            "CLARABEL",
            {
                "equilibrate_enable": True,
                "tol_gap_abs": 1e-6,
                "tol_gap_rel": 1e-6,
                "tol_feas": 1e-6,
            },
            ref.CLARABEL_SETTINGS_FIXED,
        )
    assert len(prob.calls) == 1
    # other solvers get exactly the user's kwargs, once
    prob = _FlakyProblem()
    with pytest.raises(ReferenceSolveError):
        ref._run(prob, "SCS", {"eps": 1e-9}, ref.CLARABEL_SETTINGS_FIXED)
    assert prob.calls == [{"eps": 1e-9}]


def test_solver_options_recorded():
    Xs, ys = make_tasks(2, 3, 10, seed=15, classification=False)
    sol = solve_fixed_sigma(Xs, ys, np.eye(2), 0.5, loss="squared")
    assert dict(sol.solver_options) in [dict(s) for s in ref.CLARABEL_SETTINGS_FIXED]
    sol = solve_fixed_sigma(Xs, ys, np.eye(2), 0.5, loss="squared", tol_gap_abs=1e-9)
    assert sol.solver_options["tol_gap_abs"] == 1e-9
    assert sol.solver_options["tol_gap_rel"] == ref.CLARABEL_SETTINGS_FIXED[0]["tol_gap_rel"]
    with pytest.raises(TypeError):
        sol.solver_options["tol_gap_abs"] = 1.0


# --------------------------------------------------------------------------------------------
# joint problem
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def joint_hinge():
    Xs, ys = make_tasks(6, 12, 30, seed=7)
    lam, eps = 0.05, 1e-3
    return Xs, ys, lam, eps, solve_joint(Xs, ys, lam, loss="hinge", eps=eps)


def test_joint_feasible_and_consistent(joint_hinge):
    Xs, ys, lam, eps, sol = joint_hinge
    m = len(Xs)
    assert sol.W.shape == (12, m) and sol.Sigma.shape == (m, m)
    np.testing.assert_allclose(sol.Sigma, sol.Sigma.T, atol=0)
    assert np.linalg.eigvalsh(sol.Sigma).min() >= eps - 1e-8
    assert abs(np.trace(sol.Sigma) - 1.0) <= 1e-8
    assert rel_close(sol.objective, sol.solver_objective, 1e-7)
    # the joint W is optimal for its own Sigma
    fixed = solve_fixed_sigma(Xs, ys, sol.Sigma, lam, loss="hinge")
    assert rel_close(fixed.objective, sol.objective, 1e-7)


def test_joint_beats_feasible_alternatives(joint_hinge):
    Xs, ys, lam, eps, sol = joint_hinge
    m = len(Xs)
    rng = np.random.default_rng(0)
    alternatives = [np.eye(m) / m, random_spd(m, seed=8)]
    B = rng.standard_normal((m, 2))  # low-rank plus eps-floor alternative
    alternatives.append((B @ B.T) * (1 - m * 0.01) / np.trace(B @ B.T) + 0.01 * np.eye(m))
    for Sigma in alternatives:
        assert np.linalg.eigvalsh(Sigma).min() >= eps and abs(np.trace(Sigma) - 1) < 1e-12
        alt = solve_fixed_sigma(Xs, ys, Sigma, lam, loss="hinge")
        assert sol.objective <= alt.objective + 1e-8


def test_joint_squared_sigma_closed_form():
    Xs, ys = make_tasks(4, 6, 20, seed=9, classification=False)
    lam, eps = 0.1, 1e-6
    sol = solve_joint(Xs, ys, lam, loss="squared", eps=eps)
    # Sigma is the minimiser of tr(Sigma^{-1} W^T W) over the feasible set, given W
    np.testing.assert_allclose(sol.Sigma, optimal_sigma_given_W(sol.W, eps), atol=1e-4)
    # and W is the closed-form minimiser given Sigma
    W_star = closed_form_squared_W(Xs, ys, np.linalg.inv(sol.Sigma), lam)
    np.testing.assert_allclose(sol.W, W_star, atol=1e-6)
    assert rel_close(sol.objective, sol.solver_objective, 1e-7)


def test_joint_active_eps_bound():
    # tasks 0 and 2 identical, 1 and 3 identical -> rank-2 W^T W, so eps is active
    Xs, ys = make_tasks(2, 5, 25, seed=10, classification=False)
    Xs, ys = Xs + Xs, ys + ys
    eps = 0.05
    sol = solve_joint(Xs, ys, 0.2, loss="squared", eps=eps)
    vals = np.linalg.eigvalsh(sol.Sigma)
    assert vals.min() >= eps - 1e-8
    np.testing.assert_allclose(vals[:2], eps, atol=1e-6)
    np.testing.assert_allclose(sol.Sigma, optimal_sigma_given_W(sol.W, eps), atol=1e-4)


@pytest.mark.parametrize("loss", ["logistic", "smoothed_hinge"])
def test_joint_other_losses(loss):
    Xs, ys = make_tasks(3, 4, 12, seed=11)
    lam = 0.1
    sol = solve_joint(Xs, ys, lam, loss=loss, gamma=0.5, eps=1e-4)
    assert rel_close(sol.objective, sol.solver_objective, 1e-7)
    alt = solve_fixed_sigma(Xs, ys, np.eye(3) / 3, lam, loss=loss, gamma=0.5)
    assert sol.objective <= alt.objective + 1e-8


def test_joint_single_task_equals_fixed():
    Xs, ys = make_tasks(1, 4, 20, seed=12)
    sol = solve_joint(Xs, ys, 0.1, eps=0.5)
    fixed = solve_fixed_sigma(Xs, ys, np.eye(1), 0.1)
    np.testing.assert_allclose(sol.Sigma, [[1.0]], atol=1e-9)
    assert rel_close(sol.objective, fixed.objective, 1e-9)
    # hinge is piecewise linear, so a W error ~ sqrt(objective gap / lam): the SDP route's
    # 1e-12 objective agreement only pins W to ~1e-6 (the QP route is ~1e-10 accurate)
    np.testing.assert_allclose(sol.W, fixed.W, atol=1e-5)


# --------------------------------------------------------------------------------------------
# objective and losses
# --------------------------------------------------------------------------------------------


def test_primal_objective_by_hand():
    Xs = [np.array([[1.0, 2.0], [0.0, -1.0]]), np.zeros((0, 2)), np.array([[3.0, 1.0]])]
    ys = [np.array([1.0, -1.0]), np.zeros(0), np.array([-1.0])]
    W = np.array([[0.5, 1.0, -0.2], [0.1, 0.0, 0.3]])
    Omega = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 3.0]])
    lam = 0.4
    # z_0 = [0.7, -0.1]; z_2 = [-0.3]
    reg = lam / 2 * np.trace(W @ Omega @ W.T)
    hinge = (0.3 + 0.9) / 2 + 0.7
    assert primal_objective(Xs, ys, W, Omega, lam) == pytest.approx(hinge + reg, rel=1e-14)
    logi = (np.log1p(np.exp(-0.7)) + np.log1p(np.exp(-0.1))) / 2 + np.log1p(np.exp(-0.3))
    val = primal_objective(Xs, ys, W, Omega, lam, loss="logistic")
    assert val == pytest.approx(logi + reg, rel=1e-14)
    sq = (0.5 * 0.3**2 + 0.5 * 0.9**2) / 2 + 0.5 * 0.7**2
    val = primal_objective(Xs, ys, W, Omega, lam, loss="squared")
    assert val == pytest.approx(sq + reg, rel=1e-14)
    # gamma = 0.5: r = [0.3, 0.9] -> [0.09, 0.65]; r = 0.7 -> 0.45
    smooth = (0.09 + 0.65) / 2 + 0.45
    val = primal_objective(Xs, ys, W, Omega, lam, loss="smoothed_hinge", gamma=0.5)
    assert val == pytest.approx(smooth + reg, rel=1e-14)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(LOSS_NAMES),
    z=hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(-5, 5)),
    data=st.data(),
    gamma=st.floats(0.01, 3.0),
)
def test_cvxpy_loss_matches_formula(name, z, data, gamma):
    y = data.draw(hnp.arrays(np.float64, z.shape, elements=st.sampled_from([-1.0, 1.0])))
    zv = cp.Variable(z.shape)
    expr = cvxpy_loss(name, zv, y, gamma)
    assert expr.is_dcp() and expr.is_convex() and expr.shape == ()
    zv.value = z
    expected = loss_formula(name, z, y, gamma).sum()
    assert float(expr.value) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    W=hnp.arrays(np.float64, (3, 2), elements=st.floats(-3, 3)),
    gamma=st.floats(0.01, 2.0),
)
def test_smoothed_hinge_sandwich(W, gamma):
    # hinge - gamma/2 <= smoothed_hinge <= hinge, per sample and hence per mean
    Xs, ys = make_tasks(2, 3, 6, seed=13)
    h = primal_objective(Xs, ys, W, np.eye(2), 1.0, "hinge")
    s = primal_objective(Xs, ys, W, np.eye(2), 1.0, "smoothed_hinge", gamma)
    assert h - 2 * gamma / 2 - 1e-12 <= s <= h + 1e-12


def test_cvxpy_loss_empty_and_invalid():
    assert float(cvxpy_loss("hinge", cp.Variable(0), np.zeros(0)).value) == 0.0
    with pytest.raises(ValueError, match="loss"):
        cvxpy_loss("l1", cp.Variable(2), np.ones(2))
    with pytest.raises(ValueError, match="gamma"):
        cvxpy_loss("smoothed_hinge", cp.Variable(2), np.ones(2), gamma=0.0)


def test_docstring_examples():
    result = doctest.testmod(ref, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny():
    Xs, ys = make_tasks(2, 3, 5, seed=14)
    return Xs, ys


@pytest.mark.parametrize("lam", [0.0, -1.0, np.nan, np.inf, "1", None, True])
def test_invalid_lam(tiny, lam):
    Xs, ys = tiny
    with pytest.raises(ValueError, match="lam"):
        solve_fixed_sigma(Xs, ys, np.eye(2), lam)
    with pytest.raises(ValueError, match="lam"):
        solve_joint(Xs, ys, lam)
    with pytest.raises(ValueError, match="lam"):
        primal_objective(Xs, ys, np.zeros((3, 2)), np.eye(2), lam)


def test_invalid_loss_lists_valid_names(tiny):
    Xs, ys = tiny
    for fn in (
        lambda: solve_fixed_sigma(Xs, ys, np.eye(2), 0.1, loss="l2"),
        lambda: solve_joint(Xs, ys, 0.1, loss="HINGE"),
        lambda: primal_objective(Xs, ys, np.zeros((3, 2)), np.eye(2), 0.1, loss=None),
    ):
        with pytest.raises(ValueError, match="loss") as info:
            fn()
        assert all(name in str(info.value) for name in LOSS_NAMES)


@pytest.mark.parametrize("gamma", [0.0, -0.5, np.nan, np.inf])
def test_invalid_gamma(tiny, gamma):
    Xs, ys = tiny
    with pytest.raises(ValueError, match="gamma"):
        solve_fixed_sigma(Xs, ys, np.eye(2), 0.1, loss="smoothed_hinge", gamma=gamma)
    with pytest.raises(ValueError, match="gamma"):
        solve_joint(Xs, ys, 0.1, loss="smoothed_hinge", gamma=gamma)


def test_gamma_ignored_for_other_losses_if_finite(tiny):
    Xs, ys = tiny
    v = primal_objective(Xs, ys, np.zeros((3, 2)), np.eye(2), 0.1, loss="hinge", gamma=0.0)
    assert v == pytest.approx(2.0)


def test_invalid_data(tiny):
    Xs, ys = tiny
    S = np.eye(2)
    with pytest.raises(ValueError, match="Xs and ys"):
        solve_fixed_sigma(Xs, ys[:1], np.eye(2), 0.1)
    with pytest.raises(ValueError, match="Xs"):
        solve_fixed_sigma([], [], np.eye(0), 0.1)
    with pytest.raises(ValueError, match="Xs"):
        solve_fixed_sigma(np.stack(Xs), ys, S, 0.1)
    with pytest.raises(ValueError, match=r"Xs\[1\].*features"):
        solve_fixed_sigma([Xs[0], Xs[1][:, :2]], ys, S, 0.1)
    with pytest.raises(ValueError, match=r"Xs\[0\]"):
        solve_fixed_sigma([Xs[0][:, 0], Xs[1]], ys, S, 0.1)
    with pytest.raises(ValueError, match=r"ys\[1\]"):
        solve_fixed_sigma(Xs, [ys[0], ys[1][:-1]], S, 0.1)
    with pytest.raises(ValueError, match=r"ys\[0\]"):
        solve_fixed_sigma(Xs, [ys[0][:, None], ys[1]], S, 0.1)
    with pytest.raises(ValueError, match=r"ys\[0\].*-1/\+1"):
        solve_fixed_sigma(Xs, [(ys[0] + 1) / 2, ys[1]], S, 0.1)
    # squared loss accepts real targets
    solve_fixed_sigma(Xs, [(ys[0] + 1) / 2, ys[1]], S, 0.1, loss="squared")


@pytest.mark.parametrize("where", ["X", "Xsparse", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data(tiny, where, bad):
    Xs, ys = [X.copy() for X in tiny[0]], [y.copy() for y in tiny[1]]
    if where == "X":
        Xs[1][0, 0] = bad
    elif where == "Xsparse":
        Xs[1][0, 0] = bad
        Xs[1] = sp.csr_matrix(Xs[1])
    else:
        ys[1][0] = bad
    name = r"ys\[1\]" if where == "y" else r"Xs\[1\]"
    with pytest.raises(ValueError, match=name):
        solve_fixed_sigma(Xs, ys, np.eye(2), 0.1, loss="squared")
    with pytest.raises(ValueError, match=name):
        primal_objective(Xs, ys, np.zeros((3, 2)), np.eye(2), 0.1, loss="squared")


@pytest.mark.parametrize(
    "Sigma",
    [
        np.eye(3),
        np.array([[1.0, 0.5], [0.0, 1.0]]),
        np.array([[1.0, 2.0], [2.0, 1.0]]),
        np.zeros((2, 2)),
        np.array([[1.0, np.nan], [np.nan, 1.0]]),
        np.array([1.0, 1.0]),
    ],
)
def test_invalid_sigma(tiny, Sigma):
    Xs, ys = tiny
    with pytest.raises(ValueError, match="Sigma"):
        solve_fixed_sigma(Xs, ys, Sigma, 0.1)


def test_invalid_W_omega(tiny):
    Xs, ys = tiny
    with pytest.raises(ValueError, match="W"):
        primal_objective(Xs, ys, np.zeros((2, 3)), np.eye(2), 0.1)
    with pytest.raises(ValueError, match="W"):
        primal_objective(Xs, ys, np.full((3, 2), np.nan), np.eye(2), 0.1)
    with pytest.raises(ValueError, match="Omega"):
        primal_objective(Xs, ys, np.zeros((3, 2)), np.eye(3), 0.1)
    with pytest.raises(ValueError, match="Omega"):
        primal_objective(Xs, ys, np.zeros((3, 2)), np.full((2, 2), np.inf), 0.1)


@pytest.mark.parametrize("eps", [0.0, -1e-3, 0.5, 0.7, np.nan, np.inf])
def test_invalid_eps(tiny, eps):
    Xs, ys = tiny  # m = 2, so eps * m < 1 requires eps < 0.5
    with pytest.raises(ValueError, match="eps"):
        solve_joint(Xs, ys, 0.1, eps=eps)


def test_invalid_solver(tiny):
    Xs, ys = tiny
    with pytest.raises(ValueError, match="solver"):
        solve_fixed_sigma(Xs, ys, np.eye(2), 0.1, solver="ECOS_NOT_A_SOLVER")
    with pytest.raises(ValueError, match="solver"):
        solve_joint(Xs, ys, 0.1, solver=3)
