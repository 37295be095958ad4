"""Ditto on linear models: exact personal models (closed form / first-order optimality),
their limits (mu = 0: local; mu -> inf: the centre), and the fixed-point equivalence with
mean-regularised MTL (issue 4's Ditto equivalence, with the exact mapping)."""

import numpy as np
import pytest

from fmtl.datasets import make_multitask_classification
from fmtl.federated import mocha
from fmtl.federated.ditto import ditto, personal_models
from fmtl.relationships import proximal_as_mean_regularized

LAM, MU = 0.05, 0.5


@pytest.fixture(scope="module")
def data():
    ds = make_multitask_classification(
        n_tasks=4,
        n_samples=[30, 45, 60, 35],
        n_features=5,
        structure="clustered",
        random_state=1,
    )
    return ds.X, ds.y


def test_squared_personal_models_match_the_closed_form(data):
    Xs, ys = data
    w = np.linspace(-1, 1, 5)
    V, gaps = personal_models(Xs, ys, LAM, MU, w, "squared", tol=1e-14)
    for X, y, v, gap in zip(Xs, ys, V, gaps, strict=True):
        n, d = X.shape
        exact = np.linalg.solve(X.T @ X / n + (LAM + MU) * np.eye(d), X.T @ y / n + MU * w)
        # strong convexity: ||v - v*|| <= sqrt(2 gap / (lam + mu)), gap the certificate
        assert np.linalg.norm(v - exact) <= np.sqrt(2 * gap / (LAM + MU)) + 1e-12
        np.testing.assert_allclose(v, exact, atol=1e-7)
    assert np.all(gaps <= 1e-12)


def test_logistic_personal_models_are_stationary(data):
    Xs, ys = data
    w = np.full(5, 0.3)
    V, _ = personal_models(Xs, ys, LAM, MU, w, "logistic", tol=1e-14)
    for X, y, v in zip(Xs, ys, V, strict=True):
        p = 1 / (1 + np.exp(y * (X @ v)))
        grad = -(X.T @ (y * p)) / len(y) + LAM * v + MU * (v - w)
        assert np.abs(grad).max() < 1e-7


def test_limits_local_and_centre(data):
    Xs, ys = data
    w = np.full(5, 0.2)
    local, gaps = personal_models(Xs, ys, LAM, 0.0, w, "squared", tol=1e-14)
    for X, y, v, gap in zip(Xs, ys, local, gaps, strict=True):
        n, d = X.shape
        exact = np.linalg.solve(X.T @ X / n + LAM * np.eye(d), X.T @ y / n)
        assert np.linalg.norm(v - exact) <= np.sqrt(2 * gap / LAM) + 1e-12
    far, _ = personal_models(Xs, ys, LAM, 1e6, w, "squared", tol=1e-14)
    assert np.abs(far - w).max() < 1e-5


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_fixed_point_equals_mean_regularised_mtl(data, loss):
    """With the centre at the mean of the personal models, Ditto's personal models are
    mean-regularised MTL: Sigma = mean_regularized_sigma(m, mu/lam), lam_fmtl = lam / c,
    c = 1 + (m-1)/(1 + mu/lam)."""
    Xs, ys = data
    lam_f, sigma = proximal_as_mean_regularized(len(Xs), LAM, MU)
    mtl = mocha(
        Xs,
        ys,
        lam_f,
        loss,
        relationship="fixed",
        sigma=sigma,
        outer_iters=1,
        inner_iters=100_000,
        tol=1e-13,
        random_state=0,
    )
    V, _ = personal_models(Xs, ys, LAM, MU, mtl.coef.mean(axis=0), loss, tol=1e-14)
    np.testing.assert_allclose(V, mtl.coef, atol=1e-6)


def test_ditto_personalises(data):
    Xs, ys = data
    res = ditto(Xs, ys, LAM, mu=0.05, rounds=300, lr=0.5, lr_decay=0.05, random_state=0)

    def objective(X, y, v):
        return np.mean(np.logaddexp(0, -y * (X @ v))) + LAM / 2 * v @ v

    personal = [objective(X, y, v) for X, y, v in zip(Xs, ys, res.coef, strict=True)]
    shared = [objective(X, y, res.global_coef) for X, y in zip(Xs, ys, strict=True)]
    assert all(p < s for p, s in zip(personal, shared, strict=True))
    given = ditto(Xs, ys, LAM, mu=0.05, global_coef=res.global_coef)
    np.testing.assert_allclose(given.coef, res.coef, atol=1e-8)


def test_bad_inputs_are_named(data):
    Xs, ys = data
    with pytest.raises(ValueError, match="mu"):
        personal_models(Xs, ys, LAM, -1.0, np.zeros(5))
    with pytest.raises(ValueError, match="w must"):
        personal_models(Xs, ys, LAM, 1.0, np.zeros(4))
    with pytest.raises(ValueError, match="lam"):
        personal_models(Xs, ys, 0.0, 1.0, np.zeros(5))
