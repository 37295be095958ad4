"""Save and load fitted fmtl estimators as plain ``.npz`` files, without pickle.

Why not pickle or joblib? Loading a pickle runs whatever code the file names: a model
file from an untrusted source (or one that was swapped on disk) can execute arbitrary
commands the moment it is loaded. A model saved here is an uncompressed ``.npz`` archive
(``np.savez``) holding

- ``__header__``: a 0-d unicode array with a JSON object (format, versions, class name,
  parameters, task and class labels as tagged JSON values, the shape and dtype of every
  array, a SHA-256 checksum);
- numeric arrays only (``coef_``, ``intercept_``, ``dual_coef_``, ``sigma_``, ``omega_``,
  the history columns, array-valued parameters).

:func:`load_model` reads the archive entry by entry with :mod:`zipfile` and numpy's
``.npy`` header parser and parses the header with :func:`json.loads`, none of which can
execute code; the estimator class comes from a fixed table of fmtl classes, never from an
imported name. Files holding pickled objects are refused before anything is unpickled.
Loading is bounded: the zip directory may declare at most :data:`MAX_EXPANSION` times the
file's size of data, and each array's stored shape and dtype must match the header before
its data is read, so a crafted file cannot make a reader decompress or allocate gigabytes.
Every malformed file raises :class:`ModelFileError` (a ``ValueError``) naming the file and
what was wrong.

:func:`save_model` writes atomically: a temporary file in the same directory, flushed to
disk, then renamed over the target, so a crash, a full disk or a file-size limit never
leaves a partial file behind, and never destroys the model being overwritten.

The checksum (over the header and every array, in a fixed order) detects accidental
corruption or editing; it is not a signature: whoever can write the file can also
recompute it. Only load models from sources you trust to give you the model you expect.

Format version 2 added the intercepts (``fit_intercept``, ``intercept_scaling``,
``intercept_``). A version-1 file was written by an fmtl without intercepts: it loads as the
model it was, with ``fit_intercept=False`` and zero intercepts, predicting exactly as before.

Task labels and class labels round-trip with their Python types: ``int``, ``float``
(including ``nan`` and ``inf``), ``str``, ``bool``, ``None`` and tuples of these; numpy
scalars are stored as their Python equivalents (``np.int64(3)`` comes back as ``3``).

Examples
--------
>>> import tempfile, pathlib
>>> import numpy as np
>>> from fmtl import LocalRegressor
>>> from fmtl.persistence import load_model, save_model
>>> rng = np.random.default_rng(0)
>>> X, y = rng.normal(size=(12, 3)), rng.normal(size=12)
>>> tasks = ["a", "b", ("c", 1)] * 4
>>> reg = LocalRegressor(alpha=0.1).fit(X, y, tasks)
>>> with tempfile.TemporaryDirectory() as d:
...     path = pathlib.Path(d) / "model.npz"
...     save_model(reg, path)
...     same = load_model(path)
>>> bool(np.array_equal(same.predict(X, tasks), reg.predict(X, tasks)))
True
>>> same.tasks_.tolist()
['a', 'b', ('c', 1)]
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ._files import write_atomically
from .cv import MochaClassifierCV, MochaRegressorCV
from .estimators import (
    GlobalClassifier,
    GlobalRegressor,
    LocalClassifier,
    LocalRegressor,
    MochaClassifier,
    MochaRegressor,
)
from .federated.history import History, _one_vs_rest_history
from .federated.kernel_mocha import KERNELS, _check_kernel
from .federated.systems import SystemsModel
from .kernel_estimators import KernelMochaClassifier, KernelMochaRegressor

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load_model", "save_model"]

FORMAT = "fmtl-model"

#: A model file may declare at most this many times its own size in uncompressed bytes
#: (plus ``_EXPANSION_SLACK``): fmtl writes its entries uncompressed, so a larger ratio
#: is a crafted or corrupted file, refused before anything is decompressed.
MAX_EXPANSION = 64
_EXPANSION_SLACK = 1 << 20


class ModelFileError(ValueError):
    """A file that is not a valid fmtl model file: unreadable, truncated, corrupted,
    modified, of another format or version, or declaring more data than it can hold.

    A subclass of ``ValueError``, raised by :func:`load_model` for every malformed file.

    Parameters
    ----------
    message : str
        Names the file and what was wrong.

    Raises
    ------
    ModelFileError
        It is the exception; it raises nothing itself.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from fmtl.persistence import ModelFileError, load_model
    >>> with tempfile.TemporaryDirectory() as d:
    ...     bad = pathlib.Path(d) / "bad.npz"
    ...     _ = bad.write_bytes(b"not a zip file")
    ...     try:
    ...         load_model(bad)
    ...     except ModelFileError as e:
    ...         print("not an fmtl model file" in str(e), isinstance(e, ValueError))
    True True
    """


FORMAT_VERSION = 2  # 2: intercepts (version-1 files load as fit_intercept=False)


def _personalized_classes() -> tuple:
    from . import personalized as p

    return (
        p.FedAvgClassifier,
        p.FedAvgRegressor,
        p.DittoClassifier,
        p.DittoRegressor,
        p.PFedMeClassifier,
        p.PFedMeRegressor,
        p.PerFedAvgClassifier,
        p.PerFedAvgRegressor,
        p.PFedHNClassifier,
        p.PFedHNRegressor,
        p.FedRepRegressor,
        p.FedRepClassifier,
    )


# the only classes a file may name: never import a name read from a file
_CLASSES: dict[str, type] = {
    c.__name__: c
    for c in (
        MochaClassifier,
        MochaRegressor,
        LocalClassifier,
        LocalRegressor,
        GlobalClassifier,
        GlobalRegressor,
        *_personalized_classes(),
        MochaClassifierCV,
        MochaRegressorCV,
        KernelMochaClassifier,
        KernelMochaRegressor,
    )
}

# kernel MOCHA: no coef_; the training rows, their task offsets and the kernel expansion
_KERNEL_CLASSES = (KernelMochaClassifier, KernelMochaRegressor)
_KERNEL_FITTED = ("expansion_coef_", "X_fit_", "task_offsets_", "kernel_", "kernel_params_")
_CSR_PARTS = ("data", "indices", "indptr")

# pFedHN's hypernetwork, embeddings and (kernel hypernetwork only) random-feature map
_HYPERNETWORK = ("hypernetwork_", "embeddings_", "feature_map_omega_", "feature_map_offset_")
# FedRep's shared representation B (n_features x k) and personal heads (n_tasks x k)
_REPRESENTATION = ("representation_", "heads_")

# the cross-validation record of MochaClassifierCV / MochaRegressorCV (cv_results_'s
# arrays under "cv_results_/<key>"; its "params" follow from "param_alpha")
_CV_CLASSES = (MochaClassifierCV, MochaRegressorCV)
_CV_FITTED = ("alphas_", "best_score_", "cv_results_")

# fitted floats resolved from "auto" parameters (the regularisation, the step sizes)
_SCALARS = ("alpha_", "a_", "beta_", "lr_")

# fitted attributes this module knows how to save (public ones: sklearn's trailing "_")
_FITTED = frozenset(
    {
        "coef_",
        "intercept_",
        *_SCALARS,
        "tasks_",
        "n_tasks_",
        "n_features_in_",
        "feature_names_in_",
        "sigma_",
        "omega_",
        "dual_coef_",
        "history_",
        "never_reported_",
        "classes_",
        "global_coef_",
        "global_intercept_",
        "local_gap_",
        *_HYPERNETWORK,
        *_REPRESENTATION,
        *_KERNEL_FITTED,
        *_CV_FITTED,
    }
)

_HEADER = "__header__"
_ARRAY_KINDS = "biufc"  # bool, int, uint, float, complex: no objects, no strings
# the fitted arrays a prediction reads (saved in this order, expansion_coef_ later): a
# loaded model's must be real and finite
_MODEL_ARRAYS = (
    "coef_",
    "intercept_",
    "dual_coef_",
    "sigma_",
    "omega_",
    "global_coef_",
    "global_intercept_",
    "expansion_coef_",
)
_CLASS_KINDS = "biufU"
_HISTORY_KINDS = ("int", "float", "bool", "numpy", "array")
_LABEL_HELP = "supported: int, float, str, bool, None, numpy scalars and tuples of these"


# --------------------------------------------------------------------------- labels


def _encode_scalar(v: Any) -> dict | None:
    """Tagged JSON of a scalar label (numpy scalars as Python), or None if unsupported."""
    if isinstance(v, np.generic) and v.dtype.kind in "biufU":
        v = v.item()
    t = type(v)
    if v is None:
        return {"t": "none"}
    if t is bool:
        return {"t": "bool", "v": v}
    if t is int:
        return {"t": "int", "v": v}
    if t is float:
        return {"t": "float", "v": v if math.isfinite(v) else repr(v)}
    if t is str:
        return {"t": "str", "v": v}
    return None


def _encode_label(v: Any, what: str) -> dict:
    """Tagged JSON of a task or class label; TypeError naming the label if unsupported."""
    enc = _encode_scalar(v)
    if enc is not None:
        return enc
    if type(v) is tuple:
        return {"t": "tuple", "v": [_encode_label(x, what) for x in v]}
    raise TypeError(f"cannot save {what} {v!r} of type {type(v).__name__} ({_LABEL_HELP})")


def _decode_label(enc: Any) -> Any:
    """Inverse of :func:`_encode_label` (ValueError on anything malformed)."""
    if not isinstance(enc, dict) or not isinstance(enc.get("t"), str):
        raise ValueError(f"malformed label {enc!r}")
    t, v = enc["t"], enc.get("v")
    if t == "none" and "v" not in enc:
        return None
    if t == "bool" and type(v) is bool:
        return v
    if t == "int" and type(v) is int:
        return v
    if t == "float":
        if type(v) is float:
            return v
        if v in ("nan", "inf", "-inf"):
            return float(v)
    if t == "str" and type(v) is str:
        return v
    if t == "tuple" and type(v) is list:
        return tuple(_decode_label(x) for x in v)
    raise ValueError(f"malformed label {enc!r}")


# --------------------------------------------------------------------------- params


def _encode_param(v: Any, name: str, arrays: dict[str, np.ndarray]) -> Any:
    """Tagged JSON of a parameter value; arrays go to ``arrays`` under ``params/<name>``."""
    enc = _encode_scalar(v)
    if enc is not None:
        return enc
    if type(v) in (tuple, list):
        items = [_encode_param(x, f"{name}/{i}", arrays) for i, x in enumerate(v)]
        return {"t": type(v).__name__, "v": items}
    if type(v) is np.ndarray and v.dtype.kind in _ARRAY_KINDS:
        key = f"params/{name}"
        arrays[key] = v
        return {"t": "ndarray", "key": key}
    if isinstance(v, os.PathLike) and isinstance(os.fspath(v), str):
        # checkpoint_dir as a pathlib.Path (str paths are plain strings above)
        return {"t": "path", "v": os.fspath(v)}
    if type(v) is SystemsModel:
        fields = {
            f.name: _encode_param(getattr(v, f.name), f"{name}.{f.name}", arrays)
            for f in dataclasses.fields(v)
        }
        return {"t": "SystemsModel", "v": fields}
    top = name.split("/")[0].split(".")[0]
    if isinstance(v, np.random.Generator | np.random.RandomState):
        hint = "a numpy random generator has no portable state here; pass an int seed or None"
    else:
        hint = (
            "supported: int, float, str, bool, None, numeric ndarrays, lists/tuples of "
            "these, paths and fmtl.federated.SystemsModel"
        )
    raise TypeError(
        f"cannot save parameter {top!r}: value {v!r} of type {type(v).__name__} ({hint})"
    )


def _decode_param(enc: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(enc, dict):
        t = enc.get("t")
        if t in ("tuple", "list") and type(enc.get("v")) is list:
            items = [_decode_param(x, arrays) for x in enc["v"]]
            return tuple(items) if t == "tuple" else items
        if t == "dict" and isinstance(enc.get("v"), dict):
            return {k: _decode_param(x, arrays) for k, x in enc["v"].items()}
        if t == "ndarray" and enc.get("key") in arrays:
            return arrays[enc["key"]].copy()
        if t == "path" and type(enc.get("v")) is str:
            return Path(enc["v"])
        if t == "SystemsModel" and isinstance(enc.get("v"), dict):
            names = {f.name for f in dataclasses.fields(SystemsModel)}
            if not set(enc["v"]) <= names:
                raise ValueError(f"unknown SystemsModel fields {sorted(set(enc['v']) - names)}")
            return SystemsModel(**{k: _decode_param(x, arrays) for k, x in enc["v"].items()})
    return _decode_label(enc)


def _encode_kernel_params(v: Any, name: str, arrays: dict[str, np.ndarray]) -> Any:
    """Tagged JSON of a kernel's keyword arguments: None or a dict with string keys."""
    if v is None:
        return {"t": "none"}
    if type(v) is not dict or not all(type(k) is str for k in v):
        raise TypeError(
            f"cannot save parameter {name!r}: value {v!r} of type {type(v).__name__} "
            "(supported: None or a dict with string keys)"
        )
    return {"t": "dict", "v": {k: _encode_param(x, f"{name}.{k}", arrays) for k, x in v.items()}}


def _check_saveable_kernel(estimator: Any) -> None:
    """ValueError naming ``kernel`` if the estimator's kernel is a callable (no portable form)."""
    for where, k in (("parameter", estimator.kernel), ("fitted kernel_", estimator.kernel_)):
        if not isinstance(k, str):
            raise ValueError(
                f"cannot save kernel={k!r} ({where}): a callable kernel has no portable "
                f"form without pickle; save models fitted with a named kernel {KERNELS}"
            )


# --------------------------------------------------------------------------- history


def _history_kind(v: Any, col: str) -> str:
    t = type(v)
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "float"
    if isinstance(v, np.generic) and v.dtype.kind in _ARRAY_KINDS:
        return "numpy"
    if t is np.ndarray and v.dtype.kind in _ARRAY_KINDS:
        return "array"
    raise TypeError(f"cannot save history column {col!r}: value {v!r} of type {t.__name__}")


def _history_value(stacked: np.ndarray, i: int, kind: str) -> Any:
    x = stacked[i]
    if kind == "array":
        return np.array(x)
    if kind == "numpy":
        return x
    return {"bool": bool, "int": int, "float": float}[kind](x.item())


def _same_value(a: Any, b: Any) -> bool:
    """Exactly the same value: same type, dtype, shape and bytes (NaN-safe)."""
    if type(a) is not type(b):
        return False
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _encode_history(h: Any, run: int, arrays: dict[str, np.ndarray]) -> dict:
    if not isinstance(h, History):
        raise TypeError(f"history_ must be a fmtl History, got {type(h).__name__}")
    recs = h.records
    names = list(dict.fromkeys(k for r in recs for k in r))
    columns = []
    for c, name in enumerate(names):
        present = np.array([name in r for r in recs], dtype=bool)
        values = [r[name] for r in recs if name in r]
        kinds = [_history_kind(v, name) for v in values]
        try:
            stacked = np.stack([np.asarray(v) for v in values])
        except ValueError as e:
            raise ValueError(f"cannot save history column {name!r}: ragged values") from e
        key = f"history/{run}/{c}"
        col: dict = {"name": name, "key": key}
        col["kind"] = kinds[0] if len(set(kinds)) == 1 else kinds
        if stacked.dtype.kind not in _ARRAY_KINDS or not all(
            _same_value(v, _history_value(stacked, i, k))
            for i, (v, k) in enumerate(zip(values, kinds, strict=True))
        ):
            raise ValueError(f"cannot save history column {name!r} losslessly (mixed types)")
        arrays[key] = stacked
        if not present.all():
            arrays[key + "/present"] = present
            col["present"] = key + "/present"
        columns.append(col)
    return {"n_records": len(recs), "columns": columns}


def _decode_history(enc: Any, arrays: dict[str, np.ndarray]) -> History:
    if not isinstance(enc, dict) or type(enc.get("n_records")) is not int:
        raise ValueError("malformed history")
    n = enc["n_records"]
    recs: list[dict] = [{} for _ in range(n)]
    for col in enc.get("columns", []):
        name, key, kind = col.get("name"), col.get("key"), col.get("kind")
        if not isinstance(name, str) or key not in arrays:
            raise ValueError(f"malformed history column {col!r}")
        stacked = arrays[key]
        present = arrays[col["present"]] if "present" in col else np.ones(n, dtype=bool)
        rows = np.flatnonzero(present)
        kinds = [kind] * rows.size if isinstance(kind, str) else kind
        if (
            present.shape != (n,)
            or present.dtype != bool
            or stacked.shape[:1] != (rows.size,)
            or not isinstance(kinds, list)
            or len(kinds) != rows.size
            or any(k not in _HISTORY_KINDS for k in kinds)
        ):
            raise ValueError(f"history column {name!r} does not match its records")
        for i, (r, k) in enumerate(zip(rows, kinds, strict=True)):
            recs[r][name] = _history_value(stacked, i, k)
    h = History()
    for r in recs:
        h.append(**r)
    return h


# --------------------------------------------------------------------------- checksum


def _canonical(header: dict) -> bytes:
    body = {k: v for k, v in header.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _checksum(header: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the header (without its checksum) and every array, in name order."""
    digest = hashlib.sha256(_canonical(header))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- save


def save_model(estimator: Any, path: str | os.PathLike) -> None:
    """Save a fitted fmtl estimator to an ``.npz`` file that loads without pickle.

    Parameters
    ----------
    estimator : fmtl estimator
        A fitted estimator of :mod:`fmtl.estimators` (``MochaClassifier``,
        ``MochaRegressor``, ``LocalClassifier``, ``LocalRegressor``, ``GlobalClassifier``,
        ``GlobalRegressor``), :mod:`fmtl.personalized` or :mod:`fmtl.kernel_estimators`
        (``KernelMochaClassifier``, ``KernelMochaRegressor``: the training rows, their task
        offsets, the kernel expansion, the kernel's name and its ``kernel_params``), exactly
        one of these classes, not a subclass.
    path : str or path-like
        Written exactly as given (no ``.npz`` suffix is appended); overwritten if it
        exists. The file is written atomically: to a temporary file in the same
        directory, flushed to disk, then renamed over ``path``, so a crash or a full disk
        never leaves a partial file there (an existing model stays intact).

    Returns
    -------
    None
        The estimator is written to ``path``; :func:`load_model` reads it back.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    TypeError
        If it is not an fmtl estimator, or a parameter, task label, class label or
        history value cannot be stored without pickle (e.g. ``random_state`` set to a
        numpy ``Generator``, or a kernel model's ``kernel_params`` not a dict with string
        keys); the message names the offending value.
    ValueError
        If a kernel model's ``kernel`` is a callable (it has no portable form without
        pickle); the message names ``kernel``.

    See Also
    --------
    load_model

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from fmtl import GlobalClassifier
    >>> from fmtl.persistence import save_model
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 2))
    >>> clf = GlobalClassifier(alpha=0.1).fit(X, X[:, 0] > 0, [1, 2] * 10)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = pathlib.Path(d) / "clf.npz"
    ...     save_model(clf, path)
    ...     sorted(np.load(path, allow_pickle=False).files)[:3]
    ['__header__', 'coef_', 'dual_coef_']
    """
    from . import __version__

    cls = type(estimator)
    if _CLASSES.get(cls.__name__) is not cls:
        raise TypeError(
            f"save_model saves fmtl estimators ({', '.join(_CLASSES)}), "
            f"not {cls.__module__}.{cls.__qualname__}"
        )
    kernel = isinstance(estimator, _KERNEL_CLASSES)
    check_is_fitted(estimator, "expansion_coef_" if kernel else "coef_")
    if kernel:
        _check_saveable_kernel(estimator)
    unknown = sorted(
        k
        for k in vars(estimator)
        if k.endswith("_") and not k.startswith("_") and k not in _FITTED
    )
    if unknown:
        raise TypeError(f"{cls.__name__} has fitted attributes {unknown} that save_model omits")

    arrays: dict[str, np.ndarray] = {}
    params = {
        name: (
            _encode_kernel_params(value, name, arrays)
            if kernel and name == "kernel_params"
            else _encode_param(value, name, arrays)
        )
        for name, value in estimator.get_params(deep=False).items()
    }
    tasks = [_encode_label(v, "task label") for v in estimator.tasks_.tolist()]
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fmtl_version": __version__,
        "class": cls.__name__,
        "params": params,
        "tasks": tasks,
        "classes": None,
        "classes_dtype": None,
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": None,
        "scalars": {
            name: float(getattr(estimator, name)) for name in _SCALARS if hasattr(estimator, name)
        },
    }
    if isinstance(estimator, ClassifierMixin):
        classes = np.asarray(estimator.classes_)
        if classes.dtype.kind not in _CLASS_KINDS + "O":
            raise TypeError(f"cannot save classes_ of dtype {classes.dtype}")
        header["classes"] = [_encode_label(v, "class label") for v in classes.tolist()]
        header["classes_dtype"] = classes.dtype.str
    names_in = getattr(estimator, "feature_names_in_", None)
    if names_in is not None:
        header["feature_names_in"] = [str(v) for v in names_in]

    if kernel:
        X_fit = estimator.X_fit_
        header["kernel"] = {
            "kernel_": estimator.kernel_,
            "kernel_params_": _encode_kernel_params(
                estimator.kernel_params_, "fitted_kernel_params", arrays
            ),
            "X_fit_sparse": bool(sp.issparse(X_fit)),
        }
        if sp.issparse(X_fit):
            X_fit = sp.csr_matrix(X_fit)
            for part in _CSR_PARTS:
                arrays[f"X_fit_/{part}"] = np.asarray(getattr(X_fit, part))
        else:
            arrays["X_fit_"] = np.asarray(X_fit)
    for name in (
        *_MODEL_ARRAYS[:-1],
        "local_gap_",
        *_HYPERNETWORK,
        *_REPRESENTATION,
        "expansion_coef_",
        "task_offsets_",
    ):
        value = getattr(estimator, name, None)
        if value is not None:
            value = np.asarray(value)
            if value.dtype.kind not in _ARRAY_KINDS:
                raise TypeError(f"cannot save {name} of dtype {value.dtype}")
            arrays[name] = value
    if isinstance(estimator, _CV_CLASSES):
        header["cv"] = {"best_score_": float(estimator.best_score_)}
        arrays["alphas_"] = np.asarray(estimator.alphas_, dtype=np.float64)
        for key, value in estimator.cv_results_.items():
            if key != "params":
                arrays[f"cv_results_/{key}"] = np.asarray(value)
    lookup = {lab: i for i, lab in enumerate(estimator.tasks_.tolist())}
    arrays["never_reported_"] = np.array(
        [lookup[v] for v in np.asarray(estimator.never_reported_).tolist()], dtype=np.int64
    )
    # one History, also for one-vs-rest (its "class_index" column says which class)
    header["history"] = {"multi": False, "runs": [_encode_history(estimator.history_, 0, arrays)]}
    header["arrays"] = {
        name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()
    }
    # hash exactly what a reader will parse (JSON turns tuples into lists, ...)
    header = json.loads(json.dumps(header, allow_nan=False))
    header["sha256"] = _checksum(header, arrays)
    text = json.dumps(header, allow_nan=False)
    write_atomically(path, lambda f: np.savez(f, **{_HEADER: np.array(text)}, **arrays))


# --------------------------------------------------------------------------- load


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, spec=None):
    """One ``.npy`` entry, its header checked (against ``spec``, the JSON header's
    ``{"shape", "dtype"}``, when given) before any of its data is read."""
    try:
        return _read_entry_unchecked(zf, info, where, spec)
    except ModelFileError:
        raise
    except Exception as e:  # zipfile, zlib and numpy raise many kinds on corrupted bytes
        raise ModelFileError(
            f"{where}: entry {info.filename[:-4]!r} is corrupted ({type(e).__name__}: {e})"
        ) from e


def _read_entry_unchecked(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, spec):
    name = info.filename[:-4]
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ModelFileError(f"unsupported .npy version {version}")
        except ModelFileError:
            raise
        except Exception as e:  # numpy's header parser raises several kinds
            raise ModelFileError(f"{where}: entry {name!r} has a corrupted header ({e})") from e
        if dtype.hasobject:
            raise ModelFileError(
                f"{where}: entry {name!r} holds pickled Python objects; refusing to unpickle it "
                "(loading a pickle can run arbitrary code, and fmtl model files never "
                "contain one)"
            )
        if spec is not None and (not isinstance(spec, dict) or list(shape) != spec.get("shape")):
            raise ModelFileError(
                f"{where}: array {name!r} has the wrong shape {tuple(shape)} (header: "
                f"{spec.get('shape') if isinstance(spec, dict) else spec!r}), seen before "
                "reading its data"
            )
        if spec is not None and dtype.str != spec.get("dtype"):
            raise ModelFileError(
                f"{where}: array {name!r} has the wrong dtype {dtype.str} "
                f"(header: {spec.get('dtype')!r})"
            )
        nbytes = dtype.itemsize * math.prod(shape)  # Python ints: no overflow
        if nbytes > info.file_size:
            raise ModelFileError(
                f"{where}: entry {name!r} declares {nbytes} bytes of data in an entry of "
                f"{info.file_size} bytes (truncated or corrupted)"
            )
        try:
            data = f.read(nbytes)
        except Exception as e:  # CRC mismatch, bad deflate stream, ...
            raise ModelFileError(f"{where}: entry {name!r} is corrupted ({e})") from e
    if len(data) != nbytes:
        raise ModelFileError(f"{where}: entry {name!r} is truncated")
    arr = np.frombuffer(data, dtype=dtype)
    return arr.reshape(shape[::-1]).T.copy() if fortran else arr.reshape(shape).copy()


def _read_npz(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON header and every array of a model file, never unpickling anything.

    The zip directory is checked first (entry names, declared sizes against
    :data:`MAX_EXPANSION` times the file's size), then the header entry is parsed, and
    each array's stored shape and dtype are compared with the header before its data is
    read: a crafted or corrupted file is refused without allocating what it declares.
    """
    where = repr(os.fspath(path))
    with _open_regular_file(path, where) as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(6) == b"\x93NUMPY":
            raise ModelFileError(f"{where} is a single .npy array, not an fmtl model (.npz)")
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except Exception as e:  # BadZipFile, NotImplementedError, EOFError, ... on bad bytes
            raise ModelFileError(
                f"{where} is not an fmtl model file (not a readable .npz: {e}); pickled files "
                "are never loaded"
            ) from e
        return _read_zip(zf, size, where)


def _open_regular_file(path: str | os.PathLike, where: str):
    """``path`` opened for reading, refused unless it is a regular file: a device reads
    without end (``/dev/zero``) and a FIFO blocks until someone writes to it. Opened without
    blocking and checked on the descriptor itself, so the path cannot be swapped between
    the check and the read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # FileNotFoundError, ...
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(mode):
            raise ModelFileError(
                f"{where} is not a regular file (a device, FIFO or socket): refusing to read it"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_zip(zf: zipfile.ZipFile, size: int, where: str) -> tuple[dict, dict[str, np.ndarray]]:
    with zf:
        infos = zf.infolist()
        declared = sum(i.file_size for i in infos)
        cap = MAX_EXPANSION * size + _EXPANSION_SLACK
        if declared > cap:
            raise ModelFileError(
                f"{where} declares {declared} bytes of uncompressed data in a file of {size} "
                f"bytes (more than {MAX_EXPANSION}x): refused before decompressing"
            )
        entries = {}
        for info in infos:
            if not info.filename.endswith(".npy") or info.filename[:-4] in entries:
                raise ModelFileError(f"{where}: unexpected entry {info.filename!r}")
            if info.flag_bits & 0x1:
                raise ModelFileError(f"{where}: entry {info.filename!r} is encrypted")
            entries[info.filename[:-4]] = info
        if _HEADER not in entries:
            raise ModelFileError(f"{where} is not an fmtl model file: no {_HEADER!r} entry")
        header = _parse_header(_read_entry(zf, entries.pop(_HEADER), where), where)
        listed = _listed_arrays(header, entries, where)
        arrays = {
            name: _read_entry(zf, info, where, listed[name]) for name, info in entries.items()
        }
    return header, arrays


def _reject_constant(name: str) -> None:
    raise ModelFileError(f"non-standard JSON constant {name}")


def _parse_header(raw: np.ndarray, where: str) -> dict:
    if raw.shape != () or raw.dtype.kind != "U":
        raise ModelFileError(f"{where}: {_HEADER!r} is not a JSON string")
    try:
        header = json.loads(str(raw), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"{where}: the header is not valid JSON ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{where} is not an fmtl model file (format is not {FORMAT!r})")
    version = header.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{where}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} uses model format version {version} (written by fmtl "
            f"{header.get('fmtl_version')}); this fmtl reads versions <= {FORMAT_VERSION}: "
            "the file needs a newer fmtl"
        )
    return header


def _listed_arrays(header: dict, names, where: str) -> dict:
    """The header's ``arrays`` table, checked to name exactly the entries ``names``."""
    listed = header.get("arrays")
    if not isinstance(listed, dict):
        raise ModelFileError(f"{where}: the header lists no arrays")
    missing = sorted(set(listed) - set(names))
    extra = sorted(set(names) - set(listed))
    if missing or extra:
        raise ModelFileError(f"{where}: missing arrays {missing}, unexpected arrays {extra}")
    return listed


def _check_arrays(header: dict, arrays: dict[str, np.ndarray], where: str) -> None:
    listed = _listed_arrays(header, arrays, where)
    for name, spec in listed.items():
        a = arrays[name]
        if not isinstance(spec, dict) or list(a.shape) != spec.get("shape"):
            raise ModelFileError(
                f"{where}: array {name!r} has the wrong shape {a.shape} "
                f"(header: {spec.get('shape') if isinstance(spec, dict) else spec!r})"
            )
        if a.dtype.str != spec.get("dtype") or a.dtype.kind not in _ARRAY_KINDS:
            raise ModelFileError(
                f"{where}: array {name!r} has the wrong dtype {a.dtype.str} "
                f"(header: {spec.get('dtype')!r})"
            )
    if header.get("sha256") != _checksum(header, arrays):
        raise ModelFileError(f"{where}: checksum mismatch: the file was modified or corrupted")


def _build(header: dict, arrays: dict[str, np.ndarray], where: str) -> Any:
    cls = _CLASSES.get(header.get("class"))  # type: ignore[arg-type]
    if cls is None:
        raise ModelFileError(
            f"{where}: unknown estimator class {header.get('class')!r} "
            f"(known: {', '.join(_CLASSES)})"
        )
    params_enc = header.get("params")
    if not isinstance(params_enc, dict):
        raise ModelFileError(f"{where}: malformed params")
    valid = cls().get_params(deep=False)
    unknown = sorted(set(params_enc) - set(valid))
    if unknown:
        raise ModelFileError(f"{where}: {cls.__name__} has no parameters {unknown}")
    params = {k: _decode_param(v, arrays) for k, v in params_enc.items()}
    if header["format_version"] < 2:
        # written before intercepts existed: the model it holds has none
        if "fit_intercept" in params or "intercept_" in arrays:
            raise ModelFileError(f"{where}: a version-1 file cannot hold intercepts")
        params["fit_intercept"] = False
    elif "fit_intercept" not in params or "intercept_" not in arrays:
        raise ModelFileError(f"{where}: a version-2 file needs fit_intercept and intercept_")
    est = cls(**params)
    n_constant = int(params["fit_intercept"] is True)  # the intercept's extra feature

    labels = [_decode_label(v) for v in header.get("tasks") or []]
    m = len(labels)
    tasks = np.empty(m, dtype=object)
    tasks[:] = labels
    lookup = {lab: i for i, lab in enumerate(labels)}
    if len(lookup) != m:
        raise ModelFileError(f"{where}: duplicate task labels")
    n_features = header.get("n_features_in")
    if type(n_features) is not int or n_features < 0:
        raise ModelFileError(f"{where}: malformed n_features_in {n_features!r}")

    lead: tuple[int, ...] = ()
    if issubclass(cls, ClassifierMixin):
        dtype, enc = header.get("classes_dtype"), header.get("classes")
        if not isinstance(enc, list) or not isinstance(dtype, str):
            raise ModelFileError(f"{where}: a classifier needs classes")
        dt = np.dtype(dtype)
        if dt.kind not in _CLASS_KINDS + "O":
            raise ModelFileError(f"{where}: unsupported classes dtype {dtype!r}")
        decoded = [_decode_label(v) for v in enc]
        if dt.kind == "O":
            classes = np.empty(len(decoded), dtype=object)
            classes[:] = decoded
        else:
            classes = np.array(decoded, dtype=dt)
        if classes.shape[0] < 2:
            raise ModelFileError(f"{where}: a classifier needs at least two classes")
        est.classes_ = classes
        if classes.shape[0] > 2:
            lead = (classes.shape[0],)
    kernel = issubclass(cls, _KERNEL_CLASSES)
    if kernel:
        kernel_fitted = _build_kernel(header, arrays, where, lead, m, n_features)
    else:
        coef = arrays["coef_"]
        expected = (*lead, m, n_features)
        if coef.dtype.kind != "f":
            raise ModelFileError(f"{where}: coef_ has dtype {coef.dtype}, expected float64")
        if coef.shape != expected:
            raise ModelFileError(
                f"{where}: coef_ has shape {coef.shape}, expected {expected} from "
                f"{m} tasks, {n_features} features" + (f", {lead[0]} classes" if lead else "")
            )
    intercept = arrays.get("intercept_", np.zeros((*lead, m)))
    if intercept.shape != (*lead, m) or intercept.dtype.kind != "f":
        raise ModelFileError(f"{where}: intercept_ has the wrong shape {intercept.shape}")
    if "global_coef_" in arrays and "global_intercept_" not in arrays:
        if header["format_version"] >= 2:
            raise ModelFileError(f"{where}: global_coef_ comes with global_intercept_")
        arrays["global_intercept_"] = np.zeros(lead)
    for name, shape in (
        ("sigma_", (*lead, m, m)),
        ("omega_", (*lead, m, m)),
        ("global_coef_", (*lead, n_features)),
        ("global_intercept_", lead),
        ("local_gap_", (*lead, m)),
    ):
        if name in arrays and arrays[name].shape != shape:
            raise ModelFileError(f"{where}: {name} has the wrong shape {arrays[name].shape}")
    if "hypernetwork_" in arrays:
        q = arrays["hypernetwork_"].shape[-1]
        k = arrays["embeddings_"].shape[-1] if "embeddings_" in arrays else 0
        for name, shape in (
            ("hypernetwork_", (*lead, n_features + n_constant, q)),
            ("embeddings_", (*lead, m, k)),
            ("feature_map_omega_", (*lead, q, k)),
            ("feature_map_offset_", (*lead, q)),
        ):
            if name in arrays and arrays[name].shape != shape:
                raise ModelFileError(f"{where}: {name} has the wrong shape {arrays[name].shape}")
    if any(name in arrays for name in _REPRESENTATION):
        if not all(name in arrays for name in _REPRESENTATION):
            raise ModelFileError(f"{where}: {' and '.join(_REPRESENTATION)} come together")
        k = arrays["representation_"].shape[-1]
        for name, shape in (
            ("representation_", (*lead, n_features + n_constant, k)),
            ("heads_", (*lead, m, k)),
        ):
            if arrays[name].shape != shape:
                raise ModelFileError(f"{where}: {name} has the wrong shape {arrays[name].shape}")
    dual = arrays["dual_coef_"]
    if dual.ndim != len(lead) + 1 or (lead and dual.shape[0] != lead[0]):
        raise ModelFileError(
            f"{where}: dual_coef_ has the wrong shape {arrays['dual_coef_'].shape}"
        )
    never = arrays["never_reported_"]
    if never.ndim != 1 or never.dtype.kind != "i" or np.any((never < 0) | (never >= m)):
        raise ModelFileError(f"{where}: never_reported_ is not a list of task indices")

    hist = header.get("history")
    if not isinstance(hist, dict) or not isinstance(hist.get("runs"), list):
        raise ModelFileError(f"{where}: malformed history")
    runs = [_decode_history(h, arrays) for h in hist["runs"]]
    # files of fmtl 0.1.0 hold one run per class of a one-vs-rest fit: stack them into one
    multi = bool(hist.get("multi"))
    if (multi and (not lead or len(runs) != lead[0])) or (not multi and len(runs) != 1):
        raise ModelFileError(
            f"{where}: {len(runs)} histories for "
            + (f"{lead[0]} classes" if lead else "a single model")
        )
    history = _one_vs_rest_history(runs) if multi else runs[0]

    names_in = header.get("feature_names_in")
    if names_in is not None:
        if not (
            isinstance(names_in, list)
            and len(names_in) == n_features
            and all(isinstance(s, str) for s in names_in)
        ):
            raise ModelFileError(f"{where}: malformed feature_names_in")
        est.feature_names_in_ = np.array(names_in, dtype=object)

    # files written before the "auto" defaults have no scalars: alpha_ is alpha itself
    scalars = header.get("scalars", {"alpha_": getattr(est, "alpha", None)})
    if not isinstance(scalars, dict) or not set(scalars) <= set(_SCALARS):
        raise ModelFileError(f"{where}: malformed scalars {scalars!r}")
    for name, value in scalars.items():
        if not (type(value) in (int, float) and math.isfinite(value) and value >= 0):
            raise ModelFileError(f"{where}: malformed {name} {value!r}")
        setattr(est, name, float(value))
    est.n_features_in_ = n_features
    est.tasks_ = tasks
    est._task_lookup_ = lookup
    est.n_tasks_ = m
    if kernel:
        for name, value in kernel_fitted.items():
            setattr(est, name, value)
    else:
        est.coef_ = coef
    est.intercept_ = intercept
    est.sigma_ = arrays.get("sigma_")
    est.omega_ = arrays.get("omega_")
    est.dual_coef_ = arrays["dual_coef_"]
    est.history_ = history
    est.never_reported_ = tasks[never]
    for name in ("global_coef_", "local_gap_", *_HYPERNETWORK, *_REPRESENTATION):
        if name in arrays:
            setattr(est, name, arrays[name])
    if "global_intercept_" in arrays:
        g = arrays["global_intercept_"]
        est.global_intercept_ = g[()] if g.ndim == 0 else g  # a float64 scalar when binary
    if issubclass(cls, _CV_CLASSES):
        _build_cv(est, header, arrays, where)
    return est


def _build_cv(est: Any, header: dict, arrays: dict[str, np.ndarray], where: str) -> None:
    """MochaClassifierCV / MochaRegressorCV's cross-validation record, checked."""
    info = header.get("cv")
    best = info.get("best_score_") if isinstance(info, dict) else None
    alphas = arrays.get("alphas_")
    if type(best) not in (int, float) or alphas is None or alphas.ndim != 1:
        raise ModelFileError(f"{where}: a cross-validated model needs alphas_ and best_score_")
    results = {
        key.split("/", 1)[1]: value
        for key, value in arrays.items()
        if key.startswith("cv_results_/")
    }
    if any(v.shape != alphas.shape for v in results.values()) or not np.array_equal(
        results.get("param_alpha"), alphas
    ):
        raise ModelFileError(f"{where}: cv_results_ does not match alphas_")
    params = {"params": [{"alpha": float(a)} for a in alphas]}
    results = {"param_alpha": results.pop("param_alpha"), **params, **results}
    est.alphas_, est.best_score_, est.cv_results_ = alphas, float(best), results


def _build_kernel(
    header: dict, arrays: dict[str, np.ndarray], where: str, lead: tuple, m: int, d: int
) -> dict:
    """Kernel MOCHA's fitted state (training rows, offsets, expansion), checked."""
    info = header.get("kernel")
    if not isinstance(info, dict) or not isinstance(info.get("kernel_"), str):
        raise ModelFileError(f"{where}: a kernel model needs its kernel")
    params = _decode_param(info.get("kernel_params_"), arrays)
    kernel_, kernel_params_ = _check_kernel(info["kernel_"], params)
    offsets = arrays["task_offsets_"]
    if (
        offsets.shape != (m + 1,)
        or offsets.dtype.kind != "i"
        or offsets[0] != 0
        or np.any(np.diff(offsets) < 0)
    ):
        raise ModelFileError(f"{where}: task_offsets_ are not {m + 1} increasing row offsets")
    n = int(offsets[-1])
    if info.get("X_fit_sparse") is True:
        data, indices, indptr = (arrays[f"X_fit_/{p}"] for p in _CSR_PARTS)
        if indptr.shape != (n + 1,) or data.shape != indices.shape or data.dtype.kind != "f":
            raise ModelFileError(f"{where}: X_fit_ is not a CSR matrix with {n} rows")
        X_fit = sp.csr_matrix((data, indices, indptr), shape=(n, d))
        X_fit.check_format(full_check=True)
    elif info.get("X_fit_sparse") is False:
        X_fit = arrays["X_fit_"]
        if X_fit.shape != (n, d) or X_fit.dtype.kind != "f":
            raise ModelFileError(f"{where}: X_fit_ has shape {X_fit.shape}, expected {(n, d)}")
    else:
        raise ModelFileError(f"{where}: malformed kernel header")
    expansion = arrays["expansion_coef_"]
    if expansion.shape != (*lead, n, m) or expansion.dtype.kind != "f":
        raise ModelFileError(f"{where}: expansion_coef_ has the wrong shape {expansion.shape}")
    if arrays["dual_coef_"].shape != (*lead, n):
        raise ModelFileError(
            f"{where}: dual_coef_ has the wrong shape {arrays['dual_coef_'].shape}"
        )
    return {
        "kernel_": kernel_,
        "kernel_params_": kernel_params_,
        "X_fit_": X_fit,
        "task_offsets_": offsets,
        "expansion_coef_": expansion,
    }


def load_model(path: str | os.PathLike) -> Any:
    """Load an estimator saved by :func:`save_model` (never unpickles anything).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator
        A fitted fmtl estimator whose ``predict`` and ``decision_function`` give
        bit-identical results to the saved one.

    Raises
    ------
    ModelFileError
        (a ``ValueError``) For every malformed file, and only for those: not an fmtl
        model (not a zip, no or unparseable header, other format, an entry holding
        pickled objects, an encrypted or truncated entry), written by a newer model
        format ("needs a newer fmtl"), declaring more than ``MAX_EXPANSION`` times its
        own size of data (checked before anything is decompressed), an unknown class, an
        array whose stored shape or dtype differs from the header's (checked before its
        data is read), a failed checksum ("checksum mismatch: the file was modified or
        corrupted") or internally inconsistent content. Messages name the file.
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` cannot be opened. Anything but a regular file (a device such as
        ``/dev/zero``, a FIFO, a socket) is a ``ModelFileError``, refused before a byte is
        read.

    See Also
    --------
    save_model

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from fmtl import MochaRegressor
    >>> from fmtl.persistence import load_model
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    >>> reg = MochaRegressor(alpha=0.1, outer_iters=2, random_state=0)
    >>> reg = reg.fit(X, y, [None, 2.5, "x"] * 10)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     reg.save(pathlib.Path(d) / "reg.npz")
    ...     loaded = load_model(pathlib.Path(d) / "reg.npz")
    >>> loaded.get_params() == reg.get_params(), loaded.tasks_.tolist()
    (True, [None, 2.5, 'x'])
    >>> bool(np.array_equal(loaded.history_["gap"], reg.history_["gap"]))
    True
    """
    where = repr(os.fspath(path))
    try:
        header, arrays = _read_npz(path)
        _check_arrays(header, arrays, where)
        est = _build(header, arrays, where)
    except (ModelFileError, OSError):
        raise
    except (TypeError, KeyError, ValueError, OverflowError, RecursionError) as e:
        # malformed content (labels nested without end, out-of-range class labels, numbers
        # JSON cannot hold, SystemsModel fields, ...) that passed the checksum
        raise ModelFileError(f"{where}: malformed model file ({type(e).__name__}: {e})") from e
    _check_model(est, where)
    return est


def _check_model(est, where: str) -> None:
    """Refuse a loaded model whose arrays or regularisation a fit could not have produced
    (a crafted file with a valid checksum): non-finite or complex weights, alpha <= 0."""
    for name in _MODEL_ARRAYS:
        value = getattr(est, name, None)
        if not isinstance(value, np.ndarray | np.generic | float | int):
            continue  # absent, or a structured relationship (LowRankSigma) checked at build
        a = np.asarray(value)
        if a.dtype.kind == "c":
            raise ModelFileError(f"{where}: {name} is complex ({a.dtype}); models are real")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ModelFileError(f"{where}: {name} contains NaN or inf")
    alpha = getattr(est, "alpha", None)
    if not isinstance(alpha, str | type(None)) and not (
        isinstance(alpha, int | float | np.integer | np.floating)
        and not isinstance(alpha, bool)
        and np.isfinite(alpha)
        and alpha > 0
    ):
        raise ModelFileError(f"{where}: alpha={alpha!r} is not a positive finite number")
