"""MochaClassifierCV / MochaRegressorCV: the same scores as a hand-written loop over the
same folds, warm starts choosing what cold fits choose, stratified per-task folds, the
refit, scorers, parameters and persistence."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score, mean_squared_error, r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from fmtl import MochaClassifier, MochaClassifierCV, MochaRegressor, MochaRegressorCV
from fmtl.cv import DEFAULT_ALPHA_FACTORS
from fmtl.datasets import make_multitask_classification, make_multitask_regression

ALPHAS = [0.3, 0.03, 3e-3, 3e-4]


@pytest.fixture(scope="module")
def clf_data():
    ds = make_multitask_classification(
        n_tasks=5, n_samples=[30, 40, 25, 3, 36], n_features=6, flip_y=0.1, random_state=3
    )
    X, y, tasks = ds.stack()
    # labels sorted within each task: unstratified interleaved folds would be lopsided
    order = np.lexsort((y, tasks))
    return StandardScaler().fit_transform(X[order]), y[order], tasks[order]


@pytest.fixture(scope="module")
def reg_data():
    ds = make_multitask_regression(
        n_tasks=4, n_samples=[30, 24, 3, 33], n_features=5, noise=0.5, random_state=4
    )
    X, y, tasks = ds.stack()
    return StandardScaler().fit_transform(X), y, tasks


def _manual_folds(y, tasks, n_folds, stratify):
    """Written out independently: per task, rows (class-sorted if ``stratify``) dealt
    round-robin to the folds; tasks with fewer than ``n_folds`` rows: -1."""
    fold = np.empty(len(y), dtype=int)
    for t in np.unique(tasks):
        rows = np.flatnonzero(tasks == t)
        if len(rows) < n_folds:
            fold[rows] = -1
            continue
        if stratify:
            rows = rows[np.argsort(y[rows], kind="stable")]
        fold[rows] = np.arange(len(rows)) % n_folds
    return fold


def _manual_scores(base, X, y, tasks, alphas, n_folds, stratify, score, warm):
    fold = _manual_folds(y, tasks, n_folds, stratify)
    out = np.empty((len(alphas), n_folds))
    for k in range(n_folds):
        tr, va = fold != k, fold == k
        est = clone(base).set_params(warm_start=warm)
        for j in np.argsort(alphas)[::-1]:  # the largest alpha first
            if not warm:
                est = clone(base)
            est.set_params(alpha=alphas[j]).fit(X[tr], y[tr], tasks[tr])
            out[j, k] = score(est, X[va], y[va], tasks[va])
    return out


def _accuracy(est, X, y, tasks):
    return accuracy_score(y, est.predict(X, tasks))


def _r2(est, X, y, tasks):
    return r2_score(y, est.predict(X, tasks))


@pytest.mark.parametrize(
    "cv_cls, base_cls, data, score, stratify",
    [
        (MochaClassifierCV, MochaClassifier, "clf_data", _accuracy, True),
        (MochaRegressorCV, MochaRegressor, "reg_data", _r2, False),
    ],
)
def test_scores_equal_a_manual_loop_over_the_same_folds(
    cv_cls, base_cls, data, score, stratify, request
):
    X, y, tasks = request.getfixturevalue(data)
    est = cv_cls(alphas=ALPHAS, cv=3, random_state=0).fit(X, y, tasks)
    base = base_cls(random_state=0)
    manual = _manual_scores(base, X, y, tasks, np.array(ALPHAS), 3, stratify, score, warm=True)
    # alphas_ / cv_results_ are largest first, as ALPHAS
    np.testing.assert_array_equal(est.alphas_, ALPHAS)
    np.testing.assert_array_equal(est.cv_results_["param_alpha"], ALPHAS)
    for k in range(3):
        np.testing.assert_array_equal(est.cv_results_[f"split{k}_test_score"], manual[:, k])
    np.testing.assert_array_equal(est.cv_results_["mean_test_score"], manual.mean(axis=1))
    np.testing.assert_array_equal(est.cv_results_["std_test_score"], manual.std(axis=1))
    best = int(np.argmax(manual.mean(axis=1)))
    assert est.alpha_ == ALPHAS[best]
    assert est.best_score_ == manual.mean(axis=1)[best]
    assert est.cv_results_["rank_test_score"][best] == 1
    assert est.cv_results_["params"] == [{"alpha": a} for a in ALPHAS]
    # refit on all rows with alpha_: the fitted state of the plain estimator
    ref = base_cls(alpha=est.alpha_, random_state=0).fit(X, y, tasks)
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    np.testing.assert_array_equal(est.predict(X, tasks), ref.predict(X, tasks))
    assert est.score(X, y, tasks) == ref.score(X, y, tasks)


# fixed Sigma only: a learned Sigma is MOCHA's 10 alternating W/Sigma steps, which stop at
# other points from another start (the warm start carries the previous Sigma), so even the
# choice can differ (with intercepts: 0.03 warm vs 0.3 cold on clf_data)
@pytest.mark.parametrize("relationship", ["mean"])
@pytest.mark.parametrize(
    "cv_cls, base_cls, data, score, stratify",
    [
        (MochaClassifierCV, MochaClassifier, "clf_data", _accuracy, True),
        (MochaRegressorCV, MochaRegressor, "reg_data", _r2, False),
    ],
)
def test_warm_started_path_chooses_what_cold_fits_choose(
    cv_cls, base_cls, data, score, stratify, relationship, request
):
    X, y, tasks = request.getfixturevalue(data)
    kw = dict(random_state=0, tol=1e-8, relationship=relationship)
    est = cv_cls(alphas=ALPHAS, cv=3, **kw).fit(X, y, tasks)
    cold = _manual_scores(
        base_cls(**kw), X, y, tasks, np.array(ALPHAS), 3, stratify, score, warm=False
    )
    assert est.alpha_ == ALPHAS[int(np.argmax(cold.mean(axis=1)))]
    # a fixed Sigma: both solve the same strongly convex problems to a relative gap of
    # 1e-8; the gap bounds ||W - W*||^2 <= 2 gap / alpha, at alpha = 3e-4 a move of the
    # predictions by ~1e-2, so R^2 agrees to 1e-3 (measured: 4e-5); accuracies are equal
    scores = np.column_stack([est.cv_results_[f"split{k}_test_score"] for k in range(3)])
    atol = 0.0 if cv_cls is MochaClassifierCV else 1e-3
    np.testing.assert_allclose(scores, cold, rtol=0, atol=atol)


def test_classifier_folds_are_stratified_per_task(clf_data):
    X, y, tasks = clf_data  # labels sorted within each task
    seen = []

    def recording_scorer(estimator, Xv, yv):
        seen.append((np.asarray(estimator.tasks), np.asarray(yv)))
        return 0.0

    MochaClassifierCV(alphas=[0.1], cv=3, scoring=recording_scorer).fit(X, y, tasks)
    assert len(seen) == 3  # one validation fold each
    expected = _manual_folds(y, tasks, 3, stratify=True)
    for k, (val_tasks, val_y) in enumerate(seen):
        np.testing.assert_array_equal(val_tasks, tasks[expected == k])
        np.testing.assert_array_equal(val_y, y[expected == k])
    for t in np.unique(tasks):
        rows = tasks == t
        if np.all(expected[rows] < 0):  # the 3-row task: trained on, never scored
            assert not any(np.any(vt == t) for vt, _ in seen)
            continue
        for c in np.unique(y):
            counts = [np.sum(rows & (y == c) & (expected == k)) for k in range(3)]
            assert max(counts) - min(counts) <= 1, (t, c, counts)


def test_default_grid_is_two_decades_around_the_auto_alpha(reg_data):
    X, y, tasks = reg_data
    est = MochaRegressorCV(cv=3).fit(X, y, tasks)
    n = X.shape[0]
    auto = np.sum(X**2) / n**2
    expected = auto * np.logspace(np.log10(DEFAULT_ALPHA_FACTORS[0]), 2, 9)[::-1]
    assert DEFAULT_ALPHA_FACTORS == (1e-2, 1e2)
    np.testing.assert_allclose(est.alphas_, expected, rtol=1e-12)
    assert est.get_params()["alphas"] == 9
    assert MochaRegressorCV(alphas=1, cv=3).fit(X, y, tasks).alphas_.tolist() == [
        pytest.approx(auto, rel=1e-12)
    ]


def test_string_and_callable_scorers_see_the_tasks(clf_data, reg_data):
    X, y, tasks = clf_data
    est = MochaClassifierCV(alphas=ALPHAS[:2], cv=3, scoring="roc_auc", random_state=0)
    est.fit(X, y, tasks)

    def auc(e, Xv, yv, tv):
        return roc_auc_score(yv, e.decision_function(Xv, tv))

    manual = _manual_scores(
        MochaClassifier(random_state=0), X, y, tasks, np.array(ALPHAS[:2]), 3, True, auc, True
    )
    np.testing.assert_array_equal(est.cv_results_["split1_test_score"], manual[:, 1])
    assert np.all(np.isfinite(est.cv_results_["mean_test_score"]))

    X, y, tasks = reg_data
    est = MochaRegressorCV(
        alphas=ALPHAS[:2], cv=3, scoring="neg_mean_squared_error", random_state=0
    ).fit(X, y, tasks)

    def neg_mse(e, Xv, yv, tv):
        return -mean_squared_error(yv, e.predict(Xv, tv))

    manual = _manual_scores(
        MochaRegressor(random_state=0), X, y, tasks, np.array(ALPHAS[:2]), 3, False, neg_mse, True
    )
    np.testing.assert_array_equal(est.cv_results_["split2_test_score"], manual[:, 2])

    def my_scorer(estimator, Xv, yv):  # a plain callable gets predict(X) with tasks bound
        return -float(np.max(np.abs(estimator.predict(Xv) - yv)))

    est = MochaRegressorCV(alphas=ALPHAS[:2], cv=3, scoring=my_scorer).fit(X, y, tasks)
    assert np.all(est.cv_results_["mean_test_score"] < 0)


def test_parameters_follow_the_base_estimator_and_clone():
    # every MOCHA parameter but alpha and warm_start (the path warm-starts by itself) is
    # one of the CV estimator's, passed through to every fit
    for cv_cls, base_cls in (
        (MochaClassifierCV, MochaClassifier),
        (MochaRegressorCV, MochaRegressor),
    ):
        base = set(base_cls().get_params()) - {"alpha", "warm_start"}
        params = set(cv_cls().get_params())
        assert params == base | {"alphas", "cv", "scoring"}
        est = cv_cls(alphas=np.array([1.0, 0.1]), cv=4, relationship="identity", tol=1e-4)
        twin = clone(est)
        assert twin.get_params()["relationship"] == "identity"
        np.testing.assert_array_equal(twin.alphas, [1.0, 0.1])
        assert twin.set_params(cv=3).cv == 3
        inner = est._base_estimator()
        assert type(inner) is base_cls
        assert inner.get_params()["relationship"] == "identity" and inner.tol == 1e-4


def test_passed_parameters_reach_the_fits(reg_data):
    X, y, tasks = reg_data
    kw = dict(relationship="identity", random_state=0)
    est = MochaRegressorCV(alphas=ALPHAS[:2], cv=3, **kw).fit(X, y, tasks)
    ref = MochaRegressor(alpha=est.alpha_, **kw).fit(X, y, tasks)
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    np.testing.assert_array_equal(est.sigma_, ref.sigma_)


def test_save_and_load_round_trip(clf_data, tmp_path):
    X, y, tasks = clf_data
    est = MochaClassifierCV(alphas=ALPHAS[:3], cv=3, random_state=0).fit(X, y, tasks)
    est.save(tmp_path / "cv.npz")
    same = MochaClassifierCV.load(tmp_path / "cv.npz")
    np.testing.assert_array_equal(
        same.decision_function(X, tasks), est.decision_function(X, tasks)
    )
    assert same.alpha_ == est.alpha_ and same.best_score_ == est.best_score_
    np.testing.assert_array_equal(same.alphas_, est.alphas_)
    assert list(same.cv_results_) == list(est.cv_results_)
    for key, value in est.cv_results_.items():
        if key != "params":
            np.testing.assert_array_equal(same.cv_results_[key], value)
    assert same.cv_results_["params"] == est.cv_results_["params"]
    assert same.get_params() == est.get_params()


@pytest.mark.parametrize(
    "params, exc, match",
    [
        (dict(cv=1), ValueError, "cv must be an integer >= 2"),
        (dict(cv=2.5), ValueError, "cv must be an integer >= 2"),
        (dict(cv=True), ValueError, "cv must be an integer >= 2"),
        (dict(alphas=0), ValueError, "alphas as an int must be >= 1"),
        (dict(alphas=[0.1, -1.0]), ValueError, "alphas must be positive"),
        (dict(alphas=[]), ValueError, "alphas must be a non-empty"),
        (dict(alphas="many"), TypeError, "alphas must be an int or a sequence"),
        (dict(alphas=0.5), TypeError, "alphas must be an int or a sequence"),
        (dict(scoring=3), TypeError, "scoring must be None"),
        (dict(scoring="no_such_metric"), ValueError, "no_such_metric"),
        (dict(cv=50), ValueError, "no task has at least cv=50 rows"),
        (dict(relationship="nope"), ValueError, "relationship"),
    ],
)
def test_bad_parameters_are_named(params, exc, match, reg_data):
    X, y, tasks = reg_data
    with pytest.raises(exc, match=match):
        MochaRegressorCV(**{"alphas": [0.1], **params}).fit(X, y, tasks)


def test_unfitted_predict_raises(reg_data):
    from sklearn.exceptions import NotFittedError

    X, _, tasks = reg_data
    with pytest.raises(NotFittedError):
        MochaRegressorCV().predict(X, tasks)
