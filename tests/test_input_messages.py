"""Errors that name the argument at fault (issue 29, item 7): each case here raised an
error about something else, or none, on the main before it."""

from __future__ import annotations

import numpy as np
import pytest

from fmtl import MochaClassifier, MochaRegressor
from fmtl.datasets import make_multitask_classification
from fmtl.relationships import mean_regularized_sigma


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(
        n_tasks=3, n_samples=20, n_features=4, random_state=0
    ).stack()


@pytest.mark.parametrize(
    "make", [lambda t: (v for v in t), lambda t: iter(list(t)), lambda t: map(str, t)]
)
def test_tasks_given_as_an_iterator_are_refused_by_name(data, make):
    # np.array(generator) is a 0-d object array: the message was "tasks must be 1-D, got
    # shape ()"
    X, y, t = data
    with pytest.raises(TypeError, match="tasks must be a 1-D array-like .* got a"):
        MochaClassifier(outer_iters=1).fit(X, y, make(t))


def test_tasks_as_a_set_are_refused(data):
    X, y, t = data
    with pytest.raises(TypeError, match="got a set"):
        MochaRegressor(outer_iters=1).fit(X[:3], y[:3], {0, 1, 2})


@pytest.mark.parametrize("kappa", [1e300, 1e20, 1e14])
def test_a_kappa_that_makes_sigma_singular_is_named(data, kappa):
    # relationship="mean" with kappa=1e300 said "sigma must be positive definite"
    X, y, t = data
    with pytest.raises(ValueError, match=r"kappa=.* makes Sigma numerically singular"):
        MochaClassifier(relationship="mean", kappa=kappa, outer_iters=1).fit(X, y, t)


def test_the_largest_kappa_allowed_still_gives_a_positive_definite_sigma():
    m = 3
    top = 1e-3 / (m * np.finfo(np.float64).eps) - 1.0
    S = mean_regularized_sigma(m, top)
    assert np.linalg.eigvalsh(S)[0] > 0
    assert np.trace(S) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kappa must be <="):
        mean_regularized_sigma(m, top * 1.01)
