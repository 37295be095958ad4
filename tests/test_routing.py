"""scikit-learn tooling with ``tasks``: default metadata requests (no set_*_request calls),
string scorers through :func:`fmtl.task_scorer`, and the task-column mode
(:class:`fmtl.TaskColumn`) in Pipelines. Every score is checked for equality against the
same metric computed by hand from fits and predictions with explicit tasks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.metrics import accuracy_score, mean_squared_error, r2_score, roc_auc_score
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    cross_val_predict,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fmtl import (
    LocalClassifier,
    LocalRegressor,
    MochaClassifier,
    MochaRegressor,
    TaskColumn,
    task_scorer,
)
from fmtl.datasets import make_multitask_classification, make_multitask_regression

pd = pytest.importorskip("pandas")

CV = KFold(3, shuffle=True, random_state=0)
NEG_MSE = (lambda y, p: -mean_squared_error(y, p), "predict")
METRICS = {
    "accuracy": (accuracy_score, "predict"),
    "roc_auc": (roc_auc_score, "decision_function"),
    "r2": (r2_score, "predict"),
    "neg_mean_squared_error": NEG_MSE,
}


@pytest.fixture(scope="module")
def clf_data():
    X, y, tasks = make_multitask_classification(
        n_tasks=4, n_samples=40, n_features=5, n_clusters=2, random_state=0
    ).stack()
    return X, y, np.array(["north", "south", "east", "west"], dtype=object)[tasks]


@pytest.fixture(scope="module")
def reg_data():
    return make_multitask_regression(
        n_tasks=4, n_samples=40, n_features=5, n_clusters=2, random_state=0
    ).stack()


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def _by_hand(est, X, y, tasks, metric: str, scale: bool = False) -> np.ndarray:
    """Per-fold score of CV: fit with explicit tasks, metric on the test fold's outputs."""
    score, method = METRICS[metric]
    out = []
    for train, test in CV.split(X, y):
        Xtr, Xte = X[train], X[test]
        if scale:
            scaler = StandardScaler().fit(Xtr)
            Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        model = clone(est).fit(Xtr, y[train], tasks[train])
        out.append(score(y[test], getattr(model, method)(Xte, tasks[test])))
    return np.array(out)


# ------------------------------------------------------- default requests: tasks as params


@pytest.mark.parametrize("est", [MochaClassifier(alpha=0.1, outer_iters=2, random_state=0)])
def test_default_scorer_gets_tasks_without_set_request(est, clf_data, routing):
    X, y, tasks = clf_data
    got = cross_val_score(est, X, y, params={"tasks": tasks}, cv=CV)
    np.testing.assert_array_equal(got, _by_hand(est, X, y, tasks, "accuracy"))


@pytest.mark.parametrize(
    "est, metric",
    [
        (LocalClassifier(alpha=0.1, random_state=0), "accuracy"),
        (MochaClassifier(alpha=0.1, outer_iters=2, random_state=0), "roc_auc"),
        (LocalRegressor(alpha=0.1, random_state=0), "r2"),
        (MochaRegressor(alpha=0.1, outer_iters=2, random_state=0), "neg_mean_squared_error"),
    ],
)
def test_task_scorer_equals_the_metric_by_hand(est, metric, clf_data, reg_data, routing):
    X, y, tasks = clf_data if metric in ("accuracy", "roc_auc") else reg_data
    got = cross_val_score(est, X, y, params={"tasks": tasks}, scoring=task_scorer(metric), cv=CV)
    np.testing.assert_array_equal(got, _by_hand(est, X, y, tasks, metric))


def test_grid_search_with_task_scorer_and_refit(clf_data, routing):
    X, y, tasks = clf_data
    alphas = [1e-3, 1e-1, 10.0]
    gs = GridSearchCV(
        LocalClassifier(random_state=0), {"alpha": alphas}, scoring=task_scorer("roc_auc"), cv=CV
    ).fit(X, y, tasks=tasks)
    means = [
        _by_hand(LocalClassifier(alpha=a, random_state=0), X, y, tasks, "roc_auc").mean()
        for a in alphas
    ]
    np.testing.assert_array_equal(gs.cv_results_["mean_test_score"], means)
    assert gs.best_params_["alpha"] == alphas[int(np.argmax(means))]
    refit = LocalClassifier(alpha=gs.best_params_["alpha"], random_state=0).fit(X, y, tasks)
    # GridSearchCV.predict takes no metadata (scikit-learn 1.9): the refitted model does
    np.testing.assert_array_equal(
        gs.best_estimator_.decision_function(X, tasks), refit.decision_function(X, tasks)
    )
    # GridSearchCV.score routes tasks (requested by default) to the scorer
    assert gs.score(X, y, tasks=tasks) == roc_auc_score(y, refit.decision_function(X, tasks))


def test_multimetric_task_scorers(clf_data, routing):
    X, y, tasks = clf_data
    est = LocalClassifier(alpha=0.1, random_state=0)
    res = cross_validate(
        est,
        X,
        y,
        params={"tasks": tasks},
        scoring={m: task_scorer(m) for m in ("accuracy", "roc_auc")},
        cv=CV,
    )
    for m in ("accuracy", "roc_auc"):
        np.testing.assert_array_equal(res[f"test_{m}"], _by_hand(est, X, y, tasks, m))


def test_pipeline_routes_tasks_by_default(clf_data, routing):
    X, y, tasks = clf_data
    est = LocalClassifier(alpha=0.1, random_state=0)
    pipe = make_pipeline(StandardScaler(), est)
    got = cross_val_score(
        pipe, X, y, params={"tasks": tasks}, scoring=task_scorer("roc_auc"), cv=CV
    )
    np.testing.assert_array_equal(got, _by_hand(est, X, y, tasks, "roc_auc", scale=True))
    pipe.fit(X, y, tasks=tasks)
    Xs = StandardScaler().fit_transform(X)
    np.testing.assert_array_equal(
        pipe.predict(X, tasks=tasks), clone(est).fit(Xs, y, tasks).predict(Xs, tasks)
    )


def test_a_bare_string_scorer_cannot_see_tasks_and_says_what_to_do(clf_data, routing):
    # scikit-learn's string scorers call predict(X) without metadata (scikit-learn#27977):
    # the folds score NaN, and the warning carries fmtl's error naming the two remedies
    X, y, tasks = clf_data
    with pytest.warns(UserWarning, match="fmtl.task_scorer or fmtl.TaskColumn"):
        got = cross_val_score(
            LocalClassifier(alpha=0.1, random_state=0),
            X,
            y,
            params={"tasks": tasks},
            scoring="accuracy",
            cv=CV,
        )
    assert np.isnan(got).all()


def test_requests_stay_overridable(clf_data, routing):
    X, y, tasks = clf_data
    est = LocalClassifier(alpha=0.1, random_state=0).set_score_request(tasks=False)
    # tasks no longer reaches score: the one-task error of a model of several tasks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = cross_val_score(est, X, y, params={"tasks": tasks}, cv=CV)
    assert np.isnan(got).all()


def test_without_routing_tasks_still_reach_fit_directly(clf_data):
    # routing off: fit(X, y, tasks) as always; meta-estimators need routing for tasks
    X, y, tasks = clf_data
    est = LocalClassifier(alpha=0.1, random_state=0).fit(X, y, tasks)
    assert est.score(X, y, tasks) == accuracy_score(y, est.predict(X, tasks))
    with pytest.raises(ValueError, match="does not accept the tasks parameter"):
        make_pipeline(StandardScaler(), LocalClassifier()).fit(X, y, tasks=tasks)


# ----------------------------------------------------------------- task-column mode


def _frame(X, tasks):
    cols = [f"x{i}" for i in range(X.shape[1])]
    return pd.DataFrame(X, columns=cols).assign(task=tasks), cols


@pytest.mark.parametrize("routing_on", [False, True], ids=["no-routing", "routing"])
@pytest.mark.parametrize("metric", ["accuracy", "roc_auc"])
def test_task_column_pipeline_with_string_scorers(metric, routing_on, clf_data):
    X, y, tasks = clf_data
    df, cols = _frame(X, tasks)
    est = MochaClassifier(alpha=0.1, outer_iters=2, random_state=0)
    scale = ColumnTransformer([("num", StandardScaler(), cols)], remainder="passthrough")
    model = make_pipeline(scale, TaskColumn(est, column=-1))
    with sklearn.config_context(enable_metadata_routing=routing_on):
        got = cross_val_score(model, df, y, scoring=metric, cv=CV)
    np.testing.assert_array_equal(got, _by_hand(est, X, y, tasks, metric, scale=True))


def test_task_column_by_name_after_pandas_output_is_not_scaled(clf_data):
    X, y, tasks = clf_data
    df, cols = _frame(X, tasks)
    scale = ColumnTransformer(
        [("num", StandardScaler(), cols)], remainder="passthrough", verbose_feature_names_out=False
    ).set_output(transform="pandas")
    model = make_pipeline(
        scale, TaskColumn(LocalClassifier(alpha=0.1, random_state=0), column="task")
    )
    model.fit(df, y)
    inner = model[-1].estimator_
    assert inner.n_features_in_ == 5 and list(inner.feature_names_in_) == cols
    assert sorted(model[-1].tasks_) == ["east", "north", "south", "west"]
    # what reaches TaskColumn: the standardised features and the task column untouched
    Z = model[0].transform(df)
    Xs = Z[cols].to_numpy()
    np.testing.assert_allclose(Xs, StandardScaler().fit_transform(X), rtol=1e-13, atol=1e-15)
    assert Z["task"].tolist() == tasks.tolist()
    ref = LocalClassifier(alpha=0.1, random_state=0).fit(Xs, y, tasks)
    np.testing.assert_array_equal(model.decision_function(df), ref.decision_function(Xs, tasks))
    # rows of a few tasks, in another order: each still gets its task's model
    sub = df.iloc[::-7]
    np.testing.assert_array_equal(model.predict(sub), ref.predict(Xs[::-7], tasks[::-7]))


def test_grid_search_predict_with_a_task_column(clf_data):
    X, y, tasks = clf_data
    df, cols = _frame(X, tasks)
    scale = ColumnTransformer([("num", StandardScaler(), cols)], remainder="passthrough")
    model = make_pipeline(scale, TaskColumn(LocalClassifier(random_state=0), column=-1))
    alphas = [1e-3, 1e-1, 10.0]
    gs = GridSearchCV(
        model, {"taskcolumn__estimator__alpha": alphas}, scoring="roc_auc", cv=CV
    ).fit(df, y)
    means = [
        _by_hand(
            LocalClassifier(alpha=a, random_state=0), X, y, tasks, "roc_auc", scale=True
        ).mean()
        for a in alphas
    ]
    np.testing.assert_array_equal(gs.cv_results_["mean_test_score"], means)
    Xs = gs.best_estimator_[0].transform(df)[:, :5].astype(float)  # scaled as in the model
    ref = LocalClassifier(
        alpha=gs.best_params_["taskcolumn__estimator__alpha"], random_state=0
    ).fit(Xs, y, tasks)
    np.testing.assert_array_equal(gs.predict(df), ref.predict(Xs, tasks))
    np.testing.assert_array_equal(gs.decision_function(df), ref.decision_function(Xs, tasks))


def test_cross_val_predict_with_a_task_column(clf_data):
    X, y, tasks = clf_data
    df, _ = _frame(X, tasks)
    est = LocalClassifier(alpha=0.1, random_state=0)
    got = cross_val_predict(TaskColumn(est, column="task"), df, y, cv=CV)
    want = np.empty_like(y)
    for train, test in CV.split(X, y):
        want[test] = clone(est).fit(X[train], y[train], tasks[train]).predict(X[test], tasks[test])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("metric", ["r2", "neg_mean_squared_error"])
def test_task_column_regressor_on_an_array(metric, reg_data):
    X, y, tasks = reg_data
    est = LocalRegressor(alpha=0.1, random_state=0)
    Xt = np.column_stack([tasks, X])  # the task column first, numeric labels
    got = cross_val_score(TaskColumn(est, column=0), Xt, y, scoring=metric, cv=CV)
    # the same fits; the mean of the squared errors may differ in the last bit (arrays
    # at other addresses take other SIMD paths)
    want = _by_hand(est, X, y, tasks.astype(float), metric)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_task_column_bad_columns_are_named(clf_data):
    X, y, tasks = clf_data
    df, _ = _frame(X, tasks)
    with pytest.raises(ValueError, match="column='site' is not exactly one column of X"):
        TaskColumn(LocalClassifier(), column="site").fit(df, y)
    with pytest.raises(ValueError, match="X has no column names"):
        TaskColumn(LocalClassifier(), column="task").fit(X, y)
    with pytest.raises(ValueError, match="column=9 is out of range for X with 5 columns"):
        TaskColumn(LocalClassifier(), column=9).fit(X, y)
    with pytest.raises(TypeError, match="column must be"):
        TaskColumn(LocalClassifier(), column=1.5).fit(X, y)
    fitted = TaskColumn(LocalClassifier(alpha=0.1, random_state=0), column="task").fit(df, y)
    with pytest.raises(ValueError, match="X has 5 columns, but TaskColumn was fitted with 6"):
        fitted.predict(df.drop(columns="x0"))
    with pytest.raises(ValueError, match="not seen during fit"):
        fitted.predict(df.assign(task="elsewhere"))
