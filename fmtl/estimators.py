"""scikit-learn estimators for federated multi-task learning."""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._progress import fit_progress
from ._progress import round_printer as _progress_printer
from .federated.history import _one_vs_rest_history
from .federated.mocha import mocha
from .losses import get_loss
from .relationships import mean_regularized_sigma

_RELATIONSHIPS = ("learned", "identity", "mean", "fixed")
#: ``tol="auto"`` with a learned relationship and the joint solver: the certified relative
#: gap of the joint problem (docs/defaults.md; 1e-6 for a fixed relationship's W-step).
AUTO_JOINT_TOL = 1e-4
#: ``outer_iters="auto"`` with the joint solver: the most W-steps (10 for the alternation).
AUTO_JOINT_STEPS = 500


# the label of the one task of a fit with ``tasks=None``
SINGLE_TASK = 0


def _check_tasks(tasks, n_samples: int) -> np.ndarray:
    """Task labels as a 1-D object array of hashable, non-NaN values (``None``: one task,
    labelled ``SINGLE_TASK``)."""
    if tasks is None:
        arr = np.empty(n_samples, dtype=object)
        arr[:] = SINGLE_TASK
        return arr
    if sp.issparse(tasks):
        raise TypeError("tasks must be a 1-D array-like of labels, not a sparse matrix")
    if isinstance(tasks, Iterator | set | frozenset | dict):
        # np.array(generator) is a 0-d object array ("got shape ()"); a set has no order
        raise TypeError(
            "tasks must be a 1-D array-like of labels, one per row of X (a list, tuple, "
            f"array or Series), got a {type(tasks).__name__}"
        )
    if isinstance(tasks, list | tuple) and any(isinstance(v, tuple) for v in tasks):
        # a sequence of tuple labels, e.g. [("a", 1), ("b", 2)]: one label per tuple
        arr = np.empty(len(tasks), dtype=object)
        for i, v in enumerate(tasks):
            arr[i] = v
    else:
        arr = np.array(tasks, dtype=object)  # a copy: labels are normalised in place below
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"tasks must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"tasks has {arr.shape[0]} labels but X has {n_samples} rows")
    for i, v in enumerate(arr):
        if isinstance(v, np.number | np.bool_ | np.str_ | np.bytes_):
            # numpy scalars as Python ones: np.int64(1) < (1, 2) raises ValueError, not
            # TypeError, when _task_order tries to sort mixed labels
            v = arr[i] = v.item()
        try:
            hash(v)
        except TypeError as e:
            raise TypeError(f"tasks labels must be hashable, got {type(v).__name__}") from e
        if _is_nan_label(v):
            raise ValueError(f"tasks contains NaN or inf ({v!r})")
    return arr


def _is_nan_label(v) -> bool:
    """NaN/inf floats, and any value (Decimal, complex, tuple member) unequal to itself."""
    if isinstance(v, tuple):
        return any(_is_nan_label(u) for u in v)
    if isinstance(v, float | np.floating):
        return not np.isfinite(v)
    try:
        return bool(v != v)
    except Exception:
        return False


def _task_order(arr: np.ndarray) -> list:
    """Distinct labels, sorted when they are mutually comparable, else first appearance."""
    seen = list(dict.fromkeys(arr.tolist()))
    try:
        return sorted(seen)
    except TypeError:
        return seen


def _rows_by_task(arr: np.ndarray, labels: list) -> list[np.ndarray]:
    index = {lab: i for i, lab in enumerate(labels)}
    codes = np.fromiter((index[v] for v in arr.tolist()), dtype=np.int64, count=arr.shape[0])
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    return [order[bounds[t] : bounds[t + 1]] for t in range(len(labels))]


def _stack_or_none(arrays: list):
    return None if any(a is None for a in arrays) else np.stack(arrays)


def _auto_alpha(Xs: list, *, per_task: bool = False, constant: float = 0.0) -> float:
    """``alpha="auto"``: ``r^2 / N`` with ``r^2 = ||X||_F^2 / N`` the mean squared row norm
    of the ``N`` training rows of all tasks; ``per_task``: ``r^2 / (N / m)`` (``m`` tasks).

    With the loss averaged per task and ``Sigma = I / m`` (or the pooled mean loss of one
    global model) this is liblinear's ``C = 1 / r^2`` for every task: scaling ``X`` by ``s``
    scales it by ``s^2`` and leaves the predictions unchanged, and on standardised features
    (``r^2 = n_features``) it is ``n_features / N``. All-zero ``X`` counts as ``r^2 = 1``.
    ``constant``: the value of an appended intercept column, left out of ``r^2`` so that
    the rule stays the features' (and scale-free in them) — unless the features are
    smaller than it: then ``r^2 = constant^2``, since a ``lambda`` far below the constant
    column's squared norm leaves the intercept's direction so ill-conditioned that SDCA
    cannot move it (features x 1e-3: relative gap 0.9997 after 1,000 rounds).
    """
    n = sum(X.shape[0] for X in Xs)
    sq = sum(
        float(X.multiply(X).sum()) if sp.issparse(X) else float(np.einsum("ij,ij->", X, X))
        for X in Xs
    )
    sq = max(0.0, sq - n * constant**2)
    r2 = sq / n if sq > 0 else 1.0
    r2 = max(r2, constant**2)
    return r2 / (n / len(Xs) if per_task else n)


def _warn_if_uncertified(estimator: BaseEstimator, histories: list) -> None:
    """Warn (``ConvergenceWarning``) when a certified fit ended above its ``tol``.

    The dual estimators certify their last W-step by its relative duality gap (the joint
    solver of a learned relationship: the joint problem's, in ``rel_gap``); a fit that ran
    out of rounds first returns a model that is not the optimum to ``tol``, and says so, as
    scikit-learn's iterative estimators do. MOCHA's alternation on a learned relationship
    is also held to ``tol`` on the joint problem (its ``joint_gap``), which it rarely
    reaches: it says so, naming the solver that does.
    """
    params = estimator.get_params(deep=False)
    tol = estimator._certified_tol() if hasattr(estimator, "_certified_tol") else params.get("tol")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol > 0:
        return
    worst = joint = -math.inf
    for h in histories:
        if h is None or len(h) == 0 or "rel_gap" not in h.columns:
            continue
        gap = float(h["rel_gap"][-1])
        if math.isfinite(gap):
            worst = max(worst, gap)
        if "joint_gap" in h.columns and "wstep_rel_gap" not in h.columns:
            rel = float(h["joint_gap"][-1]) / max(abs(float(h["primal"][-1])), 1e-300)
            if math.isfinite(rel):
                joint = max(joint, rel)
    name = type(estimator).__name__
    joint_solver = any(
        h is not None and len(h) and "wstep_rel_gap" in h.columns for h in histories
    )
    if worst > tol:
        budget = "max_rounds" if "max_rounds" in params else "inner_iters (or outer_iters)"
        if joint_solver:
            budget = "outer_iters (W-steps of the joint solver)"
        warnings.warn(
            f"{name} ran out of rounds at a certified relative duality "
            f"gap of {worst:.2e} > tol={tol:g}: the model is not the optimum to tol; "
            f"increase {budget} or loosen tol",
            ConvergenceWarning,
            stacklevel=4,
        )
    elif joint > tol:
        warnings.warn(
            f"{name}: MOCHA's alternation ended at a certified relative gap of {joint:.2e} "
            f"> tol={tol:g} on the joint problem (W and the learned Sigma): the relationship "
            "is not the optimum to tol; use sigma_solver='lbfgs' (in process, without "
            "systems or checkpoint_dir) or increase outer_iters",
            ConvergenceWarning,
            stacklevel=4,
        )


class _TaskModelBase(BaseEstimator):
    """Shared machinery: input validation, task lookup, fitted state, margins."""

    _loss_choices: tuple[str, ...] = ()

    # with metadata routing on, meta-estimators (GridSearchCV, Pipeline, cross_validate)
    # route ``tasks`` here without set_*_request calls; still overridable per instance
    __metadata_request__fit = {"tasks": True}
    __metadata_request__predict = {"tasks": True}
    __metadata_request__decision_function = {"tasks": True}
    __metadata_request__score = {"tasks": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR throughout (the solvers have CSR kernels)
        return tags

    # "auto" alpha: (mean squared row norm) / (rows per model's loss term), see _auto_alpha
    _alpha_per_task = False

    def _check_loss(self):
        """Validate ``alpha`` and resolve ``loss`` (``None``: the class default)."""
        if isinstance(self.alpha, str):
            if self.alpha != "auto":
                raise ValueError(f"alpha must be 'auto' or a positive number, got {self.alpha!r}")
        elif isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real):
            raise TypeError(
                f"alpha must be 'auto' or a real number, got {type(self.alpha).__name__}"
            )
        elif not (np.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a positive finite number, got {self.alpha!r}")
        name = self._loss_choices[0] if self.loss is None else self.loss
        if name not in self._loss_choices:
            raise ValueError(
                f"loss={self.loss!r} is unknown for {type(self).__name__}; "
                f"expected one of {self._loss_choices}"
            )
        # Per-FedAvg and pFedHN have no smoothed hinge, hence no gamma parameter
        return get_loss(name, getattr(self, "gamma", 1.0))

    def _validate_fit(self, X, y, tasks):
        try:
            X, y = validate_data(
                self,
                X,
                y,
                accept_sparse="csr",
                dtype=np.float64,
                order="C",
                y_numeric=not isinstance(self, ClassifierMixin),
            )
        except (ValueError, TypeError) as e:
            # numpy's and some of sklearn's messages ("could not convert string to float:
            # 'a'", "Expected 2D array", ...) name no argument: say which one is at fault
            msg = str(e)
            if re.search(r"\b(X|y)\b", msg):
                raise
            try:
                check_array(X, accept_sparse="csr", dtype=np.float64)
                bad = "y"
            except (ValueError, TypeError):
                bad = "X"
            kind = TypeError if isinstance(e, TypeError) else ValueError
            raise kind(f"invalid {bad}: {msg}") from e
        if isinstance(self, ClassifierMixin):
            try:
                check_classification_targets(y)
            except (ValueError, TypeError) as e:  # "Unknown label type: continuous ...",
                # "'<' not supported between 'NoneType' and 'str'": name no argument
                kind = TypeError if isinstance(e, TypeError) else ValueError
                raise kind(f"invalid y (class labels expected): {e}") from e
        else:
            # sklearn converts only object-dtype y: strings ("a", "nan") and None slip by
            try:
                y = np.asarray(y, dtype=np.float64)
            except (ValueError, TypeError) as e:
                kind = TypeError if isinstance(e, TypeError) else ValueError
                raise kind(f"y must hold numbers only: {e}") from e
            if not np.all(np.isfinite(y)):
                raise ValueError("y contains NaN or inf (or None)")
        # squared row norms ||x||^2 and the server's B B^T (entries up to d (|X| |y|)^2)
        # must stay finite: past that the solvers silently return W = 0 or NaN
        limit = np.sqrt(np.finfo(np.float64).max / (16.0 * X.shape[1]))
        xbig = float(np.abs(X.data if sp.issparse(X) else X).max(initial=0.0))
        ybig = 1.0 if isinstance(self, ClassifierMixin) else float(np.abs(y).max(initial=1.0))
        if xbig > limit:
            raise ValueError(
                f"X has entries up to {xbig:.3g}: squared row norms overflow float64; "
                "rescale X (e.g. with sklearn.preprocessing.MaxAbsScaler)"
            )
        if max(xbig, 1.0) * ybig > limit:
            raise ValueError(
                f"y has entries up to {ybig:.3g} (X up to {xbig:.3g}): the squared loss "
                "overflows float64; rescale y"
            )
        arr = _check_tasks(tasks, X.shape[0])
        labels = _task_order(arr)
        return X, y, labels, _rows_by_task(arr, labels)

    def _task_index(self, tasks, n_samples: int) -> np.ndarray:
        if tasks is None:
            return self._single_task_index(n_samples)
        arr = _check_tasks(tasks, n_samples)
        index = self._task_lookup_
        out = np.empty(n_samples, dtype=np.int64)
        for i, v in enumerate(arr.tolist()):
            j = index.get(v)
            if j is None:
                raise ValueError(
                    f"tasks contains {v!r}, a task not seen during fit "
                    f"(known tasks: {list(self.tasks_)[:10]}"
                    f"{' ...' if len(self.tasks_) > 10 else ''})"
                )
            out[i] = j
        return out

    def _single_task_index(self, n_samples: int) -> np.ndarray:
        """Every row to the one task of a one-task model; an error naming ``tasks`` on a
        model of several tasks (which task a row belongs to cannot be guessed)."""
        if self.n_tasks_ != 1:
            shown = ", ".join(repr(t) for t in self.tasks_[:5])
            raise ValueError(
                f"tasks=None, but this model has {self.n_tasks_} tasks ({shown}"
                f"{', ...' if self.n_tasks_ > 5 else ''}): pass each row's task label as "
                "tasks. (scikit-learn's string scorers call predict without tasks: use "
                "fmtl.task_scorer or fmtl.TaskColumn, see the user guide on tasks)"
            )
        return np.zeros(n_samples, dtype=np.int64)

    def _warm_results(self, rows: list, n_fits: int) -> list:
        """The previous fit's results to start from (``warm_start=True`` and the same rows
        per task and number of one-vs-rest fits), else ``None`` for each fit."""
        warm_start = getattr(self, "warm_start", False)  # the dual estimators have it
        if not isinstance(warm_start, bool | np.bool_):
            raise TypeError(f"warm_start must be True or False, got {warm_start!r}")
        prev = getattr(self, "_fit_results_", None) if warm_start else None
        if (
            prev is None
            or len(prev) != n_fits
            or getattr(self, "_fit_rows_", None) != [len(r) for r in rows]
        ):
            return [None] * n_fits
        return prev

    def _check_intercept(self) -> float | None:
        """Validate ``fit_intercept`` and ``intercept_scaling``; the constant feature's value
        (``None``: no intercept)."""
        fit_intercept = getattr(self, "fit_intercept", False)
        if not isinstance(fit_intercept, bool | np.bool_):
            raise TypeError(f"fit_intercept must be True or False, got {fit_intercept!r}")
        if not fit_intercept:
            return None
        scaling = self.intercept_scaling
        if isinstance(scaling, bool) or not isinstance(scaling, numbers.Real):
            raise TypeError(
                f"intercept_scaling must be a real number, got {type(scaling).__name__}"
            )
        if not (np.isfinite(scaling) and scaling > 0):
            raise ValueError(f"intercept_scaling must be positive and finite, got {scaling!r}")
        return float(scaling)

    def _augment(self, X, scaling: float | None):
        """``X`` with the constant column ``scaling`` appended (liblinear's intercept)."""
        if scaling is None:
            return X
        # the same bound as _validate_fit's on X: squared row norms must stay finite
        limit = np.sqrt(np.finfo(np.float64).max / (16.0 * (X.shape[1] + 1)))
        if scaling > limit:
            raise ValueError(
                f"intercept_scaling={scaling:.3g} is so large that squared row norms "
                "overflow float64"
            )
        column = np.full((X.shape[0], 1), scaling)
        if sp.issparse(X):
            column = sp.csr_array(column) if isinstance(X, sp.sparray) else sp.csr_matrix(column)
            return sp.hstack([X, column], format="csr")
        return np.hstack([X, column])

    def _set_intercept(self, scaling: float | None) -> None:
        """Split the fitted augmented ``coef_`` into ``coef_`` and ``intercept_``
        (``intercept_scaling`` times the constant feature's weight); zeros without one."""
        if scaling is None:
            self.intercept_ = np.zeros(self.coef_.shape[:-1])
            return
        self.intercept_ = scaling * self.coef_[..., -1]
        self.coef_ = np.ascontiguousarray(self.coef_[..., :-1])

    def _resolve_alpha(self, Xs: list) -> float:
        """``alpha`` as a number: ``"auto"`` resolved on the per-task training rows."""
        if isinstance(self.alpha, str):
            constant = self._check_intercept() or 0.0  # Xs carry the intercept's column
            return _auto_alpha(Xs, per_task=self._alpha_per_task, constant=constant)
        return float(self.alpha)

    def _checkpoint_kw(self) -> dict:
        """``checkpoint_dir`` and ``checkpoint_every`` of the algorithm call: the sub-fit's
        own subdirectory (one-vs-rest), so that the fits of a multiclass model do not
        refuse each other's checkpoints."""
        directory = self.checkpoint_dir
        part = self.__dict__.get("_checkpoint_part")
        if directory is not None and part is not None:
            directory = Path(directory) / part
        return {"checkpoint_dir": directory, "checkpoint_every": self.checkpoint_every}

    def _solve_maybe_warm(self, Xs: list, ys: list, loss, warm, part: str | None = None):
        self.alpha_ = self._resolve_alpha(Xs)
        self._checkpoint_part = part  # read by _checkpoint_kw during this sub-fit only
        try:
            with fit_progress(self):  # verbose > 0: a bar over the round budget (terminals)
                res = (
                    self._solve(Xs, ys, loss) if warm is None else self._solve(Xs, ys, loss, warm)
                )
        finally:
            del self._checkpoint_part
        coef = getattr(res, "coef", None)
        if coef is not None and not np.all(np.isfinite(coef)):
            # the step-size methods (FedAvg, pFedHN, ...) can diverge on unscaled data
            params = self.get_params(deep=False)
            steps = ", ".join(f"{k}={params[k]!r}" for k in ("lr", "a", "beta") if k in params)
            raise ValueError(
                f"{type(self).__name__} diverged: the fitted model has NaN or inf; use "
                f"smaller step sizes ({steps}) or standardise X "
                "(sklearn.preprocessing.StandardScaler)"
            )
        return res

    def _store(self, results, labels):
        # kept for warm starts (not a public attribute, not saved by ``save``)
        self._fit_results_ = results
        self.tasks_ = np.empty(len(labels), dtype=object)
        self.tasks_[:] = labels
        self._task_lookup_ = {lab: i for i, lab in enumerate(labels)}
        self.n_tasks_ = len(labels)
        if len(results) == 1:
            r = results[0]
            self.coef_, self.sigma_, self.omega_ = r.coef, r.sigma, r.omega
            self.dual_coef_, self.history_ = r.dual_coef, r.history
            self.never_reported_ = self.tasks_[r.never_reported]
        else:
            self.never_reported_ = self.tasks_[
                np.unique(np.concatenate([r.never_reported for r in results]))
            ]
            self.coef_ = np.stack([r.coef for r in results])
            self.sigma_ = _stack_or_none([r.sigma for r in results])
            self.omega_ = _stack_or_none([r.omega for r in results])
            self.dual_coef_ = np.stack([r.dual_coef for r in results])
            self.history_ = _one_vs_rest_history([r.history for r in results])
        _warn_if_uncertified(self, [r.history for r in results])

    def _margins(self, X, tasks) -> np.ndarray:
        check_is_fitted(self, "coef_")
        try:
            X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        except (TypeError, ValueError) as e:
            raise type(e)(f"invalid X: {e}") from e
        idx = self._task_index(tasks, X.shape[0])
        coefs = self.coef_ if self.coef_.ndim == 3 else self.coef_[None]
        intercepts = self.intercept_ if self.intercept_.ndim == 2 else self.intercept_[None]
        out = np.empty((X.shape[0], coefs.shape[0]))
        for k, C in enumerate(coefs):
            rows = C[idx]
            out[:, k] = (
                np.asarray(X.multiply(rows).sum(axis=1)).ravel()
                if sp.issparse(X)
                else np.einsum("ij,ij->i", X, rows)
            ) + intercepts[k][idx]
        return out

    def save(self, path) -> None:
        """Save the fitted model to an ``.npz`` file (no pickle; see :mod:`fmtl.persistence`).

        Parameters
        ----------
        path : str or path-like
            Written exactly as given.

        Returns
        -------
        None

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        TypeError
            A parameter or label that cannot be stored without pickle (e.g. ``random_state``
            set to a numpy ``Generator``); the message names it.
        ValueError
            A kernel model with a callable ``kernel`` (see
            :func:`fmtl.persistence.save_model`).
        OSError
            If the file cannot be written.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from fmtl import LocalClassifier
        >>> X = np.random.default_rng(0).normal(size=(20, 2))
        >>> clf = LocalClassifier(alpha=0.1).fit(X, X[:, 0] > 0, ["a", "b"] * 10)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     clf.save(pathlib.Path(d) / "clf.npz")
        ...     same = LocalClassifier.load(pathlib.Path(d) / "clf.npz")
        >>> bool(np.array_equal(same.predict(X, ["a"] * 20), clf.predict(X, ["a"] * 20)))
        True
        """
        from .persistence import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path):
        """Load a model saved by :meth:`save`; TypeError if it is not a ``cls``.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        estimator : cls
            Fitted, predicting bit-identically to the saved model.

        Raises
        ------
        TypeError
            If the file holds a model of another class.
        ValueError
            If the file is not an fmtl model file or is malformed (see
            :func:`fmtl.persistence.load_model`).
        OSError
            If the file cannot be read.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from fmtl import LocalRegressor
        >>> X = np.random.default_rng(0).normal(size=(20, 2))
        >>> reg = LocalRegressor(alpha=0.1).fit(X, X[:, 0], [1, 2] * 10)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     reg.save(pathlib.Path(d) / "reg.npz")
        ...     LocalRegressor.load(pathlib.Path(d) / "reg.npz").tasks_.tolist()
        [1, 2]
        """
        from .persistence import load_model

        est = load_model(path)
        if not isinstance(est, cls):
            raise TypeError(
                f"{path!s} holds a {type(est).__name__}, not a {cls.__name__} "
                "(use fmtl.persistence.load_model to load any fmtl model)"
            )
        return est


class _MochaBase(_TaskModelBase):
    def __init__(
        self,
        alpha: float | str = "auto",
        *,
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
        warm_start: bool = False,
        sigma_prime: str | float = "adaptive",
        local_work: str = "auto",
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
        sigma_solver: str = "auto",
    ) -> None:
        self.alpha = alpha
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
        self.warm_start = warm_start
        self.sigma_prime = sigma_prime
        self.local_work = local_work
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.sigma_solver = sigma_solver

    def _relationship(self, m: int):
        if not isinstance(self.relationship, str) or self.relationship not in _RELATIONSHIPS:
            raise ValueError(
                f"relationship must be one of {_RELATIONSHIPS}, got {self.relationship!r}"
            )
        if self.relationship == "learned":
            return "learned", None
        if self.relationship == "identity":
            return "fixed", None
        if self.relationship == "mean":
            return "fixed", mean_regularized_sigma(m, self.kappa)
        if self.sigma is None:
            raise ValueError("relationship='fixed' needs sigma (an n_tasks x n_tasks matrix)")
        return "fixed", self.sigma

    def _certified_tol(self):
        """The ``tol`` the fit promises (``"auto"`` resolved)."""
        return self._schedule()[2]

    def _schedule(self) -> tuple[str, int, float]:
        """``(sigma_solver, outer_iters, tol)`` with their ``"auto"`` values resolved."""
        solver = self.sigma_solver
        if not isinstance(solver, str) or solver not in ("auto", "lbfgs", "alternation"):
            raise ValueError(
                f"sigma_solver must be 'auto', 'lbfgs' or 'alternation', got {solver!r}"
            )
        if solver == "auto":
            # the joint solver runs in process on Sigma >= eps I, eps > 0; the paper's loop
            # also simulates systems, checkpoints, and takes eps = 0
            plain = self.systems is None and self.checkpoint_dir is None
            floor = self.sigma_floor
            positive = (
                isinstance(floor, numbers.Real) and not isinstance(floor, bool) and floor > 0
            )
            solver = "lbfgs" if plain and positive else "alternation"
        joint = self.relationship == "learned" and solver == "lbfgs"
        outer = self.outer_iters
        if isinstance(outer, str) and outer == "auto":
            outer = AUTO_JOINT_STEPS if joint else 10
        tol = self.tol
        if isinstance(tol, str) and tol == "auto":
            tol = AUTO_JOINT_TOL if joint else 1e-6
        return solver, outer, tol

    def _solve(self, Xs: list, ys: list, loss, warm=None):
        """Fit every task's model on per-task data (binary targets in {-1, +1})."""
        mode, sigma = self._relationship(len(Xs))
        solver, outer_iters, tol = self._schedule()
        return mocha(
            Xs,
            ys,
            self.alpha_,
            loss,
            relationship=mode,
            sigma=sigma,
            outer_iters=outer_iters,
            inner_iters=self.inner_iters,
            local_frac=self.local_frac,
            tol=tol,
            sigma_floor=self.sigma_floor,
            ridge=self.ridge,
            random_state=self.random_state,
            n_threads=self.n_jobs,
            systems=self.systems,
            record_local_gaps=self.record_local_gaps,
            eval_every=self.eval_every,
            callback=_progress_printer(self.verbose),
            warm_start=warm,
            sigma_prime=self.sigma_prime,
            local_work=self.local_work,
            sigma_solver=solver,
            **self._checkpoint_kw(),
        )


class _TaskClassifierMixin(ClassifierMixin):
    """Binary labels of any two values; more classes one-vs-rest (one fit per class)."""

    _loss_choices = ("hinge", "smoothed_hinge", "logistic")

    def fit(self, X, y, tasks=None):
        """Fit one model per task.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        tasks : array-like of shape (n_samples,), optional
            Task label (any hashable value) of each row. ``None``: all rows are one task
            (labelled ``0`` in ``tasks_``).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            An invalid parameter (named), NaN or inf in ``X`` or ``y``, ``y`` or ``tasks``
            of the wrong length, or a single class in ``y``.
        TypeError
            Non-numeric ``X`` or ``y``, or a parameter of the wrong type.

        Examples
        --------
        >>> from fmtl import LocalClassifier
        >>> from fmtl.datasets import make_multitask_classification
        >>> X, y, tasks = make_multitask_classification(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> clf = LocalClassifier(alpha=0.1).fit(X, y, tasks)
        >>> clf.coef_.shape, clf.classes_.tolist()
        ((3, 4), [-1.0, 1.0])
        """
        X, y, labels, rows = self._validate_fit(X, y, tasks)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.shape[0] < 2:
            raise ValueError(
                f"y has only one class ({self.classes_[0]!r}); a classifier needs at least two"
            )
        loss = self._check_loss()
        scaling = self._check_intercept()
        if self.classes_.shape[0] == 2:
            targets = [np.where(y == self.classes_[1], 1.0, -1.0)]
        else:
            targets = [np.where(y == c, 1.0, -1.0) for c in self.classes_]
        X = self._augment(X, scaling)
        Xs = [X[r] for r in rows]
        warm = self._warm_results(rows, len(targets))
        results = [
            self._solve_maybe_warm(
                Xs, [t[r] for r in rows], loss, w, None if len(targets) == 1 else f"class-{k}"
            )
            for k, (t, w) in enumerate(zip(targets, warm, strict=True))
        ]
        self._store(results, labels)
        self._set_intercept(scaling)
        self._fit_rows_ = [len(r) for r in rows]
        return self

    def decision_function(self, X, tasks=None) -> np.ndarray:
        """Signed margins ``w_t.x`` of each row under the model of its task.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        tasks : array-like of shape (n_samples,), optional
            Task label of each row (tasks seen during ``fit``). ``None`` only for a model
            of one task.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            Binary: positive means ``classes_[1]``; multiclass: one column per class
            (one-vs-rest).

        Raises
        ------
        ValueError
            A task not seen during ``fit``, ``X`` with another number of features,
            ``tasks`` not as long as ``X``, or ``tasks=None`` on a model of several tasks.
        TypeError
            Non-numeric ``X``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> from fmtl import LocalClassifier
        >>> from fmtl.datasets import make_multitask_classification
        >>> X, y, tasks = make_multitask_classification(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> clf = LocalClassifier(alpha=0.1).fit(X, y, tasks)
        >>> clf.decision_function(X[:2], tasks[:2]).shape
        (2,)
        """
        s = self._margins(X, tasks)
        return s[:, 0] if s.shape[1] == 1 else s

    def predict(self, X, tasks=None) -> np.ndarray:
        """Predicted class of each row, using the model of its task.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        tasks : array-like of shape (n_samples,), optional
            Task label of each row (tasks seen during ``fit``). ``None`` only for a model
            of one task.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_`` (a zero margin predicts ``classes_[0]``).

        Raises
        ------
        ValueError
            A task not seen during ``fit``, ``X`` with another number of features,
            ``tasks`` not as long as ``X``, or ``tasks=None`` on a model of several tasks.
        TypeError
            Non-numeric ``X``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> from fmtl import LocalClassifier
        >>> from fmtl.datasets import make_multitask_classification
        >>> X, y, tasks = make_multitask_classification(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> clf = LocalClassifier(alpha=0.1).fit(X, y, tasks)
        >>> clf.predict(X[:3], tasks[:3]).shape
        (3,)
        """
        s = self._margins(X, tasks)
        if s.shape[1] == 1:
            return self.classes_[(s[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(s, axis=1)]

    def score(self, X, y, tasks=None, sample_weight=None) -> float:
        """Accuracy over all rows (each predicted by its task's model).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
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
            A task not seen during ``fit``, ``X`` with another number of features,
            ``tasks`` not as long as ``X``, or ``tasks=None`` on a model of several tasks.
        TypeError
            Non-numeric ``X``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> from fmtl import LocalClassifier
        >>> from fmtl.datasets import make_multitask_classification
        >>> X, y, tasks = make_multitask_classification(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> clf = LocalClassifier(alpha=0.1).fit(X, y, tasks)
        >>> 0.0 <= clf.score(X, y, tasks) <= 1.0
        True
        """
        return float(accuracy_score(y, self.predict(X, tasks), sample_weight=sample_weight))


class _TaskRegressorMixin(RegressorMixin):
    _loss_choices = ("squared",)

    def fit(self, X, y, tasks=None):
        """Fit one model per task.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Real targets.
        tasks : array-like of shape (n_samples,), optional
            Task label (any hashable value) of each row. ``None``: all rows are one task
            (labelled ``0`` in ``tasks_``).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            An invalid parameter (named), NaN or inf in ``X`` or ``y``, or ``y`` or
            ``tasks`` of the wrong length.
        TypeError
            Non-numeric ``X`` or ``y``, or a parameter of the wrong type.

        Examples
        --------
        >>> from fmtl import LocalRegressor
        >>> from fmtl.datasets import make_multitask_regression
        >>> X, y, tasks = make_multitask_regression(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> reg = LocalRegressor(alpha=0.1).fit(X, y, tasks)
        >>> reg.coef_.shape
        (3, 4)
        """
        X, y, labels, rows = self._validate_fit(X, y, tasks)
        loss = self._check_loss()
        scaling = self._check_intercept()
        (warm,) = self._warm_results(rows, 1)
        X = self._augment(X, scaling)
        Xs, ys = [X[r] for r in rows], [y[r] for r in rows]
        self._store([self._solve_maybe_warm(Xs, ys, loss, warm)], labels)
        self._set_intercept(scaling)
        self._fit_rows_ = [len(r) for r in rows]
        return self

    def predict(self, X, tasks=None) -> np.ndarray:
        """``w_t.x`` for each row, using the model of its task.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        tasks : array-like of shape (n_samples,), optional
            Task label of each row (tasks seen during ``fit``). ``None`` only for a model
            of one task.

        Returns
        -------
        ndarray of shape (n_samples,)

        Raises
        ------
        ValueError
            A task not seen during ``fit``, ``X`` with another number of features,
            ``tasks`` not as long as ``X``, or ``tasks=None`` on a model of several tasks.
        TypeError
            Non-numeric ``X``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> from fmtl import LocalRegressor
        >>> from fmtl.datasets import make_multitask_regression
        >>> X, y, tasks = make_multitask_regression(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> reg = LocalRegressor(alpha=0.1).fit(X, y, tasks)
        >>> reg.predict(X[:3], tasks[:3]).shape
        (3,)
        """
        return self._margins(X, tasks)[:, 0]

    def score(self, X, y, tasks=None, sample_weight=None) -> float:
        """Coefficient of determination R^2 over all rows (each predicted by its task's
        model).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
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
            A task not seen during ``fit``, ``X`` with another number of features,
            ``tasks`` not as long as ``X``, or ``tasks=None`` on a model of several tasks.
        TypeError
            Non-numeric ``X``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> from fmtl import LocalRegressor
        >>> from fmtl.datasets import make_multitask_regression
        >>> X, y, tasks = make_multitask_regression(
        ...     n_tasks=3, n_samples=30, n_features=4, random_state=0).stack()
        >>> reg = LocalRegressor(alpha=0.1).fit(X, y, tasks)
        >>> reg.score(X, y, tasks) <= 1.0
        True
        """
        return float(r2_score(y, self.predict(X, tasks), sample_weight=sample_weight))


_CHECKPOINT_DOC = """    checkpoint_dir : str or path-like, optional
        Directory where ``fit`` checkpoints its rounds (atomically): a fit that is
        interrupted (killed, out of time) and started again with the same data and
        parameters continues from its last checkpoint and ends with the bit-identical
        model; a refit that finds the finished fit's checkpoint returns it. A checkpoint of
        other data, parameters or ``random_state`` is refused (ValueError): one directory
        per fit. One-vs-rest classification uses a subdirectory ``class-<k>`` per class.
    checkpoint_every : int, default=0
        Rounds between checkpoints (0: only when the fit ends; needs ``checkpoint_dir``).
"""


def _intercept_doc(how: str) -> str:
    """The ``fit_intercept`` / ``intercept_scaling`` entries of a Parameters section."""
    return (
        f"""    fit_intercept : bool, default=True
        Fit an intercept ``b_t`` per task, liblinear's way: a constant feature of value
        ``intercept_scaling`` is appended to ``X`` and ``b_t = intercept_scaling * w_t,last``.
        That weight is regularised like every other weight,{how} so a larger
        ``intercept_scaling`` weakens the penalty on the intercept. ``False``: models
        through the origin (as the solvers of :mod:`fmtl.federated` fit them).
    intercept_scaling : float, default=1.0
        Value of the constant feature (``> 0``; used only with ``fit_intercept=True``).
"""
        + _CHECKPOINT_DOC
    )


# MOCHA's regulariser couples the intercepts across tasks: say so where it applies
_INTERCEPT_MOCHA = """
        inside ``tr(W Omega W^T)``: the tasks' intercepts are coupled through ``Sigma`` (and
        a learned ``Sigma`` sees them) like their other weights,"""

_PARAMS_DOC = """
    alpha : float or "auto", default="auto"
        Regularisation strength ``lambda > 0`` of ``(lambda/2) tr(W Omega W^T)`` (plus
        ``(lambda/2) ridge ||W||_F^2``).
        ``"auto"``: ``lambda = r^2 / N``, with ``N`` the number of training rows and
        ``r^2 = ||X||_F^2 / N`` their mean squared norm (``n_features / N`` on
        standardised features); the value used is ``alpha_``. For independent tasks of
        equal size (``Sigma = I / m``) this is liblinear's ``C = 1 / r^2`` in every task,
        and rescaling ``X`` leaves the predictions unchanged. It is a default, not a tuned
        value: ``MochaClassifierCV`` / ``MochaRegressorCV`` choose ``alpha`` by
        cross-validation (measurements in ``docs/defaults.md``).
    gamma : float, default=1.0
        Smoothing of ``loss="smoothed_hinge"``.
    relationship : {"learned", "identity", "mean", "fixed"}, default="learned"
        ``"learned"``: Sigma is learned jointly with ``W`` (``sigma_solver``). ``"identity"``:
        ``Sigma = I / m`` (independent tasks). ``"mean"``: mean-regularised Sigma from
        :func:`fmtl.relationships.mean_regularized_sigma` with ``kappa``. ``"fixed"``:
        the given ``sigma``.
    kappa : float, default=1.0
        Coupling strength of ``relationship="mean"``.
    sigma : array of shape (n_tasks, n_tasks), optional
        Relationship for ``relationship="fixed"``, rows/columns in the order of ``tasks_``.
    outer_iters : int or "auto", default="auto"
        The most W-steps: ``"auto"`` is 500 for the joint solver (one Sigma update per
        W-step) and 10 for the alternation (a Sigma-step between consecutive W-steps).
    inner_iters : int, default=100
        Maximum federated rounds per W-step.
    local_frac : float, default=1.0
        Local SDCA steps per round as a fraction of each task's sample count.
    tol : float or "auto", default="auto"
        The certified relative duality gap the fit stops at: of the joint problem (``W``
        and Sigma) for a learned relationship with the joint solver (``"auto"``: 1e-4),
        of each W-step otherwise (``"auto"``: 1e-6). A fit that ends above it raises a
        ``ConvergenceWarning`` (the alternation: also when its joint gap is above it).
    sigma_solver : {"auto", "lbfgs", "alternation"}, default="auto"
        How a learned Sigma is found. ``"lbfgs"``: quasi-Newton on Sigma itself with
        certified W-steps, to the joint optimum with a tight certificate
        (:func:`fmtl.federated.joint.joint_lbfgs`; ``history_`` has one record per
        W-step, ``rel_gap`` the joint certificate; ``sigma_`` is the best relationship
        for ``coef_``). ``"alternation"``: the paper's outer loop, which can stall far
        above the joint optimum when ``n_features < n_tasks`` (``docs/problem.md``), and is
        what runs with ``systems``, ``checkpoint_dir`` or ``sigma_floor=0``; ``"auto"``:
        ``"lbfgs"`` unless one of those is set.
    sigma_floor : float, default=1e-6
        Learned Sigma is constrained to ``Sigma >= sigma_floor * I``, ``tr Sigma = 1``.
    ridge : float, default=0.0
        ``rho >= 0`` of the general regulariser ``(alpha/2) [tr(W Omega W^T) + rho
        ||W||_F^2]`` (MTRL's; the intercept's weight included): every task model is also
        shrunk towards 0, whatever ``Sigma``. It does not change the Sigma-step, so
        ``sigma_`` is still the learned trace-1 relationship; the W-step uses
        ``Sigma (I + rho Sigma)^{-1}`` (:func:`fmtl.federated.mocha`).
    random_state : int, Generator or None
        Seeds the local solvers (results are identical for any ``n_jobs``).
    n_jobs : int, optional
        Numba threads for the per-task local solves.
    systems : fmtl.federated.SystemsModel, optional
        Simulated systems heterogeneity, dropped nodes and cost model (estimated time in
        ``history_["est_time"]``).
    record_local_gaps : bool, optional
        Record each node's local gaps per round in ``history_`` (default: with ``systems``).
    eval_every : int, default=1
        Compute the certificates (primal, dual, gaps) every this many rounds and at the end
        of each W-step; ``tol`` is checked then. Larger values save up to ~40 % of a round
        on small problems.
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
    warm_start : bool, default=False
        Start ``fit`` from the previous fit's dual variables (and learned Sigma) when the
        data have the same rows per task: cheap refits along an ``alpha`` path (the dual
        feasible set does not depend on ``alpha``). Otherwise, or on the first fit, start
        from zero.
    sigma_prime : {"adaptive", "gershgorin", "spectral"} or float, default="adaptive"
        The local subproblems' ``sigma'`` (:func:`fmtl.federated.mocha`): ``"adaptive"``
        takes larger local steps and aggregates each round with the server's certified
        line search; ``"gershgorin"`` is the paper's safe value.
    local_work : {"auto", "fixed"}, default="auto"
        ``"auto"``: the certified shrinking SDCA kernel, and one round of communication
        per W-step when the tasks are decoupled (``relationship="identity"``, one task);
        ``"fixed"``: ``local_frac`` passes of the paper's SDCA per round.
""" + _intercept_doc(_INTERCEPT_MOCHA)

_ATTRS_DOC = """
    alpha_ : float
        The regularisation strength used: ``alpha``, or its ``"auto"`` value.
    coef_ : ndarray of shape (n_tasks, n_features)
        One model per task (rows in the order of ``tasks_``); for multiclass
        classification ``(n_classes, n_tasks, n_features)``, one-vs-rest.
    intercept_ : ndarray of shape (n_tasks,)
        One intercept per task, ``(n_classes, n_tasks)`` for multiclass; zeros with
        ``fit_intercept=False``.
    tasks_ : ndarray of shape (n_tasks,)
        Task labels seen in ``fit``.
    sigma_, omega_ : ndarray of shape (n_tasks, n_tasks)
        Task relationship ``Sigma`` and its inverse (stacked per class for multiclass).
    dual_coef_ : ndarray
        Dual variables, grouped task after task in the order of ``tasks_``.
    history_ : fmtl.federated.History
        Per-round primal, dual, duality gap, wall and estimated time, local steps and
        dropped nodes; multiclass: every class's records in turn, with a ``class_index``
        column (``history_.where("class_index", k)`` is class ``k``'s).
    never_reported_ : ndarray
        Tasks whose node never returned an update (simulated dead nodes).
    n_features_in_ : int
"""


class MochaClassifier(_TaskClassifierMixin, _MochaBase):
    __doc__ = f"""Federated multi-task linear classifier fitted with MOCHA.

    Minimises ``sum_t (1/n_t) sum_i l(y_ti, w_t.x_ti + b_t) + (alpha/2) tr(W Omega W^T)``
    (plus ``(alpha/2) ridge ||W||_F^2``) over the task models ``W`` (and the relationship
    ``Sigma = Omega^{{-1}}`` when learned), with certified duality gaps; with
    ``fit_intercept`` (the default) ``W`` has a last row ``b / intercept_scaling``, so the
    intercepts are regularised and coupled like the other weights (``b = 0`` with
    ``fit_intercept=False``). Binary labels of any two values; more classes are fitted
    one-vs-rest, each with its own relationship.

    Parameters
    ----------
    loss : {{"hinge", "smoothed_hinge", "logistic"}} or None, default=None
        ``None`` means ``"hinge"``.
    {_PARAMS_DOC}
    Attributes
    ----------
    classes_ : ndarray
    {_ATTRS_DOC}
    Raises
    ------
    ValueError
        From ``fit``: an ``alpha`` that is not positive and finite, an unknown ``loss`` or
        ``relationship``, ``relationship="fixed"`` without ``sigma`` (or a ``sigma`` that
        is not symmetric positive definite of shape ``(n_tasks, n_tasks)``), a negative
        ``kappa``, a negative, NaN or infinite ``ridge``, out-of-range solver settings (as
        :func:`fmtl.federated.mocha`), bad
        ``X``/``y``/``tasks`` (shapes, NaN or inf, a single class to classify, entries
        so large that squared norms overflow). From ``predict``/``score``: a task not seen during
        ``fit``, ``tasks=None`` on a model of several tasks, or ``X`` with the wrong number
        of features.
    TypeError
        A non-numeric ``alpha``, ``ridge``, ``X`` or ``y``, ``tasks`` sparse or holding
        unhashable labels.
    sklearn.exceptions.NotFittedError
        ``predict``, ``decision_function`` or ``score`` before ``fit``.

    Examples
    --------
    >>> from fmtl import MochaClassifier
    >>> from fmtl.datasets import make_multitask_classification
    >>> data = make_multitask_classification(n_tasks=4, n_samples=40, n_features=5,
    ...                                      random_state=0)
    >>> X, y, tasks = data.stack()
    >>> clf = MochaClassifier(alpha=0.01, random_state=0).fit(X, y, tasks)
    >>> clf.coef_.shape
    (4, 5)
    >>> bool(clf.score(X, y, tasks) > 0.8)
    True
    """


class MochaRegressor(_TaskRegressorMixin, _MochaBase):
    __doc__ = f"""Federated multi-task linear regression (squared loss) fitted with MOCHA.

    The objective of :class:`MochaClassifier` with ``l(y, z) = (y - z)^2 / 2``, intercepts
    included the same way.

    Parameters
    ----------
    loss : {{"squared"}} or None, default=None
        ``None`` means ``"squared"``.
    {_PARAMS_DOC}
    Attributes
    ----------
    {_ATTRS_DOC}
    Raises
    ------
    ValueError
        From ``fit``: an ``alpha`` that is not positive and finite, an unknown ``loss`` or
        ``relationship``, ``relationship="fixed"`` without ``sigma`` (or a ``sigma`` that
        is not symmetric positive definite of shape ``(n_tasks, n_tasks)``), a negative
        ``kappa``, a negative, NaN or infinite ``ridge``, out-of-range solver settings (as
        :func:`fmtl.federated.mocha`), bad
        ``X``/``y``/``tasks`` (shapes, NaN or inf, a single class to classify, entries
        so large that squared norms overflow). From ``predict``/``score``: a task not seen during
        ``fit``, ``tasks=None`` on a model of several tasks, or ``X`` with the wrong number
        of features.
    TypeError
        A non-numeric ``alpha``, ``ridge``, ``X`` or ``y``, ``tasks`` sparse or holding
        unhashable labels.
    sklearn.exceptions.NotFittedError
        ``predict``, ``decision_function`` or ``score`` before ``fit``.

    Examples
    --------
    >>> from fmtl import MochaRegressor
    >>> from fmtl.datasets import make_multitask_regression
    >>> data = make_multitask_regression(n_tasks=3, n_samples=30, n_features=4,
    ...                                  random_state=0)
    >>> X, y, tasks = data.stack()
    >>> reg = MochaRegressor(alpha=0.01, random_state=0).fit(X, y, tasks)
    >>> reg.predict(X, tasks).shape
    (90,)
    """


class _IndependentBase(_TaskModelBase):
    """Shared parameters of the Local and Global baselines (no task relationship)."""

    def __init__(
        self,
        alpha: float | str = "auto",
        *,
        loss: str | None = None,
        gamma: float = 1.0,
        max_rounds: int = 1000,
        local_frac: float = 1.0,
        tol: float = 1e-6,
        random_state=None,
        n_jobs: int | None = None,
        verbose: int = 0,
        warm_start: bool = False,
        local_work: str = "auto",
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.loss = loss
        self.gamma = gamma
        self.max_rounds = max_rounds
        self.local_frac = local_frac
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.warm_start = warm_start
        self.local_work = local_work
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _independent_fit(self, Xs: list, ys: list, loss, warm=None):
        if (
            isinstance(self.max_rounds, bool)
            or not isinstance(self.max_rounds, int | np.integer)
            or self.max_rounds < 1
        ):
            raise ValueError(f"max_rounds must be an integer >= 1, got {self.max_rounds!r}")
        # Sigma = I: the objective separates into one ridge-regularised problem per task
        return mocha(
            Xs,
            ys,
            self.alpha_,
            loss,
            relationship="fixed",
            sigma=np.eye(len(Xs)),
            outer_iters=1,
            inner_iters=self.max_rounds,
            local_frac=self.local_frac,
            tol=self.tol,
            random_state=self.random_state,
            n_threads=self.n_jobs,
            callback=_progress_printer(self.verbose),
            warm_start=warm,
            local_work=self.local_work,
            **self._checkpoint_kw(),
        )


class _LocalBase(_IndependentBase):
    _alpha_per_task = True  # one ridge problem per task: "auto" scales with the task size

    def _solve(self, Xs: list, ys: list, loss, warm=None):
        return self._independent_fit(Xs, ys, loss, warm)


class _GlobalBase(_IndependentBase):
    def _solve(self, Xs: list, ys: list, loss, warm=None):
        pooled_X = sp.vstack(Xs, format="csr") if sp.issparse(Xs[0]) else np.vstack(Xs)
        res = self._independent_fit([pooled_X], [np.concatenate(ys)], loss, warm)
        m = len(Xs)
        # one model shared by every task (the singular limit Sigma -> 11^T / m)
        res.coef = np.repeat(res.coef, m, axis=0)
        res.sigma, res.omega = None, None
        return res

    def _task_index(self, tasks, n_samples: int) -> np.ndarray:
        # the global model serves any task, seen during fit or not (or none given)
        _check_tasks(tasks, n_samples)
        return np.zeros(n_samples, dtype=np.int64)


_BASELINE_PARAMS_DOC = """
    alpha : float or "auto", default="auto"
        Regularisation strength ``lambda > 0``. ``"auto"``: ``lambda = r^2 / n`` with
        ``r^2 = ||X||_F^2 / N`` the mean squared norm of the ``N`` training rows and ``n``
        the rows one model's mean loss runs over: ``N`` for Global, the mean task size
        ``N / n_tasks`` for Local (liblinear's ``C = 1 / r^2``; ``n_features / n`` on
        standardised features). The value used is ``alpha_``.
    gamma : float, default=1.0
        Smoothing of ``loss="smoothed_hinge"``.
    max_rounds : int, default=1000
        Maximum SDCA rounds (one round: ``local_frac`` passes over each task).
    local_frac : float, default=1.0
    tol : float, default=1e-6
        Stop at this relative duality gap (certified).
    random_state : int, Generator or None
    n_jobs : int, optional
        Numba threads.
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
    warm_start : bool, default=False
        Start ``fit`` from the previous fit's dual variables when the data have the same
        rows per task (refits along an ``alpha`` path); otherwise from zero.
    local_work : {"auto", "fixed"}, default="auto"
        ``"auto"``: each task is solved to the certified ``tol`` in one round by the
        shrinking SDCA kernel (liblinear's speed); ``"fixed"``: ``local_frac`` passes of
        the paper's SDCA per round, for up to ``max_rounds`` rounds.
"""

_LOCAL_DOC = """Local baseline: one independent {kind} per task, no sharing.

    Minimises ``sum_t [(1/n_t) sum_i l(y_ti, w_t.x_ti + b_t) + (alpha/2) (||w_t||^2 +
    (b_t / intercept_scaling)^2)]`` (``b_t = 0`` with ``fit_intercept=False``), i.e. MOCHA
    with ``Sigma = I``; the same models come from ``Mocha{cls}(relationship="identity",
    alpha=alpha / n_tasks)`` (``Sigma = I / m`` scales the regulariser by ``m``). On one task
    it is liblinear's problem (``LinearSVC``, ``LogisticRegression(solver="liblinear")``)
    with ``C = 1 / (n alpha)`` and the same ``intercept_scaling``.

    Parameters
    ----------
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.
    {params}
    Attributes
    ----------
    alpha_ : float
        The regularisation strength used (``alpha`` or its ``"auto"`` value).
    coef_ : ndarray of shape (n_tasks, n_features)
    intercept_ : ndarray of shape (n_tasks,)
        Zeros with ``fit_intercept=False``.
    tasks_ : ndarray of shape (n_tasks,)
    sigma_, omega_ : ndarray, the identity
    history_ : fmtl.federated.History

    Raises
    ------
    ValueError
        From ``fit``: an ``alpha`` that is not positive and finite, an unknown ``loss``,
        ``max_rounds`` not an integer >= 1, out-of-range ``local_frac`` or ``tol``, bad
        ``X``/``y``/``tasks`` (shapes, NaN or inf, a single class to classify, entries
        so large that squared norms overflow). From ``predict``/``score``: a task not
        seen during ``fit``, ``tasks=None`` on a model of several tasks, or ``X`` with the
        wrong number of features.
    TypeError
        A non-numeric ``alpha``, ``X`` or ``y``, ``tasks`` sparse or holding
        unhashable labels.
    sklearn.exceptions.NotFittedError
        ``predict`` or ``score`` before ``fit``.

    Examples
    --------
    >>> from fmtl import Local{cls}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> X, y, tasks = make_multitask_{data}(n_tasks=3, n_samples=30, n_features=4,
    ...                                     n_clusters=2, random_state=0).stack()
    >>> Local{cls}(alpha=0.01).fit(X, y, tasks).coef_.shape
    (3, 4)
    """

_GLOBAL_DOC = """Global baseline: one {kind} fitted on the pooled data of all tasks.

    Minimises ``(1/N) sum_all l(y_i, w.x_i + b) + (alpha/2) (||w||^2 +
    (b / intercept_scaling)^2)`` over one ``w`` and one intercept ``b`` (pooled mean loss,
    ``N`` rows in all; ``b = 0`` with ``fit_intercept=False``); ``coef_`` and
    ``intercept_`` repeat them for every task, and ``predict`` accepts tasks not seen
    during ``fit``.

    Parameters
    ----------
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.
    {params}
    Attributes
    ----------
    alpha_ : float
        The regularisation strength used (``alpha`` or its ``"auto"`` value).
    coef_ : ndarray of shape (n_tasks, n_features)
        Identical rows.
    intercept_ : ndarray of shape (n_tasks,)
        Identical entries (zeros with ``fit_intercept=False``).
    tasks_ : ndarray of shape (n_tasks,)
    history_ : fmtl.federated.History

    Raises
    ------
    ValueError
        From ``fit``: an ``alpha`` that is not positive and finite, an unknown ``loss``,
        ``max_rounds`` not an integer >= 1, out-of-range ``local_frac`` or ``tol``, bad
        ``X``/``y``/``tasks`` (shapes, NaN or inf, a single class to classify, entries
        so large that squared norms overflow). From ``predict``/``score``: ``X`` with the wrong
        number of features.
    TypeError
        A non-numeric ``alpha``, ``X`` or ``y``, ``tasks`` sparse or holding
        unhashable labels.
    sklearn.exceptions.NotFittedError
        ``predict`` or ``score`` before ``fit``.

    Examples
    --------
    >>> from fmtl import Global{cls}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> X, y, tasks = make_multitask_{data}(n_tasks=3, n_samples=30, n_features=4,
    ...                                     n_clusters=2, random_state=0).stack()
    >>> est = Global{cls}(alpha=0.01).fit(X, y, tasks)
    >>> bool((est.coef_ == est.coef_[0]).all())
    True
    """

_BASELINE_PARAMS_DOC += _intercept_doc("\n        inside ``(alpha/2) ||w_t||^2``,")
_CLF = dict(
    kind="linear classifier",
    cls="Classifier",
    data="classification",
    losses='{"hinge", "smoothed_hinge", "logistic"}',
    default="hinge",
    params=_BASELINE_PARAMS_DOC,
)
_REG = dict(
    kind="ridge regression",
    cls="Regressor",
    data="regression",
    losses='{"squared"}',
    default="squared",
    params=_BASELINE_PARAMS_DOC,
)


class LocalClassifier(_TaskClassifierMixin, _LocalBase):
    __doc__ = _LOCAL_DOC.format(**_CLF)


class LocalRegressor(_TaskRegressorMixin, _LocalBase):
    __doc__ = _LOCAL_DOC.format(**_REG)


class GlobalClassifier(_TaskClassifierMixin, _GlobalBase):
    __doc__ = _GLOBAL_DOC.format(**_CLF)


class GlobalRegressor(_TaskRegressorMixin, _GlobalBase):
    __doc__ = _GLOBAL_DOC.format(**_REG)
