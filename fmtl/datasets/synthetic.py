"""Synthetic multi-task data with a known task-relationship structure.

:func:`make_multitask_classification` and :func:`make_multitask_regression` draw tasks
that are independent, clustered, low-rank or all related (:data:`STRUCTURES`), with
imbalanced task sizes and optional sparse features.  Import them from
:mod:`fmtl.datasets`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import RandomStateLike, _check_float, _check_int, _check_random_state
from .containers import MultiTaskDataset

#: Allowed values of the ``structure`` argument of the synthetic generators.
STRUCTURES: tuple[str, ...] = ("independent", "clustered", "low_rank", "all_related")

#: Standard deviation of a task's deviation from its cluster centre (``"clustered"``) or from
#: the shared vector (``"all_related"``), relative to the unit-variance centres.
_TASK_SPREAD = 0.1

#: Maximum number of times a classification task's samples are re-drawn to obtain both classes.
_MAX_REDRAWS = 100


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
