"""FedAvg on linear models: reaches the pooled optimum (scikit-learn on the pooled data),
reports the objective it minimises, is seed-deterministic across layouts and threads, and
fine-tuning personalises."""

import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge

from fmtl.datasets import make_multitask_classification
from fmtl.federated.fedavg import fedavg
from fmtl.federated.systems import SystemsModel

LAM = 0.01


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(
        n_tasks=5, n_samples=60, n_features=4, structure="clustered", random_state=0
    )


def _pooled_objective(ds, w, loss):
    X, y = np.vstack(ds.X), np.concatenate(ds.y)
    z = X @ w
    ell = np.logaddexp(0.0, -y * z) if loss == "logistic" else 0.5 * (z - y) ** 2
    return float(np.mean(ell) + LAM / 2 * w @ w)


def test_history_reports_the_pooled_objective(data):
    res = fedavg(data.X, data.y, LAM, rounds=20, random_state=0)
    assert res.history["primal"][-1] == pytest.approx(
        _pooled_objective(data, res.global_coef, "logistic"), rel=1e-12
    )


def test_logistic_reaches_the_pooled_optimum(data):
    """Decaying steps (lr / (1 + 0.05 h), 2,000 rounds of one local epoch): the objective is
    within 1e-6 of LogisticRegression's on the pooled data (C = 1 / (N lam))."""
    X, y = np.vstack(data.X), np.concatenate(data.y)
    ref = LogisticRegression(C=1 / (len(y) * LAM), fit_intercept=False, tol=1e-12, max_iter=10**4)
    w_ref = ref.fit(X, y).coef_.ravel()
    res = fedavg(data.X, data.y, LAM, rounds=2000, lr=0.5, lr_decay=0.05, random_state=0)
    gap = _pooled_objective(data, res.global_coef, "logistic") - _pooled_objective(
        data, w_ref, "logistic"
    )
    assert -1e-12 <= gap <= 1e-6
    np.testing.assert_allclose(res.global_coef, w_ref, atol=5e-3)


def test_squared_reaches_ridge_on_pooled_data(data):
    X, y = np.vstack(data.X), np.concatenate(data.y)
    w_ref = Ridge(alpha=len(y) * LAM, fit_intercept=False).fit(X, y).coef_
    res = fedavg(
        data.X, data.y, LAM, "squared", rounds=2000, lr=0.2, lr_decay=0.05, random_state=0
    )
    gap = _pooled_objective(data, res.global_coef, "squared") - _pooled_objective(
        data, w_ref, "squared"
    )
    assert -1e-12 <= gap <= 1e-6


def test_dense_csr_and_threads_give_identical_models(data, monkeypatch):
    kw = dict(rounds=15, random_state=3, systems=SystemsModel(heterogeneity="high"))
    dense = fedavg(data.X, data.y, LAM, **kw)
    csr = fedavg([sp.csr_matrix(X) for X in data.X], data.y, LAM, **kw)
    np.testing.assert_array_equal(dense.global_coef, csr.global_coef)
    monkeypatch.setattr(sys.modules["fmtl.federated._loop"], "PARALLEL_MIN_WORK", 0)
    one = fedavg(data.X, data.y, LAM, n_threads=1, **kw)
    two = fedavg(data.X, data.y, LAM, n_threads=2, **kw)
    np.testing.assert_array_equal(one.global_coef, two.global_coef)
    np.testing.assert_array_equal(one.global_coef, dense.global_coef)


def test_finetuning_personalises(data):
    plain = fedavg(data.X, data.y, LAM, rounds=100, random_state=0)
    assert np.all(plain.coef == plain.global_coef)
    tuned = fedavg(data.X, data.y, LAM, rounds=100, finetune_epochs=5, random_state=0)
    np.testing.assert_array_equal(tuned.global_coef, plain.global_coef)

    def local_loss(W):
        return np.mean(
            [
                np.mean(np.logaddexp(0, -y * (X @ w)))
                for X, y, w in zip(data.X, data.y, W, strict=True)
            ]
        )

    # on clustered tasks, each fine-tuned model fits its own task better than the global one
    assert local_loss(tuned.coef) < local_loss(plain.coef) - 0.01


def test_drops_and_dead_nodes(data):
    res = fedavg(
        data.X,
        data.y,
        LAM,
        rounds=200,
        lr=0.5,
        lr_decay=0.05,
        random_state=0,
        systems=SystemsModel(drop_prob=0.5),
    )
    assert res.history["dropped"].any() and np.isfinite(res.global_coef).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dead = fedavg(data.X, data.y, LAM, rounds=5, systems=SystemsModel(dead_nodes=[2]))
    assert dead.never_reported.tolist() == [2]


def test_bad_inputs_are_named(data):
    with pytest.raises(ValueError, match="lr"):
        fedavg(data.X, data.y, LAM, lr=1 / LAM)
    with pytest.raises(TypeError, match="lr"):
        fedavg(data.X, data.y, LAM, lr=True)
    with pytest.raises(ValueError, match="local_epochs"):
        fedavg(data.X, data.y, LAM, local_epochs=0)
    with pytest.raises(ValueError, match="finetune_epochs"):
        fedavg(data.X, data.y, LAM, finetune_epochs=-1)
    with pytest.raises(ValueError, match="lam"):
        fedavg(data.X, data.y, 0.0)
