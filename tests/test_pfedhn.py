"""Linear pFedHN: one local step makes the server update exactly gradient descent on the
hypernetwork objective (checked by finite differences); on rank-k data it fits, and an
unseen client fitted by its embedding alone is as good as the true model."""

import numpy as np
import pytest

from fmtl.federated.perfedavg import _value
from fmtl.federated.pfedhn import fit_new_embedding, hypernetwork_features, pfedhn
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


# --------------------------------------------------------------------------- kernel (rff)


def _fd_grad(f, x, eps=1e-5):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        E = np.zeros_like(x)
        E[idx] = eps
        g[idx] = (f(x + E) - f(x - E)) / (2 * eps)
    return g


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("name", ["squared", "logistic"])
def test_rff_round_is_gradient_descent_on_the_kernel_hypernetwork_objective(low_rank, name):
    # w_t = Phi psi(v_t): with one local step of size lr the server step is
    # Phi -= lr eta grad_Phi sum_t p_t F_t(Phi psi(v_t)) and v_t -= lr eta grad_v F_t(...)
    Xs, ys, *_ = low_rank
    Xs, ys = Xs[:5], [np.sign(y) if name == "logistic" else y for y in ys[:5]]
    loss = get_loss(name)
    k, D, gamma, lr, eta = 2, 15, 2.0, 0.3, 0.7
    rng = np.random.default_rng(7)  # pfedhn's initialisation, replayed
    Phi = rng.normal(scale=0.1, size=(10, D))
    V = rng.normal(scale=0.1, size=(5, k))
    omega = rng.normal(scale=np.sqrt(2 * gamma), size=(D, k))
    b = rng.uniform(0, 2 * np.pi, size=D)
    n = np.array([len(y) for y in ys], float)
    p = n / n.sum()
    res = pfedhn(
        Xs, ys, LAM, name, embedding_dim=k, hypernetwork="rff", n_components=D,
        kernel_gamma=gamma, rounds=1, lr=lr, eta=eta, random_state=7,
    )  # fmt: skip
    np.testing.assert_array_equal(res.feature_map[0], omega)
    np.testing.assert_array_equal(res.feature_map[1], b)

    def F(t, Phi, v):
        return _value(Xs[t], ys[t], Phi @ hypernetwork_features(v, omega, b), loss, LAM)

    def J(P):
        return sum(pt * F(t, P, v) for t, (pt, v) in enumerate(zip(p, V, strict=True)))

    gPhi = _fd_grad(J, Phi)
    step = (res.hypernetwork - Phi) / (-lr * eta)
    assert _rel(step, gPhi) < 1e-6
    for t in range(5):
        gv = _fd_grad(lambda v, t=t: F(t, Phi, v), V[t])
        assert _rel((res.embeddings[t] - V[t]) / (-lr * eta), gv) < 1e-6
    np.testing.assert_allclose(
        res.coef, hypernetwork_features(res.embeddings, omega, b) @ res.hypernetwork.T
    )


def test_hypernetwork_features_approximates_the_rbf_kernel():
    rng = np.random.default_rng(0)
    gamma, D = 0.7, 40000
    omega = rng.normal(scale=np.sqrt(2 * gamma), size=(D, 3))
    b = rng.uniform(0, 2 * np.pi, size=D)
    V = rng.normal(size=(4, 3))
    P = hypernetwork_features(V, omega, b)
    K = np.exp(-gamma * ((V[:, None] - V[None]) ** 2).sum(-1))
    np.testing.assert_allclose(P @ P.T, K, atol=0.02)
    np.testing.assert_array_equal(hypernetwork_features(V), V)  # linear: identity


def _split(Xs, ys, n_train):
    return (
        [X[:n_train] for X in Xs], [y[:n_train] for y in ys],
        [X[n_train:] for X in Xs], [y[n_train:] for y in ys],
    )  # fmt: skip


def _test_mse(C, Xt, yt):
    return float(np.mean([np.mean((X @ c - y) ** 2) for X, y, c in zip(Xt, yt, C, strict=True)]))


def test_rff_personalises_clustered_tasks():
    from fmtl.datasets import make_multitask_regression
    from fmtl.federated.fedavg import fedavg

    ds = make_multitask_regression(
        n_tasks=12, n_samples=120, n_features=8, structure="clustered", n_clusters=3,
        noise=0.1, random_state=0,
    )  # fmt: skip
    Xs, ys, Xt, yt = _split(ds.X, ds.y, 60)
    g = fedavg(Xs, ys, 1e-3, "squared", rounds=200, lr=0.5, random_state=0)
    res = pfedhn(
        Xs, ys, 1e-3, embedding_dim=2, hypernetwork="rff", n_components=100, rounds=500,
        lr=1.0, random_state=0,
    )  # fmt: skip
    global_mse = _test_mse(np.tile(g.global_coef, (12, 1)), Xt, yt)
    rff_mse = _test_mse(res.coef, Xt, yt)
    oracle = _test_mse(ds.coef, Xt, yt)
    # measured (test MSE): Global FedAvg 0.550, rff pFedHN 0.0143, true models 0.0103
    assert rff_mse < 0.05 * global_mse
    assert rff_mse < 2.0 * oracle


@pytest.fixture(scope="module")
def circle():
    # w_t = (cos s_t, sin s_t, cos 2 s_t): a curve, not a line, in the latent s_t
    rng = np.random.default_rng(0)
    m, n, d = 31, 240, 3
    s = rng.uniform(0, np.pi, m)
    W = np.stack([np.cos(s), np.sin(s), np.cos(2 * s)], 1)
    Xs = [rng.normal(size=(n, d)) for _ in range(m)]
    ys = [X @ w + 0.1 * rng.normal(size=n) for X, w in zip(Xs, W, strict=True)]
    return Xs, ys, W


def test_rff_fits_a_nonlinear_one_dimensional_family_the_linear_cannot(circle):
    Xs, ys, W = circle
    Xs, ys, Xt, yt = _split(Xs[:30], ys[:30], 40)
    kw = dict(embedding_dim=1, rounds=2000, lr=0.2, random_state=0, eval_every=100)
    lin = pfedhn(Xs, ys, 1e-4, **kw)
    rff = pfedhn(Xs, ys, 1e-4, hypernetwork="rff", n_components=100, **kw)
    lin_mse, rff_mse = _test_mse(lin.coef, Xt, yt), _test_mse(rff.coef, Xt, yt)
    oracle = _test_mse(W[:30], Xt, yt)
    # measured: linear (k=1) 0.837, rff (k=1) 0.0154, true models 0.0099
    assert rff_mse < 0.05 * lin_mse
    assert rff_mse < 2.0 * oracle


def test_rff_new_client_by_its_embedding(circle):
    Xs, ys, W = circle
    res = pfedhn(
        [X[:40] for X in Xs[:30]], [y[:40] for y in ys[:30]], 1e-4, embedding_dim=1,
        hypernetwork="rff", n_components=100, rounds=2000, lr=0.2, random_state=0,
        eval_every=100,
    )  # fmt: skip
    X, y, Xt, yt = Xs[30][:40], ys[30][:40], Xs[30][40:], ys[30][40:]
    v = fit_new_embedding(
        X, y, res.hypernetwork, 1e-4, feature_map=res.feature_map, init=res.embeddings
    )
    w = res.hypernetwork @ hypernetwork_features(v, *res.feature_map)
    mse, oracle = np.mean((Xt @ w - yt) ** 2), np.mean((Xt @ W[30] - yt) ** 2)
    # measured: new client 0.0103, its true model 0.0091
    assert mse < 1.5 * oracle
    with pytest.raises(ValueError, match="feature_map"):
        fit_new_embedding(X, y, res.hypernetwork[:, :5], 1e-4, feature_map=res.feature_map)
    with pytest.raises(ValueError, match="init"):
        fit_new_embedding(X, y, res.hypernetwork, 1e-4, feature_map=res.feature_map, init=[0, 0])


# --------------------------------------------------------------------------- systems


@pytest.mark.parametrize("hypernetwork", ["linear", "rff"])
def test_drops_are_recorded_and_reproducible(low_rank, hypernetwork):
    from fmtl.federated import SystemsModel

    Xs, ys, *_ = low_rank
    kw = dict(
        embedding_dim=2, hypernetwork=hypernetwork, n_components=20, rounds=30,
        systems=SystemsModel(drop_prob=0.3), random_state=3,
    )  # fmt: skip
    a, b = pfedhn(Xs, ys, LAM, **kw), pfedhn(Xs, ys, LAM, **kw)
    dropped = np.array(a.history["dropped"])
    assert dropped.shape == (30, len(Xs)) and 0.15 < dropped.mean() < 0.45
    est = np.array(a.history["est_time"])
    assert np.all(np.diff(est) > 0)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    for col in ("primal", "est_time", "dropped", "local_steps"):
        np.testing.assert_array_equal(np.array(a.history[col]), np.array(b.history[col]))
    assert a.never_reported.size == 0
    c = pfedhn(Xs, ys, LAM, **{**kw, "random_state": 4})
    assert not np.array_equal(np.array(c.history["dropped"]), dropped)


@pytest.mark.parametrize("hypernetwork", ["linear", "rff"])
def test_only_reporting_nodes_enter_the_server_step(low_rank, hypernetwork):
    # node 0 is dead: Phi moves by the renormalised p_t of the others, v_0 stays put
    from fmtl.federated import SystemsModel

    Xs, ys, *_ = low_rank
    Xs, ys = Xs[:5], ys[:5]
    rff = hypernetwork == "rff"
    D, k, lr, eta = 12, 2, 0.3, 0.7
    rng = np.random.default_rng(5)
    Phi = rng.normal(scale=0.1, size=(10, D if rff else k))
    V = rng.normal(scale=0.1, size=(5, k))
    fmap = (rng.normal(scale=np.sqrt(2.0), size=(D, k)), rng.uniform(0, 2 * np.pi, D))
    fmap = fmap if rff else (None, None)
    with pytest.warns(RuntimeWarning, match=r"\[0\]"):
        res = pfedhn(
            Xs, ys, LAM, embedding_dim=k, hypernetwork=hypernetwork, n_components=D,
            rounds=1, lr=lr, eta=eta, systems=SystemsModel(dead_nodes=(0,)), random_state=5,
        )  # fmt: skip
    assert res.never_reported.tolist() == [0]
    assert res.history["dropped"][-1].tolist() == [True, False, False, False, False]
    np.testing.assert_array_equal(res.embeddings[0], V[0])
    Psi = hypernetwork_features(V, *fmap)
    n = np.array([len(y) for y in ys[1:]], float)
    q = n / n.sum()
    dW = [-lr * (X.T @ (X @ (Phi @ psi) - y) / len(y) + LAM * Phi @ psi)
          for X, y, psi in zip(Xs[1:], ys[1:], Psi[1:], strict=True)]  # fmt: skip
    expect = Phi + eta * sum(
        qt * np.outer(dw, psi) for qt, dw, psi in zip(q, dW, Psi[1:], strict=True)
    )
    np.testing.assert_allclose(res.hypernetwork, expect, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(res.embeddings[1:], V[1:])


def test_eval_every_and_callback(low_rank):
    Xs, ys, *_ = low_rank
    seen = []
    res = pfedhn(Xs, ys, LAM, rounds=10, eval_every=4, callback=seen.append, random_state=0)
    assert res.history["round"].tolist() == [4, 8, 10]
    assert [r["round"] for r in seen] == [4, 8, 10]
    full = pfedhn(Xs, ys, LAM, rounds=10, random_state=0)
    np.testing.assert_array_equal(res.coef, full.coef)
    assert res.history["primal"][-1] == full.history["primal"][-1]


def test_rff_bad_inputs_are_named(low_rank):
    Xs, ys, *_ = low_rank
    with pytest.raises(ValueError, match="hypernetwork"):
        pfedhn(Xs, ys, LAM, hypernetwork="mlp")
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_components"):
            pfedhn(Xs, ys, LAM, hypernetwork="rff", n_components=bad)
    for bad in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="kernel_gamma"):
            pfedhn(Xs, ys, LAM, hypernetwork="rff", kernel_gamma=bad)


# --------------------------------------------------------------------------- estimators


def _with_constant(Xs):
    """The rows with liblinear's intercept feature 1 appended (what fit_intercept fits)."""
    return [np.hstack([X, np.ones((len(X), 1))]) for X in Xs]


@pytest.mark.parametrize("hypernetwork", ["linear", "rff"])
def test_estimator_new_task_and_save_load(circle, hypernetwork, tmp_path):
    from fmtl import PFedHNRegressor

    Xs, ys, W = circle
    Xs_tr, ys_tr = [X[:40] for X in Xs[:30]], [y[:40] for y in ys[:30]]
    X, y, tasks = np.vstack(Xs_tr), np.concatenate(ys_tr), np.repeat(np.arange(30), 40)
    kw = dict(embedding_dim=1, hypernetwork=hypernetwork, n_components=50, rounds=300, lr=0.2)
    est = PFedHNRegressor(1e-4, random_state=0, **kw).fit(X, y, tasks)
    # the default intercept: pfedhn on the rows with the constant feature 1 appended
    ref = pfedhn(_with_constant(Xs_tr), ys_tr, 1e-4, random_state=0, **kw)
    np.testing.assert_array_equal(est.coef_, ref.coef[:, :-1])
    np.testing.assert_array_equal(est.intercept_, ref.coef[:, -1])
    np.testing.assert_array_equal(est.hypernetwork_, ref.hypernetwork)
    np.testing.assert_array_equal(est.embeddings_, ref.embeddings)
    assert hasattr(est, "feature_map_omega_") == (hypernetwork == "rff")
    # the new client's model: its embedding fitted with the hypernetwork fixed
    Xn, yn = Xs[30][:40], ys[30][:40]
    (Xn1,) = _with_constant([Xn])
    coef, intercept = est.fit_new_task(Xn, yn, rounds=200)
    fmap = ref.feature_map
    v = fit_new_embedding(
        Xn1, yn, ref.hypernetwork, 1e-4, feature_map=fmap, init=ref.embeddings, rounds=200,
        lr=0.2,
    )  # fmt: skip
    w = ref.hypernetwork @ hypernetwork_features(v, *(fmap or (None, None)))
    np.testing.assert_array_equal(coef, w[:-1])
    assert intercept == w[-1]
    # monotone descent from the best fitted embedding: no worse than any training model
    sq = get_loss("squared")
    assert _value(Xn1, yn, w, sq, 1e-4) <= min(_value(Xn1, yn, u, sq, 1e-4) for u in ref.coef)
    est.save(tmp_path / "m.npz")
    same = PFedHNRegressor.load(tmp_path / "m.npz")
    for name in ("coef_", "hypernetwork_", "embeddings_", "feature_map_omega_",
                 "feature_map_offset_"):  # fmt: skip
        assert hasattr(same, name) == hasattr(est, name)
        if hasattr(est, name):
            np.testing.assert_array_equal(getattr(same, name), getattr(est, name))
    again = same.fit_new_task(Xn, yn, rounds=200)
    np.testing.assert_array_equal(again[0], coef)
    assert again[1] == intercept
    with pytest.raises(ValueError, match="X"):
        est.fit_new_task(Xn[:, :2], yn)
    est.set_params(fit_intercept=False)
    with pytest.raises(ValueError, match="fit_intercept was changed after fit"):
        est.fit_new_task(Xn, yn)
    est.set_params(fit_intercept=True)
    if hypernetwork == "rff":  # a refit with the linear hypernetwork drops the feature map
        est.set_params(hypernetwork="linear", rounds=5).fit(X, y, tasks)
        assert not hasattr(est, "feature_map_omega_")
        est.save(tmp_path / "lin.npz")
        assert not hasattr(PFedHNRegressor.load(tmp_path / "lin.npz"), "feature_map_omega_")


def test_classifier_new_task_multiclass_and_round_trip(tmp_path):
    from fmtl import PFedHNClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    tasks = np.repeat(np.arange(4), 60)
    y = np.argmax(X[:, :3] + 0.1 * tasks[:, None], axis=1)  # three classes
    est = PFedHNClassifier(
        0.01, hypernetwork="rff", n_components=20, rounds=100, random_state=0
    ).fit(X, y, tasks)
    # one more hypernetwork row: the intercept's constant feature
    assert est.hypernetwork_.shape == (3, 5, 20) and est.feature_map_omega_.shape == (3, 20, 2)
    coef, intercept = est.fit_new_task(X[:60], y[:60])
    assert coef.shape == (3, 4) and intercept.shape == (3,)
    assert np.mean(np.argmax(X[:60] @ coef.T + intercept, axis=1) == y[:60]) > 0.8
    with pytest.raises(ValueError, match="labels"):
        est.fit_new_task(X[:3], [0, 1, 7])
    est.save(tmp_path / "c.npz")
    same = PFedHNClassifier.load(tmp_path / "c.npz")
    for a, b in zip(same.fit_new_task(X[:60], y[:60]), (coef, intercept), strict=True):
        np.testing.assert_array_equal(a, b)
