"""scikit-learn estimators of the personalisation baselines: FedAvg (+ fine-tuning) and
Ditto, with the same ``fit(X, y, tasks)`` contract, ``history_`` and ``random_state`` as
:class:`fmtl.MochaClassifier`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from .estimators import (
    _intercept_doc,
    _progress_printer,
    _TaskClassifierMixin,
    _TaskModelBase,
    _TaskRegressorMixin,
)
from .federated.ditto import ditto
from .federated.fedavg import fedavg
from .federated.fedrep import fedrep
from .federated.history import History
from .federated.perfedavg import perfedavg
from .federated.pfedhn import fit_new_embedding, hypernetwork_features, pfedhn
from .federated.pfedme import pfedme
from .theory import loss_constants

__all__ = [
    "DittoClassifier",
    "DittoRegressor",
    "FedAvgClassifier",
    "FedAvgRegressor",
    "FedRepClassifier",
    "FedRepRegressor",
    "PFedHNClassifier",
    "PFedHNRegressor",
    "PFedMeClassifier",
    "PFedMeRegressor",
    "PerFedAvgClassifier",
    "PerFedAvgRegressor",
]


@dataclass
class _Fit:
    # what _TaskModelBase._store expects of a solver's result
    coef: np.ndarray
    history: History
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sigma: None = None
    omega: None = None
    dual_coef: np.ndarray = field(default_factory=lambda: np.zeros(0))


class _FedAvgBase(_TaskModelBase):
    def __init__(
        self,
        alpha: float = 1e-3,
        *,
        loss: str | None = None,
        gamma: float = 1.0,
        rounds: int = 200,
        local_epochs: float = 1.0,
        lr: float | str = "auto",
        lr_decay: float = 0.01,
        finetune_epochs: float = 0.0,
        systems=None,
        random_state=None,
        n_jobs: int | None = None,
        verbose: int = 0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.loss = loss
        self.gamma = gamma
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.lr = lr
        self.lr_decay = lr_decay
        self.finetune_epochs = finetune_epochs
        self.systems = systems
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    # "auto" steps: ("sample", cap) for per-row SGD steps, ("batch", cap) for full-batch
    # gradient steps; the cap is the former fixed default where that was stable
    _auto_steps: dict[str, tuple[str, float]] = {"lr": ("sample", 0.1)}

    def _auto_step(self, name: str, Xs: list, loss) -> float:
        """The step ``name`` as a number, stored as ``name + "_"``; ``"auto"``: the inverse
        of the smoothness of what one step descends (one row's loss, or every ``F_t``),
        at most the cap."""
        value = getattr(self, name)
        if isinstance(value, str):
            if value != "auto":
                raise ValueError(f"{name} must be 'auto' or a positive number, got {value!r}")
            kind, cap = self._auto_steps[name]
            if kind == "sample" and np.isfinite(loss_constants(loss).lipschitz):
                # SGD on a Lipschitz loss (bounded derivative) cannot overflow: one
                # outlying row need not slow every step down; the penalty's own curvature
                # alpha still bounds the step (lr * alpha < 1 keeps w <- (1 - lr alpha) w
                # a contraction; alpha >= 10 used to fail on the cap, blaming lr=0.1)
                value = min(cap, 0.5 / self.alpha_)
            else:
                smooth = _smoothness(Xs, loss, self.alpha_, per_row=kind == "sample")
                value = min(cap, 1.0 / smooth)
        setattr(self, name + "_", value)
        return value

    def _solve_maybe_warm(self, Xs: list, ys: list, loss, warm, part: str | None = None):
        res = super()._solve_maybe_warm(Xs, ys, loss, warm, part)
        with np.errstate(over="ignore", invalid="ignore"):
            # the training loss, not only the model: 1e306 coefficients are finite too
            finite = all(
                np.isfinite(np.sum(loss.value(y, np.asarray(X @ w).ravel())))
                for X, y, w in zip(Xs, ys, res.coef, strict=True)
            )
        if not finite:
            # gradient methods with too large a step overflow instead of converging
            self.__dict__.pop("_fit_parts", None)
            raise ValueError(
                f"{type(self).__name__} diverged (its training loss overflows): lower "
                + " or ".join(f"{p}={getattr(self, p)!r}" for p in self._step_params)
            )
        return res

    def _fedavg_kw(self) -> dict:
        return dict(
            rounds=self.rounds,
            local_epochs=self.local_epochs,
            lr=self.lr_,
            lr_decay=self.lr_decay,
            systems=self.systems,
            random_state=self.random_state,
            n_threads=self.n_jobs,
            callback=_progress_printer(self.verbose),
            **self._checkpoint_kw(),
        )

    def _solve(self, Xs: list, ys: list, loss):
        self._auto_step("lr", Xs, loss)
        res = fedavg(
            Xs,
            ys,
            self.alpha_,
            loss,
            gamma=self.gamma,
            finetune_epochs=self.finetune_epochs,
            **self._fedavg_kw(),
        )
        self._parts().append({"global_coef_": res.global_coef})
        return _Fit(res.coef, res.history, res.never_reported)

    def _parts(self) -> list:
        # per-class extras of one fit (one-vs-rest calls _solve once per class)
        if "_fit_parts" not in self.__dict__:
            self._fit_parts = []
        return self._fit_parts

    _step_params: tuple[str, ...] = ("lr",)  # named when a fit diverges

    def _store(self, results, labels):
        super()._store(results, labels)
        parts = self.__dict__.pop("_fit_parts", [])
        for key in parts[0] if parts else ():
            vals = [p[key] for p in parts]
            setattr(self, key, vals[0] if len(vals) == 1 else np.stack(vals))

    def _set_intercept(self, scaling: float | None) -> None:
        super()._set_intercept(scaling)
        if "global_coef_" not in self.__dict__:  # pFedHN and FedRep have no global model
            return
        g = self.global_coef_
        if scaling is None:
            self.global_intercept_ = np.zeros(g.shape[:-1])[()]
        else:
            self.global_intercept_ = (scaling * g[..., -1])[()]
            self.global_coef_ = np.ascontiguousarray(g[..., :-1])


class _DittoBase(_FedAvgBase):
    def __init__(
        self,
        alpha: float = 1e-3,
        *,
        mu: float = 0.1,
        loss: str | None = None,
        gamma: float = 1.0,
        rounds: int = 200,
        local_epochs: float = 1.0,
        lr: float | str = "auto",
        lr_decay: float = 0.01,
        tol: float = 1e-10,
        systems=None,
        random_state=None,
        n_jobs: int | None = None,
        verbose: int = 0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.mu = mu
        self.loss = loss
        self.gamma = gamma
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.lr = lr
        self.lr_decay = lr_decay
        self.tol = tol
        self.systems = systems
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _solve(self, Xs: list, ys: list, loss):
        self._auto_step("lr", Xs, loss)
        kw = self._fedavg_kw()
        res = ditto(
            Xs,
            ys,
            self.alpha_,
            self.mu,
            loss,
            gamma=self.gamma,
            tol=self.tol,
            random_state=kw.pop("random_state"),
            **kw,
        )
        self._parts().append({"global_coef_": res.global_coef, "local_gap_": res.local_gap})
        return _Fit(res.coef, res.history)


class _PFedMeBase(_FedAvgBase):
    _step_params = ("beta",)

    def __init__(
        self,
        alpha: float = 1e-3,
        *,
        mu: float = 0.1,
        loss: str | None = None,
        gamma: float = 1.0,
        rounds: int = 100,
        beta: float = 1.0,
        weights: str = "samples",
        tol: float = 1e-10,
        grad_tol: float = 1e-8,
        local_passes: float | None = None,
        systems=None,
        random_state=None,
        verbose: int = 0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.mu = mu
        self.loss = loss
        self.gamma = gamma
        self.rounds = rounds
        self.beta = beta
        self.weights = weights
        self.tol = tol
        self.grad_tol = grad_tol
        self.local_passes = local_passes
        self.systems = systems
        self.random_state = random_state
        self.verbose = verbose
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _solve(self, Xs: list, ys: list, loss):
        res = pfedme(
            Xs,
            ys,
            self.alpha_,
            self.mu,
            loss,
            gamma=self.gamma,
            rounds=self.rounds,
            beta=self.beta,
            weights=self.weights,
            tol=self.tol,
            grad_tol=self.grad_tol,
            local_passes=self.local_passes,
            systems=self.systems,
            random_state=self.random_state,
            callback=_progress_printer(self.verbose),
            **self._checkpoint_kw(),
        )
        self._parts().append({"global_coef_": res.global_coef})
        return _Fit(res.coef, res.history, res.never_reported)


# the fit_intercept / intercept_scaling entries, by how each method penalises the weights
_INTERCEPT_DOCS = dict(
    intercept=_intercept_doc("""
        inside every ``(alpha/2) ||w||^2`` and proximal term of the method,"""),
    intercept_rep=_intercept_doc("""
        inside ``(alpha/2) ||h_t||^2`` through the head (the constant feature is one more
        row of ``B``),"""),
    intercept_hn=_intercept_doc("""
        inside ``(alpha/2) ||w_t||^2``; the hypernetwork generates it as one more row,"""),
)


def _smoothness(Xs: list, loss, alpha: float, *, per_row: bool = False) -> float:
    """``L = c s + alpha`` with ``c`` the loss's smoothness (1/4 logistic, 1 squared,
    ``1 / gamma`` smoothed hinge; 1 for the hinge, which has none) and ``s`` the largest
    ``||X_t||_2^2 / n_t`` over the tasks (every ``F_t`` is ``L``-smooth) or, ``per_row``,
    the largest squared row norm ``||x_i||^2`` (every row's loss is)."""
    c = loss_constants(loss).smoothness
    c = 1.0 if not np.isfinite(c) else c
    top = 0.0
    for X in Xs:
        if X.shape[0] == 0:
            continue
        if per_row:
            sq = X.multiply(X).sum(axis=1) if sp.issparse(X) else np.einsum("ij,ij->i", X, X)
            top = max(top, float(np.max(sq)))
            continue
        if sp.issparse(X) and min(X.shape) > 2:
            # largest singular value; a fixed start vector keeps the result deterministic
            sv = svds(X, k=1, v0=np.ones(min(X.shape)), return_singular_vectors=False)[0]
        else:
            sv = np.linalg.norm(X.toarray() if sp.issparse(X) else X, 2)
        top = max(top, float(sv) ** 2 / X.shape[0])
    return c * top + alpha


# the Raises section every estimator shares (the fit / predict contract of
# _TaskModelBase), written once
_RAISES = """    Raises
    ------
    ValueError
        From ``fit``: an invalid parameter, named (``alpha <= 0``, an unknown ``loss``,
        ``rounds < 1``, ...); NaN or inf in ``X`` or ``y``; ``y`` or ``tasks`` of the wrong
        length; for classifiers, fewer than two classes. From ``predict``/``score``: a task
        not seen during ``fit``, ``tasks=None`` on a model of several tasks, or ``X`` with
        another number of features.
    TypeError
        Non-numeric ``X`` or ``y``, or a parameter of the wrong type.
    sklearn.exceptions.NotFittedError
        ``predict``, ``decision_function`` or ``score`` before ``fit``.

"""

_COMMON = """
    alpha : float or "auto", default=1e-3
        L2 weight ``lambda`` of every task's objective ``F_t``.
        ``"auto"``: ``r^2 / N`` (``r^2`` the mean squared norm of the ``N`` rows), as
        :class:`fmtl.GlobalClassifier`; the value used is ``alpha_``.
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    rounds : int, default=200
        FedAvg rounds.
    local_epochs : float, default=1.0
        Local SGD epochs per round.
    lr : float or "auto", default="auto"
        Step size ``lr / (1 + lr_decay h)`` of the local SGD in round ``h``. ``"auto"``:
        the former default 0.1, and for the squared loss at most ``1 / (max_i ||x_i||^2
        + alpha)``, a step that is stable on every row (0.1 overflows on the standardised
        School data; the classification losses have bounded derivatives and cannot
        overflow); the value used is ``lr_``.
    lr_decay : float, default=0.01
    systems : fmtl.federated.SystemsModel, optional
    random_state : int, Generator or None
    n_jobs : int, optional
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
{intercept}"""

_FEDAVG_DOC = (
    """FedAvg {kind}: one global model (optionally fine-tuned per task).

    Fits ``w`` to ``(1/N) sum_all l(y_i, w.x_i) + (alpha/2) ||w||^2`` by federated averaging
    of local SGD (:func:`fmtl.federated.fedavg.fedavg`); with ``finetune_epochs > 0`` each
    task then runs that many SGD epochs from ``w`` on its own rows ("FedAvg + fine-tuning").

    Parameters
    ----------
    {common}
    finetune_epochs : float, default=0.0

    Attributes
    ----------
    lr_ : float
        The step size used (``lr`` or its ``"auto"`` value).
    coef_ : ndarray of shape (n_tasks, n_features)
    intercept_ : ndarray of shape (n_tasks,)
        Zeros with ``fit_intercept=False``.
    global_coef_ : ndarray of shape (n_features,)
    global_intercept_ : float
    tasks_ : ndarray of shape (n_tasks,)
    history_ : fmtl.federated.History
        ``primal`` is the pooled objective at the global model.

"""
    + _RAISES
    + """    Examples
    --------
    >>> from fmtl.personalized import FedAvg{cls}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> X, y, tasks = make_multitask_{data}(n_tasks=3, n_samples=30, n_features=4,
    ...                                     random_state=0).stack()
    >>> FedAvg{cls}(rounds=20, random_state=0).fit(X, y, tasks).coef_.shape
    (3, 4)
    """
)

_DITTO_DOC = (
    """Ditto {kind}: personal models kept near a FedAvg global model.

    ``v_t = argmin_v F_t(v) + (mu/2) ||v - w||^2`` solved exactly (certified local gaps)
    around FedAvg's ``w`` (:func:`fmtl.federated.ditto.ditto`); ``mu = 0`` gives local
    models, large ``mu`` the global one.

    Parameters
    ----------
    {common}
    mu : float, default=0.1
        Proximal weight.
    tol : float, default=1e-10
        Relative local duality gap of the personal solves.

    Attributes
    ----------
    lr_ : float
        The step size used (``lr`` or its ``"auto"`` value).
    coef_ : ndarray of shape (n_tasks, n_features)
        Personal models.
    intercept_ : ndarray of shape (n_tasks,)
        Their intercepts (zeros with ``fit_intercept=False``).
    global_coef_ : ndarray of shape (n_features,)
    global_intercept_ : float
    local_gap_ : ndarray of shape (n_tasks,)
    tasks_ : ndarray of shape (n_tasks,)
    history_ : fmtl.federated.History

"""
    + _RAISES
    + """    Examples
    --------
    >>> from fmtl.personalized import Ditto{cls}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> X, y, tasks = make_multitask_{data}(n_tasks=3, n_samples=30, n_features=4,
    ...                                     random_state=0).stack()
    >>> Ditto{cls}(rounds=20, random_state=0).fit(X, y, tasks).coef_.shape
    (3, 4)
    """
)

_CLF = dict(
    kind="linear classifier",
    cls="Classifier",
    data="classification",
    losses='{"logistic", "smoothed_hinge", "hinge"}',
    default="logistic",
    **_INTERCEPT_DOCS,
)
_REG = dict(
    kind="linear regression",
    cls="Regressor",
    data="regression",
    losses='{"squared"}',
    default="squared",
    **_INTERCEPT_DOCS,
)


class FedAvgClassifier(_TaskClassifierMixin, _FedAvgBase):
    __doc__ = _FEDAVG_DOC.format(common=_COMMON.format(**_CLF), **_CLF)
    _loss_choices = ("logistic", "smoothed_hinge", "hinge")


class FedAvgRegressor(_TaskRegressorMixin, _FedAvgBase):
    __doc__ = _FEDAVG_DOC.format(common=_COMMON.format(**_REG), **_REG)


class DittoClassifier(_TaskClassifierMixin, _DittoBase):
    __doc__ = _DITTO_DOC.format(common=_COMMON.format(**_CLF), **_CLF)
    _loss_choices = ("logistic", "smoothed_hinge", "hinge")


class DittoRegressor(_TaskRegressorMixin, _DittoBase):
    __doc__ = _DITTO_DOC.format(common=_COMMON.format(**_REG), **_REG)


_PFEDME_DOC = (
    """pFedMe {kind}: personal models from the Moreau envelopes of the task objectives.

    Minimises ``sum_t p_t min_theta [F_t(theta) + (mu/2) ||theta - w||^2]`` over ``w`` by
    gradient steps with exact personal solves (:func:`fmtl.federated.pfedme.pfedme`);
    ``coef_`` holds the personal models ``theta_t(w)``. With ``weights="uniform"`` this is
    mean-regularised MTL (``kappa = mu / alpha``).

    Parameters
    ----------
    alpha : float or "auto", default=1e-3
        L2 weight ``lambda`` of every ``F_t``.
        ``"auto"``: ``r^2 / N`` (``r^2`` the mean squared norm of the ``N`` rows), as
        :class:`fmtl.GlobalClassifier`; the value used is ``alpha_``.
    mu : float, default=0.1
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.
    gamma : float, default=1.0
    rounds : int, default=100
    beta : float in (0, 1], default=1.0
    weights : {{"samples", "uniform"}}, default="samples"
    tol : float, default=1e-10
    grad_tol : float, default=1e-8
    local_passes : float, optional
        ``None``: exact personal solves; a number: that many warm-started SDCA passes.
    systems : fmtl.federated.SystemsModel, optional
    random_state : int, Generator or None
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
{intercept}
    Attributes
    ----------
    coef_ : ndarray of shape (n_tasks, n_features)
    intercept_ : ndarray of shape (n_tasks,)
        Zeros with ``fit_intercept=False``.
    global_coef_ : ndarray of shape (n_features,)
    global_intercept_ : float
    tasks_ : ndarray of shape (n_tasks,)
    history_ : fmtl.federated.History

"""
    + _RAISES
    + """    Examples
    --------
    >>> from fmtl.personalized import PFedMe{cls}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> X, y, tasks = make_multitask_{data}(n_tasks=3, n_samples=30, n_features=4,
    ...                                     random_state=0).stack()
    >>> PFedMe{cls}(rounds=10).fit(X, y, tasks).coef_.shape
    (3, 4)
    """
)


class PFedMeClassifier(_TaskClassifierMixin, _PFedMeBase):
    __doc__ = _PFEDME_DOC.format(**_CLF)
    _loss_choices = ("logistic", "smoothed_hinge", "hinge")


class PFedMeRegressor(_TaskRegressorMixin, _PFedMeBase):
    __doc__ = _PFEDME_DOC.format(**_REG)


class _PerFedAvgBase(_FedAvgBase):
    _step_params = ("a", "beta")
    # with a <= 1/L the meta-objective F_t(w - a grad F_t(w)) is L-smooth too, so
    # beta <= 1/L; capped at the former fixed default 0.1
    _auto_steps = {"a": ("batch", np.inf), "beta": ("batch", 0.1)}

    def __init__(
        self,
        alpha: float = 1e-3,
        *,
        loss: str | None = None,
        a: float | str = "auto",
        beta: float | str = "auto",
        rounds: int = 200,
        local_steps: int = 1,
        order: int = 2,
        adapt_steps: int = 5,
        inner_steps: int = 1,
        systems=None,
        random_state=None,
        verbose: int = 0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.loss = loss
        self.a = a
        self.beta = beta
        self.rounds = rounds
        self.local_steps = local_steps
        self.order = order
        self.adapt_steps = adapt_steps
        self.inner_steps = inner_steps
        self.systems = systems
        self.random_state = random_state
        self.verbose = verbose
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _solve(self, Xs: list, ys: list, loss):
        self._auto_step("a", Xs, loss)
        self._auto_step("beta", Xs, loss)
        res = perfedavg(
            Xs,
            ys,
            self.alpha_,
            loss.name,
            a=self.a_,
            beta=self.beta_,
            rounds=self.rounds,
            local_steps=self.local_steps,
            order=self.order,
            adapt_steps=self.adapt_steps,
            inner_steps=self.inner_steps,
            systems=self.systems,
            random_state=self.random_state,
            callback=_progress_printer(self.verbose),
            **self._checkpoint_kw(),
        )
        self._parts().append({"global_coef_": res.global_coef})
        return _Fit(res.coef, res.history, res.never_reported)


class _PFedHNBase(_FedAvgBase):
    _step_params = ("lr", "eta")
    _auto_steps = {"lr": ("batch", 0.5)}
    _FEATURE_MAP_ATTRS = ("feature_map_omega_", "feature_map_offset_")

    def __init__(
        self,
        alpha: float = 1e-3,
        *,
        loss: str | None = None,
        embedding_dim: int = 2,
        hypernetwork: str = "linear",
        n_components: int = 100,
        kernel_gamma: float = 1.0,
        rounds: int = 200,
        local_steps: int = 1,
        lr: float | str = "auto",
        eta: float = 1.0,
        systems=None,
        random_state=None,
        verbose: int = 0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.loss = loss
        self.embedding_dim = embedding_dim
        self.hypernetwork = hypernetwork
        self.n_components = n_components
        self.kernel_gamma = kernel_gamma
        self.rounds = rounds
        self.local_steps = local_steps
        self.lr = lr
        self.eta = eta
        self.systems = systems
        self.random_state = random_state
        self.verbose = verbose
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _solve(self, Xs: list, ys: list, loss):
        res = pfedhn(
            Xs,
            ys,
            self.alpha_,
            loss.name,
            embedding_dim=self.embedding_dim,
            hypernetwork=self.hypernetwork,
            n_components=self.n_components,
            kernel_gamma=self.kernel_gamma,
            rounds=self.rounds,
            local_steps=self.local_steps,
            lr=self._auto_step("lr", Xs, loss),
            eta=self.eta,
            systems=self.systems,
            random_state=self.random_state,
            callback=_progress_printer(self.verbose),
            **self._checkpoint_kw(),
        )
        part = {"hypernetwork_": res.hypernetwork, "embeddings_": res.embeddings}
        if res.feature_map is not None:
            part.update(zip(self._FEATURE_MAP_ATTRS, res.feature_map, strict=True))
        self._parts().append(part)
        return _Fit(res.coef, res.history, res.never_reported)

    def _store(self, results, labels):
        for name in self._FEATURE_MAP_ATTRS:  # a refit with hypernetwork="linear" has none
            self.__dict__.pop(name, None)
        super()._store(results, labels)

    def fit_new_task(self, X, y, *, rounds: int = 500) -> tuple[np.ndarray, np.ndarray | float]:
        """Model of a client unseen during ``fit``, learned through its embedding alone.

        The hypernetwork (``hypernetwork_`` and, for ``"rff"``, the feature map) stays
        fixed; only the new client's embedding is fitted to its data by
        :func:`fmtl.federated.pfedhn.fit_new_embedding` (step size ``lr``, starting from the
        best of the fitted ``embeddings_``). The estimator is not modified.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The new client's rows.
        y : array-like of shape (n_samples,)
            Its targets (a classifier: labels among ``classes_``).
        rounds : int, default=500
            Gradient steps on the embedding.

        Returns
        -------
        coef : ndarray of shape (n_features,) or (n_classes, n_features)
            The new client's linear model (per class for a multiclass classifier, as in
            ``coef_``).
        intercept : float or ndarray of shape (n_classes,)
            Its intercept (``0.0`` with ``fit_intercept=False``): its predictions are
            ``X @ coef + intercept`` (``X @ coef.T + intercept`` for a multiclass
            classifier's margins).

        Raises
        ------
        ValueError
            ``X`` with another number of features, NaN or inf, ``y`` of the wrong length, a
            label not in ``classes_``, ``rounds < 1``, or ``fit_intercept`` changed since
            ``fit``.
        sklearn.exceptions.NotFittedError
            Before ``fit``.

        Examples
        --------
        >>> from fmtl import PFedHNRegressor
        >>> from fmtl.datasets import make_multitask_regression
        >>> data = make_multitask_regression(n_tasks=4, n_samples=30, n_features=3,
        ...                                  random_state=0)
        >>> X, y, tasks = data.stack()
        >>> hn = PFedHNRegressor(rounds=50, random_state=0).fit(X[tasks != 3], y[tasks != 3],
        ...                                                    tasks[tasks != 3])
        >>> coef, intercept = hn.fit_new_task(X[tasks == 3], y[tasks == 3], rounds=100)
        >>> coef.shape, type(intercept).__name__
        ((3,), 'float64')
        """
        from sklearn.base import ClassifierMixin
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self, "hypernetwork_")
        try:
            X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        except (TypeError, ValueError) as e:
            raise type(e)(f"invalid X: {e}") from e
        scaling = self._check_intercept()
        if self.hypernetwork_.shape[-2] != self.n_features_in_ + (scaling is not None):
            raise ValueError(
                "fit_intercept was changed after fit (the hypernetwork has "
                f"{self.hypernetwork_.shape[-2]} rows for {self.n_features_in_} features); "
                "refit first"
            )
        X = self._augment(X, scaling)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with one value per row of X, got shape {y.shape}")
        if isinstance(self, ClassifierMixin):
            unknown = ~np.isin(y, self.classes_)
            if unknown.any():
                raise ValueError(
                    f"y contains labels not seen during fit: {np.unique(y[unknown]).tolist()}"
                )
            classes = self.classes_[1:] if self.classes_.shape[0] == 2 else self.classes_
            targets = [np.where(y == c, 1.0, -1.0) for c in classes]
        else:
            targets = [np.asarray(y, dtype=np.float64)]
            if not np.all(np.isfinite(targets[0])):
                raise ValueError("y contains NaN or inf")
        loss = self._check_loss()
        multi = len(targets) > 1
        coefs = []
        for c, target in enumerate(targets):
            Phi = self.hypernetwork_[c] if multi else self.hypernetwork_
            V = self.embeddings_[c] if multi else self.embeddings_
            fmap = None
            if hasattr(self, "feature_map_omega_"):
                omega, b = self.feature_map_omega_, self.feature_map_offset_
                fmap = (omega[c], b[c]) if multi else (omega, b)
            v = fit_new_embedding(
                X,
                target,
                Phi,
                self.alpha_,
                loss.name,
                feature_map=fmap,
                init=V,
                rounds=rounds,
                lr=self.lr_,
            )
            psi = hypernetwork_features(v, *(fmap or (None, None)))
            coefs.append(Phi @ psi)
        coef = np.stack(coefs) if multi else coefs[0]
        if scaling is None:
            return coef, np.zeros(coef.shape[:-1])[()]
        return np.ascontiguousarray(coef[..., :-1]), (scaling * coef[..., -1])[()]


class _FedRepBase(_FedAvgBase):
    _auto_steps = {"lr": ("batch", 0.5)}

    def __init__(
        self,
        alpha: float = 1e-3,
        *,
        loss: str | None = None,
        gamma: float = 1.0,
        rank: int = 2,
        rounds: int = 100,
        rep_steps: int = 1,
        lr: float | str = "auto",
        systems=None,
        random_state=None,
        verbose: int = 0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        checkpoint_dir=None,
        checkpoint_every: int = 0,
    ) -> None:
        self.alpha = alpha
        self.loss = loss
        self.gamma = gamma
        self.rank = rank
        self.rounds = rounds
        self.rep_steps = rep_steps
        self.lr = lr
        self.systems = systems
        self.random_state = random_state
        self.verbose = verbose
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _solve(self, Xs: list, ys: list, loss):
        d = Xs[0].shape[1]
        if self.fit_intercept and isinstance(self.rank, int | np.integer) and self.rank > d:
            # fedrep would name the augmented count as n_features
            raise ValueError(
                f"rank must be at most n_features + 1 = {d} with fit_intercept=True "
                f"(the constant feature is one more dimension), got {self.rank}"
            )
        res = fedrep(
            Xs,
            ys,
            self.rank,
            self.alpha_,
            loss,
            rounds=self.rounds,
            rep_steps=self.rep_steps,
            lr=self._auto_step("lr", Xs, loss),
            systems=self.systems,
            random_state=self.random_state,
            callback=_progress_printer(self.verbose),
            **self._checkpoint_kw(),
        )
        self._parts().append({"representation_": res.representation, "heads_": res.heads})
        return _Fit(res.coef, res.history, res.never_reported)


_FEDREP_DOC = (
    """FedRep {kind}: a shared representation and personal heads, ``w_t = B h_t``.

    Fits :func:`fmtl.federated.fedrep.fedrep`: the server averages an orthonormal ``B``
    (``n_features x rank``) and every task solves its head ``h_t`` exactly (its
    ``rank``-dimensional penalised problem) given ``B``.{ovr}

    Parameters
    ----------
    alpha : float or "auto", default=1e-3
        Penalty ``(alpha/2) ||h_t||^2`` on the heads (``lam`` of ``fedrep``).
        ``"auto"``: ``r^2 / N`` (``r^2`` the mean squared norm of the ``N`` rows), as
        :class:`fmtl.GlobalClassifier`; the value used is ``alpha_``.
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.{loss_note}
    rank : int, default=2
        Dimension ``k`` of the representation (``1 <= k <= n_features``, or
        ``n_features + 1`` with ``fit_intercept``).
    rounds : int, default=100
    rep_steps : int, default=1
        Local gradient steps on ``B`` per round.
    lr : float or "auto", default="auto"
        Their step size. ``"auto"``: ``min(0.5, 1 / L)``, ``L = max_t c ||X_t||_2^2 / n_t
        + alpha`` with ``c`` the loss's smoothness (as Per-FedAvg's ``a``): the former
        default 0.5, lowered where the task objectives are steeper; the value used is
        ``lr_``.
    systems : fmtl.federated.SystemsModel, optional
        Heterogeneous work, drops and the cost model of the federated rounds.
    random_state : int, Generator or None
        Seeds the initial ``B`` and the systems model's draws.
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
{intercept_rep}
    Attributes
    ----------
    lr_ : float
        The step size used (``lr`` or its ``"auto"`` value).
    coef_ : ndarray of shape ({lead}n_tasks, n_features)
        Personal models ``B h_t`` (without the constant feature's row).
    intercept_ : ndarray of shape ({lead}n_tasks,)
        ``intercept_scaling * (B h_t)[-1]`` (zeros with ``fit_intercept=False``).
    representation_ : ndarray of shape ({lead}n_features + fit_intercept, rank)
        ``B`` (orthonormal columns); with ``fit_intercept`` its last row acts on the
        constant feature.
    heads_ : ndarray of shape ({lead}n_tasks, rank)
    tasks_ : ndarray of shape (n_tasks,)
    history_ : fmtl.federated.History{hist}

"""
    + _RAISES
    + """    Examples
    --------
    >>> from fmtl.personalized import FedRep{cls}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> X, y, tasks = make_multitask_{data}(n_tasks=3, n_samples=30, n_features=4,
    ...                                     random_state=0).stack()
    >>> est = FedRep{cls}(rounds=10, random_state=0).fit(X, y, tasks)
    >>> est.coef_.shape, est.intercept_.shape, est.heads_.shape
    ((3, 4), (3,), (3, 2))
    >>> est.representation_.shape  # one more row: the intercept's constant feature
    (5, 2)
    """
)

_FEDREP_CLF = dict(
    ovr=" More than two classes: one-vs-rest, one FedRep fit per class.",
    lead="[n_classes, ]",
    hist="\n        Multiclass: every class's records in turn, with a ``class_index`` column.",
    loss_note='\n    gamma : float, default=1.0\n        Smoothing of ``"smoothed_hinge"``.',
    **_CLF,
)
_FEDREP_REG = dict(
    ovr="",
    lead="",
    hist="",
    loss_note=(
        "\n    gamma : float, default=1.0\n"
        "        Unused by the squared loss (the classifiers' smoothed hinge)."
    ),
    **_REG,
)


_PERFEDAVG_DOC = (
    """{method} {kind} (see :func:`fmtl.federated.{func}`).

    Parameters
    ----------
    alpha : float or "auto", default=1e-3
        L2 weight ``lambda`` of every task's objective.
        ``"auto"``: ``r^2 / N`` (``r^2`` the mean squared norm of the ``N`` rows), as
        :class:`fmtl.GlobalClassifier`; the value used is ``alpha_``.
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.
    a : float or "auto", default="auto"
        Adaptation step size of the MAML objective and of the personal models.
        ``"auto"``: ``1 / L`` with ``L = max_t c ||X_t||_2^2 / n_t + alpha`` the largest
        smoothness constant of the task objectives (``c`` = 1/4 for the logistic loss, 1
        for the squared loss): the largest step that surely decreases every ``F_t``.
    beta : float or "auto", default="auto"
        Local (outer) step size. ``"auto"``: ``min(0.1, 1 / L)`` with ``L`` the
        smoothness bound of ``a``'s rule (with ``a <= 1/L`` the meta-objective is
        ``L``-smooth too), so the default cannot overflow on any feature scale.
    rounds : int, default=200
        Federated rounds.
    local_steps : int, default=1
        Local MAML steps per round (fewer under systems heterogeneity, at least one).
    order : {{1, 2}}, default=2
        2: exact MAML gradient (Hessian-vector products); 1: first-order MAML.
    adapt_steps : int, default=5
        Gradient steps of size ``a`` from the global model that make each personal model
        (one step of ``1 / L`` barely moves on well-conditioned data: five personalise).
    inner_steps : int, default=1
        Adaptation steps inside the MAML objective (k-step MAML).
    systems : fmtl.federated.SystemsModel, optional
        Heterogeneous work, drops and the cost model of the federated rounds.
    random_state : int, Generator or None
        Seeds the systems model's draws.
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
{intercept}
    Attributes
    ----------
    coef_ : ndarray of shape (n_tasks, n_features)
        Personal models.
    intercept_ : ndarray of shape (n_tasks,)
        Their intercepts (zeros with ``fit_intercept=False``).
    a_ : float
        The adaptation step used (``a`` or its ``"auto"`` value).
    beta_ : float
        The outer step used (``beta`` or its ``"auto"`` value).
    global_coef_ : ndarray of shape (n_features,)
        The meta-model ``w``.
    global_intercept_ : float
        Its intercept.
    tasks_ : ndarray of shape (n_tasks,)
    history_ : fmtl.federated.History
        ``primal``: the MAML objective at the global model, per recorded round.
    never_reported_ : ndarray
        Tasks whose node never reported a round.

"""
    + _RAISES
    + """    Examples
    --------
    >>> from fmtl.personalized import {name}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> X, y, tasks = make_multitask_{data}(n_tasks=3, n_samples=30, n_features=4,
    ...                                     random_state=0).stack()
    >>> {name}(rounds=10).fit(X, y, tasks).coef_.shape
    (3, 4)
    """
)

_CLF2 = {**_CLF, "losses": '{"logistic"}', "default": "logistic"}


class PerFedAvgClassifier(_TaskClassifierMixin, _PerFedAvgBase):
    __doc__ = _PERFEDAVG_DOC.format(
        method="Per-FedAvg (MAML)", func="perfedavg.perfedavg", name="PerFedAvgClassifier", **_CLF2
    )
    _loss_choices = ("logistic",)


class PerFedAvgRegressor(_TaskRegressorMixin, _PerFedAvgBase):
    __doc__ = _PERFEDAVG_DOC.format(
        method="Per-FedAvg (MAML)", func="perfedavg.perfedavg", name="PerFedAvgRegressor", **_REG
    )


_PFEDHN_DOC = (
    """pFedHN {kind}: a server hypernetwork maps client embeddings to models.

    ``w_t = Phi v_t`` (``hypernetwork="linear"``) or ``w_t = Phi psi(v_t)`` with ``psi`` a
    fixed random-Fourier-feature map of the embedding (``"rff"``: an RBF-kernel hypernetwork,
    so ``w_t`` may depend non-linearly on ``v_t``); clients take local gradient steps and the
    server updates ``Phi`` and the embeddings by the chain rule
    (:func:`fmtl.federated.pfedhn.pfedhn`). :meth:`fit_new_task` fits an unseen client
    through its embedding alone.

    Parameters
    ----------
    alpha : float or "auto", default=1e-3
        L2 weight ``lambda`` of every task's objective.
        ``"auto"``: ``r^2 / N`` (``r^2`` the mean squared norm of the ``N`` rows), as
        :class:`fmtl.GlobalClassifier`; the value used is ``alpha_``.
    loss : {losses} or None, default=None
        ``None`` means ``"{default}"``.
    embedding_dim : int, default=2
        ``k``, the size of each client's embedding.
    hypernetwork : {{"linear", "rff"}}, default="linear"
    n_components : int, default=100
        Random features of ``"rff"``.
    kernel_gamma : float, default=1.0
        RBF width of ``"rff"`` in embedding space.
    lr : float or "auto", default="auto"
        The clients' gradient step. ``"auto"``: ``min(0.5, 1 / L)``, ``L = max_t c
        ||X_t||_2^2 / n_t + alpha`` with ``c`` the loss's smoothness (1/4 logistic, 1
        squared): the former default 0.5, lowered where the task objectives are steeper
        (0.5 diverges on the standardised School data); the value used is ``lr_``.
    rounds, local_steps, eta, systems, random_state
        As in :func:`fmtl.federated.pfedhn.pfedhn`.
    verbose : int, default=0
        0: silent. ``k > 0``: print the certificates (primal; duality gap and joint gap,
        or gradient norm, where the method has them) every ``k`` federated rounds to
        stdout and, when stderr is a terminal, a progress bar there over the round
        budget with elapsed time and ETA (a fit that stops early ends short of it).
{intercept_hn}
    Attributes
    ----------
    lr_ : float
        The step size used (``lr`` or its ``"auto"`` value).
    coef_ : ndarray of shape (n_tasks, n_features)
        Personal models (stacked per class for a multiclass classifier, as are the others).
    intercept_ : ndarray of shape (n_tasks,)
        Their intercepts (zeros with ``fit_intercept=False``).
    hypernetwork_ : ndarray of shape (n_features + fit_intercept, embedding_dim or \
n_components)
        ``Phi``; with ``fit_intercept`` its last row generates the constant feature's
        weight (``intercept_ = intercept_scaling * (Phi psi(v_t))[-1]``).
    embeddings_ : ndarray of shape (n_tasks, embedding_dim)
        The ``v_t``.
    feature_map_omega_, feature_map_offset_ : ndarray
        ``"rff"`` only: the map ``psi(v) = sqrt(2/D) cos(omega v + offset)`` (see
        :func:`fmtl.federated.pfedhn.hypernetwork_features`).
    tasks_ : ndarray of shape (n_tasks,)
    history_ : fmtl.federated.History
    never_reported_ : ndarray

"""
    + _RAISES
    + """    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.personalized import {name}
    >>> from fmtl.datasets import make_multitask_{data}
    >>> data = make_multitask_{data}(n_tasks=4, n_samples=30, n_features=4, random_state=0)
    >>> X, y, tasks = data.stack()
    >>> est = {name}(hypernetwork="rff", n_components=20, rounds=10, random_state=0)
    >>> est = est.fit(X, y, tasks)
    >>> est.coef_.shape, est.intercept_.shape, est.embeddings_.shape
    ((4, 4), (4,), (4, 2))
    >>> est.hypernetwork_.shape  # one more row: the intercept's constant feature
    (5, 20)
    >>> est.fit_new_task(data.X[0], data.y[0], rounds=20)[0].shape  # a "new" client
    (4,)
    """
)


class PFedHNClassifier(_TaskClassifierMixin, _PFedHNBase):
    __doc__ = _PFEDHN_DOC.format(name="PFedHNClassifier", **_CLF2)
    _loss_choices = ("logistic",)


class PFedHNRegressor(_TaskRegressorMixin, _PFedHNBase):
    __doc__ = _PFEDHN_DOC.format(name="PFedHNRegressor", **_REG)


class FedRepRegressor(_TaskRegressorMixin, _FedRepBase):
    __doc__ = _FEDREP_DOC.format(**_FEDREP_REG)


class FedRepClassifier(_TaskClassifierMixin, _FedRepBase):
    __doc__ = _FEDREP_DOC.format(**_FEDREP_CLF)
    _loss_choices = ("logistic", "smoothed_hinge", "hinge")
