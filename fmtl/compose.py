"""fmtl estimators in scikit-learn tools that cannot pass ``tasks`` to ``predict``.

With metadata routing enabled, fmtl's estimators request ``tasks`` by default in ``fit``,
``predict``, ``decision_function`` and ``score``, so ``GridSearchCV``, ``cross_validate``
and ``Pipeline`` route it with no ``set_*_request`` call. Two paths of scikit-learn
(1.9) still call an estimator with ``X`` alone: a scorer made from a string
(``scoring="roc_auc"``) calls ``estimator.predict(X)`` / ``decision_function(X)`` and
routes metadata only to the metric, and ``GridSearchCV.predict`` / ``decision_function``
take no metadata. Two ways around them:

* :func:`task_scorer` wraps a scorer so that it requests ``tasks`` and passes it to the
  estimator's prediction method: ``scoring=task_scorer("roc_auc")`` with
  ``params={"tasks": tasks}`` (metadata routing on);
* :class:`TaskColumn` reads each row's task from a column of ``X``: every scikit-learn
  tool then works unchanged, any string scorer, ``GridSearchCV.predict``,
  ``cross_val_predict``, with or without metadata routing.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.metrics import get_scorer
from sklearn.utils.metadata_routing import MetadataRequest, get_routing_for_object
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

__all__ = ["TaskColumn", "task_scorer"]

# the methods a scorer may call to get its response (fmtl has no predict_proba today)
_RESPONSE_METHODS = ("predict", "decision_function", "predict_proba", "predict_log_proba")


class _WithTasks:
    """``estimator`` whose prediction methods take ``X`` alone and pass ``tasks``."""

    def __init__(self, estimator, tasks) -> None:
        self._estimator = estimator
        self._tasks = tasks

    def __getattr__(self, name: str):
        attr = getattr(self._estimator, name)  # AttributeError if it has no such method
        if name not in _RESPONSE_METHODS:
            return attr  # classes_, tags, ... as the estimator's
        tasks = self._tasks

        def response(X):
            return attr(X, tasks=tasks)

        response.__name__ = name  # scikit-learn dispatches on the method's name
        return response


class _TaskScorer:
    """A scikit-learn scorer that requests ``tasks`` and passes it to the estimator."""

    def __init__(self, scorer, name: str) -> None:
        self._scorer = scorer
        self._name = name

    def __call__(self, estimator, X, y_true, tasks=None, **kwargs) -> float:
        return self._scorer(_WithTasks(estimator, tasks), X, y_true, **kwargs)

    def get_metadata_routing(self) -> MetadataRequest:
        request = MetadataRequest(owner="task_scorer")
        # what the wrapped scorer's metric requests (e.g. sample_weight), plus tasks
        inner = get_routing_for_object(self._scorer)
        for param, alias in inner.score.requests.items():
            request.score.add_request(param=param, alias=alias)
        request.score.add_request(param="tasks", alias=True)
        return request

    def __repr__(self) -> str:
        return f"task_scorer({self._name})"


def task_scorer(scoring):
    """A scorer that passes ``tasks`` to the estimator's prediction method.

    scikit-learn's scorers call ``predict(X)`` / ``decision_function(X)`` /
    ``predict_proba(X)`` without metadata (scikit-learn issue 27977), so a string scorer
    cannot score an fmtl model of several tasks. The returned scorer computes the same
    metric, with the same response method, sign and ``pos_label``, from the estimator's
    outputs for ``tasks``. With metadata routing enabled it requests ``tasks`` (and
    whatever the metric requests), so ``GridSearchCV(..., scoring=task_scorer("roc_auc"))``
    and ``cross_validate(..., params={"tasks": tasks})`` route it without further calls.

    Parameters
    ----------
    scoring : str or callable
        A scikit-learn scorer name (``"accuracy"``, ``"roc_auc"``, ``"r2"``,
        ``"neg_mean_squared_error"``, ...) or a scorer made by
        :func:`sklearn.metrics.make_scorer`.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, tasks=None, **metadata) -> float``; usable as
        ``scoring``, alone or as a value of a ``{name: scorer}`` dict.

    Raises
    ------
    ValueError
        An unknown scorer name.
    TypeError
        ``scoring`` neither a string nor callable.

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.model_selection import KFold, cross_val_score
    >>> from fmtl import LocalClassifier, task_scorer
    >>> from fmtl.datasets import make_multitask_classification
    >>> X, y, tasks = make_multitask_classification(n_tasks=3, n_samples=40, n_features=4,
    ...                                             random_state=0).stack()
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     auc = cross_val_score(LocalClassifier(alpha=0.1), X, y, params={"tasks": tasks},
    ...                           scoring=task_scorer("roc_auc"),
    ...                           cv=KFold(3, shuffle=True, random_state=0))
    >>> bool(((0 < auc) & (auc <= 1)).all())
    True
    """
    if isinstance(scoring, str):
        return _TaskScorer(get_scorer(scoring), repr(scoring))
    if not callable(scoring):
        raise TypeError(
            f"scoring must be a scorer name or a scorer (callable), got {type(scoring).__name__}"
        )
    return _TaskScorer(scoring, repr(scoring))


def _estimator_has(name: str):
    return lambda self: hasattr(self.estimator, name)


class TaskColumn(MetaEstimatorMixin, BaseEstimator):
    """An fmtl estimator that reads each row's task from a column of ``X``.

    ``fit(X, y)`` splits ``X`` into the task column and the feature columns and fits
    ``clone(estimator).fit(features, y, tasks=task_column)``; ``predict(X)``,
    ``decision_function(X)`` and ``score(X, y)`` split new rows the same way. With the
    tasks inside ``X`` every scikit-learn tool that slices ``X`` slices them too: string
    scorers, ``GridSearchCV.predict``, ``cross_val_predict``, with or without metadata
    routing. Put preprocessing that must not touch the task column (a ``StandardScaler``)
    in a :class:`~sklearn.compose.ColumnTransformer` that passes the column through.

    Parameters
    ----------
    estimator : fmtl estimator
        Any estimator with ``fit(X, y, tasks=...)`` and ``predict(X, tasks=...)``, e.g.
        :class:`fmtl.MochaClassifier`; cloned by ``fit``.
    column : str or int, default="task"
        The task column: a column name of a pandas DataFrame ``X``, or a position (an
        ``int``, negative counts from the end) in any ``X``: a DataFrame, a 2-D array
        (object dtype for string labels, as a ``ColumnTransformer`` returns) or a sparse
        matrix (numeric labels).

    Attributes
    ----------
    estimator_ : fmtl estimator
        The fitted clone, trained on the feature columns.
    n_features_in_ : int
        Columns of ``X`` in ``fit``, the task column included.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame ``X`` (the task column included).
    classes_ : ndarray
        The fitted classifier's ``classes_``.
    tasks_ : ndarray
        The fitted estimator's ``tasks_``.

    Raises
    ------
    ValueError
        A ``column`` name that ``X`` does not have, a name for an ``X`` without column
        names, a position out of range, or ``X`` with another number of columns than in
        ``fit``; the wrapped estimator's errors (a task not seen in ``fit``, NaN, ...).
    TypeError
        A ``column`` that is neither a string nor an integer.

    See Also
    --------
    task_scorer : Keep ``tasks`` a separate array and route it to the scorer.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.compose import ColumnTransformer
    >>> from sklearn.model_selection import KFold, cross_val_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fmtl import LocalClassifier, TaskColumn
    >>> from fmtl.datasets import make_multitask_classification
    >>> X, y, tasks = make_multitask_classification(n_tasks=3, n_samples=40, n_features=4,
    ...                                             random_state=0).stack()
    >>> df = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(task=tasks)
    >>> scale = ColumnTransformer([("num", StandardScaler(), ["a", "b", "c", "d"])],
    ...                           remainder="passthrough")  # the task column last, unscaled
    >>> model = make_pipeline(scale, TaskColumn(LocalClassifier(alpha=0.1), column=-1))
    >>> acc = cross_val_score(model, df, y, scoring="accuracy",
    ...                       cv=KFold(3, shuffle=True, random_state=0))
    >>> bool(((0.5 < acc) & (acc <= 1)).all())
    True
    >>> model.fit(df, y).predict(df.head(2)).shape
    (2,)
    """

    def __init__(self, estimator, column: str | int = "task") -> None:
        self.estimator = estimator
        self.column = column

    @property
    def _estimator_type(self):  # is_classifier() before scikit-learn 1.6
        return getattr(self.estimator, "_estimator_type", None)

    def __sklearn_tags__(self):
        from sklearn.utils import get_tags

        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.string = True  # task labels may be strings
        return tags

    def _position(self, n_columns: int, names) -> int:
        col = self.column
        if isinstance(col, str):
            if names is None:
                raise ValueError(
                    f"column={col!r} names a column, but X has no column names (an array): "
                    "pass a pandas DataFrame, or the position of the task column as an int"
                )
            hits = [i for i, name in enumerate(names) if name == col]
            if len(hits) != 1:
                shown = [str(n) for n in names[:10]]
                raise ValueError(
                    f"column={col!r} is not exactly one column of X "
                    f"(found {len(hits)}; columns: {shown}{' ...' if len(names) > 10 else ''})"
                )
            return hits[0]
        if isinstance(col, bool) or not isinstance(col, numbers.Integral):
            raise TypeError(f"column must be a column name (str) or position (int), got {col!r}")
        if not -n_columns <= col < n_columns:
            raise ValueError(f"column={col} is out of range for X with {n_columns} columns")
        return int(col) % n_columns

    def _split(self, X, fitting: bool):
        """``(features, tasks)``: ``X`` without its task column, and that column."""
        if hasattr(X, "iloc") and hasattr(X, "columns"):  # a pandas DataFrame
            names = list(X.columns)
            n_columns = len(names)
        else:
            names = None
            if not sp.issparse(X):
                X = np.asarray(X) if isinstance(X, np.ndarray) else np.asarray(X, dtype=object)
            if X.ndim != 2:
                raise ValueError(f"X must be 2-D (rows x columns), got shape {X.shape}")
            n_columns = X.shape[1]
        if fitting:
            self.n_features_in_ = n_columns
            if names is not None:
                self.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_columns != self.n_features_in_:
            raise ValueError(
                f"X has {n_columns} columns, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_} (the task column included)"
            )
        pos = self._position(n_columns, names)
        keep = [i for i in range(n_columns) if i != pos]
        if names is not None:
            return X.iloc[:, keep], X.iloc[:, pos].to_numpy(dtype=object)
        if sp.issparse(X):
            X = X.tocsr()
            return X[:, keep], X[:, [pos]].toarray().ravel()
        return X[:, keep], X[:, pos]

    def fit(self, X, y) -> TaskColumn:
        """Fit a clone of ``estimator`` on the feature columns, tasks from ``column``.

        Parameters
        ----------
        X : {DataFrame, array-like, sparse matrix} of shape (n_samples, n_columns)
            The feature columns and the task column.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self

        Raises
        ------
        ValueError
            A missing or out-of-range ``column``; the wrapped estimator's errors.
        TypeError
            A ``column`` neither a string nor an integer.

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl import LocalRegressor, TaskColumn
        >>> X = np.column_stack([np.arange(8.0), np.repeat([0, 1], 4)])
        >>> TaskColumn(LocalRegressor(alpha=0.1), column=1).fit(X, X[:, 0]).tasks_.tolist()
        [0.0, 1.0]
        """
        features, tasks = self._split(X, fitting=True)
        self.estimator_ = clone(self.estimator).fit(features, y, tasks=tasks)
        return self

    def predict(self, X) -> np.ndarray:
        """The wrapped estimator's predictions, each row by the model of its task.

        Parameters
        ----------
        X : {DataFrame, array-like, sparse matrix} of shape (n_samples, n_columns)
            As in ``fit``, the task column included.

        Returns
        -------
        ndarray of shape (n_samples,)

        Raises
        ------
        ValueError
            ``X`` with another number of columns, a task not seen in ``fit``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl import LocalRegressor, TaskColumn
        >>> X = np.column_stack([np.arange(8.0), np.repeat([0, 1], 4)])
        >>> est = TaskColumn(LocalRegressor(alpha=0.1), column=-1).fit(X, X[:, 0])
        >>> est.predict(X[:2]).shape
        (2,)
        """
        check_is_fitted(self, "estimator_")
        features, tasks = self._split(X, fitting=False)
        return self.estimator_.predict(features, tasks=tasks)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X) -> np.ndarray:
        """The wrapped classifier's margins, each row by the model of its task.

        Parameters
        ----------
        X : {DataFrame, array-like, sparse matrix} of shape (n_samples, n_columns)
            As in ``fit``, the task column included.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)

        Raises
        ------
        ValueError
            ``X`` with another number of columns, a task not seen in ``fit``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl import LocalClassifier, TaskColumn
        >>> X = np.column_stack([np.linspace(-1, 1, 8), np.tile([0, 1], 4)])
        >>> est = TaskColumn(LocalClassifier(alpha=0.1), column=1).fit(X, X[:, 0] > 0)
        >>> est.decision_function(X).shape
        (8,)
        """
        check_is_fitted(self, "estimator_")
        features, tasks = self._split(X, fitting=False)
        return self.estimator_.decision_function(features, tasks=tasks)

    def score(self, X, y, sample_weight=None) -> float:
        """The wrapped estimator's ``score`` (accuracy or R^2), tasks from ``column``.

        Parameters
        ----------
        X : {DataFrame, array-like, sparse matrix} of shape (n_samples, n_columns)
            As in ``fit``, the task column included.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float

        Raises
        ------
        ValueError
            ``X`` with another number of columns, a task not seen in ``fit``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl import LocalRegressor, TaskColumn
        >>> X = np.column_stack([np.arange(8.0), np.repeat([0, 1], 4)])
        >>> est = TaskColumn(LocalRegressor(alpha=1e-3), column=-1).fit(X, 2 * X[:, 0])
        >>> bool(est.score(X, 2 * X[:, 0]) > 0.9)
        True
        """
        check_is_fitted(self, "estimator_")
        features, tasks = self._split(X, fitting=False)
        return self.estimator_.score(features, y, tasks=tasks, sample_weight=sample_weight)

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.classes_

    @property
    def tasks_(self) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.tasks_
