"""Warm starts: a fit started from another lam's duals reaches the same certified optimum,
in fewer rounds than a cold start; malformed warm starts are refused by name."""

import numpy as np
import pytest

from fmtl.federated import mocha
from fmtl.solvers import pack_tasks
from fmtl.solvers._packing import dual_sums


def _data(seed=0, m=4, n=40, d=5):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n + 5 * t, d)) for t in range(m)]
    w = rng.normal(size=d)
    ys = [
        np.where(X @ (w + 0.3 * rng.normal(size=d)) + 0.3 * rng.normal(size=len(X)) > 0, 1.0, -1.0)
        for X in Xs
    ]
    return Xs, ys


def test_dual_sums_matches_per_task_products_dense_and_csr():
    import scipy.sparse as sp

    Xs, ys = _data()
    alpha = np.random.default_rng(1).uniform(size=sum(len(y) for y in ys))
    offs = np.cumsum([0] + [len(y) for y in ys])
    want = np.stack([Xs[t].T @ alpha[offs[t] : offs[t + 1]] / len(ys[t]) for t in range(len(Xs))])
    for packed in (pack_tasks(Xs, ys), pack_tasks([sp.csr_matrix(X) for X in Xs], ys)):
        np.testing.assert_allclose(dual_sums(packed, alpha), want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("loss", ["hinge", "logistic", "squared"])
@pytest.mark.parametrize("relationship", ["fixed", "learned"])
def test_warm_start_along_lambda_path_same_optimum_fewer_rounds(loss, relationship):
    Xs, ys = _data()
    kw = dict(loss=loss, relationship=relationship, random_state=0, tol=1e-6)
    kw.update(outer_iters=1, inner_iters=2000) if relationship == "fixed" else kw.update(
        outer_iters=6, inner_iters=400
    )
    first = mocha(Xs, ys, lam=1e-1, **kw)
    cold = mocha(Xs, ys, lam=3e-2, **kw)
    warm = mocha(Xs, ys, lam=3e-2, warm_start=first, **kw)
    # the warm start is the neighbour's duals with W = Sigma B / lam: its first W-step
    # certifies the same tolerance, so both primals agree within the certified gaps
    for res in (cold, warm):
        assert res.history["rel_gap"][-1] <= 1e-6
    if relationship == "fixed":
        p_cold, p_warm = cold.history["primal"][-1], warm.history["primal"][-1]
        assert abs(p_cold - p_warm) <= 2e-6 * abs(p_cold)
        # hinge: measured 71 rounds either way here (its tail, not its start, dominates)
        if loss == "hinge":
            assert len(warm.history) <= len(cold.history)
        else:
            assert len(warm.history) < len(cold.history)
    np.testing.assert_allclose(warm.B, dual_sums(pack_tasks(Xs, ys), warm.dual_coef), atol=1e-12)


def test_warm_start_refused_clearly():
    Xs, ys = _data()
    res = mocha(Xs, ys, lam=0.1, outer_iters=1, inner_iters=3, random_state=0)
    with pytest.raises(TypeError, match="warm_start"):
        mocha(Xs, ys, lam=0.1, warm_start=np.zeros(3))
    bad = mocha(Xs[:3], ys[:3], lam=0.1, outer_iters=1, inner_iters=3, random_state=0)
    with pytest.raises(ValueError, match="warm_start.dual_coef has shape"):
        mocha(Xs, ys, lam=0.1, warm_start=bad)
    res.dual_coef[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mocha(Xs, ys, lam=0.1, warm_start=res)
    res.dual_coef[0] = 5.0 * ys[0][0]
    with pytest.raises(ValueError, match="dual feasible"):
        mocha(Xs, ys, lam=0.1, warm_start=res)


def test_estimator_warm_start_refits_to_the_same_certified_model():
    from fmtl import LocalClassifier, MochaClassifier, MochaRegressor
    from fmtl.datasets import make_multitask_classification, make_multitask_regression

    X, y, t = make_multitask_classification(
        n_tasks=4, n_samples=40, n_features=5, random_state=0
    ).stack()
    for est in (
        MochaClassifier(alpha=0.1, tol=1e-7, inner_iters=2000, random_state=0),
        LocalClassifier(alpha=0.1, tol=1e-7, max_rounds=2000, random_state=0),
    ):
        warm = est.set_params(warm_start=True).fit(X, y, t)
        prev = warm.dual_coef_.copy()
        warm.set_params(alpha=0.03).fit(X, y, t)
        assert not np.array_equal(prev, warm.dual_coef_)
        cold = est.__class__(**{**est.get_params(), "warm_start": False}).fit(X, y, t)
        # both certified to a relative gap of 1e-7 (per W-step): primals agree within it
        pw, pc = warm.history_["primal"][-1], cold.history_["primal"][-1]
        assert warm.history_["rel_gap"][-1] <= 1e-7 and cold.history_["rel_gap"][-1] <= 1e-7
        if "joint_gap" in warm.history_.columns:
            # learned Sigma: both are within their joint gaps of the same optimum J*
            bound = max(warm.history_["joint_gap"][-1], cold.history_["joint_gap"][-1])
        else:
            bound = 2e-7 * abs(pc)
        assert abs(pw - pc) <= bound
        # other rows per task: a cold start, no error
        warm.fit(X[:-3], y[:-3], t[:-3])
    Xr, yr, tr = make_multitask_regression(
        n_tasks=3, n_samples=30, n_features=4, random_state=0
    ).stack()
    reg = MochaRegressor(alpha=1.0, warm_start=True, random_state=0).fit(Xr, yr, tr)
    reg.set_params(alpha=0.3).fit(Xr, yr, tr)
    assert np.all(np.isfinite(reg.coef_))
    with pytest.raises(TypeError, match="warm_start"):
        MochaRegressor(warm_start="yes").fit(Xr, yr, tr)
