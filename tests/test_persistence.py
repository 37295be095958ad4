"""fmtl.persistence: pickle-free .npz model files that round-trip bit-identically."""

from __future__ import annotations

import copy
import json
import math
import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import model_file_parts as _arrays_and_header
from conftest import write_model_file as _write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from fmtl import (
    GlobalClassifier,
    GlobalRegressor,
    LocalClassifier,
    LocalRegressor,
    MochaClassifier,
    MochaRegressor,
)
from fmtl.datasets import make_multitask_classification
from fmtl.federated import History, SystemsModel
from fmtl.persistence import (
    FORMAT_VERSION,
    _checksum,
    _decode_label,
    _encode_history,
    _encode_label,
    load_model,
    save_model,
)

ODD_TASKS = np.empty(5, dtype=object)
ODD_TASKS[:] = [3, "b", ("t", (1, None)), None, 2.5]


@pytest.fixture(scope="module")
def data():
    X, y, t = make_multitask_classification(
        n_tasks=5, n_samples=24, n_features=4, n_clusters=2, random_state=0
    ).stack()
    rng = np.random.default_rng(1)
    y3 = np.array(["x", "y", "z"])[np.argmax(X[:, :3] + 0.1 * rng.normal(size=(len(y), 3)), 1)]
    z = X @ np.arange(1.0, 5.0) + 0.1 * rng.normal(size=len(y))
    return {"X": X, "y": y, "y3": y3, "z": z, "tasks": ODD_TASKS[t]}


def _fit(name: str, d: dict):
    X, tasks = d["X"], d["tasks"]
    ham = np.where(d["y"] > 0, "spam", "ham")
    fast = dict(outer_iters=2, inner_iters=15, random_state=0)
    if name == "mocha_binary":
        systems = SystemsModel(
            heterogeneity="high", drop_prob=(0.1, 0, 0, 0.2, 0), dead_nodes=(1,)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the dead node never reports
            return MochaClassifier(alpha=0.01, systems=systems, **fast).fit(X, ham, tasks)
    if name == "mocha_multiclass":
        return MochaClassifier(alpha=0.01, loss="logistic", **fast).fit(X, d["y3"], tasks)
    if name == "mocha_regressor":
        sigma = np.eye(5) / 5 + 0.01
        reg = MochaRegressor(
            alpha=0.1, relationship="fixed", sigma=sigma, intercept_scaling=2.0, **fast
        )
        return reg.fit(X, d["z"] + 3.0, tasks)
    if name == "local_bool":
        return LocalClassifier(alpha=0.1, max_rounds=20).fit(X, d["y"] > 0, tasks)
    if name == "local_regressor":
        return LocalRegressor(alpha=0.1, max_rounds=20, random_state=3).fit(X, d["z"], tasks)
    if name == "local_no_intercept":
        reg = LocalRegressor(alpha=0.1, max_rounds=20, fit_intercept=False)
        return reg.fit(X, d["z"], tasks)
    if name == "global_multiclass":
        y_int = np.searchsorted(["x", "y", "z"], d["y3"]) * 10 - 5
        return GlobalClassifier(alpha=0.1, max_rounds=20).fit(X, y_int, tasks)
    if name == "global_regressor":
        return GlobalRegressor(alpha=0.1, max_rounds=20).fit(X, d["z"], tasks)
    raise AssertionError(name)


CASES = [
    "mocha_binary",
    "mocha_multiclass",
    "mocha_regressor",
    "local_bool",
    "local_regressor",
    "local_no_intercept",
    "global_multiclass",
    "global_regressor",
]


@pytest.fixture(scope="module")
def fitted(data):
    return {name: _fit(name, data) for name in CASES}


def same(a, b) -> bool:
    """Equal values of identical types, recursively (tuples), NaN-safe for arrays."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) and a.dtype == object:
        return b.dtype == object and a.shape == b.shape and all(map(same, a.flat, b.flat))
    if isinstance(a, np.ndarray | np.generic):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def assert_same_history(h1: History, h2: History) -> None:
    assert len(h1) == len(h2) and h1.columns == h2.columns
    for r1, r2 in zip(h1.records, h2.records, strict=True):
        assert r1.keys() == r2.keys()
        for k in r1:
            assert same(r1[k], r2[k]), k


def assert_same_params(p1: dict, p2: dict) -> None:
    assert p1.keys() == p2.keys()
    for k, v in p1.items():
        if isinstance(v, np.ndarray):
            assert same(v, p2[k]), k
        else:
            assert type(v) is type(p2[k]) and v == p2[k], k


def round_trip(est, tmp_path: Path, name: str = "model.npz"):
    path = tmp_path / name
    save_model(est, path)
    return load_model(path)


@pytest.mark.parametrize("name", CASES)
def test_round_trip_is_bit_identical(name, fitted, data, tmp_path):
    est = fitted[name]
    got = round_trip(est, tmp_path)
    assert type(got) is type(est)
    assert_same_params(est.get_params(), got.get_params())
    X, tasks = data["X"], data["tasks"]
    assert same(got.predict(X, tasks), est.predict(X, tasks))
    if hasattr(est, "decision_function"):
        assert same(got.decision_function(X, tasks), est.decision_function(X, tasks))
        assert same(got.classes_, est.classes_)
    assert [type(t) for t in got.tasks_] == [type(t) for t in est.tasks_]
    assert all(same(a, b) for a, b in zip(got.tasks_, est.tasks_, strict=True))
    assert got._task_lookup_ == est._task_lookup_ and got.n_tasks_ == est.n_tasks_
    assert got.n_features_in_ == est.n_features_in_
    for attr in ("coef_", "intercept_", "dual_coef_", "never_reported_"):
        assert same(getattr(got, attr), getattr(est, attr)), attr
    for attr in ("sigma_", "omega_"):
        a, b = getattr(got, attr), getattr(est, attr)
        assert (a is None and b is None) or same(a, b), attr
    assert_same_history(est.history_, got.history_)
    # the loaded model saves to the same content
    again = round_trip(got, tmp_path, "again.npz")
    assert same(again.coef_, est.coef_)


def test_intercepts_are_saved(fitted, data, tmp_path):
    est = fitted["mocha_regressor"]
    assert est.intercept_.shape == (5,) and np.all(est.intercept_ > 1.0)  # y shifted by 3
    got = round_trip(est, tmp_path)
    assert got.fit_intercept is True and got.intercept_scaling == 2.0
    assert same(got.intercept_, est.intercept_)
    free = round_trip(fitted["local_no_intercept"], tmp_path, "free.npz")
    assert free.fit_intercept is False and same(free.intercept_, np.zeros(5))
    assert fitted["global_multiclass"].intercept_.shape == (3, 5)


def _as_version_1(path: Path, out: Path) -> Path:
    """The file fmtl wrote before intercepts existed: no intercept params or arrays."""
    arrays, header = _arrays_and_header(path)
    for name in ("intercept_", "global_intercept_"):
        arrays.pop(name, None)
        header["arrays"].pop(name, None)
    del header["params"]["fit_intercept"], header["params"]["intercept_scaling"]
    header["format_version"] = 1
    header["sha256"] = _checksum(header, arrays)
    return _write(out, header, arrays)


def test_version_1_files_load_as_intercept_free_models(fitted, data, tmp_path):
    from fmtl.personalized import FedAvgClassifier, PFedHNRegressor

    X, tasks = data["X"], data["tasks"]
    models = [
        fitted["local_no_intercept"],
        MochaClassifier(alpha=0.01, loss="logistic", fit_intercept=False, outer_iters=1).fit(
            X, data["y3"], tasks
        ),
        FedAvgClassifier(rounds=3, fit_intercept=False, random_state=0).fit(X, data["y"], tasks),
        PFedHNRegressor(rounds=3, fit_intercept=False, random_state=0).fit(X, data["z"], tasks),
    ]
    for i, est in enumerate(models):
        save_model(est, tmp_path / f"v2_{i}.npz")
        got = load_model(_as_version_1(tmp_path / f"v2_{i}.npz", tmp_path / f"v1_{i}.npz"))
        assert type(got) is type(est) and got.fit_intercept is False
        assert same(got.intercept_, np.zeros_like(est.intercept_))
        assert same(got.predict(X, tasks), est.predict(X, tasks))
        if hasattr(est, "global_intercept_"):
            assert same(got.global_intercept_, est.global_intercept_)  # 0.0


def test_version_2_file_without_intercepts_is_refused(fitted, tmp_path):
    save_model(fitted["local_regressor"], tmp_path / "m.npz")
    arrays, header = _arrays_and_header(tmp_path / "m.npz")
    del arrays["intercept_"], header["arrays"]["intercept_"]
    header["sha256"] = _checksum(header, arrays)
    with pytest.raises(ValueError, match="version-2 file needs fit_intercept and intercept_"):
        load_model(_write(tmp_path / "bad.npz", header, arrays))
    arrays, header = _arrays_and_header(tmp_path / "m.npz")
    arrays["intercept_"] = arrays["intercept_"][:-1]
    header["arrays"]["intercept_"]["shape"] = list(arrays["intercept_"].shape)
    header["sha256"] = _checksum(header, arrays)
    with pytest.raises(ValueError, match="intercept_ has the wrong shape"):
        load_model(_write(tmp_path / "short.npz", header, arrays))


def test_special_cases_survive(fitted):
    assert fitted["mocha_binary"].never_reported_.tolist() == ["b"]
    assert fitted["mocha_binary"].classes_.dtype.kind == "U"
    assert fitted["local_bool"].classes_.dtype == bool
    assert fitted["global_multiclass"].sigma_ is None
    assert fitted["mocha_multiclass"].coef_.ndim == 3


def test_npz_is_plain_and_header_layout(fitted, tmp_path):
    path = tmp_path / "m.npz"
    save_model(fitted["mocha_binary"], path)
    with np.load(path, allow_pickle=False) as npz:
        files = {k: npz[k] for k in npz.files}
    header = json.loads(str(files.pop("__header__")))
    assert header["format"] == "fmtl-model" and header["format_version"] == 2
    assert header["class"] == "MochaClassifier"
    assert header["params"]["systems"]["t"] == "SystemsModel"
    assert header["tasks"][2] == {
        "t": "tuple",
        "v": [{"t": "str", "v": "t"}, {"t": "tuple", "v": [{"t": "int", "v": 1}, {"t": "none"}]}],
    }
    assert set(header["arrays"]) == set(files)
    assert all(a.dtype.kind in "biufc" for a in files.values())
    assert header["sha256"] == _checksum(header, files)


def test_path_is_written_exactly(fitted, tmp_path):
    path = tmp_path / "model.bin"
    fitted["local_regressor"].save(path)
    assert path.exists() and not (tmp_path / "model.bin.npz").exists()
    assert isinstance(LocalRegressor.load(path), LocalRegressor)


def test_class_load_checks_the_class(fitted, tmp_path):
    path = tmp_path / "m.npz"
    fitted["local_regressor"].save(path)
    with pytest.raises(TypeError, match="holds a LocalRegressor, not a MochaRegressor"):
        MochaRegressor.load(path)


def test_feature_names_round_trip(data, tmp_path):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(data["X"], columns=["a", "b", "c", "d"])
    reg = LocalRegressor(alpha=0.1, max_rounds=5).fit(X, data["z"], data["tasks"])
    got = round_trip(reg, tmp_path)
    assert got.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    assert same(got.predict(X, data["tasks"]), reg.predict(X, data["tasks"]))


def test_irregular_history_round_trips(fitted, tmp_path):
    est = copy.deepcopy(fitted["local_regressor"])
    h = History()
    h.append(round=1, gap=np.float32(0.5), flag=True, steps=np.arange(3))
    h.append(round=2, gap=np.float32(np.nan), extra=2.0, steps=np.arange(3) + 1)
    h.append(round=3.5, gap=np.float32(1.0), flag=False, steps=np.arange(3))
    est.history_ = h
    assert_same_history(h, round_trip(est, tmp_path).history_)


def test_one_vs_rest_history_is_one_history_and_old_files_still_load(fitted, tmp_path):
    est = fitted["mocha_multiclass"]
    h = est.history_
    assert isinstance(h, History) and h["gap"].ndim == 1  # the README's history_["gap"]
    k = h["class_index"]
    assert k.tolist() == sorted(k.tolist()) and set(k.tolist()) == {0, 1, 2}
    # the layout of fmtl 0.1.0: one history run per class, without class_index
    arrays, header = _arrays_and_header(_write_model(est, tmp_path / "new.npz"))
    arrays = {name: a for name, a in arrays.items() if not name.startswith("history/")}
    runs = []
    for c in range(3):
        part = History()
        for rec in h.where("class_index", c).records:
            part.append(**{key: v for key, v in rec.items() if key != "class_index"})
        runs.append(_encode_history(part, c, arrays))
    header["history"] = {"multi": True, "runs": runs}
    header["arrays"] = {
        name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()
    }
    header["sha256"] = _checksum(header, arrays)
    old = load_model(_write(tmp_path / "old.npz", header, arrays))
    assert_same_history(old.history_, h)
    header["history"] = {"multi": True, "runs": runs[:2]}
    header["sha256"] = _checksum(header, arrays)
    with pytest.raises(ValueError, match="2 histories for 3 classes"):
        load_model(_write(tmp_path / "short.npz", header, arrays))


def _write_model(est, path: Path) -> Path:
    save_model(est, path)
    return path


# ---------------------------------------------------------------- refused files


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "good.npz"
    save_model(fitted["mocha_multiclass"], path)
    return path


def test_newer_format_version_is_refused(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    header["format_version"] = FORMAT_VERSION + 1
    bad = _write(tmp_path / "newer.npz", header, arrays)
    with pytest.raises(ValueError, match="needs a newer fmtl") as e:
        load_model(bad)
    assert "newer.npz" in str(e.value)


def test_tampered_array_fails_the_checksum(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    coef = arrays["coef_"].copy()
    coef.reshape(-1).view(np.uint8)[5] ^= 1  # one byte of one coefficient
    arrays["coef_"] = coef
    bad = _write(tmp_path / "tampered.npz", header, arrays)
    with pytest.raises(ValueError, match="checksum mismatch: the file was modified or corrupted"):
        load_model(bad)


def test_tampered_header_fails_the_checksum(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    header["tasks"][0] = {"t": "int", "v": 4}
    bad = _write(tmp_path / "tampered.npz", header, arrays)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_model(bad)


def test_wrong_shape_is_refused(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    arrays["coef_"] = arrays["coef_"].reshape(arrays["coef_"].shape[0], -1)
    with pytest.raises(ValueError, match="wrong shape"):
        load_model(_write(tmp_path / "shape.npz", header, arrays))


def test_inconsistent_shape_is_refused_even_with_a_valid_checksum(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    arrays["coef_"] = arrays["coef_"][:, :-1]  # one task fewer than the labels
    header["arrays"]["coef_"]["shape"] = list(arrays["coef_"].shape)
    header["sha256"] = _checksum(header, arrays)
    with pytest.raises(ValueError, match="coef_ has shape"):
        load_model(_write(tmp_path / "inconsistent.npz", header, arrays))


def test_unknown_class_is_refused(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    header["class"] = "os.system"
    header["sha256"] = _checksum(header, arrays)
    with pytest.raises(ValueError, match="unknown estimator class 'os.system'"):
        load_model(_write(tmp_path / "cls.npz", header, arrays))


def test_missing_array_is_refused(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    del arrays["dual_coef_"]
    with pytest.raises(ValueError, match=r"missing arrays \['dual_coef_'\]"):
        load_model(_write(tmp_path / "missing.npz", header, arrays))


def test_missing_header_is_refused(saved, tmp_path):
    arrays, _ = _arrays_and_header(saved)
    with pytest.raises(ValueError, match="no '__header__' entry"):
        load_model(_write(tmp_path / "headless.npz", None, arrays))


def test_arbitrary_npz_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="other.npz.*not an fmtl model file"):
        load_model(path)
    np.savez(path, __header__=np.array('{"format": "something-else"}'))
    with pytest.raises(ValueError, match="not an fmtl model file"):
        load_model(path)
    np.savez(path, __header__=np.array("{not json"))
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(path)
    path.write_bytes(b"definitely not a zip file")
    with pytest.raises(ValueError, match="not an fmtl model file"):
        load_model(path)
    np.save(tmp_path / "single.npy", np.arange(3))
    with pytest.raises(ValueError, match="single .npy array"):
        load_model(tmp_path / "single.npy")


_UNPICKLED: list[bool] = []


def _mark() -> str:
    _UNPICKLED.append(True)
    return "ran code while loading"


class _Evil:
    def __reduce__(self):
        return (_mark, ())


def test_pickled_objects_are_refused_without_unpickling(saved, tmp_path):
    arrays, header = _arrays_and_header(saved)
    arrays["coef_"] = np.array([_Evil()], dtype=object)
    path = _write(tmp_path / "evil.npz", header, arrays)
    with pytest.raises(ValueError, match=r"evil\.npz.*'coef_' holds pickled Python objects"):
        load_model(path)
    plain = tmp_path / "evil_pickle.npz"
    plain.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match=r"evil_pickle\.npz.*not an fmtl model file"):
        load_model(plain)
    assert _UNPICKLED == []


# ---------------------------------------------------------------- refused saves


def test_unfitted_is_refused(tmp_path):
    with pytest.raises(NotFittedError):
        save_model(MochaClassifier(), tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_non_fmtl_estimator_is_refused(tmp_path):
    with pytest.raises(TypeError, match="LogisticRegression"):
        save_model(LogisticRegression(), tmp_path / "m.npz")


@pytest.mark.parametrize(
    "param, value",
    [
        ("random_state", np.random.default_rng(0)),
        ("random_state", np.random.RandomState(0)),
        ("loss", print),
        ("sigma", {"a": 1}),
        ("sigma", np.array([object()], dtype=object)),
    ],
)
def test_unsupported_params_name_the_param(param, value, fitted, tmp_path):
    est = copy.copy(fitted["mocha_regressor"])
    est.set_params(**{param: value})
    with pytest.raises(TypeError, match=f"parameter '{param}'"):
        save_model(est, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_unsupported_task_label_names_the_label(data, tmp_path):
    tasks = np.empty(len(data["tasks"]), dtype=object)
    tasks[:] = [frozenset({1}) if t == "b" else t for t in data["tasks"]]
    reg = LocalRegressor(alpha=0.1, max_rounds=3).fit(data["X"], data["z"], tasks)
    with pytest.raises(TypeError, match=r"task label frozenset\(\{1\}\)"):
        save_model(reg, tmp_path / "m.npz")


# ---------------------------------------------------------------- label codec


@pytest.mark.parametrize(
    "label, back",
    [
        (float("nan"), float("nan")),
        (float("inf"), float("inf")),
        (-math.inf, -math.inf),
        (-0.0, -0.0),
        (np.int64(3), 3),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.str_("a"), "a"),
        (2**80, 2**80),
        (("a", (None, 1.5, False)), ("a", (None, 1.5, False))),
    ],
)
def test_label_codec(label, back):
    enc = json.loads(json.dumps(_encode_label(label, "task label"), allow_nan=False))
    assert same(_decode_label(enc), back)
    if back == 0.0:
        assert math.copysign(1.0, _decode_label(enc)) == -1.0


_LABEL = st.recursive(
    st.none() | st.integers() | st.text(max_size=4),
    lambda inner: st.tuples(inner) | st.tuples(inner, inner),
    max_leaves=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LABEL, min_size=1, max_size=5, unique=True))
def test_random_task_labels_round_trip_exactly(labels):
    m = len(labels)
    X = np.random.default_rng(0).normal(size=(3 * m, 2))
    tasks = np.empty(3 * m, dtype=object)
    tasks[:] = labels * 3
    reg = LocalRegressor(alpha=0.1, max_rounds=2).fit(X, X[:, 0], tasks)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.npz"
        save_model(reg, path)
        got = load_model(path)
    assert len(got.tasks_) == len(reg.tasks_)
    assert all(same(a, b) for a, b in zip(got.tasks_, reg.tasks_, strict=True))
    assert same(got.predict(X, tasks), reg.predict(X, tasks))
