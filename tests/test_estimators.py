"""scikit-learn contract of MochaClassifier / MochaRegressor."""

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

from fmtl import MochaClassifier, MochaRegressor
from fmtl.datasets import make_multitask_classification, make_multitask_regression
from fmtl.federated import mocha


@pytest.fixture(scope="module")
def clf_data():
    data = make_multitask_classification(
        n_tasks=4, n_samples=40, n_features=5, n_clusters=2, random_state=0
    )
    return data.stack()


def test_fit_predict_shapes_and_task_labels(clf_data):
    X, y, tasks = clf_data
    labels = np.array(["north", "south", 7, (1, 2)], dtype=object)[tasks]
    yy = np.where(y > 0, "spam", "ham")
    clf = MochaClassifier(alpha=0.01, random_state=0).fit(X, yy, labels)
    assert clf.coef_.shape == (4, 5)
    assert clf.sigma_.shape == clf.omega_.shape == (4, 4)
    assert set(clf.tasks_) == {"north", "south", 7, (1, 2)}
    assert list(clf.classes_) == ["ham", "spam"]
    pred = clf.predict(X, labels)
    assert set(pred) <= {"ham", "spam"}
    assert clf.score(X, yy, labels) > 0.8
    # decision_function > 0 <=> classes_[1]; each row uses its own task's model
    s = clf.decision_function(X, labels)
    np.testing.assert_array_equal(pred, np.where(s > 0, "spam", "ham"))
    row = 3
    t = list(clf.tasks_).index(labels[row])
    assert s[row] == pytest.approx(X[row] @ clf.coef_[t] + clf.intercept_[t])
    assert clf.history_.last["rel_gap"] >= 0
    assert clf.n_features_in_ == 5


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_coef_equals_the_algorithm_on_the_same_split(clf_data, fit_intercept):
    X, y, tasks = clf_data
    clf = MochaClassifier(
        alpha=0.05,
        loss="logistic",
        random_state=3,
        outer_iters=3,
        fit_intercept=fit_intercept,
        intercept_scaling=2.5,
    ).fit(X, y, tasks)
    if fit_intercept:  # mocha() on the rows with liblinear's constant feature appended
        X = np.hstack([X, np.full((len(X), 1), 2.5)])
    Xs = [X[tasks == t] for t in range(4)]
    ys = [np.where(y[tasks == t] == clf.classes_[1], 1.0, -1.0) for t in range(4)]
    res = mocha(
        Xs,
        ys,
        0.05,
        "logistic",
        outer_iters=3,
        inner_iters=100,
        tol=1e-4,
        sigma_floor=1e-6,
        random_state=3,
        sigma_prime="adaptive",  # the estimators' defaults
        local_work="auto",
        sigma_solver="lbfgs",
    )
    if fit_intercept:
        np.testing.assert_array_equal(clf.coef_, res.coef[:, :-1])
        np.testing.assert_array_equal(clf.intercept_, 2.5 * res.coef[:, -1])
    else:
        np.testing.assert_array_equal(clf.coef_, res.coef)
        np.testing.assert_array_equal(clf.intercept_, np.zeros(4))


def test_unseen_task_is_a_clear_error(clf_data):
    X, y, tasks = clf_data
    clf = MochaClassifier(alpha=0.01, outer_iters=1).fit(X, y, tasks)
    with pytest.raises(ValueError, match="not seen during fit"):
        clf.predict(X[:2], [0, 99])


def test_multiclass_one_vs_rest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    tasks = rng.integers(0, 3, size=300)
    y = np.argmax(X[:, :3] + 0.1 * rng.normal(size=(300, 3)), axis=1)
    clf = MochaClassifier(alpha=0.001, loss="smoothed_hinge", random_state=0).fit(X, y, tasks)
    assert clf.coef_.shape == (3, 3, 4)
    assert clf.sigma_.shape == (3, 3, 3)
    assert clf.decision_function(X, tasks).shape == (300, 3)
    assert clf.score(X, y, tasks) > 0.8


def test_regressor_recovers_related_linear_models():
    data = make_multitask_regression(
        n_tasks=5, n_samples=200, n_features=6, noise=0.01, structure="all_related", random_state=1
    )
    X, y, tasks = data.stack()
    # tol: the joint certificate (1e-6: 55 W-steps; the coefficients are what is checked)
    reg = MochaRegressor(alpha=1e-5, random_state=0, tol=1e-6).fit(X, y, tasks)
    assert reg.score(X, y, tasks) > 0.99
    np.testing.assert_allclose(reg.coef_, data.coef, atol=0.05)


def test_sparse_input_equals_dense(clf_data):
    X, y, tasks = clf_data
    a = MochaClassifier(alpha=0.05, random_state=0, outer_iters=2).fit(X, y, tasks)
    b = MochaClassifier(alpha=0.05, random_state=0, outer_iters=2).fit(sp.csr_matrix(X), y, tasks)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_allclose(
        a.decision_function(X, tasks), b.decision_function(sp.csr_matrix(X), tasks), rtol=1e-12
    )


def test_one_class_task_is_valid_for_multitask(clf_data):
    X, y, tasks = clf_data
    y = y.copy()
    y[tasks == 2] = -1.0  # like tasks 5 and 7 of `small`
    clf = MochaClassifier(alpha=0.01, outer_iters=2).fit(X, y, tasks)
    assert np.all(np.isfinite(clf.coef_))


def test_relationship_choices(clf_data):
    X, y, tasks = clf_data
    ident = MochaClassifier(alpha=0.05, relationship="identity").fit(X, y, tasks)
    np.testing.assert_allclose(ident.sigma_, np.eye(4) / 4)
    mean = MochaClassifier(alpha=0.05, relationship="mean", kappa=2.0).fit(X, y, tasks)
    assert np.trace(mean.sigma_) == pytest.approx(1.0)
    S = np.eye(4) / 4 + 0.05
    fixed = MochaClassifier(alpha=0.05, relationship="fixed", sigma=S).fit(X, y, tasks)
    np.testing.assert_allclose(fixed.sigma_, S)
    with pytest.raises(ValueError, match="sigma"):
        MochaClassifier(relationship="fixed").fit(X, y, tasks)
    with pytest.raises(ValueError, match="relationship"):
        MochaClassifier(relationship="graph").fit(X, y, tasks)


def test_clone_params_and_gridsearch_with_routed_tasks(clf_data):
    X, y, tasks = clf_data
    est = MochaClassifier(alpha=0.1, outer_iters=2, random_state=0)
    c = clone(est)
    assert c.get_params() == est.get_params()
    c.set_params(alpha=0.5)
    assert c.alpha == 0.5 and est.alpha == 0.1
    with sklearn.config_context(enable_metadata_routing=True):
        est = MochaClassifier(outer_iters=2, random_state=0)
        est.set_fit_request(tasks=True).set_score_request(tasks=True)
        gs = GridSearchCV(
            est, {"alpha": [1e-3, 1e-1, 10.0]}, cv=KFold(3, shuffle=True, random_state=0)
        )
        gs.fit(X, y, tasks=tasks)
    assert gs.best_params_["alpha"] in (1e-3, 1e-1, 10.0)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    # the refit model is a real fit on all data, with every task known
    assert set(gs.best_estimator_.tasks_) == set(np.unique(tasks))


@pytest.mark.parametrize("est", [MochaClassifier(), MochaRegressor()])
def test_bad_inputs_name_the_argument(est, clf_data):
    X, y, tasks = clf_data
    with pytest.raises(ValueError, match="NaN|infinity"):
        est.fit(np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y, tasks)
    with pytest.raises(ValueError, match="infinity|inf"):
        est.fit(np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), y, tasks)
    with pytest.raises(ValueError, match="tasks"):
        est.fit(X, y, tasks[:-1])
    with pytest.raises(ValueError, match="inconsistent|samples"):
        est.fit(X, y[:-1], tasks)
    with pytest.raises(ValueError, match="tasks"):
        est.fit(X, y, np.where(tasks == 0, np.nan, tasks.astype(float)))
    fitted = clone(est).set_params(outer_iters=1).fit(X, y, tasks)
    with pytest.raises(ValueError, match="tasks=None, but this model has 4 tasks"):
        fitted.predict(X)  # several tasks: which one a row belongs to cannot be guessed
    for alpha in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            clone(est).set_params(alpha=alpha).fit(X, y, tasks)
    with pytest.raises(ValueError, match="alpha must be 'auto'"):
        clone(est).set_params(alpha="big").fit(X, y, tasks)  # the only string is "auto"
    with pytest.raises(TypeError, match="alpha"):
        clone(est).set_params(alpha=[1.0]).fit(X, y, tasks)
    with pytest.raises(ValueError, match="loss"):
        clone(est).set_params(loss="huber").fit(X, y, tasks)
    with pytest.raises(ValueError):
        est.fit(X[:, 0], y, tasks)  # 1-D X


def test_single_class_and_regression_targets_rejected(clf_data):
    X, y, tasks = clf_data
    with pytest.raises(ValueError, match="only one class"):
        MochaClassifier().fit(X, np.ones_like(y), tasks)
    with pytest.raises(ValueError, match="Unknown label type|continuous"):
        MochaClassifier().fit(X, y + 0.5 * np.arange(len(y)), tasks)


def test_predict_validates_features(clf_data):
    X, y, tasks = clf_data
    clf = MochaClassifier(alpha=0.1, outer_iters=1).fit(X, y, tasks)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3], tasks)
    with pytest.raises(ValueError, match="tasks"):
        clf.predict(X, tasks[:5])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"]), st.none()),
        min_size=20,
        max_size=20,
    )
)
def test_any_hashable_task_labels(labels):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = np.tile([0, 1], 10)
    reg = MochaRegressor(alpha=0.1, outer_iters=1, inner_iters=5).fit(X, y.astype(float), labels)
    assert reg.coef_.shape == (len(set(labels)), 3)
    assert reg.predict(X, labels).shape == (20,)


def test_local_equals_mocha_with_identity_sigma_scaled(clf_data):
    from fmtl import LocalClassifier

    X, y, tasks = clf_data
    local = LocalClassifier(
        alpha=0.04, loss="smoothed_hinge", tol=1e-12, max_rounds=5000, random_state=0
    ).fit(X, y, tasks)
    # Sigma = I / m multiplies the regulariser by m: alpha_mocha = alpha_local / m
    mtl = MochaClassifier(
        alpha=0.01,
        loss="smoothed_hinge",
        relationship="identity",
        outer_iters=1,
        inner_iters=5000,
        tol=1e-12,
        random_state=1,
    ).fit(X, y, tasks)
    # both certified: ||W - W*||_F <= sqrt(2 gap / lam) for the lam-strongly convex primal
    bound = sum(np.sqrt(2 * e.history_.last["gap"] / 0.04) for e in (local, mtl))
    assert np.linalg.norm(local.coef_ - mtl.coef_) <= bound
    assert bound < 1e-4
    np.testing.assert_allclose(local.sigma_, np.eye(4))


def test_global_matches_pooled_ridge_and_serves_unseen_tasks():
    from sklearn.linear_model import Ridge

    from fmtl import GlobalRegressor

    data = make_multitask_regression(
        n_tasks=3, n_samples=40, n_features=5, n_clusters=2, random_state=2
    )
    X, y, tasks = data.stack()
    lam = 0.05
    glob = GlobalRegressor(alpha=lam, tol=1e-12, max_rounds=5000, random_state=0)
    glob.fit(X, y, tasks)
    # pooled mean loss + (lam/2)(||w||^2 + b^2)  <=>  Ridge(alpha = N lam) on the rows with
    # the constant feature 1 appended (the intercept penalised, liblinear's way). The objective
    # is lam-strongly convex, so the certified gap bounds the distance:
    # ||(w, b) - (w*, b*)||^2 <= 2 gap/lam
    X1 = np.hstack([X, np.ones((len(X), 1))])
    ridge = Ridge(alpha=len(y) * lam, fit_intercept=False).fit(X1, y)
    bound = np.sqrt(2 * glob.history_["gap"][-1] / lam)
    fitted = np.append(glob.coef_[0], glob.intercept_[0])
    assert np.linalg.norm(fitted - ridge.coef_) <= bound <= 1e-4
    np.testing.assert_array_equal(glob.coef_, np.tile(glob.coef_[0], (3, 1)))
    np.testing.assert_array_equal(glob.intercept_, np.full(3, glob.intercept_[0]))
    # an unseen task gets the global model
    np.testing.assert_allclose(
        glob.predict(X[:3], ["new", "new", 0]),
        X[:3] @ glob.coef_[0] + glob.intercept_[0],
        rtol=0,
        atol=1e-12,
    )


def test_eval_every_thins_the_history(clf_data):
    X, y, tasks = clf_data
    kw = dict(alpha=0.05, outer_iters=2, inner_iters=20, tol=0.0, sigma_solver="alternation")
    every = MochaClassifier(**kw, random_state=0).fit(X, y, tasks)
    thin = MochaClassifier(**kw, eval_every=10, random_state=0).fit(X, y, tasks)
    assert len(every.history_) == 40 and len(thin.history_) == 4
    # the same rounds run either way: the models are identical
    np.testing.assert_array_equal(every.coef_, thin.coef_)


def test_a_fit_that_runs_out_of_rounds_above_tol_warns_and_a_certified_one_does_not():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from fmtl import KernelMochaClassifier, LocalClassifier, MochaClassifier
    from fmtl.datasets import make_multitask_classification

    X, y, tasks = make_multitask_classification(
        n_tasks=4, n_samples=40, n_features=5, random_state=0
    ).stack()
    capped = [
        MochaClassifier(alpha=1e-3, outer_iters=1, inner_iters=1, local_work="fixed", tol=1e-9),
        LocalClassifier(alpha=1e-3, max_rounds=1, local_work="fixed", tol=1e-9),
        KernelMochaClassifier(alpha=1e-3, outer_iters=1, inner_iters=1, tol=1e-9),
    ]
    for est in capped:
        with pytest.warns(ConvergenceWarning, match=r"relative duality gap of .* > tol=1e-09"):
            est.fit(X, y, tasks)
        assert est.history_["rel_gap"][-1] > 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LocalClassifier(alpha=1e-1, tol=1e-6).fit(X, y, tasks)
    assert est.history_["rel_gap"][-1] <= 1e-6
