"""Each loss's conjugate and coordinate step checked against 1-D numerical optimisation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from fmtl.losses import LOSS_NAMES, get_loss
from fmtl.losses._dispatch import loss_neg_conjugate, loss_sdca_delta, loss_value

GAMMA = 0.7


def _b_domain(name):
    # dual variable b = a * y: box [0, 1] for classification losses, R for squared
    return None if name == "squared" else (0.0, 1.0)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_neg_conjugate_is_inf_of_loss_plus_linear(name):
    # -l*(-a) = inf_z [ l(y, z) + a z ]
    loss = get_loss(name, GAMMA)
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.choice([-1.0, 1.0]) if loss.classification else rng.normal()
        b = rng.uniform(0.05, 0.95) if loss.classification else rng.normal()
        a = b * y if loss.classification else b
        res = minimize_scalar(
            lambda z, a=a, y=y: loss_value(loss.code, y, z, loss.param) + a * z,
            bounds=(-60, 60),
            method="bounded",
            options={"xatol": 1e-12, "maxiter": 2000},
        )
        assert loss_neg_conjugate(loss.code, y, a, loss.param) == pytest.approx(res.fun, abs=1e-7)


@pytest.mark.parametrize("name", ["hinge", "smoothed_hinge", "logistic"])
def test_infeasible_dual_is_minus_inf(name):
    loss = get_loss(name, GAMMA)
    assert loss_neg_conjugate(loss.code, 1.0, 1.5, loss.param) == -np.inf
    assert loss_neg_conjugate(loss.code, -1.0, 0.5, loss.param) == -np.inf


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(LOSS_NAMES),
    y_pos=st.booleans(),
    b=st.floats(0.0, 1.0),
    xv=st.floats(-8, 8),
    q=st.floats(1e-3, 50.0),
)
def test_sdca_delta_is_the_exact_coordinate_maximiser(name, y_pos, b, xv, q):
    loss = get_loss(name, GAMMA)
    y = 1.0 if y_pos else -1.0
    if name == "squared":
        y = 3.0 * b - 1.0  # a real target
    a = b * y if loss.classification else b

    def neg_obj(d):
        return -(loss_neg_conjugate(loss.code, y, a + d, loss.param) - d * xv - 0.5 * q * d * d)

    delta = loss_sdca_delta(loss.code, y, a, xv, q, loss.param)
    dom = _b_domain(name)
    if dom is None:
        # concave quadratic: the derivative vanishes at the step
        assert (y - (a + delta)) - xv - q * delta == pytest.approx(0.0, abs=1e-10)
        return
    new_b = (a + delta) * y
    assert -1e-15 <= new_b <= 1.0 + 1e-15  # stays dual feasible
    # the optimum over b in [0, 1] (through d = y b - a)
    res = minimize_scalar(
        lambda bb: neg_obj(y * bb - a),
        bounds=(0.0, 1.0),
        method="bounded",
        options={"xatol": 1e-13, "maxiter": 5000},
    )
    best = min(res.fun, neg_obj(-a), neg_obj(y - a))  # the box ends too
    assert neg_obj(delta) <= best + 1e-10 * max(1.0, abs(best))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_fenchel_young_is_nonnegative_and_tight(name):
    loss = get_loss(name, GAMMA)
    rng = np.random.default_rng(2)
    z = rng.normal(size=200) * 3
    y = np.where(rng.random(200) < 0.5, 1.0, -1.0) if loss.classification else rng.normal(size=200)
    b = rng.random(200)
    a = b * y if loss.classification else rng.normal(size=200)
    fy = loss.value(y, z) - loss.neg_conjugate(y, a) + a * z
    assert np.all(fy >= -1e-12)
    if name in ("squared", "logistic", "smoothed_hinge"):
        # tight at a = -l'(z): finite differences of the loss give the derivative
        h = 1e-6
        a_opt = -(loss.value(y, z + h) - loss.value(y, z - h)) / (2 * h)
        if loss.classification:  # finite differences may leave the box by rounding
            a_opt = np.clip(a_opt * y, 0.0, 1.0) * y
        fy_opt = loss.value(y, z) - loss.neg_conjugate(y, a_opt) + a_opt * z
        assert np.max(np.abs(fy_opt)) < 1e-6


def test_logistic_step_near_box_edges_stays_inside():
    loss = get_loss("logistic")
    for xv in (-800.0, -40.0, 40.0, 800.0):
        for b in (0.0, 1e-300, 0.5, 1.0 - 1e-16, 1.0):
            d = loss_sdca_delta(loss.code, 1.0, b, xv, 1e-3, 0.0)
            assert np.isfinite(d) and 0.0 <= b + d <= 1.0


def test_unknown_loss_and_bad_gamma():
    with pytest.raises(ValueError, match="loss"):
        get_loss("huber")
    with pytest.raises(ValueError, match="gamma"):
        get_loss("smoothed_hinge", gamma=0.0)
    with pytest.raises(ValueError, match="gamma"):
        get_loss("smoothed_hinge", gamma=float("nan"))
