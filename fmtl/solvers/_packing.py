"""Tasks packed into flat contiguous arrays so one jitted call can serve every node."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._jit import note_if_cold

_EMPTY_F = np.zeros(0)
_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_I32 = np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class PackedTasks:
    """Rows of all tasks stacked (task ``t`` owns rows ``offsets[t]:offsets[t+1]``).

    Exactly one of the dense block ``Xd`` (C-contiguous float64) or the CSR triplet
    (``data``, ``indices``, ``indptr``; sorted indices) is populated; the other holds
    zero-size placeholders so a single kernel signature serves both layouts. Build it with
    :func:`pack_tasks`; the constructor does not validate its arguments.

    Parameters
    ----------
    Xd : ndarray of shape (n_samples_total, n_features) or (0, n_features)
        All rows stacked (dense layout), or an empty placeholder.
    data, indices, indptr : ndarray
        The CSR triplet of all rows stacked (sparse layout: int32 column indices, int64
        row pointers), or empty placeholders.
    sparse : bool
        Which layout is populated.
    y : ndarray of shape (n_samples_total,)
        Targets, stacked task after task.
    sqnorm : ndarray of shape (n_samples_total,)
        ``||x_i||^2`` per row.
    offsets : ndarray of shape (n_tasks + 1,)
        Task ``t`` owns rows ``offsets[t]:offsets[t+1]``.
    n_features : int
        Number of columns ``d``.

    Attributes
    ----------
    n_tasks : int
        ``len(offsets) - 1``.
    n_samples : ndarray of shape (n_tasks,)
        Rows per task.
    kernel_args : tuple
        The data arguments every SDCA/objective kernel takes, in order.

    Raises
    ------
    dataclasses.FrozenInstanceError
        On assigning to a field (the instance is immutable).

    See Also
    --------
    pack_tasks : Builds one from per-task arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.solvers import pack_tasks
    >>> p = pack_tasks([np.ones((2, 3)), np.zeros((1, 3))], [np.ones(2), -np.ones(1)])
    >>> p.n_tasks, p.n_samples.tolist(), p.offsets.tolist(), p.sparse
    (2, [2, 1], [0, 2, 3], False)
    >>> p.sqnorm
    array([3., 3., 0.])
    """

    Xd: np.ndarray
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    sparse: bool
    y: np.ndarray
    sqnorm: np.ndarray
    offsets: np.ndarray
    n_features: int

    @property
    def n_tasks(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def n_samples(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def kernel_args(self) -> tuple:
        """The data arguments every SDCA/objective kernel takes, in order."""
        return (
            self.Xd,
            self.data,
            self.indices,
            self.indptr,
            self.sparse,
            self.y,
            self.sqnorm,
            self.offsets,
        )


def pack_tasks(Xs: list, ys: list) -> PackedTasks:
    """Stack per-task arrays into a :class:`PackedTasks` (float64, contiguous).

    All tasks must be dense or all CSR-convertible sparse; mixing dense and sparse
    tasks converts the dense ones to CSR.

    Parameters
    ----------
    Xs : list of arrays or sparse matrices, shape (n_t, d) each
        Per-task design matrices (same ``d``).
    ys : list of arrays, shape (n_t,) each
        Per-task targets.

    Returns
    -------
    PackedTasks
        Sparse (CSR, sorted indices, duplicates summed) if any task is sparse, else dense.

    Raises
    ------
    ValueError
        If the tasks have different numbers of features, or an ``X`` or ``y`` is not
        numeric (from numpy's conversion to float64).
    IndexError
        If an ``X`` is 1-D.

    Notes
    -----
    Only the layout is handled here: lengths, finiteness and labels are checked by the
    callers (``fmtl.federated`` validates its inputs before packing).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from fmtl.solvers import pack_tasks
    >>> p = pack_tasks([sp.eye(3, format="csr"), np.ones((1, 3))], [np.ones(3), np.ones(1)])
    >>> p.sparse, p.n_samples.tolist(), p.indptr.tolist()
    (True, [3, 1], [0, 1, 2, 3, 6])
    """
    n = np.array([X.shape[0] for X in Xs], dtype=np.int64)
    offsets = np.zeros(len(Xs) + 1, dtype=np.int64)
    np.cumsum(n, out=offsets[1:])
    d = int(Xs[0].shape[1]) if Xs else 0
    y = np.ascontiguousarray(
        np.concatenate([np.asarray(v, float).ravel() for v in ys]) if ys else _EMPTY_F,
        dtype=np.float64,
    )
    if any(sp.issparse(X) for X in Xs):
        if d > np.iinfo(np.int32).max:
            raise ValueError(f"X has {d} features; at most 2**31 - 1 are supported")
        A = _stacked_csr(Xs)
        data = np.ascontiguousarray(A.data, dtype=np.float64)
        # 32-bit column indices: a third less memory traffic per non-zero in the hot loop
        indices = np.ascontiguousarray(A.indices, dtype=np.int32)
        indptr = np.ascontiguousarray(A.indptr, dtype=np.int64)
        from .sdca import row_sqnorms

        note_if_cold(row_sqnorms)
        sqnorm = row_sqnorms(np.zeros((0, d)), data, indices, indptr, True, offsets[-1])
        return PackedTasks(np.zeros((0, d)), data, indices, indptr, True, y, sqnorm, offsets, d)
    Xd = np.ascontiguousarray(np.vstack(Xs) if Xs else np.zeros((0, d)), dtype=np.float64)
    from .sdca import row_sqnorms

    note_if_cold(row_sqnorms)
    sqnorm = row_sqnorms(Xd, _EMPTY_F, _EMPTY_I32, _EMPTY_I, False, Xd.shape[0])
    return PackedTasks(Xd, _EMPTY_F, _EMPTY_I32, _EMPTY_I, False, y, sqnorm, offsets, d)


def _stacked_csr(Xs: list) -> sp.csr_matrix:
    """All rows stacked as one canonical float64 CSR matrix (sorted indices, no duplicates);
    a single canonical float64 CSR input is used as it is, without a copy."""
    if len(Xs) == 1 and sp.issparse(Xs[0]) and Xs[0].format == "csr":
        X = Xs[0]
        if X.dtype == np.float64 and X.has_canonical_format:
            return X
    if len(Xs) == 1:
        A = sp.csr_matrix(Xs[0], dtype=np.float64, copy=True)
    else:
        A = sp.vstack([sp.csr_matrix(X, dtype=np.float64) for X in Xs], format="csr")
    A.sum_duplicates()  # the copy is ours: canonicalising it in place is safe
    A.sort_indices()
    return A


def dual_sums(tasks: PackedTasks, alpha: np.ndarray) -> np.ndarray:
    """Rows ``b_t = X_t^T a_t / n_t`` of ``B`` for stacked dual variables ``alpha``.

    Parameters
    ----------
    tasks : PackedTasks
        The packed data.
    alpha : ndarray of shape (n_samples_total,)
        Dual variables, stacked task after task.

    Returns
    -------
    ndarray of shape (n_tasks, n_features)
        ``B`` (zero rows for empty tasks).

    Raises
    ------
    ValueError
        If ``alpha`` does not have one value per stacked row.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.solvers import pack_tasks
    >>> from fmtl.solvers._packing import dual_sums
    >>> p = pack_tasks([np.eye(2), np.ones((1, 2))], [np.ones(2), np.ones(1)])
    >>> dual_sums(p, np.array([1.0, 3.0, 2.0]))
    array([[0.5, 1.5],
           [2. , 2. ]])
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    total = int(tasks.offsets[-1])
    if alpha.shape != (total,):
        raise ValueError(f"alpha must have shape ({total},), got {alpha.shape}")
    n = tasks.n_samples
    owner = np.repeat(np.arange(tasks.n_tasks), n)
    # one sparse (tasks x rows) weighting matrix: B = S X with S[t, i] = a_i / n_t
    S = sp.csr_matrix(
        (alpha / np.maximum(n, 1)[owner], (owner, np.arange(total))),
        shape=(tasks.n_tasks, total),
    )
    if tasks.sparse:
        X = sp.csr_matrix(
            (tasks.data, tasks.indices, tasks.indptr), shape=(total, tasks.n_features)
        )
        return np.ascontiguousarray((S @ X).toarray())
    return np.ascontiguousarray(S @ tasks.Xd)
