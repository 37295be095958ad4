"""Linear pFedHN: one local step makes the server update exactly gradient descent on the
hypernetwork objective (checked by finite differences); on rank-k data it fits, and an
unseen client fitted by its embedding alone is as good as the true model."""

import numpy as np
import pytest

from fmtl.federated.perfedavg import _value
from fmtl.federated.pfedhn import fit_new_embedding, pfedhn
from fmtl.losses import get_loss

LAM = 1e-4


@pytest.fixture(scope="module")
def low_rank():
    rng = np.random.default_rng(0)
    d, k, m, n = 10, 2, 20, 40
    B = np.linalg.qr(rng.normal(size=(d, k)))[0]
    H = rng.normal(size=(m + 1, k))
    Xs = [rng.normal(size=(n, d)) / np.sqrt(2) for _ in range(m + 1)]
    ys = [X @ B @ h + 0.01 * rng.normal(size=n) for X, h in zip(Xs, H, strict=True)]
    return Xs, ys, B, H, k


@pytest.mark.parametrize("name", ["squared", "logistic"])
def test_one_round_is_gradient_descent_on_the_hypernetwork_objective(low_rank, name):
    Xs, ys, _, _, k = low_rank
    Xs, ys = Xs[:5], [np.sign(y) if name == "logistic" else y for y in ys[:5]]
    loss = get_loss(name)
    lr, eta = 0.3, 0.7
    rng = np.random.default_rng(7)  # pfedhn's initialisation, replayed
    Phi = rng.normal(scale=0.1, size=(10, k))
    V = rng.normal(scale=0.1, size=(5, k))
    n = np.array([len(y) for y in ys], float)
    p = n / n.sum()

    def J(Phi, V):
        return sum(
            pt * _value(X, y, Phi @ v, loss, LAM) for pt, X, y, v in zip(p, Xs, ys, V, strict=True)
        )

    eps = 1e-6
    gPhi = np.zeros_like(Phi)
    for idx in np.ndindex(Phi.shape):
        E = np.zeros_like(Phi)
        E[idx] = eps
        gPhi[idx] = (J(Phi + E, V) - J(Phi - E, V)) / (2 * eps)
    gV = np.zeros_like(V)
    for idx in np.ndindex(V.shape):
        E = np.zeros_like(V)
        E[idx] = eps
        gV[idx] = (J(Phi, V + E) - J(Phi, V - E)) / (2 * eps) / p[idx[0]]
    res = pfedhn(Xs, ys, LAM, name, embedding_dim=k, rounds=1, lr=lr, eta=eta, random_state=7)
    np.testing.assert_allclose(res.hypernetwork, Phi - lr * eta * gPhi, atol=1e-8)
    np.testing.assert_allclose(res.embeddings, V - lr * eta * gV, atol=1e-8)


def test_fits_low_rank_tasks_and_a_new_client_by_its_embedding(low_rank):
    Xs, ys, B, H, k = low_rank
    m = len(Xs) - 1
    res = pfedhn(Xs[:m], ys[:m], LAM, embedding_dim=k, rounds=2000, random_state=0)
    h = res.history["primal"]
    assert h[-1] < 1e-3 * h[0]
    v = fit_new_embedding(Xs[m], ys[m], res.hypernetwork, LAM)
    mse = np.mean((Xs[m] @ (res.hypernetwork @ v) - ys[m]) ** 2)
    oracle = np.mean((Xs[m] @ (B @ H[m]) - ys[m]) ** 2)
    assert mse <= 1.1 * oracle  # as good as the true model (noise 1e-2)


def test_bad_inputs_are_named(low_rank):
    Xs, ys, *_ = low_rank
    with pytest.raises(ValueError, match="embedding_dim"):
        pfedhn(Xs, ys, LAM, embedding_dim=0)
    with pytest.raises(ValueError, match="loss"):
        pfedhn(Xs, ys, LAM, loss="hinge")
    with pytest.raises(ValueError, match="eta"):
        pfedhn(Xs, ys, LAM, eta=0.0)
    with pytest.raises(ValueError, match="Phi"):
        fit_new_embedding(Xs[0], ys[0], np.zeros((3, 2)), LAM)
