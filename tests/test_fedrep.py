"""FedRep (linear, squared loss): recovers the column space of a rank-k model at low noise
(principal angles <= 1e-2), agrees with the convex reference (trace-norm MTL by cvxpy),
and its heads are exact ridge solutions."""

import numpy as np
import pytest
import scipy.linalg as sl
from sklearn.linear_model import Ridge

from fmtl.federated.fedrep import fedrep


@pytest.fixture(scope="module")
def low_rank():
    rng = np.random.default_rng(0)
    d, k, m, n = 20, 2, 30, 50
    B = np.linalg.qr(rng.normal(size=(d, k)))[0]
    Xs = [rng.normal(size=(n, d)) for _ in range(m)]
    H = rng.normal(size=(m, k))
    ys = [X @ B @ h + 1e-3 * rng.normal(size=n) for X, h in zip(Xs, H, strict=True)]
    return Xs, ys, B, k


def test_recovers_the_column_space(low_rank):
    Xs, ys, B, k = low_rank
    res = fedrep(Xs, ys, rank=k, rounds=100, random_state=0)
    assert sl.subspace_angles(res.representation, B).max() <= 1e-2
    assert np.allclose(res.representation.T @ res.representation, np.eye(k), atol=1e-12)


def test_agrees_with_trace_norm_mtl(low_rank):
    """Convex relaxation: min sum_t p_t mean (y - X w_t)^2 / 2 + tau ||W||_* (cvxpy); its
    top-k left singular space matches FedRep's B (angles <= 1e-2)."""
    cp = pytest.importorskip("cvxpy")
    Xs, ys, _, k = low_rank
    d, m = Xs[0].shape[1], len(Xs)
    n = np.array([len(y) for y in ys], float)
    p = n / n.sum()
    W = cp.Variable((d, m))
    fit = sum(p[t] * cp.sum_squares(Xs[t] @ W[:, t] - ys[t]) / (2 * n[t]) for t in range(m))
    cp.Problem(cp.Minimize(fit + 1e-4 * cp.normNuc(W))).solve(solver="SCS", eps=1e-8)
    U = np.linalg.svd(W.value, full_matrices=False)[0][:, :k]
    res = fedrep(Xs, ys, rank=k, rounds=100, random_state=0)
    assert sl.subspace_angles(res.representation, U).max() <= 1e-2


def test_heads_are_exact_ridge_solutions(low_rank):
    Xs, ys, _, k = low_rank
    res = fedrep(Xs, ys, rank=k, lam=0.1, rounds=5, random_state=1)
    B = res.representation
    for X, y, h in zip(Xs, ys, res.heads, strict=True):
        ref = Ridge(alpha=0.1 * len(y), fit_intercept=False).fit(X @ B, y).coef_
        np.testing.assert_allclose(h, ref, atol=1e-10)
    np.testing.assert_allclose(res.coef, res.heads @ B.T)


def test_bad_inputs_are_named(low_rank):
    Xs, ys, _, _ = low_rank
    with pytest.raises(ValueError, match="rank"):
        fedrep(Xs, ys, rank=21)
    with pytest.raises(ValueError, match="rank"):
        fedrep(Xs, ys, rank=0)
    with pytest.raises(ValueError, match="lam"):
        fedrep(Xs, ys, rank=2, lam=-1.0)
    with pytest.raises(ValueError, match="lr"):
        fedrep(Xs, ys, rank=2, lr=0.0)
