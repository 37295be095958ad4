"""pFedMe with exact personal steps: converges (envelope gradient -> 0), its fixed point
is w = sum_t p_t theta_t(w), and with uniform weights it is mean-regularised MTL."""

import numpy as np
import pytest
import scipy.sparse as sp

from fmtl.datasets import make_multitask_classification
from fmtl.federated import mocha
from fmtl.federated.ditto import personal_models
from fmtl.federated.pfedme import pfedme
from fmtl.relationships import proximal_as_mean_regularized

LAM, MU = 0.05, 0.5


@pytest.fixture(scope="module")
def data():
    ds = make_multitask_classification(
        n_tasks=4,
        n_samples=[30, 45, 60, 35],
        n_features=5,
        structure="clustered",
        random_state=2,
    )
    return ds.X, ds.y


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_uniform_pfedme_is_mean_regularised_mtl(data, loss):
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
    res = pfedme(Xs, ys, LAM, MU, loss, rounds=2000, weights="uniform", grad_tol=1e-11, tol=1e-14)
    np.testing.assert_allclose(res.coef, mtl.coef, atol=1e-6)
    np.testing.assert_allclose(res.global_coef, mtl.coef.mean(axis=0), atol=1e-6)


def test_sample_weighted_fixed_point_and_monotone_envelope(data):
    Xs, ys = data
    res = pfedme(Xs, ys, LAM, MU, rounds=500, grad_tol=1e-10, tol=1e-14)
    n = np.array([len(y) for y in ys], float)
    theta, _ = personal_models(Xs, ys, LAM, MU, res.global_coef, "logistic", tol=1e-14)
    np.testing.assert_allclose(res.global_coef, (n / n.sum()) @ theta, atol=1e-8)
    # gradient descent on a convex smooth function with a safe step: never increases
    assert np.all(np.diff(res.history["primal"]) <= 1e-12)


def test_sparse_equals_dense(data):
    Xs, ys = data
    a = pfedme(Xs, ys, LAM, MU, rounds=5)
    b = pfedme([sp.csr_matrix(X) for X in Xs], ys, LAM, MU, rounds=5)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-12)


def test_bad_inputs_are_named(data):
    Xs, ys = data
    with pytest.raises(ValueError, match="beta"):
        pfedme(Xs, ys, LAM, MU, beta=1.5)
    with pytest.raises(ValueError, match="weights"):
        pfedme(Xs, ys, LAM, MU, weights="tasks")
    with pytest.raises(ValueError, match="mu"):
        pfedme(Xs, ys, LAM, 0.0)
