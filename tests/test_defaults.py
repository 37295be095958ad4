"""Defaults that work: ``alpha="auto"`` (its formula, liblinear's ``C = 1 / r^2``, scale
invariance), Per-FedAvg's ``a="auto"``, every personalisation estimator personalising at
its defaults, and ``gamma`` as a real parameter."""

import inspect

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

import fmtl
from fmtl import (
    FedRepClassifier,
    GlobalClassifier,
    GlobalRegressor,
    LocalClassifier,
    LocalRegressor,
    MochaClassifier,
    MochaRegressor,
    PerFedAvgRegressor,
)
from fmtl.datasets import make_multitask_classification, make_multitask_regression


def _clustered(kind: str, seed: int = 0):
    """9 tasks in 3 clusters, 80 rows each, 10 standardised features; a seeded 30 % test
    part drawn over all rows."""
    if kind == "classification":
        ds = make_multitask_classification(
            n_tasks=9, n_samples=80, n_features=10, flip_y=0.05, random_state=seed
        )
    else:
        ds = make_multitask_regression(
            n_tasks=9, n_samples=80, n_features=10, noise=0.5, random_state=seed
        )
    X, y, tasks = ds.stack()
    X = StandardScaler().fit_transform(X)
    test = np.random.default_rng(seed).random(y.shape[0]) < 0.3
    return (X[~test], y[~test], tasks[~test]), (X[test], y[test], tasks[test])


def _error(est, X, y, tasks, kind: str) -> float:
    pred = est.predict(X, tasks)
    if kind == "classification":
        return float(np.mean(pred != y))
    return float(np.sqrt(np.mean((pred - y) ** 2)))


@pytest.mark.parametrize(
    "cls, per_task",
    [
        (MochaClassifier, False),
        (MochaRegressor, False),
        (GlobalClassifier, False),
        (GlobalRegressor, False),
        (LocalClassifier, True),
        (LocalRegressor, True),
    ],
)
def test_auto_alpha_is_mean_squared_norm_over_rows(cls, per_task):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)) * [1.0, 2.0, 3.0]
    tasks = np.repeat([0, 1, 2], [10, 15, 25])
    y = np.where(X[:, 0] + rng.normal(size=50) > 0, 1.0, -1.0)
    est = cls(random_state=0).fit(X, y, tasks)
    n = X.shape[0]
    expected = np.sum(X**2) / n / (n / 3 if per_task else n)
    assert est.get_params()["alpha"] == "auto"
    np.testing.assert_allclose(est.alpha_, expected, rtol=1e-13)
    # a number is used as given
    assert cls(alpha=0.25).fit(X, y, tasks).alpha_ == 0.25


def test_auto_alpha_is_liblinear_c_of_one_over_r2_on_one_task():
    # one task: LocalClassifier's "auto" alpha = r^2 / n, i.e. LinearSVC(C = 1 / r^2)
    rng = np.random.default_rng(1)
    X = StandardScaler().fit_transform(rng.normal(size=(200, 6)))
    y = np.where(X @ rng.normal(size=6) + 0.5 * rng.normal(size=200) > 0, 1, -1)
    # the comparison is without an intercept (liblinear's fit_intercept=False)
    extra = {"fit_intercept": False} if "fit_intercept" in LocalClassifier().get_params() else {}
    ours = LocalClassifier(tol=1e-10, max_rounds=10_000, **extra).fit(X, y, np.zeros(200))
    r2 = np.sum(X**2) / X.shape[0]
    ref = LinearSVC(C=1 / r2, loss="hinge", dual=True, fit_intercept=False, tol=1e-10)
    ref.set_params(max_iter=1_000_000).fit(X, y)
    # the same strictly convex problem solved to 1e-10: the optima agree to 1e-4
    np.testing.assert_allclose(ours.coef_[0], ref.coef_[0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("cls", [MochaClassifier, MochaRegressor, LocalClassifier])
def test_auto_alpha_makes_predictions_independent_of_the_feature_scale(cls):
    (X, y, tasks), (Xt, _, tt) = _clustered(
        "classification" if cls is not MochaRegressor else "regression"
    )
    # a smooth loss, so that the fits reach the tolerance (the hinge's stop at the round cap)
    # no intercept: its constant column does not scale with X
    # tol: MOCHA's is the joint problem's certificate (1e-8: 35 W-steps for the classifier)
    kw = dict(random_state=0, tol=1e-8, loss="logistic" if cls is not MochaRegressor else None)
    kw["fit_intercept"] = False
    a = cls(**kw).fit(X, y, tasks)
    b = cls(**kw).fit(10.0 * X, y, tasks)
    np.testing.assert_allclose(b.alpha_, 100.0 * a.alpha_, rtol=1e-12)
    margins = a.decision_function if hasattr(a, "decision_function") else a.predict
    other = b.decision_function if hasattr(b, "decision_function") else b.predict
    # the same problem up to rounding, each solved to a relative duality gap of 1e-8:
    # margins agree to 1e-4 (measured: up to 8e-6 for MOCHA, whose rounds amplify rounding)
    np.testing.assert_allclose(other(10.0 * Xt, tt), margins(Xt, tt), rtol=0, atol=1e-4)


PERSONALISATION = ["Mocha", "Ditto", "PFedMe", "PerFedAvg", "PFedHN", "FedRep"]


@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("name", PERSONALISATION)
def test_personalises_at_its_defaults_on_clustered_tasks(name, kind):
    # the margin: classification error at least 10 points below the better of the two
    # global models at their defaults (measured: globals 41-44 %, personal models 14-17 %);
    # regression RMSE at most 75 % of theirs (measured: 0.94 vs 0.55-0.59)
    suffix = "Classifier" if kind == "classification" else "Regressor"
    train, test = _clustered(kind)
    global_error = min(
        _error(getattr(fmtl, g + suffix)().fit(*train), *test, kind) for g in ("Global", "FedAvg")
    )
    est = getattr(fmtl, name + suffix)().fit(*train)
    error = _error(est, *test, kind)
    if kind == "classification":
        assert error <= global_error - 0.10, (name, error, global_error)
    else:
        assert error <= 0.75 * global_error, (name, error, global_error)


def _task_smoothness(X, tasks, curvature):
    """max_t c ||X_t||_2^2 / n_t, from the singular values."""
    return max(
        curvature * np.linalg.svd(X[tasks == t], compute_uv=False)[0] ** 2 / np.sum(tasks == t)
        for t in np.unique(tasks)
    )


@pytest.mark.parametrize(
    "name, param, rule, cap",
    [
        ("PerFedAvg", "a", "batch", np.inf),
        ("PFedHN", "lr", "batch", 0.5),
        ("FedRep", "lr", "batch", 0.5),
        ("FedAvg", "lr", "row", 0.1),
        ("Ditto", "lr", "row", 0.1),
    ],
)
@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("scale", [1.0, 5.0])
def test_auto_steps_follow_their_rule(name, param, rule, cap, kind, scale):
    (X, y, tasks), _ = _clustered(kind)
    X = scale * X
    suffix = "Classifier" if kind == "classification" else "Regressor"
    cls = getattr(fmtl, name + suffix)
    # the rules are stated on X (with an intercept they see its constant column too)
    est = cls(rounds=2, random_state=0, fit_intercept=False).fit(X, y, tasks)
    curvature = 0.25 if kind == "classification" else 1.0  # logistic, squared
    if rule == "batch":
        expected = min(cap, 1.0 / (_task_smoothness(X, tasks, curvature) + est.alpha_))
    elif kind == "regression":  # per-row SGD on the squared loss: stable on every row
        expected = min(cap, 1.0 / (np.max(np.sum(X**2, axis=1)) + est.alpha_))
    else:  # the logistic loss's derivative is bounded: SGD cannot overflow
        expected = cap
    np.testing.assert_allclose(getattr(est, param + "_"), expected, rtol=1e-10)
    same = cls(rounds=2, random_state=0, fit_intercept=False, **{param: getattr(est, param + "_")})
    same.fit(X, y, tasks)
    np.testing.assert_array_equal(same.coef_, est.coef_)


@pytest.mark.parametrize(
    "name, old",
    [("FedAvg", dict(lr=0.1)), ("Ditto", dict(lr=0.1)), ("PFedHN", dict(lr=0.5))],
)
def test_auto_steps_stay_stable_where_the_old_fixed_steps_diverge(name, old):
    # rows of squared norm ~ 25 x 10: SGD at lr = 0.1 and pFedHN's full-batch 0.5 overflow
    (X, y, tasks), test = _clustered("regression")
    cls = getattr(fmtl, name + "Regressor")
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(ValueError, match="diverged"):
            cls(random_state=0, **old).fit(5.0 * X, y, tasks)
    est = cls(random_state=0).fit(5.0 * X, y, tasks)
    pred = est.predict(5.0 * test[0], test[2])
    assert np.all(np.isfinite(est.coef_)) and np.all(np.isfinite(pred))
    error = _error(est, 5.0 * test[0], *test[1:], "regression")
    if name == "FedAvg":  # one global model: as good as GlobalRegressor's, to 2 %
        glob = GlobalRegressor().fit(5.0 * X, y, tasks)
        assert error <= 1.02 * _error(glob, 5.0 * test[0], *test[1:], "regression")
    else:  # personal models: near the noise level 0.5 (measured 0.55-0.59)
        assert error < 0.75


def test_a_diverging_fit_raises_instead_of_returning_inf():
    (X, y, tasks), _ = _clustered("regression")
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point
        with pytest.raises(ValueError, match=r"diverged.*a=50\.0"):
            PerFedAvgRegressor(a=50.0, fit_intercept=False).fit(X, y, tasks)


def _all_estimator_classes():
    return [getattr(fmtl, n) for n in fmtl.__all__ if n.endswith(("Classifier", "Regressor"))]


@pytest.mark.parametrize("cls", _all_estimator_classes(), ids=lambda c: c.__name__)
def test_init_stores_exactly_its_parameters(cls):
    # scikit-learn's contract: __init__ sets the parameters and nothing else (no hidden
    # gamma), so get_params / set_params / clone see the whole configuration
    est = cls()
    assert set(vars(est)) == set(inspect.signature(cls).parameters)
    assert clone(est).get_params() == est.get_params()


def test_fedrep_gamma_is_a_parameter_that_reaches_the_loss():
    (X, y, tasks), _ = _clustered("classification")
    est = FedRepClassifier(loss="smoothed_hinge", rounds=5, random_state=0)
    assert est.get_params()["gamma"] == 1.0
    sharp = clone(est).set_params(gamma=0.05)
    assert sharp.get_params()["gamma"] == 0.05 and clone(sharp).gamma == 0.05
    a = est.fit(X, y, tasks).coef_
    b = sharp.fit(X, y, tasks).coef_
    assert not np.allclose(a, b)  # the smoothing changes the fitted heads
    c = FedRepClassifier(loss="smoothed_hinge", gamma=0.05, rounds=5, random_state=0)
    np.testing.assert_array_equal(c.fit(X, y, tasks).coef_, b)


def test_kernel_auto_alpha_replaces_the_squared_norm_by_the_kernel_diagonal():
    (X, y, tasks), _ = _clustered("classification")
    X, y, tasks = X[:120], y[:120], tasks[:120]
    kw = dict(outer_iters=1, inner_iters=2, random_state=0)
    rbf = fmtl.KernelMochaClassifier(kernel="rbf", **kw).fit(X, y, tasks)
    assert rbf.alpha_ == pytest.approx(1.0 / X.shape[0], rel=1e-12)  # k(x, x) = 1
    linear = fmtl.KernelMochaClassifier(kernel="linear", **kw).fit(X, y, tasks)
    assert linear.alpha_ == pytest.approx(MochaClassifier().fit(X, y, tasks).alpha_, rel=1e-12)
    poly = fmtl.KernelMochaClassifier(
        kernel="poly", kernel_params={"degree": 2, "gamma": 0.5, "coef0": 1.0}, **kw
    ).fit(X, y, tasks)
    diag = (0.5 * np.sum(X**2, axis=1) + 1.0) ** 2
    assert poly.alpha_ == pytest.approx(diag.mean() / X.shape[0], rel=1e-12)


@pytest.fixture(scope="module")
def school_split():
    from fmtl.datasets import find_mocha, load_mocha, train_test_split_per_task

    if find_mocha("school") is None:
        pytest.skip("school.mat not found (set FMTL_DATA)")
    train, test = train_test_split_per_task(load_mocha("school"), 0.25, random_state=0)
    scaler = StandardScaler().fit(train.stack()[0])
    Xtr, ytr, ttr = train.stack()
    Xte, yte, tte = test.stack()
    return (scaler.transform(Xtr), ytr, ttr), (scaler.transform(Xte), yte, tte)


@pytest.mark.parametrize("name", ["FedAvg", "Ditto", "PFedHN"])
def test_defaults_converge_on_standardised_school(name, school_split):
    # School (139 tasks, 28 features; rows of squared norm up to 236): the former fixed
    # steps (SGD lr = 0.1, pFedHN lr = 0.5) overflow; the "auto" steps fit. Measured RMSE
    # (seed 0): Global 22.6, FedAvg 23.0, Ditto 10.3, pFedHN 10.2
    (X, y, tasks), test = school_split
    # measured without intercepts (School's last feature is a constant 1 already)
    est = getattr(fmtl, name + "Regressor")(random_state=0, fit_intercept=False).fit(X, y, tasks)
    error = _error(est, *test, "regression")
    glob = GlobalRegressor(fit_intercept=False).fit(X, y, tasks)
    global_error = _error(glob, *test, "regression")
    if name == "FedAvg":  # one global model, by SGD: within 5 % of the certified one
        assert error <= 1.05 * global_error
    else:
        assert error <= 0.6 * global_error
