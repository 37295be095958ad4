"""The alpha-path machinery shared by :mod:`fmtl.cv` (the CV estimators) and the paper's
error protocol (:mod:`fmtl.experiments.error_protocol`): the per-task fold assignment,
a warm-started walk of a clone down the alpha grid per fold, and the choice of alpha."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning


def _check_alphas(alphas: Any) -> np.ndarray:
    try:
        arr = np.asarray(list(alphas), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"alphas must be a sequence of positive numbers: {exc}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("alphas must be a non-empty sequence of positive numbers")
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValueError(f"alphas must be positive and finite, got {arr.tolist()}")
    return arr


def _task_folds(
    sizes: Sequence[int], n_folds: int, strata: Sequence[np.ndarray] | None = None
) -> list[np.ndarray]:
    """The fold of every row of every task (see :func:`per_task_folds`); ``strata``: one
    array of labels per task, whose rows are dealt to the folds class after class."""
    out = []
    for t, n_t in enumerate(sizes):
        if n_t < n_folds:
            out.append(np.full(n_t, -1, dtype=np.int64))
        elif strata is None:
            out.append(np.arange(n_t, dtype=np.int64) % n_folds)
        else:
            # rows in class order (stable: row order within a class), then dealt round-robin:
            # each class spreads over the folds as evenly as the task's rows do
            codes = np.unique(np.asarray(strata[t]), return_inverse=True)[1].ravel()
            fold = np.empty(n_t, dtype=np.int64)
            fold[np.argsort(codes, kind="stable")] = np.arange(n_t) % n_folds
            out.append(fold)
    return out


def _alpha_path_scores(
    estimator: Any,
    fold_data: Iterable[tuple[tuple, Any]],
    grid: np.ndarray,
    score: Callable[[Any, Any], float],
    *,
    warm: bool = True,
    checkpoint_dir=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and fit seconds, each ``(n_alphas, n_folds)`` in the order of ``grid``.

    ``fold_data`` yields, per fold, the fit arguments ``(X, y, tasks)`` and what
    ``score(fitted, val)`` scores on. In each fold one clone of ``estimator`` walks the grid
    from the largest alpha down; with ``warm`` and a ``warm_start`` parameter (the dual
    methods) each fit starts from the previous one's duals (same rows, feasible for any
    alpha), else every candidate is a fresh clone. ``checkpoint_dir``: each fit checkpoints
    in its own ``fold-<k>/alpha-<j>`` below it (``j`` the index in ``grid``).
    """
    warm = warm and "warm_start" in estimator.get_params(deep=False)
    columns = []
    for k, (fit_args, val) in enumerate(fold_data):
        scores, seconds = np.empty(grid.size), np.empty(grid.size)
        est = clone(estimator)
        if warm:
            est.set_params(warm_start=True)
        for j in np.argsort(-grid, kind="stable").tolist():
            if not warm:
                est = clone(estimator)
            est.set_params(alpha=float(grid[j]))
            if checkpoint_dir is not None:
                est.set_params(checkpoint_dir=Path(checkpoint_dir) / f"fold-{k}" / f"alpha-{j}")
            start = time.perf_counter()
            with warnings.catch_warnings():
                # the path's budgets are deliberate (the paper's); its fits need no warning
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(*fit_args)
            seconds[j] = time.perf_counter() - start
            scores[j] = score(est, val)
        columns.append((scores, seconds))
    return (
        np.column_stack([c[0] for c in columns]),
        np.column_stack([c[1] for c in columns]),
    )


def _pick_alpha(grid: np.ndarray, mean_errors: np.ndarray) -> float:
    """The alpha of the least mean error; ties (1e-12 relative) go to the larger alpha."""
    best = mean_errors.min()
    ties = mean_errors <= best + 1e-12 * max(1.0, abs(best))
    return float(grid[ties].max())
