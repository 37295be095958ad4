"""Per-FedAvg (MAML) on linear models: the exact (Hessian-vector) version converges to the
closed-form optimum of the MAML objective for the squared loss; gradients and
Hessian-vector products match finite differences; a = 0 is FedAvg on the pooled ridge."""

import numpy as np
import pytest

from fmtl.federated.perfedavg import (
    _adapt,
    _grad,
    _hvp,
    _maml_grad,
    _value,
    maml_squared_optimum,
    perfedavg,
)
from fmtl.losses import get_loss

LAM, A = 0.05, 0.2


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(n, 4)) / 2 for n in (30, 40, 50)]
    ys = [X @ rng.normal(size=4) + 0.1 * rng.normal(size=len(X)) for X in Xs]
    return Xs, ys


def test_exact_version_reaches_the_closed_form_optimum(data):
    Xs, ys = data
    res = perfedavg(Xs, ys, LAM, a=A, beta=0.5, rounds=3000, local_steps=1, order=2)
    np.testing.assert_allclose(res.global_coef, maml_squared_optimum(Xs, ys, LAM, A), atol=1e-6)
    # gradient descent with a safe step on a convex quadratic: monotone
    assert np.all(np.diff(res.history["primal"]) <= 1e-14)


def test_first_order_version_is_biased_but_close(data):
    Xs, ys = data
    exact = maml_squared_optimum(Xs, ys, LAM, A)
    fo = perfedavg(Xs, ys, LAM, a=A, beta=0.5, rounds=3000, order=1).global_coef
    gap = np.abs(fo - exact).max()
    assert 1e-6 < gap < 0.1


def test_a_zero_is_pooled_ridge(data):
    Xs, ys = data
    res = perfedavg(Xs, ys, LAM, a=0.0, beta=0.5, rounds=3000)
    np.testing.assert_allclose(res.global_coef, maml_squared_optimum(Xs, ys, LAM, 0.0), atol=1e-6)


@pytest.mark.parametrize("name", ["squared", "logistic"])
def test_gradient_and_hvp_match_finite_differences(data, name):
    X, y = data[0][0], np.sign(data[1][0]) if name == "logistic" else data[1][0]
    loss = get_loss(name)
    rng = np.random.default_rng(1)
    w, v = rng.normal(size=4), rng.normal(size=4)
    eps = 1e-6
    fd_grad = np.array(
        [
            (_value(X, y, w + eps * e, loss, LAM) - _value(X, y, w - eps * e, loss, LAM))
            / (2 * eps)
            for e in np.eye(4)
        ]
    )
    np.testing.assert_allclose(_grad(X, y, w, loss, LAM), fd_grad, atol=1e-8)
    fd_hvp = (_grad(X, y, w + eps * v, loss, LAM) - _grad(X, y, w - eps * v, loss, LAM)) / (
        2 * eps
    )
    np.testing.assert_allclose(_hvp(X, y, w, v, loss, LAM), fd_hvp, atol=1e-7)


def test_personal_models_are_adapted_steps(data):
    Xs, ys = data
    res = perfedavg(Xs, ys, LAM, a=A, rounds=20, adapt_steps=1)
    loss = get_loss("squared")
    for X, y, c in zip(Xs, ys, res.coef, strict=True):
        np.testing.assert_allclose(
            c, res.global_coef - A * _grad(X, y, res.global_coef, loss, LAM)
        )


def test_bad_inputs_are_named(data):
    Xs, ys = data
    with pytest.raises(ValueError, match="order"):
        perfedavg(Xs, ys, LAM, order=3)
    with pytest.raises(ValueError, match="loss"):
        perfedavg(Xs, ys, LAM, loss="hinge")
    with pytest.raises(ValueError, match="beta"):
        perfedavg(Xs, ys, LAM, beta=0.0)


@pytest.mark.parametrize("k", [2, 3])
def test_k_step_maml_reaches_its_closed_form_optimum(data, k):
    """k-step MAML (squared loss): the exact version converges to the minimiser of
    sum_t p_t F_t(P_t w + q_t), P_t = (I - a A_t)^k (1e-6); first-order stops away."""
    Xs, ys = data
    ref = maml_squared_optimum(Xs, ys, LAM, A, inner_steps=k)
    assert np.abs(ref - maml_squared_optimum(Xs, ys, LAM, A)).max() > 1e-4  # k matters
    res = perfedavg(Xs, ys, LAM, a=A, beta=0.5, rounds=3000, inner_steps=k)
    np.testing.assert_allclose(res.global_coef, ref, atol=1e-6)
    assert np.all(np.diff(res.history["primal"]) <= 1e-14)
    fo = perfedavg(Xs, ys, LAM, a=A, beta=0.5, rounds=3000, inner_steps=k, order=1)
    assert np.abs(fo.global_coef - ref).max() > 1e-6


@pytest.mark.parametrize("name", ["squared", "logistic"])
@pytest.mark.parametrize("k", [1, 3])
def test_k_step_maml_gradient_matches_finite_differences(data, name, k):
    X, y = data[0][1], np.sign(data[1][1]) if name == "logistic" else data[1][1]
    loss = get_loss(name)
    w = np.random.default_rng(2).normal(size=4)
    eps = 1e-6

    def objective(v):
        return _value(X, y, _adapt(X, y, v, A, k, loss, LAM)[-1], loss, LAM)

    fd = np.array(
        [(objective(w + eps * e) - objective(w - eps * e)) / (2 * eps) for e in np.eye(4)]
    )
    np.testing.assert_allclose(_maml_grad(X, y, w, A, k, loss, LAM, order=2), fd, atol=1e-8)


def test_inner_steps_one_is_the_one_step_objective(data):
    Xs, ys = data
    a = perfedavg(Xs, ys, LAM, a=A, rounds=30)
    b = perfedavg(Xs, ys, LAM, a=A, rounds=30, inner_steps=1)
    np.testing.assert_array_equal(a.global_coef, b.global_coef)
    with pytest.raises(ValueError, match="inner_steps"):
        perfedavg(Xs, ys, LAM, inner_steps=0)
