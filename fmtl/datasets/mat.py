"""MOCHA ``.mat`` files: the reader and the search for them.

:func:`load_mat` reads the MATLAB cell-array layout of the MOCHA reference code (Smith et
al., "Federated Multi-Task Learning", NeurIPS 2017); :func:`mocha_data_paths`,
:func:`find_mocha` and :func:`load_mocha` look for a data set by name in ``data_home``,
``$FMTL_DATA`` and ``shared/data/mocha`` near the checkout.  Import them from
:mod:`fmtl.datasets`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from .containers import MultiTaskDataset

#: Name of the environment variable pointing at a directory holding MOCHA ``.mat`` files.
FMTL_DATA_ENV = "FMTL_DATA"


def _cells(value: Any, var: str, path: Path) -> list:
    """Flatten a loaded MATLAB cell array (object ndarray) to a list of its cells."""
    if not (isinstance(value, np.ndarray) and value.dtype == object):
        raise ValueError(
            f"{path}: variable {var!r} must be a MATLAB cell array (one cell per task), got "
            f"{type(value).__name__} with dtype {getattr(value, 'dtype', None)}"
        )
    if value.ndim > 2 or (value.ndim == 2 and min(value.shape) > 1):
        raise ValueError(
            f"{path}: variable {var!r} must be a 1 x m (or m x 1) cell array, got shape "
            f"{value.shape}"
        )
    return list(value.ravel(order="F"))


def load_mat(path: str | os.PathLike[str]) -> MultiTaskDataset:
    """Load a MOCHA-layout ``.mat`` file.

    The file must contain two MATLAB cell arrays of equal length ``m``: ``X`` (each cell an
    ``n_t x d`` dense or sparse matrix) and ``Y`` (each cell an ``n_t x 1`` vector, typically
    ``int16`` with values ``±1``).  Everything is converted to ``float64``; sparse cells become
    CSR matrices; ``Y`` cells are ravelled.  An empty ``0 x 0`` cell is treated as a task with
    zero samples.

    Parameters
    ----------
    path : str or path-like
        Path to the ``.mat`` file (MATLAB v5/v7 format as read by :func:`scipy.io.loadmat`).

    Returns
    -------
    MultiTaskDataset
        With ``task_labels = list(range(m))`` and ``name`` the file stem.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be parsed, lacks ``X`` or ``Y``, the cell counts differ, or a
        task's feature or sample count is inconsistent (the message names the task).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np, scipy.io
    >>> from fmtl.datasets import load_mat
    >>> X = np.empty((1, 2), dtype=object); Y = np.empty((1, 2), dtype=object)
    >>> X[0, 0], X[0, 1] = np.ones((3, 4)), np.zeros((2, 4))
    >>> Y[0, 0], Y[0, 1] = np.array([[1], [-1], [1]], np.int16), np.array([[-1], [1]], np.int16)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "toy.mat")
    ...     scipy.io.savemat(path, {"X": X, "Y": Y})
    ...     ds = load_mat(path)
    >>> ds.name, ds.n_tasks, ds.n_features, ds.n_samples.tolist(), ds.y[1].tolist()
    ('toy', 2, 4, [3, 2], [-1.0, 1.0])
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No such .mat file: {path}")
    try:
        data = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises a variety of errors for corrupt files
        raise ValueError(f"Could not read {path} as a MATLAB .mat file: {exc}") from exc
    variables = sorted(k for k in data if not k.startswith("__"))
    for var in ("X", "Y"):
        if var not in data:
            raise ValueError(
                f"{path}: missing variable {var!r} (MOCHA layout needs cell arrays 'X' and "
                f"'Y'); found variables: {variables}"
            )
    X_cells = _cells(data["X"], "X", path)
    Y_cells = _cells(data["Y"], "Y", path)
    if len(X_cells) != len(Y_cells):
        raise ValueError(
            f"{path}: 'X' has {len(X_cells)} cells but 'Y' has {len(Y_cells)}; "
            "they must have one cell per task each"
        )
    if len(X_cells) == 0:
        raise ValueError(f"{path}: 'X' and 'Y' are empty cell arrays (no tasks)")

    d: int | None = None
    d_task = -1
    for t, X_t in enumerate(X_cells):
        if not (sp.issparse(X_t) or isinstance(X_t, np.ndarray)) or X_t.ndim != 2:
            raise ValueError(
                f"{path}: X cell of task {t} must be a 2-D numeric matrix, got "
                f"{type(X_t).__name__} with shape {getattr(X_t, 'shape', None)}"
            )
        if X_t.shape == (0, 0):
            continue
        if d is None:
            d, d_task = X_t.shape[1], t
        elif X_t.shape[1] != d:
            raise ValueError(
                f"{path}: task {t} has {X_t.shape[1]} features but task {d_task} has {d}; "
                "all tasks must have the same number of columns"
            )
    if d is None:
        raise ValueError(f"{path}: every X cell is empty; cannot infer the number of features")

    Xs: list = []
    ys: list[np.ndarray] = []
    for t, (X_t, Y_t) in enumerate(zip(X_cells, Y_cells, strict=True)):
        if X_t.shape == (0, 0):
            X_t = np.zeros((0, d))
        if sp.issparse(X_t):
            X_t = sp.csr_matrix(X_t, dtype=np.float64)
        else:
            X_t = np.ascontiguousarray(X_t, dtype=np.float64)
        if sp.issparse(Y_t):
            Y_t = Y_t.toarray()
        if not isinstance(Y_t, np.ndarray) or Y_t.dtype == object:
            raise ValueError(f"{path}: Y cell of task {t} must be a numeric vector")
        if Y_t.ndim > 2 or (Y_t.ndim == 2 and min(Y_t.shape) > 1):
            raise ValueError(
                f"{path}: Y cell of task {t} must be an n_t x 1 vector, got shape {Y_t.shape}"
            )
        y_t = Y_t.astype(np.float64).ravel()
        if y_t.shape[0] != X_t.shape[0]:
            raise ValueError(
                f"{path}: task {t} has {X_t.shape[0]} rows in X but {y_t.shape[0]} labels in Y"
            )
        Xs.append(X_t)
        ys.append(y_t)
    try:
        return MultiTaskDataset(X=Xs, y=ys, name=path.stem)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _repo_data_dir() -> Path:
    """``<checkout>/../shared/data/mocha`` for a source checkout at ``<checkout>/fmtl``."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "mocha"


def mocha_data_paths(data_home: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for MOCHA ``.mat`` files, in search order (duplicates removed).

    1. ``data_home``, if given;
    2. each directory in the ``FMTL_DATA`` environment variable, if set (several directories
       may be separated by :data:`os.pathsep`);
    3. ``shared/data/mocha`` next to the repository checkout, i.e.
       ``Path(fmtl.datasets.__file__).resolve().parents[3] / "shared" / "data" / "mocha"``;
    4. ``Path.cwd().parent / "shared" / "data" / "mocha"``.

    The directories need not exist.

    Parameters
    ----------
    data_home : str or path-like, optional
        Directory searched first.

    Returns
    -------
    list of pathlib.Path
        The candidate directories, in search order.

    Raises
    ------
    TypeError
        If ``data_home`` is not a str or path-like (from :class:`pathlib.Path`).

    Examples
    --------
    >>> from pathlib import Path
    >>> from fmtl.datasets import mocha_data_paths
    >>> paths = mocha_data_paths(data_home="/tmp/mydata")
    >>> paths[0] == Path("/tmp/mydata")
    True
    >>> all(isinstance(p, Path) for p in paths)
    True
    """
    candidates: list[Path] = []
    if data_home is not None:
        candidates.append(Path(data_home).expanduser())
    env = os.environ.get(FMTL_DATA_ENV, "")
    candidates.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p.strip())
    candidates.append(_repo_data_dir())
    candidates.append(Path.cwd().parent / "shared" / "data" / "mocha")
    seen: set[Path] = set()
    out: list[Path] = []
    for c in candidates:
        key = c.resolve() if c.is_absolute() else (Path.cwd() / c).resolve()
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _is_explicit_path(name: str | os.PathLike[str]) -> bool:
    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str or a path, got {name!r}")
    return os.sep in name or (os.altsep is not None and os.altsep in name) or "/" in name


def _mat_filename(name: str) -> str:
    return name if name.endswith(".mat") else f"{name}.mat"


def find_mocha(
    name: str | os.PathLike[str] = "small", data_home: str | os.PathLike[str] | None = None
) -> Path | None:
    """Locate a MOCHA ``.mat`` file without loading it.

    Parameters
    ----------
    name : str or path-like, default="small"
        A bare data set name (``"small"`` or ``"small.mat"``), searched for in
        :func:`mocha_data_paths`; or an explicit path (any ``os.PathLike``, or a string
        containing a directory separator such as ``"./small.mat"``), which is used as is.
    data_home : str or path-like, optional
        Directory searched first.

    Returns
    -------
    pathlib.Path or None
        The first existing file, or None if none was found.

    Raises
    ------
    TypeError
        If ``name`` is neither a non-empty str nor path-like, or ``data_home`` is not a
        str or path-like.

    Examples
    --------
    >>> from fmtl.datasets import find_mocha
    >>> find_mocha("no_such_dataset_xyz", data_home="/nonexistent") is None
    True
    """
    if _is_explicit_path(name):
        p = Path(name).expanduser()
        return p if p.is_file() else None
    fname = _mat_filename(name)
    for directory in mocha_data_paths(data_home):
        candidate = directory / fname
        if candidate.is_file():
            return candidate
    return None


def load_mocha(
    name: str | os.PathLike[str] = "small", data_home: str | os.PathLike[str] | None = None
) -> MultiTaskDataset:
    """Load a MOCHA benchmark data set by name (or path).

    Parameters
    ----------
    name : str or path-like, default="small"
        A bare name (``"small"`` -> ``small.mat``) searched for in the directories of
        :func:`mocha_data_paths` (``data_home``, ``$FMTL_DATA``, ``shared/data/mocha`` next to
        the checkout, ``../shared/data/mocha`` from the working directory), or an explicit
        path to a ``.mat`` file (see :func:`find_mocha`).
    data_home : str or path-like, optional
        Directory searched first.

    Returns
    -------
    MultiTaskDataset
        See :func:`load_mat`.

    Raises
    ------
    FileNotFoundError
        If the file is not found; the message lists every location tried and how to fix it.

    Examples
    --------
    >>> from fmtl.datasets import load_mocha
    >>> try:
    ...     load_mocha("no_such_dataset_xyz", data_home="/nonexistent")
    ... except FileNotFoundError as exc:
    ...     print(str(exc).splitlines()[0])
    MOCHA data set 'no_such_dataset_xyz' (no_such_dataset_xyz.mat) not found. Looked in:
    """
    found = find_mocha(name, data_home)
    if found is not None:
        return load_mat(found)
    if _is_explicit_path(name):
        raise FileNotFoundError(f"No such .mat file: {Path(name).expanduser()}")
    fname = _mat_filename(name)
    tried = "\n".join(f"  - {d / fname}" for d in mocha_data_paths(data_home))
    raise FileNotFoundError(
        f"MOCHA data set {name!r} ({fname}) not found. Looked in:\n{tried}\n" + _data_hint(fname)
    )


def _data_hint(fname: str = "small.mat") -> str:
    """How to point fmtl at a MOCHA ``.mat`` file: the tail of every data-not-found message."""
    return (
        f"To fix, point fmtl at the directory holding {fname}: set the {FMTL_DATA_ENV} "
        f"environment variable (export {FMTL_DATA_ENV}=/path/to/dir; several directories "
        f"separated by {os.pathsep!r}), pass data_home=<dir> (on the command line: "
        "--data-home <dir>), or give the full path to the file."
        + (
            " small.mat ships with the MOCHA reference code: "
            "https://github.com/gingsmith/fmtl (data/small.mat)."
            if fname == "small.mat"
            else ""
        )
    )


def _not_found_note(name: str = "small", data_home=None) -> str:
    """One line for a run that goes on without a MOCHA data set: where it looked, how to fix."""
    fname = _mat_filename(name)
    where = ", ".join(str(d) for d in mocha_data_paths(data_home))
    return f"{fname} not found (looked in: {where}). {_data_hint(fname)}"
