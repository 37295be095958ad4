"""The multi-task data container, :class:`MultiTaskDataset`.

A multi-task (federated) data set is a list of per-task design matrices ``X_t`` of shape
``(n_t, d)`` with targets ``y_t`` of shape ``(n_t,)``; every task shares the same feature
dimension ``d`` but may have a different number of samples ``n_t``.  Import it from
:mod:`fmtl.datasets`.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp


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
