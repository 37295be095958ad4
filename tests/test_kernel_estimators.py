"""KernelMochaClassifier / KernelMochaRegressor: equal to MochaClassifier for the linear
kernel, non-linear where they should be, one-vs-rest, GridSearchCV with tasks routed,
pickle-free save/load, named errors and seeded determinism."""

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

from fmtl import KernelMochaClassifier, KernelMochaRegressor, MochaClassifier
from fmtl.datasets import make_multitask_classification
from fmtl.federated.kernel_mocha import kernel_mocha
from fmtl.persistence import load_model, save_model


def _stack(parts):
    X = np.vstack([X for X, _ in parts])
    y = np.concatenate([y for _, y in parts])
    tasks = np.repeat([f"client{i}" for i in range(len(parts))], [len(y) for _, y in parts])
    return X, y, tasks


def _xor_task(n, rng, angle):
    # as tests/test_kernel_mocha.py: XOR in coordinates rotated by a per-task angle
    X = rng.uniform(-1, 1, size=(n, 2))
    c, s = np.cos(angle), np.sin(angle)
    Z = X @ np.array([[c, -s], [s, c]])
    return X, np.where(Z[:, 0] * Z[:, 1] > 0, 1, -1)


def _reg_task(n, rng, shift):
    X = rng.uniform(-1.5, 1.5, size=(n, 3))
    return X, np.sin(3 * X[:, 0] + shift) + X[:, 1] ** 2 + 0.1 * rng.normal(size=n)


@pytest.fixture(scope="module")
def xor():
    rng = np.random.default_rng(1)
    train = _stack([_xor_task(60, rng, 0.2 * t) for t in range(4)])
    test = _stack([_xor_task(200, rng, 0.2 * t) for t in range(4)])
    return train, test


@pytest.fixture(scope="module")
def clf_data():
    return make_multitask_classification(
        n_tasks=4, n_samples=30, n_features=5, random_state=0
    ).stack()


FAST = dict(outer_iters=3, inner_iters=30, random_state=3)


def test_linear_kernel_equals_mocha_classifier(clf_data):
    X, y, tasks = clf_data
    # kernel MOCHA runs the paper's algorithm: the linear estimator with the same settings
    lin = MochaClassifier(
        alpha=0.01,
        sigma_prime="gershgorin",
        local_work="fixed",
        sigma_solver="alternation",
        **FAST,
    )
    lin.fit(X, y, tasks)
    ker = KernelMochaClassifier(alpha=0.01, kernel="linear", **FAST).fit(X, y, tasks)
    # measured: decision functions 8e-15 apart, models 6e-15
    np.testing.assert_allclose(
        ker.decision_function(X, tasks), lin.decision_function(X, tasks), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(ker.linear_coef(), lin.coef_, rtol=0, atol=1e-10)
    # the kernel's intercept (k + s^2) is the linear model's constant feature
    assert np.abs(lin.intercept_).max() > 0.01
    np.testing.assert_allclose(ker.intercept_, lin.intercept_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ker.sigma_, lin.sigma_, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(ker.predict(X, tasks), lin.predict(X, tasks))
    assert len(ker.history_) == len(lin.history_)
    assert not hasattr(ker, "coef_")
    assert list(ker.tasks_) == list(lin.tasks_)
    with pytest.raises(ValueError, match="linear_coef needs kernel='linear'"):
        KernelMochaClassifier(alpha=0.01, **FAST).fit(X, y, tasks).linear_coef()


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_estimator_is_the_kernel_mocha_fit(clf_data, fit_intercept):
    from sklearn.metrics.pairwise import rbf_kernel

    X, y, tasks = clf_data
    est = KernelMochaClassifier(
        alpha=0.01,
        kernel_params={"gamma": 0.3},
        fit_intercept=fit_intercept,
        intercept_scaling=1.5,
        **FAST,
    )
    est.fit(X, y, tasks)
    order = [np.flatnonzero(tasks == t) for t in est.tasks_]
    # with an intercept: the kernel of the rows with the constant feature 1.5 appended
    kernel = (lambda A, B: rbf_kernel(A, B, gamma=0.3) + 1.5**2) if fit_intercept else "rbf"
    res = kernel_mocha(
        [X[r] for r in order],
        [np.where(y[r] == est.classes_[1], 1.0, -1.0) for r in order],
        0.01,
        "hinge",
        kernel=kernel,
        kernel_params=None if fit_intercept else {"gamma": 0.3},
        tol=1e-6,
        outer_iters=3,
        inner_iters=30,
        random_state=3,
    )
    np.testing.assert_array_equal(est.dual_coef_, res.dual_coef)
    np.testing.assert_array_equal(est.X_fit_, np.vstack([X[r] for r in order]))
    np.testing.assert_array_equal(est.task_offsets_, [0, 30, 60, 90, 120])
    assert est.kernel_ == "rbf" and est.kernel_params_ == {"gamma": 0.3}
    idx = np.repeat(np.arange(4), 30)
    got = est.decision_function(est.X_fit_, est.tasks_[idx])
    want = res.decision_function(res.X_fit, idx)
    if fit_intercept:  # the offset is summed separately: equal up to rounding
        assert np.abs(est.intercept_).max() > 0.01
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    else:
        np.testing.assert_array_equal(est.intercept_, np.zeros(4))
        np.testing.assert_array_equal(got, want)


def test_rbf_solves_per_task_xor_linear_cannot(xor):
    # measured held-out accuracy per task: rbf 0.945-0.965, linear 0.46-0.495
    (X, y, tasks), (Xt, yt, tt) = xor
    acc = {}
    for kernel, params in (("rbf", {"gamma": 2.0}), ("linear", None)):
        est = KernelMochaClassifier(
            alpha=1e-3, kernel=kernel, kernel_params=params, outer_iters=3, random_state=0
        ).fit(X, y, tasks)
        pred = est.predict(Xt, tt)
        acc[kernel] = [np.mean(pred[tt == t] == yt[tt == t]) for t in est.tasks_]
        assert est.score(Xt, yt, tt) == pytest.approx(np.mean(pred == yt))
    assert min(acc["rbf"]) >= 0.9
    assert max(acc["linear"]) <= 0.7


def test_rbf_regression_beats_linear_on_a_nonlinear_target():
    # measured held-out RMSE: rbf 0.351, linear 1.202 (std of the targets 0.951)
    rng = np.random.default_rng(2)
    X, y, tasks = _stack([_reg_task(50, rng, 0.3 * t) for t in range(4)])
    Xt, yt, tt = _stack([_reg_task(200, rng, 0.3 * t) for t in range(4)])
    rmse = {}
    for kernel, params in (("rbf", {"gamma": 1.0}), ("linear", None)):
        est = KernelMochaRegressor(
            alpha=1e-3, kernel=kernel, kernel_params=params, outer_iters=3, random_state=0
        ).fit(X, y, tasks)
        rmse[kernel] = float(np.sqrt(np.mean((est.predict(Xt, tt) - yt) ** 2)))
        if kernel == "rbf":  # certified: every W-step reached tol (linear runs out of rounds)
            assert est.history_["rel_gap"][-1] <= 1e-6
    assert rmse["rbf"] < 0.45
    assert rmse["rbf"] < 0.5 * rmse["linear"]


def test_multiclass_one_vs_rest():
    # three classes by angle sector (0-120, 120-240, 240-360 degrees), 3 tasks
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, size=(180, 2))
    names = np.array(["a", "b", "c"])
    y = names[(np.floor((np.arctan2(X[:, 1], X[:, 0]) + np.pi) / (2 * np.pi / 3)) % 3).astype(int)]
    tasks = np.tile([10, 20, 30], 60)
    est = KernelMochaClassifier(alpha=1e-3, kernel_params={"gamma": 2.0}, **FAST)
    est.fit(X, y, tasks)
    assert list(est.classes_) == ["a", "b", "c"]
    assert est.expansion_coef_.shape == (3, 180, 3)
    assert est.dual_coef_.shape == (3, 180)
    assert est.sigma_.shape == est.omega_.shape == (3, 3, 3)
    assert sorted(set(est.history_["class_index"].tolist())) == [0, 1, 2]
    scores = est.decision_function(X, tasks)
    assert scores.shape == (180, 3)
    np.testing.assert_array_equal(est.predict(X, tasks), est.classes_[np.argmax(scores, 1)])
    # each column is that class's own binary kernel MOCHA fit
    binary = KernelMochaClassifier(alpha=1e-3, kernel_params={"gamma": 2.0}, **FAST)
    binary.fit(X, y == "b", tasks)
    np.testing.assert_array_equal(binary.decision_function(X, tasks), scores[:, 1])
    assert est.score(X, y, tasks) > 0.9  # measured 0.99


def test_gridsearch_with_routed_tasks_and_clone(xor):
    (X, y, tasks), _ = xor
    est = KernelMochaClassifier(outer_iters=2, inner_iters=30, random_state=0)
    c = clone(est.set_params(kernel_params={"gamma": 1.0}))
    assert c.get_params() == est.get_params()
    assert c.kernel_params is not est.kernel_params  # deep-copied, not shared
    with sklearn.config_context(enable_metadata_routing=True):
        est = est.set_fit_request(tasks=True).set_score_request(tasks=True)
        gs = GridSearchCV(
            est,
            {"alpha": [1e-3, 1.0], "kernel_params": [{"gamma": 0.01}, {"gamma": 2.0}]},
            cv=KFold(3, shuffle=True, random_state=0),
        )
        gs.fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    # XOR needs a narrow kernel and little regularisation
    assert gs.best_params_ == {"alpha": 1e-3, "kernel_params": {"gamma": 2.0}}
    assert set(gs.best_estimator_.tasks_) == set(np.unique(tasks))
    assert gs.best_estimator_.kernel_params_ == {"gamma": 2.0}


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regressor", "sparse"])
def test_save_load_is_bit_identical(kind, clf_data, tmp_path):
    X, y, tasks = clf_data
    tasks = np.where(tasks == 0, None, tasks).astype(object)  # odd labels survive too
    kw = dict(alpha=0.01, **FAST)
    if kind == "binary":
        est = KernelMochaClassifier(kernel_params={"gamma": 0.5}, loss="smoothed_hinge", **kw)
        est.fit(X, np.where(y > 0, "yes", "no"), tasks)
    elif kind == "multiclass":
        est = KernelMochaClassifier(kernel="laplacian", **kw)
        est.fit(X, np.where(X[:, 0] > 0.5, 2, np.where(y > 0, 1, 0)), tasks)
    elif kind == "regressor":
        est = KernelMochaRegressor(kernel="poly", kernel_params={"degree": 2, "coef0": 1}, **kw)
        est.fit(X, X[:, 0] ** 2 - X[:, 1], tasks)
    else:
        X = sp.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0))
        est = KernelMochaClassifier(relationship="mean", kappa=0.5, **kw).fit(X, y, tasks)
    est.save(tmp_path / "m.npz")
    got = type(est).load(tmp_path / "m.npz")
    assert type(got) is type(est) and got.get_params() == est.get_params()
    assert got.predict(X, tasks).tobytes() == est.predict(X, tasks).tobytes()
    if hasattr(est, "decision_function"):
        assert (
            got.decision_function(X, tasks).tobytes() == est.decision_function(X, tasks).tobytes()
        )
    for name in ("dual_coef_", "expansion_coef_", "sigma_", "omega_", "task_offsets_"):
        a, b = getattr(got, name), getattr(est, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert sp.issparse(got.X_fit_) == sp.issparse(est.X_fit_) == sp.issparse(X)
    if sp.issparse(X):
        pairs = [
            (getattr(got.X_fit_, p), getattr(est.X_fit_, p)) for p in ("data", "indices", "indptr")
        ]
    else:
        pairs = [(got.X_fit_, est.X_fit_)]
    for a, b in pairs:
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert got.kernel_ == est.kernel_ and got.kernel_params_ == est.kernel_params_
    assert list(got.tasks_) == list(est.tasks_)
    h1, h2 = est.history_, got.history_
    assert h1.columns == h2.columns and np.array_equal(h1["gap"], h2["gap"])
    # the loaded model saves again to a model with the same predictions
    save_model(got, tmp_path / "again.npz")
    again = load_model(tmp_path / "again.npz")
    assert again.predict(X, tasks).tobytes() == est.predict(X, tasks).tobytes()


def test_callable_kernel_fits_but_refuses_to_save(clf_data, tmp_path):
    X, y, tasks = clf_data

    def linear(A, B):
        return A @ B.T

    est = KernelMochaClassifier(alpha=0.01, kernel=linear, **FAST).fit(X, y, tasks)
    named = KernelMochaClassifier(alpha=0.01, kernel="linear", **FAST).fit(X, y, tasks)
    np.testing.assert_allclose(
        est.decision_function(X, tasks), named.decision_function(X, tasks), atol=1e-9
    )
    with pytest.raises(ValueError, match="kernel"):
        est.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    # kernel_params must be JSON-able: a dict with string keys
    est = clone(named).fit(X, y, tasks)
    est.kernel_params = {"gamma": print}
    with pytest.raises(TypeError, match="kernel_params"):
        est.save(tmp_path / "m.npz")


def test_bad_inputs_raise_value_error_naming_the_argument(clf_data):
    X, y, tasks = clf_data
    with pytest.raises(ValueError, match="kernel='sigmoidish' is unknown"):
        KernelMochaClassifier(kernel="sigmoidish").fit(X, y, tasks)
    with pytest.raises(ValueError, match="kernel_params"):
        KernelMochaClassifier(kernel_params={"gamma": -1.0}).fit(X, y, tasks)
    for alpha in (0.0, -1.0):
        with pytest.raises(ValueError, match="alpha"):
            KernelMochaRegressor(alpha=alpha).fit(X, y, tasks)
    with pytest.raises(ValueError, match="max_samples"):
        KernelMochaClassifier(max_samples=100).fit(X, y, tasks)  # 120 rows
    with pytest.raises(ValueError, match="max_samples"):
        KernelMochaClassifier(max_samples=0).fit(X, y, tasks)
    with pytest.raises(ValueError, match="relationship"):
        KernelMochaClassifier(relationship="graph").fit(X, y, tasks)
    est = KernelMochaClassifier(alpha=0.01, **FAST).fit(X, y, tasks)
    with pytest.raises(ValueError, match="tasks contains 7, a task not seen during fit"):
        est.predict(X[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="X"):
        est.predict(X[:, :3], tasks)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        KernelMochaRegressor().predict(X, tasks)


def test_same_seed_is_bit_identical_and_verbose_prints(xor, capsys):
    (X, y, tasks), (Xt, _, tt) = xor
    kw = dict(alpha=1e-3, kernel_params={"gamma": 2.0}, local_frac=0.5, **FAST)
    a = KernelMochaClassifier(**kw).fit(X, y, tasks)
    b = KernelMochaClassifier(n_jobs=1, **kw).fit(X, y, tasks)
    assert a.dual_coef_.tobytes() == b.dual_coef_.tobytes()
    assert a.sigma_.tobytes() == b.sigma_.tobytes()
    assert a.decision_function(Xt, tt).tobytes() == b.decision_function(Xt, tt).tobytes()
    c = KernelMochaClassifier(**{**kw, "random_state": 4}).fit(X, y, tasks)
    assert c.dual_coef_.tobytes() != a.dual_coef_.tobytes()
    capsys.readouterr()
    KernelMochaClassifier(verbose=10, **kw).fit(X, y, tasks)
    assert "round    10" in capsys.readouterr().out


def _with_duplicate_entries(X: np.ndarray) -> sp.csr_matrix:
    # every nonzero stored twice at its position (a quarter and three quarters of it): a
    # valid CSR matrix equal to X, but not in canonical format
    data, indices, indptr = [], [], [0]
    for row in X:
        (cols,) = np.nonzero(row)
        data += [*(0.25 * row[cols]), *(0.75 * row[cols])]
        indices += [*cols, *cols]
        indptr.append(len(indices))
    D = sp.csr_matrix((data, indices, indptr), shape=X.shape)
    assert not D.has_canonical_format and np.array_equal(D.toarray(), X)
    return D


@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "poly", "linear"])
def test_csr_with_duplicate_entries_gives_the_dense_predictions(clf_data, kernel):
    # issue 29, item 2: rbf's decision values on such a CSR were off by 0.8-3.3
    X, y, t = clf_data
    est = KernelMochaClassifier(alpha=0.1, kernel=kernel, **FAST).fit(X, y, t)
    dense = est.decision_function(X, t)
    np.testing.assert_allclose(
        est.decision_function(_with_duplicate_entries(X), t), dense, rtol=1e-10, atol=1e-10
    )
    # fitted on such a CSR, the model is the dense fit's (to rounding)
    again = KernelMochaClassifier(alpha=0.1, kernel=kernel, **FAST)
    again.fit(_with_duplicate_entries(X), y, t)
    np.testing.assert_allclose(again.decision_function(X, t), dense, rtol=1e-8, atol=1e-8)
