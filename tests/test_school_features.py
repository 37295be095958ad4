"""benchmarks/school_features.py: its exact per-task ridge against independent solvers (fmtl's
certified Local, scikit-learn's Ridge), its oracle, and one tiny end-to-end run."""

import numpy as np
import pytest
import scipy.io
from conftest import load_script
from sklearn.linear_model import Ridge

from fmtl import LocalRegressor
from fmtl.datasets import MultiTaskDataset


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/school_features.py")


def school_like(seed=0, n_tasks=3, n=25):
    rng = np.random.default_rng(seed)
    X = [
        np.column_stack([rng.normal(size=(n, 2)), rng.uniform(8, 91, n), np.ones(n)])
        for _ in range(n_tasks)
    ]
    y = [x @ rng.normal(size=4) + 20 + rng.normal(size=n) for x in X]
    return MultiTaskDataset(X, y)


def test_exact_ridge_is_local_regressors_certified_optimum(bench):
    # the same objective, (1/2n)||y - Xw||^2 + (lambda/2)||w||^2 per task: the closed form
    # and fmtl's SDCA certified to a relative gap of 1e-10 agree to ~1e-5 (sqrt of the gap)
    ds = school_like()
    alpha = 0.3
    exact = bench.ridge_per_task(ds, alpha)
    est = LocalRegressor(alpha=alpha, fit_intercept=False, tol=1e-10, max_rounds=5000)
    est.fit(*ds.stack())
    for t, w in enumerate(exact):
        np.testing.assert_allclose(est.coef_[t], w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_free_intercept_is_scikit_learns_ridge_with_an_intercept(bench):
    ds = school_like(seed=1)
    free = bench.constant_columns(ds)
    assert free.tolist() == [False, False, False, True]
    alpha = 0.05
    for X, y, w in zip(ds.X, ds.y, bench.ridge_per_task(ds, alpha, free), strict=True):
        ref = Ridge(alpha=alpha * X.shape[0], fit_intercept=True).fit(X[:, :3], y)
        np.testing.assert_allclose(w[:3], ref.coef_, rtol=1e-9)
        assert w[3] == pytest.approx(ref.intercept_, rel=1e-9)


def test_scores_by_hand(bench):
    test = MultiTaskDataset([np.eye(2), np.ones((1, 2))], [np.array([1.0, 2.0]), np.array([3.0])])
    rmse, ev = bench.scores([np.zeros(2), np.ones(2)], test)
    # task 0: residuals 1, 2 -> sqrt(2.5); task 1: residual 1 -> 1
    assert rmse == pytest.approx((np.sqrt(2.5) + 1.0) / 2)
    assert ev == pytest.approx(1.0 - 6.0 / 2.0)  # SSE 6, SST of (1, 2, 3) = 2


def test_oracle_takes_the_smallest_rmse_ties_to_the_larger_lambda(bench):
    rows = [
        {"fraction": 0.5, "seed": 0, "variant": "raw", "alpha": a, "rmse": e}
        for a, e in [(0.01, 2.0), (0.1, 1.0), (1.0, 1.0), (10.0, 3.0)]
    ]
    (best,) = bench.oracle(rows)
    assert best["alpha"] == 1.0


def test_quick_run_end_to_end(bench, tmp_path, capsys):
    ds = school_like(n_tasks=4, n=40)
    cell = np.empty((1, ds.n_tasks), dtype=object)
    ycell = np.empty((1, ds.n_tasks), dtype=object)
    for t in range(ds.n_tasks):
        cell[0, t], ycell[0, t] = ds.X[t], ds.y[t][:, None]
    path = tmp_path / "toy.mat"
    scipy.io.savemat(str(path), {"X": cell, "Y": ycell})
    out = tmp_path / "o"
    assert bench.main(["--quick", "--dataset", str(path), "--out", str(out)]) == 0
    text = (out / "school_features_quick_summary.md").read_text()
    for name in bench.VARIANTS:
        assert f"| {name} |" in text
    assert (out / "school_features_quick.png").stat().st_size > 0
    rows = (out / "school_features_quick.csv").read_text().splitlines()
    # 2 fractions x 2 splits x 4 variants x 4 lambdas, and a header
    assert len(rows) == 1 + 2 * 2 * 4 * 4
    assert f"--dataset {path}" in capsys.readouterr().out
