"""MOCHA in dual-kernel form: equal to linear MOCHA for the linear kernel, certified and
equal to a cvxpy solve of the kernel problem for RBF, and nonlinear where it should be."""

import warnings

import cvxpy as cp
import numba
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_tasks
from sklearn.metrics.pairwise import rbf_kernel

from fmtl.federated import SystemsModel, mocha
from fmtl.federated.kernel_mocha import (
    KernelMochaResult,
    decision_function,
    kernel_mocha,
    predict,
)
from fmtl.reference import CLARABEL_SETTINGS_FIXED, cvxpy_loss
from fmtl.solvers import kernel_sdca

LOSSES = ["hinge", "smoothed_hinge", "squared", "logistic"]

# Measured max deviations (linear kernel vs mocha, 4 tasks x 20-29 rows x 6 features, 3
# outer x 15 rounds): alpha 6e-15 (logistic 2e-12: its Newton step stops at 1e-12 in b),
# W 3e-15 (logistic 1e-12), Sigma 1e-15 (logistic 2e-13), History 2e-15 relative
# (logistic 8e-13). Asserted with margin:
ALPHA_TOL = 1e-10
HIST_RTOL = 1e-10


def _random_spd_sigma(m, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, m))
    S = A @ A.T + 0.5 * np.eye(m)
    return S / np.trace(S)


def _assert_same_history(ha, hb):
    assert ha.columns == hb.columns
    assert len(ha) == len(hb)
    for c in ha.columns:
        if c in ("wall_time", "local_gap_ratio"):
            continue
        a, b = ha[c], hb[c]
        if a.dtype.kind in "biu":
            np.testing.assert_array_equal(a, b, err_msg=c)
        else:
            # per-record scale: the gap is a small difference of primal and dual
            scale = np.maximum(1.0, np.abs(ha["primal"]))
            scale = scale.reshape((-1,) + (1,) * (a.ndim - 1))
            diff = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
            assert np.all(diff <= HIST_RTOL * scale), (c, float(np.nanmax(diff)))
    if "local_gap_ratio" in ha.columns:
        # end / start of two local gaps compared above: relative error ~ 1e-13 / start
        g0 = ha["local_gap_start"]
        big = np.nan_to_num(g0) > 1e-6
        np.testing.assert_allclose(
            hb["local_gap_ratio"][big], ha["local_gap_ratio"][big], rtol=1e-6
        )


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("relationship", ["fixed", "learned"])
@pytest.mark.parametrize("with_systems", [False, True])
def test_linear_kernel_equals_mocha(loss, relationship, with_systems):
    Xs, ys = random_tasks(m=4, n=20, d=6, seed=1, regression=loss == "squared")
    systems = (
        SystemsModel(heterogeneity="high", drop_prob=(0.0, 0.3, 0.5, 0.2), network="3g")
        if with_systems
        else None
    )
    kw = dict(
        gamma=0.5,
        relationship=relationship,
        sigma=_random_spd_sigma(4, 2) if relationship == "fixed" else None,
        outer_iters=3,
        inner_iters=15,
        random_state=3,
        systems=systems,
    )
    a = mocha(Xs, ys, 0.05, loss, **kw)
    b = kernel_mocha(Xs, ys, 0.05, loss, kernel="linear", **kw)
    assert isinstance(b, KernelMochaResult)
    np.testing.assert_allclose(b.dual_coef, a.dual_coef, rtol=0, atol=ALPHA_TOL)
    np.testing.assert_allclose(b.linear_coef(), a.coef, rtol=0, atol=ALPHA_TOL)
    np.testing.assert_allclose(b.sigma, a.sigma, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.task_gram, a.B @ a.B.T, rtol=1e-10, atol=1e-14)
    _assert_same_history(a.history, b.history)
    if with_systems:  # drops happened, and on the same nodes in the same rounds
        assert b.history["dropped"].any()
        assert "local_gap_ratio" in b.history.columns
    # the kernel expansion evaluates to the linear model on new rows
    Xn = np.random.default_rng(9).normal(size=(7, 6))
    for t in range(4):
        np.testing.assert_allclose(
            decision_function(b, Xn, t), Xn @ a.coef[t], rtol=1e-10, atol=1e-12
        )


def test_linear_kernel_equals_mocha_sparse_eval_every_and_tolerances():
    Xs, ys = random_tasks(m=3, n=25, d=5, seed=4)
    Xs = [sp.csr_matrix(X) for X in Xs]
    kw = dict(outer_iters=4, inner_iters=30, eval_every=4, tol=1e-4, local_theta=0.3)
    a = mocha(Xs, ys, 0.1, "smoothed_hinge", random_state=5, **kw)
    b = kernel_mocha(Xs, ys, 0.1, "smoothed_hinge", random_state=5, **kw)
    np.testing.assert_allclose(b.dual_coef, a.dual_coef, rtol=0, atol=ALPHA_TOL)
    _assert_same_history(a.history, b.history)


def _rbf_problem(loss, seed=0, m=3, n=15, d=3):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n, d)) for _ in range(m)]
    if loss == "squared":
        ys = [np.sin(X[:, 0]) + X[:, 1] ** 2 for X in Xs]
    else:
        ys = [np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0) for X in Xs]
    return Xs, ys


def _cvxpy_kernel_problem(K, ys, Sigma, lam, loss):
    """min over expansion coefficients C (N x m), f_t = K[t-rows] C[:, t]:
    sum_t mean loss + (lam/2) tr(Omega C^T K C), written with K = R R^T, Omega = L L^T."""
    N, m = K.shape[0], len(ys)
    off = np.r_[0, np.cumsum([len(y) for y in ys])]
    e, V = np.linalg.eigh(K)
    R = V * np.sqrt(np.clip(e, 0.0, None))
    s, U = np.linalg.eigh(Sigma)
    L = U / np.sqrt(s)
    C = cp.Variable((N, m))
    terms = [
        cvxpy_loss(loss, K[off[t] : off[t + 1]] @ C[:, t], ys[t]) / len(ys[t]) for t in range(m)
    ]
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.hstack(terms)) + lam / 2 * cp.sum_squares(R.T @ C @ L))
    )
    for settings in CLARABEL_SETTINGS_FIXED:  # fmtl.reference's ladder: first "optimal"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            prob.solve(solver="CLARABEL", **settings)
        if prob.status == cp.OPTIMAL:
            return float(prob.value)
    raise AssertionError(f"cvxpy reference did not solve: {prob.status}")


@pytest.mark.parametrize("loss", ["squared", "hinge"])
def test_rbf_certified_and_matches_cvxpy(loss):
    # 3 tasks x 15 rows, fixed random Sigma. Measured: rel gap 5e-11 (squared, 22 rounds),
    # 9e-11 (hinge, 51 rounds); primal vs cvxpy 3e-11 / 8e-11 relative.
    Xs, ys = _rbf_problem(loss)
    Sigma = _random_spd_sigma(3, 2)
    lam, g = 0.05, 0.5
    res = kernel_mocha(
        Xs,
        ys,
        lam,
        loss,
        kernel="rbf",
        kernel_params={"gamma": g},
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=5000,
        local_frac=2.0,
        tol=1e-10,
        random_state=0,
    )
    last = res.history.last
    assert last["rel_gap"] <= 1e-6
    assert last["gap"] >= -1e-12
    K = rbf_kernel(np.vstack(Xs), gamma=g)
    ref = _cvxpy_kernel_problem(K, ys, Sigma, lam, loss)
    assert last["primal"] == pytest.approx(ref, rel=1e-5)
    assert last["dual"] <= ref * (1 + 1e-9)  # weak duality
    # the reported primal equals an independent evaluation of the returned functions
    C = res.expansion_coef
    loss_term = 0.0
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        z = decision_function(res, X, t)
        loss_term += np.mean(0.5 * (z - y) ** 2 if loss == "squared" else np.maximum(0, 1 - y * z))
    P = loss_term + lam / 2 * np.sum((C.T @ K @ C) * res.omega)
    assert last["primal"] == pytest.approx(P, rel=1e-10)


@pytest.mark.parametrize("loss", ["hinge", "logistic"])
def test_rbf_equals_linear_mocha_on_an_exact_feature_map(loss):
    # K = R R^T exactly (R from K's eigendecomposition), so on the training rows the RBF
    # problem is linear MOCHA on the features R, learned Sigma included. Measured: alpha
    # 3e-15 / Sigma 4e-16 (hinge), 2e-12 / 1e-13 (logistic); only rounding differs.
    Xs, ys = _rbf_problem(loss, seed=3, m=4, n=12, d=2)
    K = rbf_kernel(np.vstack(Xs), gamma=1.0)
    e, V = np.linalg.eigh(K)
    R = V * np.sqrt(np.clip(e, 0.0, None))
    feats = np.split(R, np.cumsum([len(y) for y in ys])[:-1])
    kw = dict(outer_iters=4, inner_iters=20, random_state=1, sigma_floor=1e-4)
    a = mocha(feats, ys, 0.01, loss, **kw)
    b = kernel_mocha(Xs, ys, 0.01, loss, kernel="rbf", kernel_params={"gamma": 1.0}, **kw)
    np.testing.assert_allclose(b.dual_coef, a.dual_coef, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.sigma, a.sigma, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.history["primal"], a.history["primal"], rtol=1e-9)
    np.testing.assert_allclose(b.history["joint_gap"], a.history["joint_gap"], rtol=1e-7)


def _xor_task(n, rng, angle):
    X = rng.uniform(-1, 1, size=(n, 2))
    c, s = np.cos(angle), np.sin(angle)
    Z = X @ np.array([[c, -s], [s, c]])
    return X, np.where(Z[:, 0] * Z[:, 1] > 0, 1.0, -1.0)


def test_rbf_solves_per_task_xor_linear_cannot():
    # measured test accuracy per task: rbf 0.945-0.965, linear 0.46-0.495
    rng = np.random.default_rng(1)
    train = [_xor_task(60, rng, 0.2 * t) for t in range(4)]
    test = [_xor_task(200, rng, 0.2 * t) for t in range(4)]
    Xs, ys = [X for X, _ in train], [y for _, y in train]
    acc = {}
    for kernel, params in (("rbf", {"gamma": 2.0}), ("linear", None)):
        res = kernel_mocha(
            Xs,
            ys,
            1e-3,
            "hinge",
            kernel=kernel,
            kernel_params=params,
            outer_iters=3,
            inner_iters=100,
            random_state=0,
        )
        acc[kernel] = [np.mean(predict(res, X, t) == y) for t, (X, y) in enumerate(test)]
        # per-row task indices give the same scores
        X_all = np.vstack([X for X, _ in test])
        idx = np.repeat(np.arange(4), 200)
        np.testing.assert_allclose(
            res.decision_function(X_all, idx),
            np.concatenate([decision_function(res, X, t) for t, (X, _) in enumerate(test)]),
        )
    assert min(acc["rbf"]) >= 0.9
    assert max(acc["linear"]) <= 0.7


def test_callable_kernel_equals_named_kernel():
    Xs, ys = _rbf_problem("hinge", seed=2)
    kw = dict(outer_iters=2, inner_iters=10, random_state=0)
    a = kernel_mocha(Xs, ys, 0.1, kernel="rbf", kernel_params={"gamma": 0.7}, **kw)
    b = kernel_mocha(Xs, ys, 0.1, kernel=rbf_kernel, kernel_params={"gamma": 0.7}, **kw)
    np.testing.assert_array_equal(a.dual_coef, b.dual_coef)
    np.testing.assert_array_equal(predict(a, Xs[0], 1), predict(b, Xs[0], 1))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kernel": "sigmoid"}, "kernel"),
        ({"kernel": 3}, "kernel"),
        ({"kernel": lambda A, B: -(A @ B.T)}, "kernel"),  # not PSD
        ({"kernel": lambda A, B: np.full((len(A), len(B)), np.nan)}, "kernel"),
        ({"kernel": "linear", "kernel_params": {"gamma": 1.0}}, "kernel_params"),
        ({"kernel": "rbf", "kernel_params": {"gamma": -1.0}}, "kernel_params"),
        ({"kernel": "rbf", "kernel_params": [1.0]}, "kernel_params"),
        ({"kernel": "poly", "kernel_params": {"degree": 2.5}}, "kernel_params"),
        ({"max_samples": 40}, "max_samples"),
        ({"max_samples": 0}, "max_samples"),
        ({"lam": -1.0}, "lam"),
        ({"lam": np.nan}, "lam"),
        ({"relationship": "fixed", "sigma": -np.eye(3)}, "sigma"),
        ({"relationship": "clustered"}, "relationship"),
        ({"sigma_floor": 0.5}, "sigma_floor"),
        ({"outer_iters": 0}, "outer_iters"),
        ({"local_frac": np.inf}, "local_frac"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    Xs, ys = _rbf_problem("hinge")  # 45 rows
    kw = {"lam": 0.1, **kwargs}
    lam = kw.pop("lam")
    with pytest.raises(ValueError, match=name):
        kernel_mocha(Xs, ys, lam, **kw)


def test_bad_data_raises_value_error_naming_it():
    Xs, ys = _rbf_problem("hinge")
    Xs[1] = Xs[1].copy()
    Xs[1][2, 0] = np.nan
    with pytest.raises(ValueError, match=r"Xs\[1\]"):
        kernel_mocha(Xs, ys, 0.1, kernel="rbf")
    Xs, ys = _rbf_problem("hinge")
    ys[2] = ys[2] * 2.0
    with pytest.raises(ValueError, match=r"ys\[2\]"):
        kernel_mocha(Xs, ys, 0.1)
    res = kernel_mocha(*_rbf_problem("hinge"), 0.1, kernel="rbf", outer_iters=1, inner_iters=2)
    with pytest.raises(ValueError, match="task_index"):
        decision_function(res, Xs[0], 3)
    with pytest.raises(ValueError, match="task_index"):
        decision_function(res, Xs[0], np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="X"):
        decision_function(res, np.ones((2, 5)), 0)
    with pytest.raises(ValueError, match="X"):
        decision_function(res, np.full((2, 3), np.inf), 0)
    with pytest.raises(ValueError, match="linear_coef"):
        res.linear_coef()


def _kernel_dispatchers():
    for name in dir(kernel_sdca):
        f = getattr(kernel_sdca, name)
        if (
            isinstance(f, numba.core.registry.CPUDispatcher)
            and f.__module__ == kernel_sdca.__name__
        ):
            yield name, f


def test_no_recompilation_and_thread_invariance():
    def fits(m, n, d, seed):
        Xs, ys = random_tasks(m=m, n=n, d=d, seed=seed)
        for loss in LOSSES:
            for X in (Xs, [sp.csr_matrix(x) for x in Xs]):
                kernel_mocha(
                    X,
                    ys,
                    0.1,
                    loss,
                    kernel="rbf",
                    outer_iters=2,
                    inner_iters=2,
                    record_local_gaps=True,
                    local_theta=0.5,
                )

    fits(3, 10, 4, 0)
    before = {name: len(f.signatures) for name, f in _kernel_dispatchers()}
    fits(5, 7, 2, 1)
    after = {name: len(f.signatures) for name, f in _kernel_dispatchers()}
    assert after == before
    assert after["_kernel_sdca_round_parallel"] == 1
    # one node's computation does not depend on the thread count
    Xs, ys = random_tasks(m=4, n=15, d=3, seed=2)
    K = np.ascontiguousarray(rbf_kernel(np.vstack(Xs)))
    y = np.concatenate(ys)
    off = np.r_[0, np.cumsum([len(v) for v in ys])].astype(np.int64)
    out = []
    for parallel in (False, True):
        alpha = np.zeros(y.shape[0])
        args = (
            K,
            y,
            off,
            alpha,
            np.zeros_like(y),
            np.full(4, 0.25),
            1.5,
            0.1,
            0,
            0.0,
            np.full(4, 40, dtype=np.int64),
            np.arange(4, dtype=np.uint64),
            np.ones(4, dtype=bool),
            0.0,
            True,
            np.zeros(4, dtype=np.int64),
            np.empty(4),
            np.empty(4),
        )
        kernel_sdca.kernel_sdca_round(*args, parallel=parallel)
        out.append(alpha)
    np.testing.assert_array_equal(out[0], out[1])
