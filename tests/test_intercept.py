"""Intercepts (``fit_intercept=True``, liblinear's convention): the same optimum as liblinear,
Ridge and cvxpy with the same augmented constant feature, in every estimator family.

One task, ``P(w, b) = (1/n) sum_i l(y_i, w.x_i + b) + (lam/2) (||w||^2 + (b/s)^2)`` with
``s = intercept_scaling``: liblinear (``LinearSVC``, ``LogisticRegression(solver="liblinear")``)
minimises ``1/2 ||(w, b/s)||^2 + C sum_i l_i`` on the rows ``(x, s)``, i.e. ours times
``1/lam`` with ``C = 1/(n lam)``; ``Ridge(fit_intercept=False)`` on those rows with
``alpha = n lam`` is ours (squared loss) times ``2n``.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.svm import LinearSVC

from fmtl import (
    GlobalClassifier,
    KernelMochaRegressor,
    LocalClassifier,
    LocalRegressor,
    MochaClassifier,
    MochaRegressor,
)
from fmtl.reference import primal_objective, solve_fixed_sigma, solve_joint

LAM = 0.05
REL = 1e-6  # the objective values must agree to this relative tolerance


def _offset_data(n=80, d=5, seed=0, regression=False, offset=1.5):
    """Rows away from the origin and a decision boundary with an offset: b* is far from 0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + 0.5
    z = X @ rng.normal(size=d) + offset + 0.5 * rng.normal(size=n)
    return X, (z if regression else np.where(z > 0, 1.0, -1.0))


def _objective(X, y, w, b, lam, s, loss):
    z = X @ w + b
    if loss == "hinge":
        value = np.maximum(0.0, 1.0 - y * z)
    elif loss == "logistic":
        value = np.logaddexp(0.0, -y * z)
    else:
        value = 0.5 * (z - y) ** 2
    return float(np.mean(value) + 0.5 * lam * (w @ w + (b / s) ** 2))


def _local(X, y, loss, s):
    est = LocalRegressor if loss == "squared" else LocalClassifier
    return est(
        alpha=LAM, loss=loss, tol=1e-11, intercept_scaling=s, random_state=0, max_rounds=50
    ).fit(X, y, np.zeros(len(y)))


def _liblinear(X, y, loss, s):
    C = 1.0 / (len(y) * LAM)
    if loss == "hinge":
        ref = LinearSVC(loss="hinge", dual=True, C=C, intercept_scaling=s, tol=1e-10)
    else:
        ref = LogisticRegression(solver="liblinear", dual=True, C=C, intercept_scaling=s)
        ref.set_params(tol=1e-10)
    ref.set_params(fit_intercept=True, max_iter=10**6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X, y)
    assert np.max(ref.n_iter_) < 10**6  # the reference itself converged
    return ref.coef_[0], float(ref.intercept_[0])


@pytest.mark.parametrize("s", [1.0, 3.0])
@pytest.mark.parametrize("loss", ["hinge", "logistic", "squared"])
def test_one_task_matches_liblinear_and_ridge_in_objective(loss, s):
    X, y = _offset_data(regression=loss == "squared")
    est = _local(X, y, loss, s)
    w, b = est.coef_[0], float(est.intercept_[0])
    assert est.coef_.shape == (1, 5) and est.intercept_.shape == (1,)
    assert abs(b) > 0.3  # the intercept matters on these data
    mine = _objective(X, y, w, b, LAM, s, loss)
    # the split of the augmented weights is the solver's model: its certified primal
    last = est.history_.last
    assert mine == pytest.approx(last["primal"], rel=1e-12)
    assert last["rel_gap"] <= 1e-11
    if loss == "squared":  # Ridge on the augmented rows: closed form
        ridge = Ridge(alpha=len(y) * LAM, fit_intercept=False, solver="cholesky")
        ridge.fit(np.hstack([X, np.full((len(y), 1), s)]), y)
        ref_w, ref_b = ridge.coef_[:-1], s * ridge.coef_[-1]
    else:
        ref_w, ref_b = _liblinear(X, y, loss, s)
    theirs = _objective(X, y, ref_w, ref_b, LAM, s, loss)
    assert mine == pytest.approx(theirs, rel=REL)
    # the certificate: D <= P* <= P(reference), so fmtl is never worse by more than its gap
    assert mine - theirs <= last["gap"]
    # an independent evaluation of the same objective (fmtl.reference)
    ref_obj = primal_objective(
        [X], [y], w[:, None], np.eye(1), LAM, loss, intercept=[b], intercept_scaling=s
    )
    assert ref_obj == pytest.approx(mine, rel=1e-12)
    # the intercept enters the predictions
    pred = est.decision_function(X, np.zeros(len(y))) if loss != "squared" else None
    if pred is None:
        pred = est.predict(X, np.zeros(len(y)))
    np.testing.assert_allclose(pred, X @ w + b, rtol=1e-12, atol=1e-12)


def test_no_intercept_is_the_origin_model_and_worse_here():
    X, y = _offset_data()
    free = LocalClassifier(alpha=LAM, fit_intercept=False, tol=1e-11).fit(X, y, np.zeros(80))
    np.testing.assert_array_equal(free.intercept_, [0.0])
    with_b = _local(X, y, "hinge", 1.0)
    # the intercept-free optimum is feasible for the augmented problem (b = 0)
    p_free = _objective(X, y, free.coef_[0], 0.0, LAM, 1.0, "hinge")
    p_b = _objective(X, y, with_b.coef_[0], with_b.intercept_[0], LAM, 1.0, "hinge")
    assert p_b < p_free - 0.01


def test_sparse_rows_are_augmented_as_csr():
    X, y = _offset_data()
    X[np.abs(X) < 0.6] = 0.0
    dense = _local(X, y, "logistic", 2.0)
    sparse = _local(sp.csr_matrix(X), y, "logistic", 2.0)
    # both certified to a relative gap 1e-11: lam-strong convexity bounds the distance
    bound = np.sqrt(2 * (dense.history_["gap"][-1] + sparse.history_["gap"][-1]) / LAM)
    assert bound < 1e-4
    diff = np.append(dense.coef_ - sparse.coef_, (dense.intercept_ - sparse.intercept_) / 2.0)
    assert np.linalg.norm(diff) <= bound


# ------------------------------------------------------------------- multi-task, cvxpy


def _tasks(m=4, n=30, d=4, seed=1, regression=False):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=d)
    Xs, ys = [], []
    for t in range(m):
        X = rng.normal(size=(n + 3 * t, d)) + 0.3
        z = (
            X @ (w0 + 0.5 * rng.normal(size=d))
            + (1.0 if t % 2 else -0.5)
            + 0.3 * rng.normal(size=len(X))
        )
        Xs.append(X)
        ys.append(z if regression else np.where(z > 0, 1.0, -1.0))
    return Xs, ys


@pytest.mark.parametrize("loss", ["hinge", "logistic", "squared"])
def test_mocha_with_a_fixed_relationship_matches_cvxpy(loss):
    Xs, ys = _tasks(regression=loss == "squared")
    X, y = np.vstack(Xs), np.concatenate(ys)
    tasks = np.repeat(np.arange(4), [len(v) for v in ys])
    G = np.random.default_rng(0).normal(size=(4, 4))
    sigma = G @ G.T + np.eye(4)
    sigma /= np.trace(sigma)
    s = 2.0
    cls = MochaRegressor if loss == "squared" else MochaClassifier
    est = cls(
        alpha=LAM,
        loss=loss,
        relationship="fixed",
        sigma=sigma,
        intercept_scaling=s,
        outer_iters=1,
        inner_iters=3000,
        tol=1e-10,
        random_state=0,
    ).fit(X, y, tasks)
    assert est.history_.last["rel_gap"] <= 1e-10
    ref = solve_fixed_sigma(Xs, ys, sigma, LAM, loss, fit_intercept=True, intercept_scaling=s)
    assert np.abs(ref.intercept).max() > 0.1
    omega = np.linalg.inv(sigma)
    mine = primal_objective(
        Xs, ys, est.coef_.T, omega, LAM, loss, intercept=est.intercept_, intercept_scaling=s
    )
    assert mine == pytest.approx(est.history_.last["primal"], rel=1e-9)
    assert mine == pytest.approx(ref.objective, rel=REL)
    # P - P* <= gap and lam-strong convexity in the Omega norm: the models are close
    np.testing.assert_allclose(est.coef_, ref.W.T, rtol=0, atol=1e-3)
    np.testing.assert_allclose(est.intercept_, ref.intercept, rtol=0, atol=1e-3)


def test_reference_intercepts_are_the_augmented_problem():
    Xs, ys = _tasks(m=3, n=20, regression=True)
    s = 0.5
    aug = [np.hstack([X, np.full((len(X), 1), s)]) for X in Xs]
    sigma = np.eye(3) / 3
    with_b = solve_fixed_sigma(
        Xs, ys, sigma, LAM, "squared", fit_intercept=True, intercept_scaling=s
    )
    on_aug = solve_fixed_sigma(aug, ys, sigma, LAM, "squared")
    np.testing.assert_allclose(with_b.W, on_aug.W[:-1], rtol=0, atol=1e-8)
    np.testing.assert_allclose(with_b.intercept, s * on_aug.W[-1], rtol=0, atol=1e-8)
    assert with_b.objective == pytest.approx(on_aug.objective, rel=1e-12)
    # the joint (W, Sigma) problem is at least as good as any fixed Sigma, intercepts included
    joint = solve_joint(Xs, ys, LAM, "squared", fit_intercept=True, intercept_scaling=s)
    assert joint.intercept.shape == (3,)
    assert joint.objective <= with_b.objective + 1e-8
    plain = solve_fixed_sigma(Xs, ys, sigma, LAM, "squared")
    np.testing.assert_array_equal(plain.intercept, np.zeros(3))
    with pytest.raises(ValueError, match="intercept_scaling"):
        solve_fixed_sigma(Xs, ys, sigma, LAM, "squared", fit_intercept=True, intercept_scaling=0)
    with pytest.raises(ValueError, match="intercept must have shape"):
        primal_objective(Xs, ys, with_b.W, np.eye(3), LAM, "squared", intercept=[1.0])


# ------------------------------------------------------------------------------ kernels


def test_kernel_intercept_is_kernel_ridge_on_the_offset_kernel():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(60, 2))
    y = np.sin(3 * X[:, 0]) + 2.0 + 0.1 * rng.normal(size=60)
    Xt = rng.uniform(-1, 1, size=(20, 2))
    s, gamma = 1.5, 2.0
    est = KernelMochaRegressor(
        alpha=LAM,
        kernel="rbf",
        kernel_params={"gamma": gamma},
        intercept_scaling=s,
        outer_iters=1,
        inner_iters=5000,
        tol=1e-12,
        random_state=0,
    ).fit(X, y, np.zeros(60))
    # (1/n) sum (y - f)^2 / 2 + (lam/2) ||f||^2 in the RKHS of k + s^2, times 2n
    kr = KernelRidge(alpha=60 * LAM, kernel="precomputed")
    kr.fit(rbf_kernel(X, X, gamma=gamma) + s**2, y)
    want = kr.predict(rbf_kernel(Xt, X, gamma=gamma) + s**2)
    np.testing.assert_allclose(est.predict(Xt, np.zeros(20)), want, rtol=0, atol=1e-5)
    assert est.intercept_[0] > 0.5  # y has mean ~2: the offset carries it
    assert est.kernel_ == "rbf" and est.kernel_params_ == {"gamma": gamma}


def test_a_callable_kernel_is_still_checked_with_the_intercept():
    # a named kernel plus s^2 is PSD by construction (no eigenvalue check); a callable is not
    X = np.random.default_rng(0).normal(size=(40, 2))

    def indefinite(A, B):
        return 1.0 - ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)

    with pytest.raises(ValueError, match="not positive semi-definite on the training rows"):
        KernelMochaRegressor(kernel=indefinite, outer_iters=1).fit(X, X[:, 0], np.zeros(40))


# ------------------------------------------------------------------- shapes, warm starts


def test_multiclass_and_global_intercept_shapes():
    Xs, ys = _tasks(m=3)
    X = np.vstack(Xs)
    tasks = np.repeat(np.arange(3), [len(v) for v in ys])
    y3 = np.where(X[:, 0] > 0.8, 2, np.where(np.concatenate(ys) > 0, 1, 0))
    clf = MochaClassifier(alpha=LAM, outer_iters=2, random_state=0).fit(X, y3, tasks)
    assert clf.coef_.shape == (3, 3, 4) and clf.intercept_.shape == (3, 3)
    idx = tasks
    margins = np.einsum("ij,kij->ik", X, clf.coef_[:, idx]) + clf.intercept_[:, idx].T
    np.testing.assert_allclose(clf.decision_function(X, tasks), margins, rtol=1e-12, atol=1e-12)
    glob = GlobalClassifier(alpha=LAM).fit(X, y3, tasks)
    assert glob.intercept_.shape == (3, 3)
    assert np.all(glob.intercept_ == glob.intercept_[:, :1])


def test_warm_start_carries_the_intercept_column():
    Xs, ys = _tasks()
    X, y = np.vstack(Xs), np.concatenate(ys)
    tasks = np.repeat(np.arange(4), [len(v) for v in ys])
    kw = dict(relationship="identity", tol=1e-9, random_state=0)
    warm = MochaClassifier(alpha=0.1, warm_start=True, **kw).fit(X, y, tasks)
    warm.set_params(alpha=0.01).fit(X, y, tasks)
    cold = MochaClassifier(alpha=0.01, **kw).fit(X, y, tasks)
    np.testing.assert_allclose(warm.coef_, cold.coef_, rtol=0, atol=1e-3)
    np.testing.assert_allclose(warm.intercept_, cold.intercept_, rtol=0, atol=1e-3)
    # the duals do not depend on the columns: toggling the intercept keeps them feasible
    warm.set_params(fit_intercept=False).fit(X, y, tasks)
    assert not warm.intercept_.any() and warm.history_.last["rel_gap"] <= 1e-9


# -------------------------------------------------------------------- Land Mine (small)


@pytest.mark.slow  # 26 s: per-task 5-fold CV of alpha on 29 tasks, twice
def test_land_mine_local_errors_improve_with_intercepts(small):
    """Measured (seed 0, alpha by the paper's per-task 5-fold CV): Local hinge 0.1989 mean
    per-task test error without intercepts, 0.0661 with them; predicting each task's
    majority label gives 0.0661 (6 % of the labels are positive)."""
    from fmtl.datasets import train_test_split_per_task
    from fmtl.experiments.error_protocol import (
        ConstantBaseline,
        cross_validate_alpha,
        per_task_error,
    )

    train, test = train_test_split_per_task(small, test_size=0.25, random_state=0)
    errors = {}
    for fit_intercept in (False, True):
        est = LocalClassifier(fit_intercept=fit_intercept, random_state=0)
        best, _ = cross_validate_alpha(est, train)
        est.set_params(alpha=best).fit(*train.stack())
        errors[fit_intercept] = per_task_error(est, test)
    majority = per_task_error(ConstantBaseline().fit(*train.stack()), test)
    print(
        f"Land Mine small, Local hinge, mean per-task test error: no intercept "
        f"{errors[False]:.4f}, intercept {errors[True]:.4f}, majority label {majority:.4f}"
    )
    assert errors[True] < errors[False]
