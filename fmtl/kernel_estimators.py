"""scikit-learn estimators of kernel MOCHA (:func:`fmtl.federated.kernel_mocha.kernel_mocha`),
with the same ``fit(X, y, tasks)`` contract, ``history_`` and ``random_state`` as
:class:`fmtl.MochaClassifier`.

The task functions live in the kernel's feature space: ``f_t(x) = sum_j c[j, t] k(x, x_j)
+ b_t`` over the training rows ``x_j`` of all tasks (``expansion_coef_``; the intercepts
``b_t``, ``intercept_``, come from the constant ``intercept_scaling**2`` added to the
kernel). There is no ``coef_``: predictions evaluate the kernel between the new rows and the
stored training rows (``X_fit_``). With ``kernel="linear"`` the explicit models are
:meth:`linear_coef`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted, validate_data

from .estimators import (
    _CHECKPOINT_DOC,
    _MochaBase,
    _progress_printer,
    _TaskClassifierMixin,
    _TaskModelBase,
    _TaskRegressorMixin,
    _warn_if_uncertified,
)
from .federated.history import _one_vs_rest_history
from .federated.kernel_mocha import MAX_SAMPLES, _check_kernel, _gram, kernel_mocha

__all__ = ["KernelMochaClassifier", "KernelMochaRegressor"]


class _OffsetKernel:
    """``k(x, y) + offset``: the kernel of the rows with a constant feature appended."""

    def __init__(self, kernel, kernel_params: dict, offset: float) -> None:
        self.kernel = kernel
        self.kernel_params = kernel_params
        self.offset = offset
        # a named kernel (PSD in the ranges _check_kernel allows) plus a constant is PSD:
        # kernel_mocha then skips its O(N^3) eigenvalue check; a user's callable keeps it
        self._psd_by_construction = isinstance(kernel, str)

    def __call__(self, X, Y) -> np.ndarray:
        return _gram(self.kernel, self.kernel_params, X, Y) + self.offset


class _KernelMochaBase(_TaskModelBase):
    def __init__(
        self,
        alpha: float | str = "auto",
        *,
        kernel="rbf",
        kernel_params: dict | None = None,
        loss: str | None = None,
        gamma: float = 1.0,
        relationship: str = "learned",
        kappa: float = 1.0,
        sigma=None,
        outer_iters: int = 10,
        inner_iters: int = 100,
        local_frac: float = 1.0,
        tol: float = 1e-6,
        sigma_floor: float = 1e-6,
        max_samples: int = MAX_SAMPLES,
        random_state=None,
        n_jobs: int | None = None,
        systems=None,
        record_local_gaps: bool | None = None,
        eval_every: int = 1,
        verbose: int = 0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.kernel = kernel
        self.kernel_params = kernel_params
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
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.systems = systems
        self.record_local_gaps = record_local_gaps
        self.eval_every = eval_every
        self.verbose = verbose
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    # the relationship options are MochaClassifier's ("learned", "identity", "mean", "fixed")
    _relationship = _MochaBase._relationship

    def _augment(self, X, scaling: float | None):
        # the constant feature enters through the kernel instead (see _solve)
        return X

    def _solve(self, Xs: list, ys: list, loss):
        """One kernel MOCHA fit on per-task data (binary targets in {-1, +1})."""
        kernel, kernel_params = _check_kernel(self.kernel, self.kernel_params)
        mode, sigma = self._relationship(len(Xs))
        scaling = self._check_intercept()
        if scaling is not None:
            # appending the constant feature s to every row adds s^2 to every kernel value
            kernel, kernel_params = _OffsetKernel(kernel, kernel_params, scaling**2), None
        return kernel_mocha(
            Xs,
            ys,
            self.alpha_,
            loss,
            kernel=kernel,
            kernel_params=kernel_params,
            relationship=mode,
            sigma=sigma,
            outer_iters=self.outer_iters,
            inner_iters=self.inner_iters,
            local_frac=self.local_frac,
            tol=self.tol,
            sigma_floor=self.sigma_floor,
            random_state=self.random_state,
            n_threads=self.n_jobs,
            systems=self.systems,
            record_local_gaps=self.record_local_gaps,
            eval_every=self.eval_every,
            callback=_progress_printer(self.verbose),
            max_samples=self.max_samples,
            **self._checkpoint_kw(),
        )

    def _resolve_alpha(self, Xs: list) -> float:
        if not isinstance(self.alpha, str):
            return float(self.alpha)
        # "auto": the linear rule with ||x||^2 replaced by k(x, x) (1 for "rbf")
        _check_kernel(self.kernel, self.kernel_params)
        X = sp.vstack(Xs, format="csr") if sp.issparse(Xs[0]) else np.vstack(Xs)
        n, block = X.shape[0], 512
        diag = sum(
            float(np.trace(_gram(self.kernel, self.kernel_params or {}, X[i : i + block])))
            for i in range(0, n, block)
        )
        return (diag / n if diag > 0 else 1.0) / n

    def _store(self, results, labels):
        self.tasks_ = np.empty(len(labels), dtype=object)
        self.tasks_[:] = labels
        self._task_lookup_ = {lab: i for i, lab in enumerate(labels)}
        self.n_tasks_ = len(labels)
        first = results[0]  # every class of a one-vs-rest fit has the same rows and kernel
        self.kernel_ = first.kernel
        self.kernel_params_ = dict(first.kernel_params)
        self.X_fit_ = first.X_fit
        self.task_offsets_ = np.asarray(first.offsets, dtype=np.int64)
        if len(results) == 1:
            self.dual_coef_ = first.dual_coef
            self.expansion_coef_ = first.expansion_coef
            self.sigma_, self.omega_ = first.sigma, first.omega
            self.history_ = first.history
            self.never_reported_ = self.tasks_[first.never_reported]
        else:
            self.dual_coef_ = np.stack([r.dual_coef for r in results])
            self.expansion_coef_ = np.stack([r.expansion_coef for r in results])
            self.sigma_ = np.stack([r.sigma for r in results])
            self.omega_ = np.stack([r.omega for r in results])
            self.history_ = _one_vs_rest_history([r.history for r in results])
            self.never_reported_ = self.tasks_[
                np.unique(np.concatenate([r.never_reported for r in results]))
            ]
        _warn_if_uncertified(self, [r.history for r in results])

    def _set_intercept(self, scaling: float | None) -> None:
        coefs = self.expansion_coef_
        if scaling is None:
            self.intercept_ = np.zeros((*coefs.shape[:-2], coefs.shape[-1]))
            return
        # f_t(x) = sum_j c[j, t] (k(x, x_j) + s^2): the offset is s^2 sum_j c[j, t]
        self.intercept_ = scaling**2 * coefs.sum(axis=-2)
        self.kernel_, self.kernel_params_ = self.kernel_.kernel, dict(self.kernel_.kernel_params)

    def _margins(self, X, tasks) -> np.ndarray:
        # f_t(x) = sum_j expansion_coef_[j, t] k(x, x_j), evaluated as kernel_mocha's
        # decision_function does: the (n x N) kernel times the expansion, then each row's task
        check_is_fitted(self, "expansion_coef_")
        try:
            X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        except (TypeError, ValueError) as e:
            raise type(e)(f"invalid X: {e}") from e
        idx = self._task_index(tasks, X.shape[0])
        Kx = _gram(self.kernel_, self.kernel_params_, X, self.X_fit_)
        coefs = self.expansion_coef_ if self.expansion_coef_.ndim == 3 else [self.expansion_coef_]
        intercepts = self.intercept_ if self.intercept_.ndim == 2 else self.intercept_[None]
        rows = np.arange(X.shape[0])
        out = np.empty((X.shape[0], len(coefs)))
        for k, C in enumerate(coefs):
            out[:, k] = (Kx @ C)[rows, idx] + intercepts[k][idx]
        return out

    def linear_coef(self) -> np.ndarray:
        """Explicit task models for ``kernel="linear"`` (the kernel expansion summed up).

        Returns
        -------
        ndarray of shape (n_tasks, n_features)
            ``w_t = sum_j expansion_coef_[j, t] x_j`` in the order of ``tasks_``; for a
            multiclass classifier ``(n_classes, n_tasks, n_features)``, one-vs-rest. Equal
            to :class:`fmtl.MochaClassifier`'s ``coef_`` up to rounding for the same data,
            ``alpha``, ``random_state``, schedule and intercept settings (the intercepts
            are ``intercept_``).

        Raises
        ------
        ValueError
            If the fit used another kernel (its task functions have no finite-dimensional
            weight vector to return).
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl import KernelMochaRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(40, 3))
        >>> reg = KernelMochaRegressor(alpha=0.1, kernel="linear", outer_iters=2,
        ...                            random_state=0).fit(X, X[:, 0], [0, 1] * 20)
        >>> reg.linear_coef().shape
        (2, 3)
        """
        check_is_fitted(self, "expansion_coef_")
        if self.kernel_ != "linear":
            raise ValueError(f"linear_coef needs kernel='linear', the fit used {self.kernel_!r}")
        coefs = self.expansion_coef_ if self.expansion_coef_.ndim == 3 else [self.expansion_coef_]
        out = [np.ascontiguousarray(np.asarray(self.X_fit_.T @ C).T) for C in coefs]
        return out[0] if self.expansion_coef_.ndim == 2 else np.stack(out)


_KERNEL_DOC = """Federated multi-task {kind} with a kernel, fitted by kernel MOCHA.

    Minimises ``sum_t (1/n_t) sum_i l(y_ti, f_t(x_ti)) + (alpha/2) tr(W Omega W^T)`` over
    task functions ``f_t = <w_t, phi(.)>`` in the kernel's feature space (and over the
    relationship ``Sigma = Omega^{{-1}}`` when learned), exactly, in the dual
    (:func:`fmtl.federated.kernel_mocha.kernel_mocha`): the same federated rounds, systems
    model and certified duality gaps as :class:`fmtl.{linear}`, every inner product
    replaced by the kernel. With ``kernel="linear"`` and the same ``alpha``,
    ``random_state``, schedule and intercept settings it reproduces :class:`fmtl.{linear}`
    up to rounding.{ovr}

    The intercepts follow liblinear's convention as in :class:`fmtl.{linear}`: appending a
    constant feature ``intercept_scaling`` to every row adds ``intercept_scaling**2`` to
    every kernel value, so the fit uses ``k(x, y) + intercept_scaling**2`` and each task
    function is ``sum_j c[j, t] k(x, x_j) + b_t`` with the implied offset
    ``b_t = intercept_scaling**2 sum_j c[j, t]`` (``intercept_``), regularised (and coupled
    through ``Sigma``) with the rest of ``f_t``.

    The dense Gram matrix of all ``N`` training rows is formed (``8 N^2`` bytes) and each
    round costs ``O(N^2)``: for small ``N`` (``max_samples``). There is no ``coef_``:
    ``predict``, ``decision_function`` and ``score`` evaluate the kernel expansion
    ``f_t(x) = sum_j expansion_coef_[j, t] k(x, x_j) + intercept_[t]`` against the stored
    training rows ``X_fit_`` (``n x N`` kernel values per call); :meth:`linear_coef` gives
    the explicit models for ``kernel="linear"``.

    Parameters
    ----------
    alpha : float or "auto", default="auto"
        Regularisation strength ``lambda > 0`` of ``(lambda/2) tr(W Omega W^T)``.
        ``"auto"``: ``lambda = mean_i k(x_i, x_i) / N`` over the ``N`` training rows, the
        linear estimators' rule with ``||x||^2`` replaced by ``k(x, x)`` (``1 / N`` for
        ``"rbf"``, SVC's ``C = 1``); the value used is ``alpha_``.
    kernel : {{"rbf", "linear", "poly", "polynomial", "laplacian", "cosine"}} or callable, \
default="rbf"
        A kernel of :func:`sklearn.metrics.pairwise.pairwise_kernels`, or a callable
        ``k(X, Y, **kernel_params)`` returning the ``(len(X), len(Y))`` Gram matrix
        (positive semi-definite). A model with a callable kernel cannot be saved.
    kernel_params : dict, optional
        Keyword arguments of the kernel, e.g. ``{{"gamma": 0.5}}`` for ``"rbf"`` (default
        ``1 / n_features``) or ``{{"degree": 3, "coef0": 1}}`` for ``"poly"``.
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.
    gamma : float, default=1.0
        Smoothing of ``loss="smoothed_hinge"`` (not a kernel parameter: see
        ``kernel_params``).
    relationship : {{"learned", "identity", "mean", "fixed"}}, default="learned"
        As :class:`fmtl.{linear}`: the learned closed-form Sigma-step, ``Sigma = I / m``,
        the mean-regularised Sigma (``kappa``) or the given ``sigma``.
    kappa : float, default=1.0
        Coupling strength of ``relationship="mean"``.
    sigma : array of shape (n_tasks, n_tasks), optional
        Relationship for ``relationship="fixed"``, rows/columns in the order of ``tasks_``.
    outer_iters : int, default=10
        Outer rounds (W-steps; a Sigma-step between consecutive ones).
    inner_iters : int, default=100
        Maximum federated rounds per W-step.
    local_frac : float, default=1.0
        Local SDCA steps per round as a fraction of each task's sample count.
    tol : float, default=1e-6
        A W-step stops once its relative duality gap is ``<= tol``.
    sigma_floor : float, default=1e-6
        Learned Sigma is constrained to ``Sigma >= sigma_floor * I``, ``tr Sigma = 1``.
    max_samples : int, default=10_000
        Refuse more training rows than this in total (the Gram matrix is dense).
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
        Compute the certificates every this many rounds and at the end of each W-step.
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
    fit_intercept : bool, default=True
        Fit an intercept per task by adding ``intercept_scaling**2`` to the kernel (the
        kernel of the rows with the constant feature ``intercept_scaling`` appended). It is
        regularised with the task function, so a larger ``intercept_scaling`` weakens its
        penalty. ``False``: the kernel alone (as
        :func:`fmtl.federated.kernel_mocha.kernel_mocha` fits it).
    intercept_scaling : float, default=1.0
        Value of the constant feature (``> 0``; used only with ``fit_intercept=True``).
{checkpoint}
    Attributes
    ----------{classes_attr}
    alpha_ : float
        The regularisation strength used (``alpha`` or its ``"auto"`` value).
    dual_coef_ : ndarray of shape ({lead}n_samples_fit,)
        Dual variables, grouped task after task in the order of ``tasks_`` (the row order
        of ``X_fit_``).
    expansion_coef_ : ndarray of shape ({lead}n_samples_fit, n_tasks)
        ``c[j, t] = Sigma[t, s(j)] dual_coef_[j] / (n_s alpha)`` for row ``j`` of task
        ``s``: task ``t``'s function is ``f_t(x) = sum_j c[j, t] k(x, x_j) + b_t``.
    intercept_ : ndarray of shape ({lead}n_tasks,)
        The offsets ``b_t = intercept_scaling**2 sum_j c[j, t]`` (zeros with
        ``fit_intercept=False``).
    sigma_, omega_ : ndarray of shape ({lead}n_tasks, n_tasks)
        Task relationship ``Sigma`` and its inverse.
    X_fit_ : ndarray or sparse matrix of shape (n_samples_fit, n_features)
        The training rows, task after task in the order of ``tasks_`` (needed to evaluate
        the kernel at prediction time).
    task_offsets_ : ndarray of int of shape (n_tasks + 1,)
        Task ``tasks_[t]`` owns rows ``task_offsets_[t]:task_offsets_[t + 1]`` of
        ``X_fit_``.
    kernel_ : str or callable
        The fit's kernel (without the intercept's constant).
    kernel_params_ : dict
        The fit's kernel parameters.
    tasks_ : ndarray of shape (n_tasks,)
        Task labels seen in ``fit``.
    history_ : fmtl.federated.History
        Per-round primal, dual, duality gap, wall and estimated time{hist}.
    never_reported_ : ndarray
        Tasks whose node never returned an update (simulated dead nodes).
    n_features_in_ : int

    Raises
    ------
    ValueError
        From ``fit``: an ``alpha`` that is not positive and finite, an unknown ``loss``,
        ``kernel`` or ``relationship``, ``kernel_params`` that are not a dict or do not fit
        the kernel, a kernel that is not symmetric positive semi-definite, more than
        ``max_samples`` training rows, out-of-range solver settings (as
        :func:`fmtl.federated.kernel_mocha.kernel_mocha`), bad ``X``/``y``/``tasks``
        (shapes, NaN or inf{single_class}). From ``predict``/``decision_function``/
        ``score``: a task not seen during ``fit``, ``tasks=None`` on a model of several
        tasks, or ``X`` with the wrong number of features. From ``save``: a callable ``kernel``.
    TypeError
        A non-numeric ``alpha``, ``X`` or ``y``, ``tasks`` sparse or holding
        unhashable labels.
    sklearn.exceptions.NotFittedError
        ``predict``, ``decision_function`` or ``score`` before ``fit``.

    See Also
    --------
    fmtl.{linear} : The linear model (explicit ``coef_``, any number of rows).
    fmtl.federated.kernel_mocha.kernel_mocha : The solver.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl import {name}
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(120, 2))
    >>> tasks = np.repeat(["a", "b", "c"], 40)
    >>> y = {target}
    >>> est = {name}(alpha=1e-3, kernel="rbf", kernel_params={{"gamma": 2.0}},
    ...     outer_iters=3, random_state=0).fit(X, y, tasks)
    >>> est.expansion_coef_.shape, est.sigma_.shape
    ((120, 3), (3, 3))
    >>> bool(est.score(X, y, tasks) > 0.9)
    True
    """


class KernelMochaClassifier(_TaskClassifierMixin, _KernelMochaBase):
    __doc__ = _KERNEL_DOC.format(
        checkpoint=_CHECKPOINT_DOC.rstrip("\n"),
        kind="classifier",
        name="KernelMochaClassifier",
        linear="MochaClassifier",
        losses='{"hinge", "smoothed_hinge", "logistic"}',
        default="hinge",
        ovr=" Binary labels of any two values; more classes are fitted one-vs-rest (one"
        " kernel MOCHA fit per class, each with its own relationship; per-class arrays are"
        " stacked along a leading axis).",
        classes_attr="\n    classes_ : ndarray",
        lead="[n_classes, ]",
        hist="; multiclass: every class's records in turn, with a ``class_index`` column",
        single_class=", a single class to classify",
        target="np.where(X[:, 0] * X[:, 1] > 0, 1, 0)  # XOR: no linear model fits it",
    )


class KernelMochaRegressor(_TaskRegressorMixin, _KernelMochaBase):
    __doc__ = _KERNEL_DOC.format(
        checkpoint=_CHECKPOINT_DOC.rstrip("\n"),
        kind="regression (squared loss)",
        name="KernelMochaRegressor",
        linear="MochaRegressor",
        losses='{"squared"}',
        default="squared",
        ovr="",
        classes_attr="",
        lead="",
        hist="",
        single_class="",
        target="np.sin(3 * X[:, 0]) + X[:, 1] ** 2",
    )
