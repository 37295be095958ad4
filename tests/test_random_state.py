"""A bad random_state is refused with an error that names it (issue 16, item 7)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone, is_classifier

import fmtl
from fmtl.datasets import make_multitask_classification, make_multitask_regression

ESTIMATORS = [
    fmtl.MochaClassifier(outer_iters=1, inner_iters=2),
    fmtl.MochaRegressor(outer_iters=1, inner_iters=2),
    fmtl.MochaClassifierCV(alphas=[0.1], cv=2, outer_iters=1, inner_iters=2),
    fmtl.LocalClassifier(max_rounds=2),
    fmtl.GlobalRegressor(max_rounds=2),
    fmtl.FedAvgClassifier(rounds=2),
    fmtl.DittoRegressor(rounds=2),
    fmtl.PFedMeClassifier(rounds=2),
    fmtl.PerFedAvgRegressor(rounds=2),
    fmtl.PFedHNClassifier(rounds=2),
    fmtl.FedRepRegressor(rounds=2),
    fmtl.KernelMochaClassifier(outer_iters=1, inner_iters=2),
]


@pytest.fixture(scope="module")
def data():
    clf = make_multitask_classification(n_tasks=3, n_samples=20, n_features=3, random_state=0)
    reg = make_multitask_regression(n_tasks=3, n_samples=20, n_features=3, random_state=0)
    return clf.stack(), reg.stack()


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("bad", [-1, "abc", 1.5, [-3]])
def test_a_bad_random_state_is_named_in_the_error(est, bad, data):
    X, y, t = data[0] if is_classifier(est) else data[1]
    with pytest.raises((ValueError, TypeError), match="random_state"):
        clone(est).set_params(random_state=bad).fit(X, y, t)


@pytest.mark.parametrize("good", [None, 0, np.int64(3), np.random.default_rng(1)])
def test_good_random_states_still_work(good, data):
    X, y, t = data[0]
    fmtl.LocalClassifier(max_rounds=2, random_state=good).fit(X, y, t)
