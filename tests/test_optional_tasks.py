"""``tasks`` is optional in fit / predict / decision_function / score: ``None`` is one task
(labelled 0), and leaving it out on a model of several tasks is an error naming it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone, is_classifier

import fmtl
from fmtl.datasets import make_multitask_classification, make_multitask_regression
from fmtl.experiments.error_protocol import ConstantBaseline

_S = dict(random_state=0)
ESTIMATORS = [
    fmtl.MochaClassifier(alpha=0.1, outer_iters=2, **_S),
    fmtl.MochaRegressor(alpha=0.1, outer_iters=2, **_S),
    fmtl.LocalClassifier(alpha=0.1, **_S),
    fmtl.LocalRegressor(alpha=0.1, **_S),
    fmtl.GlobalClassifier(alpha=0.1, **_S),
    fmtl.GlobalRegressor(alpha=0.1, **_S),
    fmtl.FedAvgClassifier(rounds=5, **_S),
    fmtl.FedAvgRegressor(rounds=5, **_S),
    fmtl.DittoClassifier(rounds=5, **_S),
    fmtl.DittoRegressor(rounds=5, **_S),
    fmtl.PFedMeClassifier(rounds=5, **_S),
    fmtl.PFedMeRegressor(rounds=5, **_S),
    fmtl.PerFedAvgClassifier(rounds=5, **_S),
    fmtl.PerFedAvgRegressor(rounds=5, **_S),
    fmtl.PFedHNClassifier(rounds=5, **_S),
    fmtl.PFedHNRegressor(rounds=5, **_S),
    fmtl.FedRepClassifier(rounds=5, **_S),
    fmtl.FedRepRegressor(rounds=5, **_S),
    fmtl.KernelMochaClassifier(alpha=0.1, outer_iters=2, **_S),
    fmtl.KernelMochaRegressor(alpha=0.1, outer_iters=2, **_S),
    ConstantBaseline("classification"),
    ConstantBaseline("regression"),
]
IDS = [f"{type(e).__name__}-{getattr(e, 'task', '')}".rstrip("-") for e in ESTIMATORS]


def _data(est, n_tasks):
    make = make_multitask_classification if is_classifier(est) else make_multitask_regression
    return make(n_tasks=n_tasks, n_samples=30, n_features=4, n_clusters=1, random_state=0).stack()


def _outputs(est, X, y, tasks) -> list[np.ndarray]:
    out = [est.predict(X, tasks), np.array(est.score(X, y, tasks))]
    if hasattr(est, "decision_function"):
        out.append(est.decision_function(X, tasks))
    return out


def _assert_identical(a: list, b: list) -> None:
    for u, v in zip(a, b, strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_no_tasks_is_one_task_labelled_zero(est):
    X, y, _ = _data(est, 1)
    implicit = clone(est).fit(X, y)
    explicit = clone(est).fit(X, y, np.zeros(len(y), dtype=int))
    assert list(implicit.tasks_) == [0] == list(explicit.tasks_)
    # the same model bit for bit, and the same outputs with or without tasks
    _assert_identical(_outputs(implicit, X, y, None), _outputs(explicit, X, y, [0] * len(y)))
    if hasattr(est, "coef_"):
        assert implicit.coef_.tobytes() == explicit.coef_.tobytes()


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_one_named_task_predicts_without_tasks(est):
    X, y, _ = _data(est, 1)
    fitted = clone(est).fit(X, y, ["only"] * len(y))
    _assert_identical(_outputs(fitted, X, y, None), _outputs(fitted, X, y, ["only"] * len(y)))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_no_tasks_on_several_tasks_names_tasks(est):
    X, y, tasks = _data(est, 3)
    fitted = clone(est).fit(X, y, tasks)
    if isinstance(est, fmtl.GlobalClassifier | fmtl.GlobalRegressor):
        # one shared model: no task needs naming (as for tasks unseen during fit)
        _assert_identical(_outputs(fitted, X, y, None), _outputs(fitted, X, y, tasks))
        return
    calls = [lambda: fitted.predict(X), lambda: fitted.score(X, y)]
    if hasattr(fitted, "decision_function"):
        calls.append(lambda: fitted.decision_function(X))
    for call in calls:
        with pytest.raises(ValueError, match=r"tasks=None, but this model has 3 tasks"):
            call()


def test_the_error_says_how_to_score_with_string_scorers():
    X, y, tasks = _data(fmtl.LocalClassifier(), 3)
    fitted = fmtl.LocalClassifier(alpha=0.1).fit(X, y, tasks)
    with pytest.raises(ValueError, match=r"\(0, 1, 2\).*fmtl.task_scorer or fmtl.TaskColumn"):
        fitted.predict(X)
