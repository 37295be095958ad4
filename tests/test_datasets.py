"""Tests for fmtl.datasets: container, MOCHA loaders, synthetic generators and splitting."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import fmtl.datasets as fd
from fmtl.datasets import (
    STRUCTURES,
    MultiTaskDataset,
    find_mocha,
    load_mat,
    load_mocha,
    make_multitask_classification,
    make_multitask_regression,
    mocha_data_paths,
    train_test_split_per_task,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _cell(items: list) -> np.ndarray:
    """A MATLAB 1 x m cell array as scipy.io.savemat expects it."""
    arr = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        arr[0, i] = item
    return arr


def _write_mat(path: Path, n_samples: list[int], n_features: int = 3, seed: int = 0) -> Path:
    """Write a MOCHA-layout .mat file with int16 +-1 labels; return its path."""
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((n, n_features)) for n in n_samples]
    Ys = [np.where(rng.random((n, 1)) < 0.5, 1, -1).astype(np.int16) for n in n_samples]
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"X": _cell(Xs), "Y": _cell(Ys)})
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No FMTL_DATA and a working directory whose parent has no shared/data/mocha."""
    monkeypatch.delenv("FMTL_DATA", raising=False)
    cwd = tmp_path / "cwd_parent" / "checkout"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return cwd


def _toy(labels=None) -> MultiTaskDataset:
    X = [np.arange(6.0).reshape(3, 2), np.arange(4.0).reshape(2, 2) + 100, np.zeros((1, 2))]
    y = [np.array([1.0, -1.0, 1.0]), np.array([-1.0, -1.0]), np.array([1.0])]
    return MultiTaskDataset(X=X, y=y, task_labels=labels)


# --------------------------------------------------------------------------------------------
# the real MOCHA small.mat
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    path = find_mocha("small")
    if path is None:
        pytest.skip("small.mat not found (set FMTL_DATA to run this test)")
    return load_mocha("small")


def test_small_mat_facts(small):
    assert small.name == "small"
    assert small.n_tasks == 29
    assert small.n_features == 9
    assert small.n_total == 1464
    assert small.n_samples.min() == 44 and small.n_samples.max() == 69
    y = np.concatenate(small.y)
    assert set(np.unique(y).tolist()) == {-1.0, 1.0}
    assert int((y == 1).sum()) == 89  # 6.08% positives
    assert abs((y == 1).mean() - 0.061) < 0.001
    only_negative = [t for t, y_t in enumerate(small.y) if not np.any(y_t == 1)]
    assert only_negative == [5, 7]
    for X_t, y_t in small:
        assert isinstance(X_t, np.ndarray) and X_t.dtype == np.float64
        assert X_t.flags.c_contiguous and X_t.shape[1] == 9
        assert y_t.dtype == np.float64 and y_t.ndim == 1 and len(y_t) == len(X_t)
    assert small.task_labels == list(range(29))
    assert small.coef is None and small.task_groups is None


def test_small_mat_split_counts(small):
    train, test = train_test_split_per_task(small, test_size=0.25, random_state=0)
    expected_test = np.floor(0.25 * small.n_samples + 0.5).astype(int)
    np.testing.assert_array_equal(test.n_samples, expected_test)
    np.testing.assert_array_equal(train.n_samples + test.n_samples, small.n_samples)


# --------------------------------------------------------------------------------------------
# load_mocha search order
# --------------------------------------------------------------------------------------------


def test_search_order_data_home_then_env(clean_env, tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    home_dir = tmp_path / "home"
    _write_mat(env_dir / "toy.mat", [4, 5])
    _write_mat(home_dir / "toy.mat", [4, 5, 6])
    monkeypatch.setenv("FMTL_DATA", str(env_dir))

    paths = mocha_data_paths(home_dir)
    assert paths[:2] == [home_dir, env_dir]
    assert load_mocha("toy", data_home=home_dir).n_tasks == 3  # data_home wins
    assert load_mocha("toy").n_tasks == 2  # then $FMTL_DATA
    assert load_mocha("toy.mat").n_tasks == 2  # ".mat" suffix optional
    assert find_mocha("toy") == env_dir / "toy.mat"
    # data_home without the file falls through to $FMTL_DATA
    assert load_mocha("toy", data_home=tmp_path / "empty").n_tasks == 2


def test_search_paths_include_repo_and_cwd_parent(clean_env):
    paths = mocha_data_paths()
    repo_dir = Path(fd.__file__).resolve().parents[3] / "shared" / "data" / "mocha"
    cwd_dir = clean_env.parent / "shared" / "data" / "mocha"
    assert paths == [repo_dir, cwd_dir]


def test_cwd_parent_fallback(clean_env):
    name = "fmtl_test_cwd_fallback_only"
    _write_mat(clean_env.parent / "shared" / "data" / "mocha" / f"{name}.mat", [3, 3, 3, 3])
    ds = load_mocha(name)
    assert ds.n_tasks == 4 and ds.name == name


def test_env_var_with_several_directories(clean_env, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    _write_mat(b / "toy.mat", [2, 2, 2])
    monkeypatch.setenv("FMTL_DATA", f"{a}{os.pathsep}{b}")
    assert mocha_data_paths()[:2] == [a, b]
    assert load_mocha("toy").n_tasks == 3


def test_explicit_path(clean_env, tmp_path):
    path = _write_mat(tmp_path / "somewhere" / "mine.mat", [3, 4])
    assert load_mocha(str(path)).n_tasks == 2
    assert load_mocha(path).name == "mine"
    assert find_mocha(path) == path
    assert find_mocha(tmp_path / "missing.mat") is None
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        load_mocha(str(tmp_path / "missing.mat"))


def test_not_found_lists_every_path(clean_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FMTL_DATA", str(tmp_path / "envdir"))
    home = tmp_path / "homedir"
    assert find_mocha("nope", data_home=home) is None
    with pytest.raises(FileNotFoundError) as info:
        load_mocha("nope", data_home=home)
    msg = str(info.value)
    searched = mocha_data_paths(home)
    assert len(searched) == 4
    for directory in searched:
        assert str(directory / "nope.mat") in msg
    assert "FMTL_DATA" in msg and "data_home" in msg


def test_load_mocha_bad_name_type():
    with pytest.raises(TypeError, match="name"):
        load_mocha(123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# load_mat
# --------------------------------------------------------------------------------------------


def test_load_mat_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    Xs = [rng.standard_normal((n, 4)) for n in (3, 5)]
    Ys = [np.array([[1], [-1], [1]], np.int16), np.array([[-1], [-1], [1], [1], [-1]], np.int16)]
    path = tmp_path / "roundtrip.mat"
    scipy.io.savemat(str(path), {"X": _cell(Xs), "Y": _cell(Ys)})
    ds = load_mat(path)
    assert ds.name == "roundtrip" and ds.n_tasks == 2 and ds.n_features == 4
    for t in range(2):
        np.testing.assert_array_equal(ds.X[t], Xs[t])
        np.testing.assert_array_equal(ds.y[t], Ys[t].ravel().astype(float))
        assert ds.y[t].dtype == np.float64 and ds.y[t].ndim == 1


def test_load_mat_sparse_cells(tmp_path):
    A = sp.random(6, 5, density=0.3, random_state=0, format="csc")
    B = sp.random(4, 5, density=0.3, random_state=1, format="csc")
    Ys = [np.ones((6, 1), np.int16), -np.ones((4, 1), np.int16)]
    path = tmp_path / "sparse.mat"
    scipy.io.savemat(str(path), {"X": _cell([A, B]), "Y": _cell(Ys)})
    ds = load_mat(path)
    assert all(sp.issparse(X_t) and X_t.format == "csr" for X_t in ds.X)
    assert ds.X[0].dtype == np.float64
    np.testing.assert_allclose(ds.X[0].toarray(), A.toarray())
    Xs, _, _ = ds.stack()
    assert sp.issparse(Xs) and Xs.format == "csr" and Xs.shape == (10, 5)


def test_load_mat_missing_file(tmp_path):
    path = tmp_path / "absent.mat"
    with pytest.raises(FileNotFoundError, match="absent.mat"):
        load_mat(path)


def test_load_mat_missing_variable(tmp_path):
    path = tmp_path / "noy.mat"
    scipy.io.savemat(str(path), {"X": _cell([np.ones((2, 2))]), "Z": 1.0})
    with pytest.raises(ValueError, match="missing variable 'Y'") as info:
        load_mat(path)
    assert "'Z'" in str(info.value)  # lists what is in the file


def test_load_mat_mismatched_cell_counts(tmp_path):
    path = tmp_path / "counts.mat"
    X = _cell([np.ones((2, 2))] * 3)
    Y = _cell([np.ones((2, 1))] * 2)
    scipy.io.savemat(str(path), {"X": X, "Y": Y})
    with pytest.raises(ValueError, match="'X' has 3 cells but 'Y' has 2"):
        load_mat(path)


def test_load_mat_inconsistent_features(tmp_path):
    path = tmp_path / "feat.mat"
    X = _cell([np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 4))])
    Y = _cell([np.ones((2, 1))] * 3)
    scipy.io.savemat(str(path), {"X": X, "Y": Y})
    with pytest.raises(ValueError, match="task 2 has 4 features but task 0 has 3"):
        load_mat(path)


def test_load_mat_row_label_mismatch(tmp_path):
    path = tmp_path / "rows.mat"
    scipy.io.savemat(
        str(path),
        {"X": _cell([np.ones((2, 3)), np.ones((3, 3))]), "Y": _cell([np.ones((2, 1))] * 2)},
    )
    with pytest.raises(ValueError, match="task 1 has 3 rows in X but 2 labels"):
        load_mat(path)


def test_load_mat_not_a_cell_array(tmp_path):
    path = tmp_path / "plain.mat"
    scipy.io.savemat(str(path), {"X": np.ones((3, 2)), "Y": np.ones((3, 1))})
    with pytest.raises(ValueError, match="cell array"):
        load_mat(path)


def test_load_mat_non_finite(tmp_path):
    path = tmp_path / "nan.mat"
    X = np.ones((2, 2))
    X[1, 0] = np.nan
    scipy.io.savemat(
        str(path), {"X": _cell([np.ones((2, 2)), X]), "Y": _cell([np.ones((2, 1))] * 2)}
    )
    with pytest.raises(ValueError, match=r"X\[1\] contains NaN"):
        load_mat(path)


def test_load_mat_garbage_file(tmp_path):
    path = tmp_path / "garbage.mat"
    path.write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(ValueError, match="garbage.mat"):
        load_mat(path)


# --------------------------------------------------------------------------------------------
# MultiTaskDataset
# --------------------------------------------------------------------------------------------


def test_container_properties():
    ds = _toy()
    assert ds.n_tasks == len(ds) == 3
    assert ds.n_features == 2
    np.testing.assert_array_equal(ds.n_samples, [3, 2, 1])
    assert ds.n_total == 6
    assert ds.task_labels == [0, 1, 2]
    pairs = list(ds)
    assert len(pairs) == 3 and pairs[1][0][0, 0] == 100.0 and pairs[1][1].tolist() == [-1, -1]
    assert "n_tasks=3" in repr(ds)


def test_container_converts_inputs():
    ds = MultiTaskDataset(
        X=[np.asfortranarray(np.ones((3, 2), dtype=np.float32)), [[1, 2]]],
        y=[np.array([[1], [2], [3]], dtype=np.int16), [5]],
    )
    assert ds.X[0].dtype == np.float64 and ds.X[0].flags.c_contiguous
    assert ds.y[0].shape == (3,) and ds.y[0].dtype == np.float64
    assert ds.X[1].shape == (1, 2)


def test_container_is_frozen():
    ds = _toy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]


def test_zero_sample_task_allowed():
    ds = MultiTaskDataset(X=[np.ones((2, 3)), np.zeros((0, 3))], y=[[1, -1], []])
    np.testing.assert_array_equal(ds.n_samples, [2, 0])
    X, y, tasks = ds.stack()
    assert X.shape == (2, 3) and tasks.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"X": [np.ones((2, 2))], "y": []}, ValueError, "same number of tasks"),
        ({"X": [], "y": []}, ValueError, "at least one task"),
        ({"X": np.ones((2, 2)), "y": [[1, 2]]}, TypeError, "X must be a list"),
        ({"X": [np.ones((2, 2)), np.ones(2)], "y": [[1, 1], [1, 1]]}, ValueError, r"X\[1\]"),
        ({"X": [np.ones((2, 2)), np.ones((2, 3))], "y": [[1, 1]] * 2}, ValueError, "features"),
        ({"X": [np.ones((2, 2))], "y": [[1, 1, 1]]}, ValueError, r"y\[0\] has 3 entries"),
        ({"X": [np.full((1, 2), np.inf)], "y": [[1]]}, ValueError, r"X\[0\] contains NaN"),
        ({"X": [np.ones((1, 2))], "y": [[np.nan]]}, ValueError, r"y\[0\] contains NaN"),
        ({"X": [np.ones((1, 2), dtype=complex)], "y": [[1]]}, TypeError, "real-valued"),
        ({"X": [[["a", "b"]]], "y": [[1]]}, TypeError, r"X\[0\]"),
        (
            {"X": [np.ones((1, 2))] * 2, "y": [[1]] * 2, "task_labels": ["a", "a"]},
            ValueError,
            "task_labels must be unique",
        ),
        (
            {"X": [np.ones((1, 2))] * 2, "y": [[1]] * 2, "task_labels": ["a"]},
            ValueError,
            "task_labels has 1",
        ),
        (
            {"X": [np.ones((1, 2))], "y": [[1]], "task_labels": [["unhashable"]]},
            TypeError,
            "hashable",
        ),
        ({"X": [np.ones((1, 2))], "y": [[1]], "coef": np.ones((1, 3))}, ValueError, "coef"),
        (
            {"X": [np.ones((1, 2))], "y": [[1]], "task_groups": np.zeros(2, int)},
            ValueError,
            "task_groups",
        ),
    ],
)
def test_container_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MultiTaskDataset(**kwargs)


def test_stack_and_from_stacked_roundtrip_dense():
    ds = _toy(labels=["c", "a", "b"])
    X, y, tasks = ds.stack()
    assert X.shape == (6, 2) and y.shape == (6,)
    assert tasks.tolist() == ["c", "c", "c", "a", "a", "b"]
    back = MultiTaskDataset.from_stacked(X, y, tasks)
    # sorted labels
    assert back.task_labels == ["a", "b", "c"]
    order = [ds.task_labels.index(lab) for lab in back.task_labels]
    for t_new, t_old in enumerate(order):
        np.testing.assert_array_equal(back.X[t_new], ds.X[t_old])
        np.testing.assert_array_equal(back.y[t_new], ds.y[t_old])


def test_from_stacked_keeps_row_order_and_first_appearance():
    X = np.arange(10.0).reshape(5, 2)
    tasks = np.empty(5, dtype=object)
    tasks[:] = ["z", None, "z", 3, None]  # mixed types are not sortable
    ds = MultiTaskDataset.from_stacked(X, np.arange(5.0), tasks)
    assert ds.task_labels == ["z", None, 3]
    np.testing.assert_array_equal(ds.y[0], [0.0, 2.0])
    np.testing.assert_array_equal(ds.y[1], [1.0, 4.0])
    np.testing.assert_array_equal(ds.X[2], [[6.0, 7.0]])


def test_from_stacked_int_labels_become_python_ints():
    ds = MultiTaskDataset.from_stacked(np.ones((4, 1)), np.ones(4), np.array([7, 2, 7, 2]))
    assert ds.task_labels == [2, 7] and all(type(lab) is int for lab in ds.task_labels)


def test_from_stacked_validation():
    with pytest.raises(ValueError, match="same number of rows"):
        MultiTaskDataset.from_stacked(np.ones((3, 2)), np.ones(3), [0, 1])
    with pytest.raises(ValueError, match="y must be 1-D"):
        MultiTaskDataset.from_stacked(np.ones((3, 2)), np.ones((3, 2)), [0, 1, 1])


def test_stack_roundtrip_sparse():
    ds = make_multitask_classification(
        n_tasks=3,
        n_samples=[5, 7, 4],
        n_features=6,
        structure="independent",
        sparse_density=0.5,
        random_state=0,
    )
    X, y, tasks = ds.stack()
    assert sp.issparse(X) and X.format == "csr" and X.shape == (16, 6)
    back = MultiTaskDataset.from_stacked(X, y, tasks)
    assert back.task_labels == [0, 1, 2]
    for a, b in zip(back.X, ds.X, strict=True):
        assert sp.issparse(a)
        np.testing.assert_array_equal(a.toarray(), b.toarray())


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 5), min_size=1, max_size=5),
    d=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_stack_from_stacked_property(sizes, d, seed):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((n, d)) for n in sizes]
    y = [rng.standard_normal(n) for n in sizes]
    ds = MultiTaskDataset(X=X, y=y)
    Xs, ys, tasks = ds.stack()
    assert Xs.shape == (sum(sizes), d) and len(ys) == len(tasks) == sum(sizes)
    if sum(sizes) == 0:
        return
    back = MultiTaskDataset.from_stacked(Xs, ys, tasks)
    nonempty = [t for t, n in enumerate(sizes) if n > 0]  # empty tasks cannot be recovered
    assert back.task_labels == nonempty
    for t_new, t_old in enumerate(nonempty):
        np.testing.assert_array_equal(back.X[t_new], X[t_old])
        np.testing.assert_array_equal(back.y[t_new], y[t_old])


def test_subset():
    ds = make_multitask_regression(
        n_tasks=5,
        n_samples=[2, 3, 4, 5, 6],
        n_features=3,
        structure="clustered",
        n_clusters=2,
        random_state=3,
    )
    sub = ds.subset([3, 0, -1])
    assert sub.task_labels == [3, 0, 4]
    np.testing.assert_array_equal(sub.n_samples, [5, 2, 6])
    np.testing.assert_array_equal(sub.coef, ds.coef[[3, 0, 4]])
    np.testing.assert_array_equal(sub.task_groups, ds.task_groups[[3, 0, 4]])
    assert sub.X[0] is ds.X[3]
    with pytest.raises(ValueError, match="duplicates"):
        ds.subset([1, 1])
    with pytest.raises(ValueError, match="out of range"):
        ds.subset([5])
    with pytest.raises(ValueError, match="non-empty"):
        ds.subset([])


# --------------------------------------------------------------------------------------------
# synthetic generators
# --------------------------------------------------------------------------------------------


def _assert_same(a: MultiTaskDataset, b: MultiTaskDataset) -> None:
    assert a.task_labels == b.task_labels
    np.testing.assert_array_equal(a.coef, b.coef)
    if a.task_groups is None:
        assert b.task_groups is None
    else:
        np.testing.assert_array_equal(a.task_groups, b.task_groups)
    for (Xa, ya), (Xb, yb) in zip(a, b, strict=True):
        Xa = Xa.toarray() if sp.issparse(Xa) else Xa
        Xb = Xb.toarray() if sp.issparse(Xb) else Xb
        np.testing.assert_array_equal(Xa, Xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("make", [make_multitask_classification, make_multitask_regression])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_generators_deterministic(make, structure):
    kw = dict(n_tasks=4, n_samples=20, n_features=5, structure=structure, n_clusters=2)
    a = make(**kw, random_state=7)
    b = make(**kw, random_state=7)
    c = make(**kw, random_state=8)
    _assert_same(a, b)
    assert not np.array_equal(a.coef, c.coef)
    assert not np.array_equal(a.X[0], c.X[0])
    # a Generator is accepted and consumed
    g = make(**kw, random_state=np.random.default_rng(7))
    _assert_same(a, g)


def test_generator_accepts_generator_and_advances_it():
    rng = np.random.default_rng(0)
    a = make_multitask_regression(
        n_tasks=2, n_samples=5, n_features=2, random_state=rng, structure="independent"
    )
    b = make_multitask_regression(
        n_tasks=2, n_samples=5, n_features=2, random_state=rng, structure="independent"
    )
    assert not np.array_equal(a.coef, b.coef)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_classification_every_structure(structure):
    ds = make_multitask_classification(
        n_tasks=6,
        n_samples=40,
        n_features=8,
        structure=structure,
        n_clusters=3,
        rank=2,
        noise=0.0,
        random_state=0,
    )
    assert ds.n_tasks == 6 and ds.n_features == 8 and ds.n_total == 240
    assert ds.coef.shape == (6, 8)
    assert ds.name == f"synthetic-classification-{structure}"
    for t, (X_t, y_t) in enumerate(ds):
        assert X_t.shape == (40, 8) and X_t.dtype == np.float64
        assert set(np.unique(y_t).tolist()) == {-1.0, 1.0}  # both classes, never 0
        # noise=0, flip_y=0: labels are exactly the signs of the true margins
        margin = X_t @ ds.coef[t]
        np.testing.assert_array_equal(y_t, np.where(margin >= 0, 1.0, -1.0))
    if structure == "clustered":
        assert ds.task_groups is not None and sorted(set(ds.task_groups.tolist())) == [0, 1, 2]
    elif structure == "all_related":
        np.testing.assert_array_equal(ds.task_groups, np.zeros(6))
    else:
        assert ds.task_groups is None


def test_margins_are_order_one():
    for density in (None, 0.2):
        ds = make_multitask_regression(
            n_tasks=4,
            n_samples=2000,
            n_features=50,
            structure="independent",
            noise=0.0,
            sparse_density=density,
            random_state=1,
        )
        X, y, _ = ds.stack()
        assert 0.8 < np.std(y) < 1.25, density


def test_low_rank_numerical_rank():
    for rank in (1, 3):
        ds = make_multitask_regression(
            n_tasks=10,
            n_samples=3,
            n_features=12,
            structure="low_rank",
            rank=rank,
            random_state=rank,
        )
        assert np.linalg.matrix_rank(ds.coef) == rank
    full = make_multitask_regression(
        n_tasks=10, n_samples=3, n_features=12, structure="independent", random_state=0
    )
    assert np.linalg.matrix_rank(full.coef) == 10


def test_clustered_rows_closer_within_than_across():
    ds = make_multitask_classification(
        n_tasks=12,
        n_samples=10,
        n_features=15,
        structure="clustered",
        n_clusters=3,
        random_state=5,
    )
    W, g = ds.coef, ds.task_groups
    np.testing.assert_array_equal(np.bincount(g), [4, 4, 4])  # balanced assignment
    D = np.linalg.norm(W[:, None, :] - W[None, :, :], axis=-1)
    same = g[:, None] == g[None, :]
    off_diag = ~np.eye(12, dtype=bool)
    assert D[same & off_diag].max() < D[~same].min()


def test_all_related_rows_are_close_to_shared_vector():
    ds = make_multitask_regression(
        n_tasks=8, n_samples=2, n_features=30, structure="all_related", random_state=2
    )
    W = ds.coef
    spread = np.linalg.norm(W - W.mean(axis=0), axis=1)
    assert spread.max() < 0.25 * np.linalg.norm(W.mean(axis=0))


def test_regression_targets():
    ds = make_multitask_regression(
        n_tasks=3,
        n_samples=4000,
        n_features=5,
        structure="independent",
        noise=0.0,
        random_state=0,
    )
    for t, (X_t, y_t) in enumerate(ds):
        np.testing.assert_allclose(y_t, X_t @ ds.coef[t], rtol=1e-12, atol=1e-12)
    noisy = make_multitask_regression(
        n_tasks=3,
        n_samples=4000,
        n_features=5,
        structure="independent",
        noise=0.5,
        random_state=0,
    )
    resid = np.concatenate([y - X @ w for (X, y), w in zip(noisy, noisy.coef, strict=True)])
    assert abs(resid.std() - 0.5) < 0.02
    assert ds.name == "synthetic-regression-independent"


def test_flip_y_fraction():
    ds = make_multitask_classification(
        n_tasks=4,
        n_samples=2500,
        n_features=5,
        structure="independent",
        noise=0.0,
        flip_y=0.2,
        random_state=0,
    )
    disagree = np.concatenate(
        [y != np.where(X @ w >= 0, 1.0, -1.0) for (X, y), w in zip(ds, ds.coef, strict=True)]
    )
    assert abs(disagree.mean() - 0.2) < 0.02


def test_tiny_tasks_have_both_classes():
    ds = make_multitask_classification(
        n_tasks=40, n_samples=2, n_features=3, structure="independent", random_state=0
    )
    assert all(sorted(y.tolist()) == [-1.0, 1.0] for y in ds.y)


def test_single_sample_tasks_are_left_alone():
    ds = make_multitask_classification(
        n_tasks=3, n_samples=[1, 0, 3], n_features=2, structure="independent", random_state=0
    )
    np.testing.assert_array_equal(ds.n_samples, [1, 0, 3])
    assert ds.y[0].shape == (1,) and abs(ds.y[0][0]) == 1.0


def test_task_size_imbalance():
    ds = make_multitask_classification(
        n_tasks=30,
        n_samples=50,
        n_features=3,
        structure="independent",
        task_size_imbalance=0.5,
        random_state=0,
    )
    n = ds.n_samples
    assert n.min() >= 2 and len(set(n.tolist())) > 10
    assert 25 < np.median(n) < 100  # log-normal around n_samples
    again = make_multitask_classification(
        n_tasks=30,
        n_samples=50,
        n_features=3,
        structure="independent",
        task_size_imbalance=0.5,
        random_state=0,
    )
    np.testing.assert_array_equal(n, again.n_samples)
    flat = make_multitask_classification(
        n_tasks=5, n_samples=50, n_features=3, structure="independent", random_state=0
    )
    np.testing.assert_array_equal(flat.n_samples, [50] * 5)


def test_sparse_output():
    ds = make_multitask_classification(
        n_tasks=3,
        n_samples=200,
        n_features=40,
        structure="clustered",
        sparse_density=0.1,
        random_state=0,
    )
    for X_t, y_t in ds:
        assert sp.issparse(X_t) and X_t.format == "csr" and X_t.dtype == np.float64
        assert abs(X_t.nnz / (200 * 40) - 0.1) < 0.02
        assert set(np.unique(y_t).tolist()) == {-1.0, 1.0}
    dense = make_multitask_classification(
        n_tasks=3,
        n_samples=20,
        n_features=4,
        sparse_density=1.0,
        structure="independent",
        random_state=0,
    )
    assert sp.issparse(dense.X[0]) and dense.X[0].nnz == 80


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_tasks": 0}, ValueError, "n_tasks"),
        ({"n_tasks": 2.5}, TypeError, "n_tasks"),
        ({"n_tasks": True}, TypeError, "n_tasks"),
        ({"n_features": 0}, ValueError, "n_features"),
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"n_samples": 10.0}, TypeError, "n_samples"),
        ({"n_samples": [5, 5]}, ValueError, "n_samples"),
        ({"n_samples": [5] * 9 + [-1]}, ValueError, "n_samples"),
        ({"n_samples": [5.5] * 10}, TypeError, "n_samples"),
        ({"structure": "trees"}, ValueError, "structure"),
        ({"structure": "clustered", "n_clusters": 11}, ValueError, "n_clusters"),
        ({"n_clusters": 0}, ValueError, "n_clusters"),
        ({"structure": "low_rank", "rank": 21, "n_tasks": 30}, ValueError, "rank"),
        ({"rank": 0}, ValueError, "rank"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"noise": float("nan")}, ValueError, "noise"),
        ({"task_size_imbalance": 1.0}, ValueError, "task_size_imbalance"),
        ({"task_size_imbalance": 0.5, "n_samples": [5] * 10}, ValueError, "task_size_imbalance"),
        ({"sparse_density": 0.0}, ValueError, "sparse_density"),
        ({"sparse_density": 1.5}, ValueError, "sparse_density"),
        ({"random_state": "seed"}, TypeError, "random_state"),
        ({"random_state": -1}, ValueError, "random_state"),
    ],
)
def test_generator_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_multitask_classification(**kwargs)
    with pytest.raises(exc, match=match):
        make_multitask_regression(**kwargs)


@pytest.mark.parametrize(
    ("flip_y", "exc"), [(-0.1, ValueError), (1.5, ValueError), ("x", TypeError)]
)
def test_flip_y_validation(flip_y, exc):
    with pytest.raises(exc, match="flip_y"):
        make_multitask_classification(flip_y=flip_y)


# --------------------------------------------------------------------------------------------
# train_test_split_per_task
# --------------------------------------------------------------------------------------------


def _id_dataset(sizes: list[int]) -> MultiTaskDataset:
    """Column 0 holds a globally unique row id; y equals that id."""
    X, y, start = [], [], 0
    for n in sizes:
        ids = np.arange(start, start + n, dtype=float)
        X.append(np.column_stack([ids, np.ones(n)]))
        y.append(ids.copy())
        start += n
    return MultiTaskDataset(X=X, y=y, task_labels=[f"t{i}" for i in range(len(sizes))])


def test_split_sizes():
    ds = _id_dataset([1, 2, 4, 44, 50, 69])
    train, test = train_test_split_per_task(ds, test_size=0.25, random_state=0)
    np.testing.assert_array_equal(test.n_samples, [0, 1, 1, 11, 13, 17])
    np.testing.assert_array_equal(train.n_samples, [1, 1, 3, 33, 37, 52])
    # extreme fraction still leaves one training point per task
    train, test = train_test_split_per_task(ds, test_size=0.99, random_state=0)
    np.testing.assert_array_equal(train.n_samples, [1, 1, 1, 1, 1, 1])


def test_split_disjoint_and_complete():
    ds = _id_dataset([5, 12, 30])
    train, test = train_test_split_per_task(ds, test_size=0.3, random_state=1)
    assert train.task_labels == test.task_labels == ds.task_labels
    for t in range(ds.n_tasks):
        tr, te = set(train.X[t][:, 0].tolist()), set(test.X[t][:, 0].tolist())
        assert not tr & te
        assert tr | te == set(ds.X[t][:, 0].tolist())
        np.testing.assert_array_equal(train.y[t], train.X[t][:, 0])  # rows stay paired
        np.testing.assert_array_equal(test.y[t], test.X[t][:, 0])
        assert np.all(np.diff(train.X[t][:, 0]) > 0)  # original order kept


def test_split_deterministic_and_random():
    ds = _id_dataset([40, 40, 40])
    a_tr, a_te = train_test_split_per_task(ds, random_state=3)
    b_tr, b_te = train_test_split_per_task(ds, random_state=3)
    c_tr, _ = train_test_split_per_task(ds, random_state=4)
    _ = a_te, b_te
    for t in range(3):
        np.testing.assert_array_equal(a_tr.y[t], b_tr.y[t])
    assert any(not np.array_equal(a_tr.y[t], c_tr.y[t]) for t in range(3))


def test_split_keeps_metadata_and_sparse():
    ds = make_multitask_classification(
        n_tasks=4,
        n_samples=20,
        n_features=6,
        sparse_density=0.5,
        structure="clustered",
        n_clusters=2,
        random_state=0,
    )
    train, test = train_test_split_per_task(ds, random_state=0)
    assert train.name == test.name == ds.name
    np.testing.assert_array_equal(train.coef, ds.coef)
    np.testing.assert_array_equal(test.task_groups, ds.task_groups)
    assert all(sp.issparse(X_t) for X_t in test.X)
    np.testing.assert_array_equal(train.n_samples + test.n_samples, ds.n_samples)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.2, 1.5])
def test_split_test_size_validation(test_size):
    with pytest.raises(ValueError, match="test_size"):
        train_test_split_per_task(_id_dataset([4]), test_size=test_size)


def test_split_type_validation():
    with pytest.raises(TypeError, match="dataset"):
        train_test_split_per_task([np.ones((3, 2))])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="test_size"):
        train_test_split_per_task(_id_dataset([4]), test_size="0.25")  # type: ignore[arg-type]
