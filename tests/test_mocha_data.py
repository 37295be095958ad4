"""The real MOCHA-layout data sets by name (issue 17, item 1): ``small``, the full Land Mine
and School load through :func:`fmtl.datasets.load_mocha` from the data directories (the
repository's ``../shared/data/mocha`` or ``FMTL_DATA``); each test skips, saying which file
it looked for, where the file is absent. The data are never committed."""

from __future__ import annotations

import numpy as np
import pytest

from fmtl.datasets import find_mocha, load_mocha


def _load(name: str):
    path = find_mocha(name)
    if path is None:
        pytest.skip(f"{name}.mat not found in the data directories (set FMTL_DATA)")
    return load_mocha(name)


def test_landmine_is_the_papers_full_land_mine():
    d = _load("landmine")
    y = np.concatenate(d.y)
    assert d.n_tasks == 29 and y.size == 14_820 and d.n_features == 9
    assert set(np.unique(y)) == {-1.0, 1.0}
    assert 0.060 < np.mean(y > 0) < 0.062  # 904 mines: 6.1 % positive
    assert all(len(t) > 0 for t in d.y)


def test_small_is_a_subset_of_land_mine_with_the_same_tasks():
    small, full = _load("small"), _load("landmine")
    assert small.n_tasks == full.n_tasks and small.n_features == full.n_features
    assert sum(len(t) for t in small.y) == 1_464
    for Xs, Xf in zip(small.X, full.X, strict=True):  # every small row is a full row
        rows = {r.tobytes() for r in np.asarray(Xf)}
        assert all(r.tobytes() in rows for r in np.asarray(Xs))


def test_school_is_the_ilea_regression_benchmark():
    d = _load("school")
    y = np.concatenate(d.y)
    X = np.vstack([np.asarray(x) for x in d.X])
    assert d.n_tasks == 139 and y.size == 15_362 and d.n_features == 28
    assert np.all(X[:, -1] == 1.0)  # the constant column (an intercept)
    assert y.min() >= 1 and y.max() <= 70 and np.unique(y).size > 2  # exam scores


@pytest.mark.parametrize("name", ["landmine", "school"])
def test_the_error_table_resolves_the_names(name):
    from fmtl.experiments.errors import resolve_only

    path = find_mocha(name)
    if path is None:
        pytest.skip(f"{name}.mat not found in the data directories (set FMTL_DATA)")
    assert resolve_only(name) == [name]  # what `--dataset landmine` runs on
    assert resolve_only(str(path)) == [("mat", path)]  # a path works too


@pytest.mark.parametrize("name, task", [("landmine", "classification"), ("school", "regression")])
def test_the_error_table_runs_school_as_regression(name, task):
    # School's exam scores went through the table as "classification" (a .mat set was)
    from fmtl.experiments.errors import build_datasets

    if find_mocha(name) is None:
        pytest.skip(f"{name}.mat not found in the data directories (set FMTL_DATA)")
    entries, _ = build_datasets(quick=True, only=name)
    for key, _, got, ds, _ in entries:
        assert key == name and got == task and ds.n_tasks in (29, 139)
    # School also at the literature's small training fractions, each its own table row
    expected = [0.25, 0.7, 0.9] if name == "school" else [0.25]
    assert [round(e[4], 12) for e in entries] == expected
    assert len({e[1] for e in entries}) == len(entries)
    (entry,), _ = build_datasets(quick=True, only=str(find_mocha(name)))
    assert entry[0] == "custom" and entry[2] == task


def test_the_error_table_standardises_school_and_says_so():
    from fmtl.experiments.errors import STANDARDIZED_KEYS, build_datasets

    if find_mocha("school") is None:
        pytest.skip("school.mat not found in the data directories (set FMTL_DATA)")
    assert STANDARDIZED_KEYS == ("school",)
    entries, _ = build_datasets(quick=True, only="school")
    assert all("standardised" in e[1] for e in entries)
    raw, _ = build_datasets(quick=True, only="school", raw_features=True)
    assert all(", raw)" in e[1] and "standardised" not in e[1] for e in raw)
    # the labels only: the data are the same objects' values either way
    assert np.array_equal(entries[0][3].X[0], raw[0][3].X[0])
