"""MOCHA with ``alpha`` chosen by cross-validation: :class:`MochaClassifierCV` and
:class:`MochaRegressorCV` (as scikit-learn's ``LogisticRegressionCV`` / ``RidgeCV``).

The candidates are visited from the largest ``alpha`` down, each fit warm-started from the
previous one's dual variables (the dual feasible set does not depend on ``alpha``), on
per-task folds (:func:`fmtl.experiments.error_protocol.per_task_folds`: every task is split
across the folds; a classifier's folds are stratified by class within each task). The best
``alpha`` is refitted on all rows, and the estimator then predicts like
:class:`fmtl.MochaClassifier`.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.metrics import get_scorer

from ._alpha_path import _alpha_path_scores, _check_alphas, _pick_alpha, _task_folds
from .estimators import (
    MochaClassifier,
    MochaRegressor,
    _auto_alpha,
    _TaskClassifierMixin,
    _TaskModelBase,
    _TaskRegressorMixin,
)

__all__ = ["DEFAULT_ALPHA_FACTORS", "MochaClassifierCV", "MochaRegressorCV"]

#: ``alphas=n`` (an int) tries ``n`` values log-spaced over this range of multiples of the
#: ``alpha="auto"`` default (:class:`fmtl.MochaClassifier`): two decades either side.
DEFAULT_ALPHA_FACTORS: tuple[float, float] = (1e-2, 1e2)


class _BoundClassifier(ClassifierMixin, BaseEstimator):
    """A fitted classifier with the validation rows' tasks bound: what a scorer calls."""

    def __init__(self, estimator=None, tasks=None) -> None:
        self.estimator = estimator
        self.tasks = tasks

    @property
    def classes_(self):
        return self.estimator.classes_

    def predict(self, X):
        return self.estimator.predict(X, self.tasks)

    def decision_function(self, X):
        return self.estimator.decision_function(X, self.tasks)


class _BoundRegressor(RegressorMixin, BaseEstimator):
    """A fitted regressor with the validation rows' tasks bound: what a scorer calls."""

    def __init__(self, estimator=None, tasks=None) -> None:
        self.estimator = estimator
        self.tasks = tasks

    def predict(self, X):
        return self.estimator.predict(X, self.tasks)


class _MochaCVBase(_TaskModelBase):
    _base_class: type = MochaClassifier

    def __init__(
        self,
        alphas: int | np.ndarray | list = 9,
        *,
        cv: int = 5,
        scoring=None,
        loss: str | None = None,
        gamma: float = 1.0,
        relationship: str = "learned",
        kappa: float = 1.0,
        sigma=None,
        outer_iters: int | str = "auto",
        inner_iters: int = 100,
        local_frac: float = 1.0,
        tol: float | str = "auto",
        sigma_floor: float = 1e-6,
        ridge: float = 0.0,
        random_state=None,
        n_jobs: int | None = None,
        systems=None,
        record_local_gaps: bool | None = None,
        eval_every: int = 1,
        verbose: int = 0,
        sigma_prime: str | float = "adaptive",
        local_work: str = "auto",
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
        sigma_solver: str = "auto",
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.scoring = scoring
        self.loss = loss
        self.gamma = gamma
        self.relationship = relationship
        self.kappa = kappa
        self.sigma = sigma
        self.outer_iters = outer_iters
        self.inner_iters = inner_iters
        self.local_frac = local_frac
        self.tol = tol
        self.sigma_floor = sigma_floor
        self.ridge = ridge
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.systems = systems
        self.record_local_gaps = record_local_gaps
        self.eval_every = eval_every
        self.verbose = verbose
        self.sigma_prime = sigma_prime
        self.local_work = local_work
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.sigma_solver = sigma_solver

    def _base_estimator(self):
        """The MOCHA estimator the path is walked with: every shared parameter as set."""
        shared = set(self._base_class().get_params(deep=False)) & set(self.get_params(deep=False))
        return self._base_class(**{k: getattr(self, k) for k in shared})

    def _grid(self, Xs: list) -> np.ndarray:
        """The candidates, largest first."""
        if isinstance(self.alphas, numbers.Integral) and not isinstance(self.alphas, bool):
            if self.alphas < 1:
                raise ValueError(f"alphas as an int must be >= 1, got {self.alphas}")
            lo, hi = np.log10(DEFAULT_ALPHA_FACTORS)
            factors = np.logspace(lo, hi, int(self.alphas)) if self.alphas > 1 else np.ones(1)
            grid = _auto_alpha(Xs) * factors
        elif isinstance(self.alphas, str | bool | numbers.Number):
            raise TypeError(
                f"alphas must be an int or a sequence of positive numbers, got {self.alphas!r}"
            )
        else:
            grid = _check_alphas(self.alphas)
        return np.sort(grid)[::-1]

    def _scorer(self):
        """``score(fitted, (X, y, tasks))`` on a validation fold."""
        if self.scoring is None:
            return lambda est, val: float(est.score(*val))
        if isinstance(self.scoring, str):
            scorer = get_scorer(self.scoring)  # ValueError naming the unknown string
        elif callable(self.scoring):
            scorer = self.scoring
        else:
            raise TypeError(
                f"scoring must be None, a scorer name or a callable scorer(estimator, X, y), "
                f"got {self.scoring!r}"
            )
        bound = _BoundClassifier if is_classifier(self) else _BoundRegressor
        return lambda est, val: float(scorer(bound(est, val[2]), val[0], val[1]))

    def _cv_fit(self, X, y, tasks):
        if isinstance(self.cv, bool) or not isinstance(self.cv, numbers.Integral) or self.cv < 2:
            raise ValueError(f"cv must be an integer >= 2 (the number of folds), got {self.cv!r}")
        n_folds = int(self.cv)
        score = self._scorer()
        X, y, labels, rows = self._validate_fit(X, y, tasks)
        grid = self._grid([X[r] for r in rows])
        strata = [y[r] for r in rows] if is_classifier(self) else None
        fold = np.empty(X.shape[0], dtype=np.int64)
        for r, f in zip(rows, _task_folds([len(r) for r in rows], n_folds, strata), strict=True):
            fold[r] = f
        if np.all(fold < 0):
            raise ValueError(
                f"no task has at least cv={n_folds} rows (largest task: "
                f"{max(len(r) for r in rows)} rows); lower cv"
            )
        task_of_row = np.empty(X.shape[0], dtype=object)
        for lab, r in zip(labels, rows, strict=True):
            task_of_row[r] = lab

        def part(mask):
            return X[mask], y[mask], task_of_row[mask]

        base = self._base_estimator()
        scores, seconds = _alpha_path_scores(
            base,
            ((part(fold != k), part(fold == k)) for k in range(n_folds)),
            grid,
            score,
            checkpoint_dir=self.checkpoint_dir,
        )
        mean = scores.mean(axis=1)
        self.alpha_ = _pick_alpha(grid, -mean)
        self.alphas_ = grid
        self.best_score_ = float(mean[np.flatnonzero(grid == self.alpha_)[0]])
        self.cv_results_ = {
            "param_alpha": grid.copy(),
            "params": [{"alpha": float(a)} for a in grid],
            **{f"split{k}_test_score": scores[:, k].copy() for k in range(n_folds)},
            "mean_test_score": mean,
            "std_test_score": scores.std(axis=1),
            "rank_test_score": rankdata(-mean, method="min").astype(np.int32),
            "mean_fit_time": seconds.mean(axis=1),
            "std_fit_time": seconds.std(axis=1),
        }
        refit_dir = None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / "refit"
        final = base.set_params(alpha=self.alpha_, warm_start=False, checkpoint_dir=refit_dir)
        final.fit(X, y, task_of_row)
        # the refitted model's fitted state (coef_, tasks_, classes_, history_, ...) is ours
        for name, value in vars(final).items():
            if name.endswith("_") and name not in ("n_features_in_", "feature_names_in_"):
                setattr(self, name, value)
        return self


_CV_PARAMS_DOC = """
    alphas : int or array-like of float, default=9
        The candidates. An int ``n``: ``n`` values log-spaced from ``1e-2`` to ``1e2``
        times the ``alpha="auto"`` default ``r^2 / N`` (:class:`fmtl.MochaClassifier`:
        ``r^2`` the mean squared row norm, ``N`` the number of rows; ``DEFAULT_ALPHA_FACTORS``);
        an array: those values (positive, finite).
    cv : int, default=5
        Number of folds (>= 2). Per task: row ``i`` of a task goes to fold ``i % cv``
        (:func:`fmtl.experiments.error_protocol.per_task_folds`){stratified}; a task with
        fewer than ``cv`` rows is trained on in every fold and never scored.
    scoring : str, callable or None, default=None
        ``None``: the estimator's ``score`` ({score}) on each validation fold; a
        scikit-learn scorer name (``"roc_auc"``, ``"neg_mean_squared_error"``, ...) or a
        callable ``scorer(estimator, X, y)``: called with an estimator whose ``predict``
        (and ``decision_function``) take ``X`` alone, the validation rows' tasks bound.
        Greater is better; ties go to the larger ``alpha``.
    loss, gamma, relationship, kappa, sigma, outer_iters, inner_iters, local_frac, tol, \
sigma_floor, ridge, random_state, n_jobs, systems, record_local_gaps, eval_every, \
verbose, sigma_prime, local_work, fit_intercept, intercept_scaling, checkpoint_every, \
sigma_solver
        As in :class:`fmtl.{base}` (every fit of the path and the refit use them).
    checkpoint_dir : str or path-like, optional
        As in :class:`fmtl.{base}`, one subdirectory per fit: ``fold-<k>/alpha-<j>`` for
        the path (``j`` indexes ``alphas_``, largest first) and ``refit`` for the final
        fit, so an interrupted cross-validation started again redoes no finished fit.
"""

_CV_ATTRS_DOC = """
    alpha_ : float
        The chosen ``alpha`` (the best mean validation score).
    alphas_ : ndarray of shape (n_alphas,)
        The candidates, largest first: the order of the path and of ``cv_results_``.
    best_score_ : float
        Mean validation score of ``alpha_``.
    cv_results_ : dict of ndarray
        As ``GridSearchCV``'s, one entry per candidate in the order of ``alphas_``:
        ``param_alpha``, ``params``, ``split{{k}}_test_score`` (``k < cv``),
        ``mean_test_score``, ``std_test_score``, ``rank_test_score`` (1 = best) and
        ``mean_fit_time`` / ``std_fit_time`` (seconds, warm-started fits).
    coef_, tasks_, sigma_, omega_, dual_coef_, history_, never_reported_, n_features_in_
        Of the model refitted on all rows with ``alpha_``, as in :class:`fmtl.{base}`.
"""

_CV_RAISES = """
    Raises
    ------
    ValueError
        From ``fit``: ``cv`` not an integer >= 2, ``alphas`` not positive and finite (or an
        int < 1), an unknown ``scoring`` name, no task with at least ``cv`` rows, and
        everything :class:`fmtl.{base}` rejects.
    TypeError
        ``alphas`` or ``scoring`` of the wrong type; as :class:`fmtl.{base}`.
    sklearn.exceptions.NotFittedError
        ``predict``, ``decision_function`` or ``score`` before ``fit``.
"""


class MochaClassifierCV(_TaskClassifierMixin, _MochaCVBase):
    __doc__ = (
        """MOCHA classifier with ``alpha`` chosen by per-task cross-validation.

    For every fold the candidates ``alphas`` are fitted from the largest down, each fit
    warm-started from the previous one's dual variables; the ``alpha`` of the best mean
    validation score is refitted on all rows. Then it predicts, scores and saves like
    :class:`fmtl.MochaClassifier` (``alpha_`` is its ``alpha``).

    Parameters
    ----------"""
        + _CV_PARAMS_DOC.format(
            stratified=", after sorting its rows by class, so that every fold holds each "
            "task's classes in proportion",
            score="accuracy",
            base="MochaClassifier",
        )
        + """
    Attributes
    ----------
    classes_ : ndarray"""
        + _CV_ATTRS_DOC.format(base="MochaClassifier")
        + _CV_RAISES.format(base="MochaClassifier")
        + """
    See Also
    --------
    fmtl.experiments.error_protocol.cross_validate_alpha : The paper's protocol (mean
        per-task error).

    Examples
    --------
    >>> from fmtl import MochaClassifierCV
    >>> from fmtl.datasets import make_multitask_classification
    >>> X, y, tasks = make_multitask_classification(
    ...     n_tasks=4, n_samples=40, n_features=5, random_state=0).stack()
    >>> clf = MochaClassifierCV(alphas=3, cv=3, random_state=0).fit(X, y, tasks)
    >>> clf.alphas_.shape, clf.cv_results_["mean_test_score"].shape
    ((3,), (3,))
    >>> bool(clf.alpha_ in clf.alphas_), clf.predict(X[:2], tasks[:2]).shape
    (True, (2,))
    """
    )
    _base_class = MochaClassifier

    def fit(self, X, y, tasks=None):
        """Choose ``alpha`` by cross-validation, then refit on all rows.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        tasks : array-like of shape (n_samples,), optional
            Task label (any hashable value) of each row; None: one task.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            See the class.
        TypeError
            See the class.

        Examples
        --------
        >>> from fmtl import MochaClassifierCV
        >>> from fmtl.datasets import make_multitask_classification
        >>> X, y, tasks = make_multitask_classification(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> clf = MochaClassifierCV(alphas=[1e-3, 1e-1], cv=3).fit(X, y, tasks)
        >>> clf.alphas_.tolist()
        [0.1, 0.001]
        """
        return self._cv_fit(X, y, tasks)


class MochaRegressorCV(_TaskRegressorMixin, _MochaCVBase):
    __doc__ = (
        """MOCHA regressor with ``alpha`` chosen by per-task cross-validation.

    As :class:`MochaClassifierCV`, with :class:`fmtl.MochaRegressor` and ``R^2`` as the
    default score.

    Parameters
    ----------"""
        + _CV_PARAMS_DOC.format(stratified="", score="R^2", base="MochaRegressor")
        + """
    Attributes
    ----------"""
        + _CV_ATTRS_DOC.format(base="MochaRegressor")
        + _CV_RAISES.format(base="MochaRegressor")
        + """
    Examples
    --------
    >>> from fmtl import MochaRegressorCV
    >>> from fmtl.datasets import make_multitask_regression
    >>> X, y, tasks = make_multitask_regression(
    ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
    >>> reg = MochaRegressorCV(alphas=[1e-3, 1e-2, 10.0], cv=3).fit(X, y, tasks)
    >>> reg.alphas_.tolist(), reg.cv_results_["rank_test_score"].tolist()
    ([10.0, 0.01, 0.001], [3, 2, 1])
    >>> reg.alpha_
    0.001
    """
    )
    _base_class = MochaRegressor

    def fit(self, X, y, tasks=None):
        """Choose ``alpha`` by cross-validation, then refit on all rows.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        tasks : array-like of shape (n_samples,), optional
            Task label (any hashable value) of each row; None: one task.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            See the class.
        TypeError
            See the class.

        Examples
        --------
        >>> from fmtl import MochaRegressorCV
        >>> from fmtl.datasets import make_multitask_regression
        >>> X, y, tasks = make_multitask_regression(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> MochaRegressorCV(alphas=2, cv=3).fit(X, y, tasks).alphas_.shape
        (2,)
        """
        return self._cv_fit(X, y, tasks)
