"""The paper's prediction-error protocol: per-task error, per-task CV of lambda, error tables.

Smith et al. (*Federated Multi-Task Learning*, NeurIPS 2017, Table 1) compare Global, Local
and multi-task models by the **mean over tasks of the per-task test error**: each task is
split 75/25 at random, the regularisation strength lambda (``alpha`` here) is chosen by
5-fold cross-validation on the training part over ``{1e-5, 1e-4, 1e-3, 1e-2, 0.1, 10}``,
the model is refitted on the whole training part, and the test error is averaged over
random splits (mean +- std).

Where this module differs from the public MATLAB reference (``gingsmith/fmtl``), on purpose:

* **CV averages over all folds.** ``util/cross_val_1.m`` resets its score vector inside the
  fold loop, so lambda is really chosen on the *last* fold alone (then divided by the
  number of folds, which does not change the arg-min). :func:`cross_validate_alpha`
  averages the per-task error over every fold.
* **Ties go to the larger lambda.** MATLAB's ``min`` returns the first (smallest) lambda
  of a tie; error rates on small validation folds tie often, and we prefer the more
  regularised model.
* **A zero margin is a negative prediction.** fmtl classifiers predict ``classes_[1]``
  only when ``w_t.x + b_t > 0``; the reference's ``sign(0) = 0`` matches neither label, so a zero
  margin always counts as an error there.
* **Tiny tasks.** In the reference a task with fewer rows than folds gets an empty
  validation fold (a NaN error). Here such a task is always trained on and never scored in
  CV (:func:`per_task_folds` gives its rows fold ``-1``).
* **Regression.** The reference's Global regression error is the pooled RMSE over all test
  rows; here every method reports the mean over tasks of the per-task RMSE.
* **Split size.** :func:`fmtl.datasets.train_test_split_per_task` trains on
  ``n_t - round(0.25 n_t)`` rows, not the reference's ``ceil(0.75 n_t) - 1``.
* **Which MOCHA model is scored.** The reference reads its MTL error at the start of outer
  round 10 (after 9 Ω-steps); here the fitted estimator is scored, i.e. the last W-step's
  model for the final Σ.
* **Stopping.** The reference's baselines stop when the primal changes by < 1e-5 between
  passes; fmtl's stop at a certified relative duality gap (``tol``).
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import ConvergenceWarning

from .._alpha_path import _alpha_path_scores, _check_alphas, _pick_alpha, _task_folds
from ..datasets import MultiTaskDataset, train_test_split_per_task

__all__ = [
    "BASELINE_SETTINGS",
    "ConstantBaseline",
    "DEFAULT_ALPHAS",
    "METRICS",
    "MOCHA_SETTINGS",
    "MOCHA_SIGMA_FLOOR",
    "POLISH_ROUNDS",
    "REFIT_SETTINGS",
    "cross_validate_alpha",
    "error_table",
    "explained_variance",
    "mean_task_auc",
    "paired_comparisons",
    "paper_methods",
    "per_task_error",
    "per_task_folds",
    "polish_refit",
    "standardize_features",
    "summarize",
    "task_errors",
]

#: The paper's lambda grid (``model_driver.m``).
DEFAULT_ALPHAS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 10.0)

#: Accepted values of the ``metric`` argument.
METRICS: tuple[str, ...] = ("auto", "error_rate", "rmse")

#: MOCHA settings used by :func:`paper_methods`: at most 10 x 50 federated rounds of one
#: local SDCA pass each, i.e. the same local work as the reference's ``model_driver.m``
#: (10 outer x 100 inner rounds of half a pass, ``mocha_sdca_frac = 0.5``), and no
#: intercept, as in the paper and its reference code.
MOCHA_SETTINGS: dict[str, Any] = {
    "outer_iters": 10,
    "inner_iters": 50,
    "tol": 1e-5,
    "fit_intercept": False,
}

#: Settings of the Global and Local baselines in :func:`paper_methods` (the reference's
#: ``max_sdca_iters = 500``, ``tol = 1e-5``; no intercept, as in the paper).
BASELINE_SETTINGS: dict[str, Any] = {"max_rounds": 500, "tol": 1e-5, "fit_intercept": False}

#: Floor of the learned Sigma's eigenvalues for :func:`paper_methods`' MOCHA. With fewer
#: features than tasks (Land Mine: 9 < 29) ``W^T W`` is singular, so most eigenvalues sit
#: on the floor and it is part of the model. The estimators' 1e-6 leaves the W-step's dual
#: too ill-conditioned to certify at small lambda (``benchmarks/landmine_wstep.py``); the
#: MATLAB reference's floor (1e-7 of ``W^T W``'s largest eigenvalue, i.e. ~3e-4 of Sigma's)
#: is of the same order as 1e-3, which the convergence figures use too.
MOCHA_SIGMA_FLOOR: float = 1e-3

#: Extra parameters of the final refit (after alpha is chosen) per method of
#: :func:`paper_methods`: a W-step of up to 3,000 rounds, so that the reported model is
#: certified to ``tol`` (cross-validation keeps :data:`MOCHA_SETTINGS`).
REFIT_SETTINGS: dict[str, dict[str, Any]] = {
    "MTL (mean-reg. Ω)": {"inner_iters": 3000},
    "MOCHA": {"inner_iters": 3000},
}

#: Extra rounds for a final refit that still ends above its ``tol`` (``error_table``'s
#: ``polish_rounds``, :func:`polish_refit`): its last W-step continues, warm-started, with
#: Σ held. On ``small`` at lambda = 1e-5 / 1e-4 a few refits end at 2.6e-5 to 7e-5 after
#: 10 W-steps of 3,000 rounds; the continuation certifies them in ~2,500 rounds.
POLISH_ROUNDS: int = 30_000


# ------------------------------------------------------------------------------ helpers


def _check_dataset(dataset: Any, name: str) -> MultiTaskDataset:
    if not isinstance(dataset, MultiTaskDataset):
        raise TypeError(f"{name} must be a MultiTaskDataset, got {type(dataset).__name__}")
    return dataset


def _check_n_folds(n_folds: Any) -> int:
    if isinstance(n_folds, bool) or not isinstance(n_folds, numbers.Integral):
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds}")
    return int(n_folds)


def _resolve_metric(metric: Any, estimator: Any) -> str:
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    if metric == "auto":
        return "error_rate" if is_classifier(estimator) else "rmse"
    return metric


def _check_alpha_param(estimator: Any) -> None:
    if not hasattr(estimator, "get_params") or "alpha" not in estimator.get_params(deep=False):
        raise ValueError(
            f"estimator must be a scikit-learn estimator with an 'alpha' parameter, got "
            f"{type(estimator).__name__}"
        )


def _check_refit_params(refit_params: Any, methods: Mapping[str, Any]) -> dict:
    if refit_params is None:
        return {}
    if not isinstance(refit_params, Mapping):
        raise ValueError("refit_params must be a dict of method name -> dict of parameters")
    for name, params in refit_params.items():
        if name not in methods:
            raise ValueError(f"refit_params names {name!r}, which is not one of the methods")
        valid = methods[name].get_params()
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise ValueError(f"refit_params[{name!r}] has parameters {name!r} lacks: {unknown}")
    return {k: dict(v) for k, v in refit_params.items()}


def _select(dataset: MultiTaskDataset, rows: Sequence[np.ndarray]) -> MultiTaskDataset:
    """The same tasks (labels, order) restricted to the given row indices of each task."""
    return MultiTaskDataset(
        X=[X_t[r] for X_t, r in zip(dataset.X, rows, strict=True)],
        y=[y_t[r] for y_t, r in zip(dataset.y, rows, strict=True)],
        task_labels=list(dataset.task_labels),
        name=dataset.name,
    )


def standardize_features(
    train: MultiTaskDataset, *others: MultiTaskDataset
) -> tuple[MultiTaskDataset, ...]:
    """Z-score every feature with the pooled training part's mean and standard deviation.

    The statistics come from ``train`` alone (all its tasks' rows pooled), so a test part
    passed in ``others`` never informs them. A column that is constant on the training
    part (School's column of ones, an intercept feature) is left as it is, so it keeps
    its meaning.

    Why: the SDCA solvers' passes to a certified gap grow with ``max ||x_i||^2 / (lambda n)``;
    on raw School (two percentage columns; squared row norms 2,451 on average, up to 8,297)
    Local's fits at lambda <= 1e-3 stop at their 500-round cap. Standardised (a 75 % split):
    28 on average (the number of columns), up to 237 (rare binary columns).

    Parameters
    ----------
    train : MultiTaskDataset
        Dense features (centring would densify a sparse matrix).
    *others : MultiTaskDataset
        Same number of features; transformed with ``train``'s statistics.

    Returns
    -------
    tuple of MultiTaskDataset
        ``train`` and then each of ``others``, transformed (new objects; inputs unchanged).

    Raises
    ------
    ValueError
        If a data set is sparse or has a different number of features than ``train``.
    TypeError
        If an argument is not a :class:`~fmtl.datasets.MultiTaskDataset`.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.datasets import MultiTaskDataset
    >>> train = MultiTaskDataset(X=[np.array([[1.0, 10.0], [1.0, 30.0]])], y=[np.zeros(2)])
    >>> test = MultiTaskDataset(X=[np.array([[1.0, 40.0]])], y=[np.zeros(1)])
    >>> tr, te = standardize_features(train, test)
    >>> tr.X[0].tolist(), te.X[0].tolist()
    ([[1.0, -1.0], [1.0, 1.0]], [[1.0, 2.0]])
    """
    datasets = [_check_dataset(train, "train")]
    datasets += [_check_dataset(ds, f"others[{i}]") for i, ds in enumerate(others)]
    d = datasets[0].n_features
    for i, ds in enumerate(datasets):
        name = "train" if i == 0 else f"others[{i - 1}]"
        if ds.is_sparse:
            raise ValueError(f"{name} has sparse features; standardising needs dense ones")
        if ds.n_features != d:
            raise ValueError(f"{name} has {ds.n_features} features, train has {d}")
    pooled = np.vstack([X_t for X_t in datasets[0].X if X_t.shape[0]])
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    constant = _constant_columns(mean, std)
    mean[constant], std[constant] = 0.0, 1.0  # a constant column is kept as it is
    return tuple(
        MultiTaskDataset(
            X=[(X_t - mean) / std for X_t in ds.X],
            y=list(ds.y),
            task_labels=list(ds.task_labels),
            name=ds.name,
        )
        for ds in datasets
    )


def _constant_columns(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Mask of the columns whose spread is rounding noise next to their mean."""
    return std <= 1e-12 * np.maximum(1.0, np.abs(mean))


def _check_standardize(standardize: Any) -> bool:
    if not isinstance(standardize, (bool, np.bool_)):
        raise TypeError(f"standardize must be True or False, got {standardize!r}")
    return bool(standardize)


def _fit(estimator: Any, dataset: MultiTaskDataset) -> Any:
    X, y, tasks = dataset.stack()
    with warnings.catch_warnings():
        # error_table records every refit's final gap and reports the unconverged ones
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, tasks)


def _final_rel_gap(estimator: Any) -> float:
    """Relative duality gap of the last recorded round of a fitted fmtl estimator (or NaN)."""
    hist = getattr(estimator, "history_", None)
    try:
        return float(hist["rel_gap"][-1])
    except (KeyError, TypeError, IndexError, ValueError):
        return math.nan


# ------------------------------------------------------------------------------ metrics


def task_errors(estimator: Any, dataset: MultiTaskDataset, metric: str = "auto") -> np.ndarray:
    """Per-task test error of a fitted estimator (NaN for tasks without rows).

    Parameters
    ----------
    estimator : fitted estimator
        Anything with ``predict(X, tasks)``.
    dataset : MultiTaskDataset
        The rows to score.
    metric : {"auto", "error_rate", "rmse"}, default="auto"
        ``"auto"``: ``"error_rate"`` for classifiers (``sklearn.base.is_classifier``), else
        ``"rmse"``.

    Returns
    -------
    ndarray of shape (n_tasks,)
        Misclassification rate or root-mean-squared error of each task, in the order of
        ``dataset.task_labels``; NaN where a task has no rows.

    Raises
    ------
    TypeError
        If ``dataset`` is not a :class:`~fmtl.datasets.MultiTaskDataset`.
    ValueError
        If ``metric`` is unknown, or from ``estimator.predict`` (e.g. a task the estimator
        was not fitted on).
    sklearn.exceptions.NotFittedError
        If ``estimator`` is an unfitted fmtl estimator.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl import LocalRegressor
    >>> from fmtl.datasets import MultiTaskDataset
    >>> ds = MultiTaskDataset([np.eye(2), np.ones((1, 2))], [[1.0, 2.0], [0.5]])
    >>> reg = LocalRegressor(alpha=1e-3).fit(*ds.stack())
    >>> empty = MultiTaskDataset([np.eye(2), np.zeros((0, 2))], [[1.0, 2.0], []])
    >>> errs = task_errors(reg, empty)
    >>> bool(errs[0] < 0.01), bool(np.isnan(errs[1]))
    (True, True)
    """
    dataset = _check_dataset(dataset, "dataset")
    metric = _resolve_metric(metric, estimator)
    out = np.full(dataset.n_tasks, np.nan)
    if dataset.n_total == 0:
        return out
    X, y, tasks = dataset.stack()
    pred = np.asarray(estimator.predict(X, tasks))
    bounds = np.concatenate([[0], np.cumsum(dataset.n_samples)])
    for t in range(dataset.n_tasks):
        lo, hi = bounds[t], bounds[t + 1]
        if hi == lo:
            continue
        if metric == "error_rate":
            out[t] = float(np.mean(pred[lo:hi] != y[lo:hi]))
        else:
            out[t] = float(np.sqrt(np.mean((pred[lo:hi].astype(np.float64) - y[lo:hi]) ** 2)))
    return out


def mean_task_auc(estimator: Any, dataset: MultiTaskDataset) -> float:
    """Mean over tasks of the per-task ROC AUC of a fitted classifier's margins.

    The ranking metric of the multi-task literature for imbalanced data such as Land Mine
    (6 % positive), where an error rate is dominated by the majority class. Tasks whose
    rows in ``dataset`` hold a single class have no AUC and are skipped.

    Parameters
    ----------
    estimator : fitted classifier
        With ``classes_`` and ``decision_function(X, tasks)`` (margins; larger =
        ``classes_[-1]``), or else ``predict`` (hard labels as scores).
    dataset : MultiTaskDataset
        Test rows.

    Returns
    -------
    float
        In [0, 1]; NaN if no task has both classes.

    Raises
    ------
    TypeError
        If ``dataset`` is not a :class:`~fmtl.datasets.MultiTaskDataset`.
    ValueError
        From ``estimator.decision_function`` (e.g. a task it was not fitted on).

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl import LocalClassifier
    >>> from fmtl.datasets import MultiTaskDataset
    >>> X = [np.array([[1.0], [-1.0], [2.0], [-2.0]]), np.array([[1.0], [-1.0]])]
    >>> ds = MultiTaskDataset(X, [[1, -1, 1, -1], [-1, 1]])
    >>> clf = LocalClassifier(alpha=0.1).fit(*ds.stack())
    >>> test = MultiTaskDataset([np.array([[3.0], [1.0]]), np.array([[2.0]])], [[1, -1], [-1]])
    >>> mean_task_auc(clf, test)  # task 0 ranks its positive first; task 1 has one class
    1.0
    """
    from sklearn.metrics import roc_auc_score

    dataset = _check_dataset(dataset, "dataset")
    aucs = []
    for X_t, y_t, label in zip(dataset.X, dataset.y, dataset.task_labels, strict=True):
        if np.unique(y_t).size < 2:
            continue
        tasks_t = [label] * len(y_t)
        positive = np.asarray(y_t) == estimator.classes_[-1]
        if hasattr(estimator, "decision_function"):
            margin = estimator.decision_function(X_t, tasks_t)
        else:  # e.g. ConstantBaseline: a constant score, AUC 0.5
            margin = (np.asarray(estimator.predict(X_t, tasks_t)) == estimator.classes_[-1]) * 1.0
        aucs.append(float(roc_auc_score(positive, margin)))
    return float(np.mean(aucs)) if aucs else math.nan


def explained_variance(estimator: Any, dataset: MultiTaskDataset) -> float:
    """Explained variance of a fitted regressor on the pooled test rows of every task.

    ``1 - sum((y - y_hat)^2) / sum((y - mean(y))^2)`` over all rows of ``dataset``, with
    ``mean(y)`` the pooled mean: the share of the targets' total variance the per-task
    models predict, the usual figure for the School data (a model predicting the pooled
    mean scores 0).

    Parameters
    ----------
    estimator : fitted regressor
        Anything with ``predict(X, tasks)``.
    dataset : MultiTaskDataset
        Test rows.

    Returns
    -------
    float
        At most 1; NaN if the pooled targets are constant.

    Raises
    ------
    TypeError
        If ``dataset`` is not a :class:`~fmtl.datasets.MultiTaskDataset`.
    ValueError
        If ``dataset`` has no rows, or from ``estimator.predict``.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl import LocalRegressor
    >>> from fmtl.datasets import MultiTaskDataset
    >>> ds = MultiTaskDataset([np.eye(2), np.ones((1, 2))], [[1.0, 2.0], [0.5]])
    >>> reg = LocalRegressor(alpha=1e-6).fit(*ds.stack())
    >>> round(explained_variance(reg, ds), 4)
    1.0
    """
    dataset = _check_dataset(dataset, "dataset")
    if dataset.n_total == 0:
        raise ValueError("dataset has no rows to score (every task is empty)")
    X, y, tasks = dataset.stack()
    y = np.asarray(y, dtype=np.float64)
    resid = y - np.asarray(estimator.predict(X, tasks), dtype=np.float64)
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum(resid**2)) / total if total > 0 else math.nan


def per_task_error(estimator: Any, dataset: MultiTaskDataset, metric: str = "auto") -> float:
    """The paper's metric: the mean over tasks of the per-task test error.

    Classification: each task's misclassification rate; regression: each task's RMSE. Tasks
    with no rows in ``dataset`` are skipped (they do not count in the mean).

    fmtl classifiers predict ``classes_[1]`` when the margin ``w_t.x + b_t`` is ``> 0``, so a zero
    margin is a prediction of the *negative* class (``-1`` for labels ``+-1``). The MATLAB
    reference predicts ``sign(w_t.x)`` and its ``sign(0) = 0`` matches neither label, so it
    counts every zero margin as an error; the two agree whenever no margin is exactly 0.

    Parameters
    ----------
    estimator : fitted estimator
        Anything with ``predict(X, tasks)``.
    dataset : MultiTaskDataset
        Test rows (one part of :func:`fmtl.datasets.train_test_split_per_task`).
    metric : {"auto", "error_rate", "rmse"}, default="auto"
        ``"auto"``: ``"error_rate"`` for classifiers, ``"rmse"`` otherwise.

    Returns
    -------
    float
        As a fraction (multiply by 100 for the paper's percentages).

    Raises
    ------
    ValueError
        If ``metric`` is unknown or ``dataset`` has no rows at all.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl import LocalClassifier
    >>> from fmtl.datasets import MultiTaskDataset
    >>> X = [np.array([[1.0], [-1.0], [2.0], [-2.0]]), np.array([[1.0], [-1.0]])]
    >>> ds = MultiTaskDataset(X, [[1, -1, 1, -1], [-1, 1]])
    >>> clf = LocalClassifier(alpha=0.1).fit(*ds.stack())
    >>> test = MultiTaskDataset([np.array([[3.0], [1.0]]), np.array([[2.0]])], [[1, -1], [-1]])
    >>> per_task_error(clf, test)  # task 0: 1 of 2 wrong, task 1: right -> (0.5 + 0) / 2
    0.25
    """
    errs = task_errors(estimator, dataset, metric)
    if np.all(np.isnan(errs)):
        raise ValueError("dataset has no rows to score (every task is empty)")
    return float(np.nanmean(errs))


# ------------------------------------------------------------------------------ CV


def per_task_folds(
    dataset: MultiTaskDataset, n_folds: int = 5, *, stratify: bool = False
) -> list[np.ndarray]:
    """Interleaved per-task cross-validation folds, as in the reference's ``cross_val_1.m``.

    Within each task, row ``i`` (0-based) belongs to fold ``i % n_folds``: fold ``k`` holds
    rows ``k, k + n_folds, k + 2 n_folds, ...`` of every task (rows are not shuffled: the
    random 75/25 split already shuffled which rows are in the training part). A task with
    fewer than ``n_folds`` rows gets fold ``-1`` for all its rows: it is trained on in every
    fold and never scored (otherwise some folds would have no validation row for it and its
    training part would shrink to almost nothing).

    Parameters
    ----------
    dataset : MultiTaskDataset
        The training part to cross-validate on.
    n_folds : int >= 2, default=5
        Number of folds.
    stratify : bool, default=False
        Deal each task's rows to the folds class after class (rows sorted by label, stably,
        then row ``i`` of that order to fold ``i % n_folds``), so that every fold holds
        each task's classes in the task's proportions, up to one row per class. For
        classification; ``False`` is the reference's order.

    Returns
    -------
    list of ndarray of int
        One array per task, of length ``n_t``: the fold of each row, or ``-1``.

    Raises
    ------
    TypeError
        If ``dataset`` is not a :class:`~fmtl.datasets.MultiTaskDataset`.
    ValueError
        If ``n_folds`` is not an integer >= 2.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.datasets import MultiTaskDataset
    >>> ds = MultiTaskDataset([np.zeros((7, 1)), np.zeros((2, 1))], [np.ones(7), np.ones(2)])
    >>> [f.tolist() for f in per_task_folds(ds, n_folds=3)]
    [[0, 1, 2, 0, 1, 2, 0], [-1, -1]]
    >>> ds = MultiTaskDataset([np.zeros((6, 1))], [[-1, 1, -1, 1, 1, 1]])
    >>> per_task_folds(ds, n_folds=2)[0].tolist()  # fold 1 gets no -1
    [0, 1, 0, 1, 0, 1]
    >>> per_task_folds(ds, n_folds=2, stratify=True)[0].tolist()  # one -1 in each fold
    [0, 0, 1, 1, 0, 1]
    """
    dataset = _check_dataset(dataset, "dataset")
    n_folds = _check_n_folds(n_folds)
    strata = list(dataset.y) if stratify else None
    return _task_folds(dataset.n_samples.tolist(), n_folds, strata)


def cross_validate_alpha(
    estimator: Any,
    train: MultiTaskDataset,
    alphas: Iterable[float] = DEFAULT_ALPHAS,
    n_folds: int = 5,
    *,
    metric: str = "auto",
    return_fold_errors: bool = False,
    standardize: bool = False,
) -> tuple[float, np.ndarray] | tuple[float, np.ndarray, np.ndarray]:
    """Choose ``alpha`` (lambda) by per-task interleaved k-fold cross-validation.

    For each fold ``k`` of :func:`per_task_folds` and each candidate, a clone of
    ``estimator`` with ``alpha`` set is fitted on every row outside fold ``k`` (all tasks
    together, as a federated fit would be) and scored with :func:`per_task_error` on fold
    ``k``. Estimators with a ``warm_start`` parameter (the dual methods) visit the
    candidates from the largest down, each fit starting from the previous one's duals.
    The score of a candidate is the **mean over all folds**; the reference code
    resets its score inside the fold loop and so really picks lambda on the last fold
    alone. Tasks with fewer rows than ``n_folds`` are trained on in every fold but never
    scored.

    Ties (equal mean errors up to 1e-12 relative) go to the **larger** alpha, i.e. the
    more regularised model; MATLAB's ``min`` would take the first, smallest one.

    Parameters
    ----------
    estimator : scikit-learn estimator with an ``alpha`` parameter
        Not modified (clones are fitted).
    train : MultiTaskDataset
        The training part of a split.
    alphas : iterable of float > 0, default=DEFAULT_ALPHAS
        Candidates, in any order; ``mean_errors`` follows this order.
    n_folds : int >= 2, default=5
    metric : {"auto", "error_rate", "rmse"}, default="auto"
    return_fold_errors : bool, default=False
        Also return the ``(n_alphas, n_folds)`` matrix of fold errors.
    standardize : bool, default=False
        Standardise each fold's features with :func:`standardize_features`, its statistics
        taken from the fold's training rows only.

    Returns
    -------
    best_alpha : float
    mean_errors : ndarray of shape (n_alphas,)
        Mean over folds of the per-task validation error of each candidate.
    fold_errors : ndarray of shape (n_alphas, n_folds)
        Only if ``return_fold_errors``.

    Raises
    ------
    ValueError
        If ``alphas`` is empty or not positive, ``n_folds < 2``, ``metric`` is unknown,
        ``estimator`` has no ``alpha`` parameter, or no task of ``train`` has ``n_folds``
        rows.
    TypeError
        If ``standardize`` is not a bool.

    Examples
    --------
    >>> from fmtl import LocalRegressor
    >>> from fmtl.datasets import make_multitask_regression
    >>> train = make_multitask_regression(n_tasks=3, n_samples=20, n_features=4,
    ...                                   random_state=0)
    >>> best, errs = cross_validate_alpha(LocalRegressor(), train, alphas=[1e-3, 10.0],
    ...                                   n_folds=4)
    >>> best, errs.shape, bool(errs[0] < errs[1])
    (0.001, (2,), True)
    """
    train = _check_dataset(train, "train")
    grid = _check_alphas(alphas)
    n_folds = _check_n_folds(n_folds)
    _check_alpha_param(estimator)
    metric = _resolve_metric(metric, estimator)
    standardize = _check_standardize(standardize)
    folds = per_task_folds(train, n_folds)
    if all(np.all(f < 0) for f in folds):
        raise ValueError(
            f"train has no task with at least n_folds={n_folds} rows (largest task: "
            f"{int(train.n_samples.max())} rows); lower n_folds"
        )

    def split(k: int) -> tuple[MultiTaskDataset, MultiTaskDataset]:
        fit_part = _select(train, [np.flatnonzero(f != k) for f in folds])
        val_part = _select(train, [np.flatnonzero(f == k) for f in folds])
        if standardize:
            fit_part, val_part = standardize_features(fit_part, val_part)
        return fit_part, val_part

    fold_data = ((fit.stack(), val) for fit, val in map(split, range(n_folds)))
    errors, _ = _alpha_path_scores(
        estimator, fold_data, grid, lambda est, val: per_task_error(est, val, metric)
    )
    mean_errors = errors.mean(axis=1)
    best_alpha = _pick_alpha(grid, mean_errors)
    if return_fold_errors:
        return best_alpha, mean_errors, errors
    return best_alpha, mean_errors


# ------------------------------------------------------------------------------ tables


def error_table(
    datasets: Mapping[str, MultiTaskDataset],
    methods: Mapping[str, Any],
    alphas: Iterable[float] = DEFAULT_ALPHAS,
    n_seeds: int = 10,
    test_size: float = 0.25,
    n_folds: int = 5,
    progress: Callable[[dict], None] | None = None,
    *,
    metric: str = "auto",
    seeds: Iterable[int] | None = None,
    refit_params: Mapping[str, Mapping[str, Any]] | None = None,
    polish_rounds: int = 0,
    standardize: bool = False,
) -> list[dict]:
    """Run the paper's protocol for every data set x split seed x method.

    For each data set and each seed ``s`` in ``0 .. n_seeds - 1`` (or in ``seeds``): split
    every task with :func:`fmtl.datasets.train_test_split_per_task` (``random_state=s``);
    for each method, choose alpha by :func:`cross_validate_alpha` on the training part,
    refit a clone on the whole training part with that alpha and record
    :func:`per_task_error` on the test part.
    Data sets are used as given (a synthetic set is drawn once; only the split varies).

    Parameters
    ----------
    datasets : dict of str -> MultiTaskDataset
    methods : dict of str -> estimator
        Unfitted estimators with an ``alpha`` parameter (e.g. :func:`paper_methods`), or a
        :class:`ConstantBaseline` (nothing to tune: its ``alpha`` and ``cv_error`` are NaN);
        all must suit every data set (classifiers for labels, regressors for real targets).
    alphas : iterable of float > 0, default=DEFAULT_ALPHAS
    n_seeds : int >= 1, default=10
    test_size : float in (0, 1), default=0.25
    n_folds : int >= 2, default=5
    progress : callable, optional
        Called with each row as soon as it is computed (e.g. to print it).
    metric : {"auto", "error_rate", "rmse"}, default="auto"
    seeds : iterable of int, optional
        Explicit split seeds, overriding ``range(n_seeds)`` (e.g. to run seeds in parallel
        processes and concatenate the rows).
    refit_params : dict of str -> dict, optional
        Parameters set on the final refit of the named methods only (after ``alpha`` is
        chosen), e.g. :data:`REFIT_SETTINGS`: a larger round budget so the reported model
        is certified while cross-validation stays cheap.
    polish_rounds : int >= 0, default=0
        When a final refit of a dual estimator ends above its ``tol`` (it stopped at its
        round cap), continue its last W-step, warm-started with the relationship fixed at
        the learned one, for up to this many more rounds (:func:`polish_refit`); 0: never.
    standardize : bool, default=False
        Standardise the features of every split (:func:`standardize_features`): the
        refit and the test part with the training part's statistics, each CV fold with
        its own fold-training rows' statistics. The test part never informs a scaler.

    Returns
    -------
    list of dict
        One row per (dataset, seed, method) with keys ``dataset``, ``method``, ``seed``,
        ``alpha`` (chosen), ``error`` (test, a fraction or an RMSE), ``cv_error`` (mean CV
        error of the chosen alpha), ``metric``, ``auc`` (:func:`mean_task_auc` on the test
        part for classification, else NaN), ``explained_variance`` (:func:`explained_variance`
        for regression, else NaN), ``test_size``, ``rel_gap`` (relative duality gap of the
        final fit when the estimator records one, else NaN), ``polish_rounds`` (rounds
        added by ``polish_rounds``, 0 if none), ``standardized`` (``standardize``) and
        ``seconds`` (CV + refit).

    Raises
    ------
    ValueError
        If ``datasets`` or ``methods`` is empty or not a mapping, a method has no
        ``alpha`` parameter, ``metric`` is unknown, ``alphas`` is empty or not all
        positive and finite, ``n_folds < 2``, ``n_seeds < 1`` (or ``seeds`` empty),
        ``refit_params`` names a method not in ``methods`` or a parameter it lacks,
        ``test_size`` is not in (0, 1), a seed is a string ``int()`` cannot parse, or a
        fit or score fails with ``ValueError``.
    TypeError
        If a data set is not a :class:`~fmtl.datasets.MultiTaskDataset`, a seed is of a
        type ``int()`` does not accept (e.g. None), ``test_size`` is not a real number, or
        ``standardize`` is not a bool.

    Examples
    --------
    >>> from fmtl import LocalRegressor
    >>> from fmtl.datasets import make_multitask_regression
    >>> data = {"toy": make_multitask_regression(n_tasks=3, n_samples=24, n_features=3,
    ...                                          random_state=0)}
    >>> rows = error_table(data, {"Local": LocalRegressor()}, alphas=[1e-3, 1.0],
    ...                    n_seeds=2, n_folds=3)
    >>> [(r["seed"], r["alpha"]) for r in rows]
    [(0, 0.001), (1, 0.001)]
    >>> summarize(rows)[0]["n"]
    2
    """
    if not isinstance(datasets, Mapping) or not datasets:
        raise ValueError("datasets must be a non-empty dict of name -> MultiTaskDataset")
    if not isinstance(methods, Mapping) or not methods:
        raise ValueError("methods must be a non-empty dict of name -> estimator")
    for name, ds in datasets.items():
        _check_dataset(ds, f"datasets[{name!r}]")
    for est in methods.values():
        if not isinstance(est, ConstantBaseline):  # the one method with nothing to tune
            _check_alpha_param(est)
        _resolve_metric(metric, est)
    grid = _check_alphas(alphas)
    n_folds = _check_n_folds(n_folds)
    refit_params = _check_refit_params(refit_params, methods)
    standardize = _check_standardize(standardize)
    if isinstance(polish_rounds, bool) or not isinstance(polish_rounds, numbers.Integral):
        raise ValueError(f"polish_rounds must be an integer >= 0, got {polish_rounds!r}")
    if polish_rounds < 0:
        raise ValueError(f"polish_rounds must be an integer >= 0, got {polish_rounds}")
    if seeds is None:
        if isinstance(n_seeds, bool) or not isinstance(n_seeds, numbers.Integral) or n_seeds < 1:
            raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
        seed_list = list(range(int(n_seeds)))
    else:
        seed_list = [int(s) for s in seeds]
        if not seed_list:
            raise ValueError("seeds must be a non-empty iterable of integers")
    rows: list[dict] = []
    for dname, ds in datasets.items():
        for seed in seed_list:
            raw_train, test = train_test_split_per_task(ds, test_size=test_size, random_state=seed)
            train = raw_train
            if standardize:
                train, test = standardize_features(raw_train, test)
            for mname, est in methods.items():
                t0 = time.perf_counter()
                if isinstance(est, ConstantBaseline):
                    best, cv_best = math.nan, math.nan
                    final = _fit(clone(est), train)
                else:
                    best, cv = cross_validate_alpha(
                        est, raw_train, grid, n_folds, metric=metric, standardize=standardize
                    )
                    cv_best = float(cv[np.flatnonzero(grid == best)[0]])
                    final = clone(est).set_params(alpha=best, **refit_params.get(mname, {}))
                    final = _fit(final, train)
                n_polish = 0
                if polish_rounds and not isinstance(est, ConstantBaseline):
                    final, n_polish = polish_refit(final, train, polish_rounds)
                err = per_task_error(final, test, metric)
                kind = _resolve_metric(metric, est)
                row = {
                    "dataset": dname,
                    "method": mname,
                    "seed": seed,
                    "alpha": best,
                    "error": err,
                    "cv_error": cv_best,
                    "metric": kind,
                    "auc": mean_task_auc(final, test) if kind == "error_rate" else math.nan,
                    "explained_variance": (
                        explained_variance(final, test) if kind == "rmse" else math.nan
                    ),
                    "test_size": float(test_size),
                    "rel_gap": _final_rel_gap(final),
                    "polish_rounds": n_polish,
                    "standardized": standardize,
                    "seconds": time.perf_counter() - t0,
                }
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def polish_refit(estimator: Any, dataset: MultiTaskDataset, max_rounds: int) -> tuple[Any, int]:
    """Continue a fitted dual estimator's last W-step until it is certified to its ``tol``.

    A fit that stopped at its round cap is refitted with ``warm_start=True`` from its own
    dual variables, for up to ``max_rounds`` more rounds, with everything that defines its
    problem unchanged: a learned Σ is held at the fitted ``sigma_`` (``relationship=
    "fixed"``), so the result is the same W-step carried further, and the model it
    certifies is the optimum for the final Σ. Only the last W-step needs the accuracy
    (the earlier ones only lead Σ there), so this is far cheaper than raising every
    W-step's cap. Estimators that are already within ``tol``, or have no history or no
    ``warm_start``, are returned as they are.

    Parameters
    ----------
    estimator : fitted estimator
        E.g. a final refit of :func:`error_table`; modified in place.
    dataset : MultiTaskDataset
        The rows it was fitted on.
    max_rounds : int >= 1
        The extra round budget.

    Returns
    -------
    estimator, int
        The estimator and the number of rounds added (0 if none).

    Raises
    ------
    ValueError
        From the estimator's ``fit``, e.g. if ``max_rounds`` is not a positive integer.

    Examples
    --------
    >>> from fmtl import LocalRegressor
    >>> from fmtl.datasets import make_multitask_regression
    >>> data = make_multitask_regression(n_tasks=3, n_samples=24, n_features=3,
    ...                                  random_state=0)
    >>> est = LocalRegressor(max_rounds=1, local_work="fixed", tol=1e-8).fit(*data.stack())
    >>> bool(est.history_["rel_gap"][-1] > 1e-8)
    True
    >>> est, added = polish_refit(est, data, 1000)
    >>> added > 0, bool(est.history_["rel_gap"][-1] <= 1e-8)
    (True, True)
    """
    params = estimator.get_params()
    gap = _final_rel_gap(estimator)
    tol = params.get("tol")
    if "warm_start" not in params or tol is None or not gap > tol:
        return estimator, 0
    if "max_rounds" in params:
        estimator.set_params(max_rounds=max_rounds, warm_start=True)
    else:
        extra = {"outer_iters": 1, "inner_iters": max_rounds, "warm_start": True}
        if params.get("relationship") == "learned":
            extra.update(relationship="fixed", sigma=estimator.sigma_)
        estimator.set_params(**extra)
    _fit(estimator, dataset)
    hist = estimator.history_
    return estimator, int(hist["round"][-1]) if "round" in hist.columns else len(hist)


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Mean, std and most often chosen alpha per (dataset, method).

    Parameters
    ----------
    rows : iterable of dict
        Rows of :func:`error_table` (keys ``dataset``, ``method``, ``alpha``, ``error``;
        ``metric`` optional).

    Returns
    -------
    list of dict
        In order of first appearance, with keys ``dataset``, ``method``, ``metric``,
        ``mean``, ``std`` (sample std, ``ddof=1``; 0 for a single row), ``sem``
        (``std / sqrt(n)``), ``n``, ``alpha`` (the most frequently chosen alpha; ties go
        to the larger), ``alpha_counts`` (dict alpha -> count), and the mean and standard
        error over the rows where it is finite of ``auc`` (``auc``, ``auc_sem``) and of
        ``explained_variance`` (``explained_variance``, ``explained_variance_sem``); NaN
        where no row has one.

    Raises
    ------
    KeyError
        If a row lacks ``dataset``, ``method``, ``alpha`` or ``error``.
    ValueError
        If an ``error`` or ``alpha`` cannot be converted to float.

    Examples
    --------
    >>> rows = [{"dataset": "d", "method": "m", "alpha": a, "error": e}
    ...         for a, e in [(0.1, 0.2), (0.1, 0.4), (1.0, 0.3)]]
    >>> s = summarize(rows)[0]
    >>> round(s["mean"], 3), round(s["std"], 3), s["n"], s["alpha"]
    (0.3, 0.1, 3, 0.1)
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)

    out = []
    for (dname, mname), rs in groups.items():
        mean, std, sem = _mean_std_sem(np.array([float(r["error"]) for r in rs]))
        # NaN: a method with nothing to tune (ConstantBaseline)
        counts = Counter(float(r["alpha"]) for r in rs if not math.isnan(float(r["alpha"])))
        top = max(counts.values(), default=0)
        alpha = max((a for a, c in counts.items() if c == top), default=math.nan)
        entry = {
            "dataset": dname,
            "method": mname,
            "metric": rs[0].get("metric", ""),
            "mean": mean,
            "std": std,
            "sem": sem,
            "n": len(rs),
            "alpha": alpha,
            "alpha_counts": dict(sorted(counts.items())),
        }
        for key in ("auc", "explained_variance"):  # over the rows that have one
            v = np.array([float(r.get(key, math.nan)) for r in rs])
            entry[key], _, entry[key + "_sem"] = _mean_std_sem(v[np.isfinite(v)])
        out.append(entry)
    return out


def _mean_std_sem(v: np.ndarray) -> tuple[float, float, float]:
    """Mean, sample std (``ddof=1``; 0 for one value) and ``std / sqrt(n)``; NaN if empty."""
    if not v.size:
        return math.nan, math.nan, math.nan
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return float(v.mean()), std, std / math.sqrt(v.size)


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN)."""
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    k, running = order.size, 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (k - j) * p[i]))
        out[i] = running
    return out


def _t_pvalue(diff: np.ndarray, var_factor: float) -> float:
    """Two-sided p of a t statistic mean / sqrt(var * var_factor), n - 1 degrees of freedom."""
    from scipy.stats import t as student

    mean, var = float(diff.mean()), float(diff.var(ddof=1))
    if var == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    stat = mean / math.sqrt(var * var_factor)
    return float(2.0 * student.sf(abs(stat), diff.size - 1))


def paired_comparisons(rows: Iterable[Mapping[str, Any]], level: float = 0.05) -> list[dict]:
    """Which differences between methods are significant, split by split.

    For each data set and each pair of methods ``(a, b)``, the per-split differences
    ``d_s = error_a(s) - error_b(s)`` over the split seeds both have (negative: ``a`` is
    better). Random 75/25 splits overlap, so a plain paired t-test over them is
    anti-conservative; the decision uses the **corrected resampled t-test** of Nadeau and
    Bengio (2003, *Inference for the generalization error*, Machine Learning 52), whose
    variance is ``var(d) * (1/n + n_test/n_train)``, with Holm's correction over the pairs
    of each data set. The plain paired t-test and the Wilcoxon signed-rank test are reported
    beside it.

    Parameters
    ----------
    rows : iterable of dict
        Rows of :func:`error_table` (keys ``dataset``, ``method``, ``seed``, ``error``,
        ``test_size``).
    level : float in (0, 1), default=0.05
        Family-wise level per data set.

    Returns
    -------
    list of dict
        One per (dataset, a, b) with ``a`` before ``b`` in order of first appearance:
        ``dataset``, ``a``, ``b``, ``n`` (common splits), ``mean_diff``, ``sem_diff``
        (``std(d) / sqrt(n)``), ``wins`` (splits where ``a`` is strictly better),
        ``losses``, ``p_t`` (plain paired t), ``p_corrected`` (Nadeau-Bengio),
        ``p_wilcoxon``, ``p_holm`` (Holm-adjusted ``p_corrected``) and ``significant``
        (``p_holm < level``). p-values are NaN with fewer than 2 common splits.

    Raises
    ------
    KeyError
        If a row lacks one of the keys above.
    ValueError
        If ``level`` is not in (0, 1), or ``test_size`` differs between the rows of one
        data set or is not in (0, 1).

    Examples
    --------
    >>> rows = [{"dataset": "d", "method": m, "seed": s, "error": e, "test_size": 0.25}
    ...         for s in range(10) for m, e in (("A", 0.20 + s / 1000), ("B", 0.30))]
    >>> c = paired_comparisons(rows)[0]
    >>> c["a"], c["b"], round(c["mean_diff"], 4), c["wins"], c["significant"]
    ('A', 'B', -0.0955, 10, True)
    """
    from scipy.stats import wilcoxon

    if not (isinstance(level, numbers.Real) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    by: dict[str, dict[str, dict[int, float]]] = {}
    sizes: dict[str, set] = {}
    for r in rows:
        err = by.setdefault(r["dataset"], {}).setdefault(r["method"], {})
        err[int(r["seed"])] = float(r["error"])
        sizes.setdefault(r["dataset"], set()).add(float(r["test_size"]))
    out: list[dict] = []
    for dname, methods in by.items():
        if len(sizes[dname]) != 1:
            raise ValueError(f"rows of {dname!r} mix test sizes {sorted(sizes[dname])}")
        test_size = sizes[dname].pop()
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size of {dname!r} must be in (0, 1), got {test_size}")
        ratio = test_size / (1.0 - test_size)
        names = list(methods)
        block = []
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                seeds = sorted(set(methods[a]) & set(methods[b]))
                d = np.array([methods[a][s] - methods[b][s] for s in seeds])
                n = d.size
                row = {
                    "dataset": dname,
                    "a": a,
                    "b": b,
                    "n": n,
                    "mean_diff": float(d.mean()) if n else math.nan,
                    "sem_diff": float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                    "wins": int(np.sum(d < 0)),
                    "losses": int(np.sum(d > 0)),
                    "p_t": math.nan,
                    "p_corrected": math.nan,
                    "p_wilcoxon": math.nan,
                }
                if n > 1:
                    row["p_t"] = _t_pvalue(d, 1.0 / n)
                    row["p_corrected"] = _t_pvalue(d, 1.0 / n + ratio)
                    nonzero = d[d != 0.0]
                    row["p_wilcoxon"] = float(wilcoxon(nonzero).pvalue) if nonzero.size else 1.0
                block.append(row)
        holm = _holm(np.array([r["p_corrected"] for r in block], dtype=float))
        for r, p in zip(block, holm, strict=True):
            r["p_holm"] = float(p)
            r["significant"] = bool(p < level)
        out += block
    return out


# ------------------------------------------------------------------------------ methods


class ConstantBaseline(BaseEstimator):
    """The reference code's "constant" baseline: each task predicts its training labels' mode
    (classification; ties to the smallest label, as MATLAB's ``mode``) or mean (regression),
    whatever the features. It is the floor any model of the error table must beat.

    Parameters
    ----------
    task : {"classification", "regression"}, default="classification"

    Attributes
    ----------
    tasks_ : list
        Task labels seen in ``fit``.
    constant_ : dict
        Task label -> its prediction.

    Raises
    ------
    ValueError
        From ``fit``: an unknown ``task``, ``X``/``y``/``tasks`` of different lengths, or no
        rows; from ``predict``: a task not seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((6, 2))
    >>> est = ConstantBaseline().fit(X, [1, 1, -1, -1, -1, 1], ["a", "a", "a", "b", "b", "b"])
    >>> est.predict(X[:2], ["a", "b"]).tolist()
    [1, -1]
    """

    # with metadata routing on, meta-estimators route ``tasks`` here without set_*_request
    __metadata_request__fit = {"tasks": True}
    __metadata_request__predict = {"tasks": True}
    __metadata_request__score = {"tasks": True}

    def __init__(self, task: str = "classification") -> None:
        self.task = task

    @property
    def _estimator_type(self) -> str:  # is_classifier() before scikit-learn 1.6
        return "classifier" if self.task == "classification" else "regressor"

    def __sklearn_tags__(self):  # is_classifier() from scikit-learn 1.6
        from sklearn.utils import ClassifierTags, RegressorTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = self._estimator_type
        # as sklearn's DummyClassifier: X is only counted, a constant scores poorly
        tags.input_tags.sparse = True
        tags.no_validation = True
        if self.task == "classification":
            tags.classifier_tags = ClassifierTags(poor_score=True)
        else:
            tags.regressor_tags = RegressorTags(poor_score=True)
        return tags

    def fit(self, X, y, tasks=None) -> ConstantBaseline:
        """Store each task's mode or mean of ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Ignored but for its length (and its number of features).
        y : array-like of shape (n_samples,)
        tasks : array-like of shape (n_samples,), optional
            Task label of each row; ``None``: one task, labelled ``0``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            See the class.

        Examples
        --------
        >>> ConstantBaseline("regression").fit([[0], [0], [0]], [1.0, 2.0, 6.0],
        ...                                    [0, 0, 1]).constant_
        {0: 1.5, 1: 6.0}
        """
        from sklearn.utils.validation import _num_samples, validate_data

        from ..estimators import _check_tasks

        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        validate_data(self, X, skip_check_array=True)
        y = np.asarray(y)
        n = _num_samples(X)
        if not (y.shape[0] == n == (n if tasks is None else len(tasks))) or n == 0:
            raise ValueError(
                f"X, y and tasks must have the same, non-zero length, got {n}, {y.shape[0]} "
                f"and {n if tasks is None else len(tasks)}"
            )
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        if self.task == "regression":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError) as e:
                raise ValueError(f"y must hold numbers for task='regression': {e}") from e
            if not np.all(np.isfinite(y)):
                raise ValueError("y contains NaN or inf")
        tasks = _check_tasks(tasks, n)
        self.constant_ = {}
        for t in dict.fromkeys(tasks.tolist()):
            yt = y[tasks == t]
            if self.task == "regression":
                self.constant_[t] = float(np.mean(yt))
            else:
                labels, counts = np.unique(yt, return_counts=True)
                mode = labels[np.argmax(counts)]
                self.constant_[t] = mode.item() if isinstance(mode, np.generic) else mode
        self.tasks_ = list(self.constant_)
        if self.task == "classification":
            self.classes_ = np.unique(y)
        return self

    def predict(self, X, tasks=None) -> np.ndarray:
        """Each row's task constant.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Ignored but for its length.
        tasks : array-like of shape (n_samples,), optional
            Task label of each row; ``None`` only for a model of one task.

        Returns
        -------
        ndarray of shape (n_samples,)

        Raises
        ------
        ValueError
            A task not seen in ``fit``, ``tasks`` not as long as ``X``, or ``tasks=None``
            after a fit on several tasks.

        Examples
        --------
        >>> est = ConstantBaseline().fit([[0], [0], [0]], ["x", "y", "y"], ["a", "a", "a"])
        >>> est.predict([[5], [7]], ["a", "a"]).tolist()
        ['y', 'y']
        >>> est.predict([[5]]).tolist()  # one task: tasks may be left out
        ['y']
        """
        from sklearn.utils.validation import _num_samples, check_is_fitted

        check_is_fitted(self, "constant_")
        n = _num_samples(X)
        if tasks is None:
            if len(self.tasks_) != 1:
                raise ValueError(
                    f"tasks=None, but this model has {len(self.tasks_)} tasks: pass each "
                    "row's task label as tasks"
                )
            tasks = [self.tasks_[0]] * n
        tasks = np.asarray(tasks, dtype=object)
        if tasks.shape[0] != n:
            raise ValueError(f"tasks has {tasks.shape[0]} entries for {n} rows of X")
        unseen = [t for t in dict.fromkeys(tasks.tolist()) if t not in self.constant_]
        if unseen:
            raise ValueError(f"tasks contains {unseen[:5]}, not seen during fit")
        return np.array([self.constant_[t] for t in tasks.tolist()])

    def score(self, X, y, tasks=None, sample_weight=None) -> float:
        """Accuracy (classification) or R^2 (regression) of :meth:`predict`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Ignored but for its length.
        y : array-like of shape (n_samples,)
        tasks : array-like of shape (n_samples,), optional
            Task label of each row; ``None`` only for a model of one task.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float

        Raises
        ------
        ValueError
            As :meth:`predict`.

        Examples
        --------
        >>> est = ConstantBaseline().fit([[0], [0], [0]], [1, 1, 0], ["a", "a", "b"])
        >>> est.score([[0], [0]], [1, 1], ["a", "b"])
        0.5
        """
        from sklearn.metrics import accuracy_score, r2_score

        metric = accuracy_score if self.task == "classification" else r2_score
        return float(metric(y, self.predict(X, tasks), sample_weight=sample_weight))


def paper_methods(task: str = "classification", random_state: Any = 0) -> dict[str, Any]:
    """The methods of the error table, unfitted, keyed by display name.

    * ``"Constant"``: each task predicts its training labels' mode (or mean): the
      reference code's constant baseline (:class:`ConstantBaseline`, nothing to tune);
    * ``"Global"``: one model on the pooled data (:class:`fmtl.GlobalClassifier`);
    * ``"Local"``: one independent model per task (:class:`fmtl.LocalClassifier`);
    * ``"MTL (mean-reg. Ω)"``: MOCHA with the fixed mean-regularised relationship,
      ``relationship="mean", kappa=1.0``;
    * ``"MOCHA"``: MOCHA with the learned relationship Σ (the paper's "MTL" column).

    MOCHA runs at most ``outer_iters=10`` outer rounds of at most ``inner_iters=50``
    federated rounds (the reference's 10 x 100 rounds, in half the communication rounds;
    the estimators' defaults: adaptive ``sigma'`` and certified shrinking SDCA with adaptive
    local passes) and stops a W-step at a relative duality gap of ``tol=1e-5``
    (:data:`MOCHA_SETTINGS`); the learned Σ's eigenvalues are floored at
    :data:`MOCHA_SIGMA_FLOOR` (1e-3). Global and Local solve each task to a certified
    relative gap of 1e-5, in one round unless a task needs more than 1,000 passes (at most
    500 rounds, :data:`BASELINE_SETTINGS`). Pass :data:`REFIT_SETTINGS` as
    ``refit_params`` to :func:`error_table` to give the final refits W-steps of up to
    3,000 rounds (at the smallest lambdas a W-step needs ~1,000); :func:`error_table`
    records the final relative gap of each refit.

    The models have no intercept (``fit_intercept=False``), as in the paper and its
    reference code; set ``fit_intercept=True`` on them (``set_params``) for the
    estimators' default.

    Parameters
    ----------
    task : {"classification", "regression"}, default="classification"
        Hinge-loss classifiers or squared-loss regressors.
    random_state : int, Generator or None, default=0
        Passed to every estimator (seeds the SDCA coordinate order).

    Returns
    -------
    dict of str -> estimator
        ``"Constant"``, ``"Global"``, ``"Local"``, ``"MTL (mean-reg. Ω)"`` and ``"MOCHA"``,
        in that order.

    Raises
    ------
    ValueError
        If ``task`` is neither ``"classification"`` nor ``"regression"``.

    Examples
    --------
    >>> methods = paper_methods()
    >>> list(methods)
    ['Constant', 'Global', 'Local', 'MTL (mean-reg. Ω)', 'MOCHA']
    >>> methods["MOCHA"].get_params()["relationship"]
    'learned'
    >>> methods["Local"].get_params()["fit_intercept"]
    False
    >>> type(paper_methods("regression")["Local"]).__name__
    'LocalRegressor'
    """
    from ..estimators import (
        GlobalClassifier,
        GlobalRegressor,
        LocalClassifier,
        LocalRegressor,
        MochaClassifier,
        MochaRegressor,
    )

    if task == "classification":
        glob, loc, mocha = GlobalClassifier, LocalClassifier, MochaClassifier
    elif task == "regression":
        glob, loc, mocha = GlobalRegressor, LocalRegressor, MochaRegressor
    else:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    return {
        "Constant": ConstantBaseline(task),
        "Global": glob(random_state=random_state, **BASELINE_SETTINGS),
        "Local": loc(random_state=random_state, **BASELINE_SETTINGS),
        "MTL (mean-reg. Ω)": mocha(
            relationship="mean", kappa=1.0, random_state=random_state, **MOCHA_SETTINGS
        ),
        "MOCHA": mocha(
            relationship="learned",
            sigma_floor=MOCHA_SIGMA_FLOOR,
            random_state=random_state,
            **MOCHA_SETTINGS,
        ),
    }
