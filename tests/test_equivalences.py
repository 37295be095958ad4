"""Equivalences between personalisation families, made executable (issue 4, first two).

* Local = MOCHA with Sigma = I/m: the objective splits into one ridge-type problem per
  task, ``mean_i l(w_t.x_ti) + (lam m / 2) ||w_t||^2`` (scikit-learn per task with
  ``C = 1 / (n_t lam m)``, resp. ``Ridge(alpha = n_t lam m)`` for the squared loss).
* Global = the limit of mean-regularised MTL as the coupling grows: with
  ``Sigma = mean_regularized_sigma(m, kappa)``, i.e. ``Omega = c (I + kappa (I - 11^T/m))``,
  ``c = 1 + (m-1)/(1+kappa)``, MOCHA's W tends (as O(1/kappa)) to the single ``w``
  minimising ``sum_t mean_i l(w.x_ti) + (lam m / 2) ||w||^2`` — per-task means summed, not
  pooled (scikit-learn with sample weights ``1/n_t`` and ``C = 1/(lam m)``, resp.
  ``Ridge(alpha = lam m)``).
"""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from fmtl.datasets import make_multitask_classification
from fmtl.federated import mocha
from fmtl.relationships import identity_sigma, mean_regularized_sigma

LAM = 0.05


@pytest.fixture(scope="module")
def data():
    ds = make_multitask_classification(
        n_tasks=5,
        n_samples=[30, 40, 50, 35, 45],
        n_features=4,
        structure="clustered",
        random_state=0,
    )
    return ds.X, ds.y


def _fit(Xs, ys, loss, Sigma, tol=1e-12):
    return mocha(
        Xs,
        ys,
        LAM,
        loss,
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=100_000,
        tol=tol,
        random_state=0,
    )


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_local_is_mocha_with_identity_sigma(data, loss):
    Xs, ys = data
    m = len(Xs)
    res = _fit(Xs, ys, loss, identity_sigma(m))
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        n = len(y)
        if loss == "squared":
            w = Ridge(alpha=n * LAM * m, fit_intercept=False).fit(X, y).coef_
        else:
            w = (
                LogisticRegression(
                    C=1 / (n * LAM * m), fit_intercept=False, tol=1e-12, max_iter=10**4
                )
                .fit(X, y)
                .coef_.ravel()
            )
        np.testing.assert_allclose(res.coef[t], w, atol=1e-6)


def _global(Xs, ys, loss):
    m = len(Xs)
    X, y = np.vstack(Xs), np.concatenate(ys)
    sw = np.concatenate([np.full(len(t), 1.0 / len(t)) for t in ys])
    if loss == "squared":
        return Ridge(alpha=LAM * m, fit_intercept=False).fit(X, y, sample_weight=sw).coef_
    clf = LogisticRegression(C=1 / (LAM * m), fit_intercept=False, tol=1e-12, max_iter=10**4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clf.fit(X, y, sample_weight=sw).coef_.ravel()


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_global_is_the_limit_of_mean_regularised_mtl(data, loss):
    Xs, ys = data
    m = len(Xs)
    w = _global(Xs, ys, loss)
    dist = []
    for kappa in (1e1, 1e3, 1e5, 1e7):
        res = _fit(Xs, ys, loss, mean_regularized_sigma(m, kappa), tol=1e-13)
        dist.append(np.abs(res.coef - w).max())
    # O(1/kappa): each 100x step in kappa shrinks the distance by >= 30x (measured ~100x:
    # 0.49, 1.0e-2, 1.1e-4, 9.4e-7 for the squared loss)
    assert all(b < a / 30 for a, b in zip(dist[:-1], dist[1:], strict=True))
    assert dist[-1] < 1e-5
