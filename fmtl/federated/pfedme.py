"""pFedMe (T. Dinh et al., NeurIPS 2020) on linear models with exact personal steps.

pFedMe minimises ``sum_t p_t Fhat_t(w)`` over a global ``w``, with the Moreau envelopes
``Fhat_t(w) = min_theta F_t(theta) + (mu/2) ||theta - w||^2`` and ``F_t(theta) = mean_i
l(y_ti, theta.x_ti) + (lam/2) ||theta||^2``. The personal models are the minimisers
``theta_t(w)`` (solved exactly by SDCA: :func:`fmtl.federated.ditto.personal_models`), and
``grad Fhat_t(w) = mu (w - theta_t(w))``, so a round is a gradient step on a ``mu``-smooth
convex function:

    w <- w - beta sum_t p_t (w - theta_t(w))      (beta = eta mu in the paper's notation)

Relation to MTL: with uniform weights ``p_t = 1/m`` the joint problem ``min_{w, theta}
sum_t [F_t(theta_t) + (mu/2) ||theta_t - w||^2]`` is mean-regularised MTL, so pFedMe's
personal models converge to ``mocha(..., sigma=mean_regularized_sigma(m, mu/lam))`` with
``lam_fmtl = lam / c``, ``c = 1 + (m-1)/(1 + mu/lam)`` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..losses import get_loss
from ._loop import (
    as_tasks,
    check_frac,
    check_lam,
    check_nonneg,
    check_positive_int,
    draw_seeds,
    numba_threads,
)
from ._rounds import RoundLoop
from .ditto import personal_models, prox_sdca
from .history import History
from .systems import SystemsModel, local_phase_time


@dataclass
class PFedMeResult:
    """What :func:`pfedme` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Personal models ``theta_t(w)`` at the final ``w``.
    global_coef : ndarray of shape (n_features,)
        The final global model ``w``.
    history : History
        ``primal``: ``sum_t p_t Fhat_t(w)`` (envelope objective), ``grad_norm``: the norm of
        its gradient, at the model after each recorded round (evaluated exactly).
    never_reported : ndarray of int, default=empty
        Nodes that never reported a round (the systems model dropped them every time).
    personalization_time : float, default=0.0
        Estimated time of the local phase after the last round that makes the personal
        models (each node's exact personal solve at the final ``w``;
        :func:`fmtl.federated.systems.local_phase_time`): add it to
        ``history["est_time"][-1]`` for the time the personal models cost.

    Raises
    ------
    TypeError
        If a field other than ``never_reported`` is missing (dataclass constructor).

    See Also
    --------
    pfedme : Produces it.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import pfedme
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> res = pfedme(Xs, ys, lam=0.1, mu=1.0, rounds=5)
    >>> res.coef.shape, res.global_coef.shape, len(res.history), res.never_reported.size
    ((2, 3), (3,), 5, 0)
    >>> bool(res.history["grad_norm"][-1] < res.history["grad_norm"][0])
    True
    """

    coef: np.ndarray
    global_coef: np.ndarray
    history: History
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    personalization_time: float = 0.0


def pfedme(
    Xs,
    ys,
    lam: float,
    mu: float = 1.0,
    loss="logistic",
    *,
    gamma: float = 1.0,
    rounds: int = 100,
    beta: float = 1.0,
    weights: str = "samples",
    tol: float = 1e-10,
    grad_tol: float = 0.0,
    local_passes: float | None = None,
    systems: SystemsModel | None = None,
    random_state=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
) -> PFedMeResult:
    """Fit pFedMe with exact personal steps.

    Each round the reporting nodes compute their personal models ``theta_t(w)`` (the
    Moreau-envelope minimisers, by SDCA) and the server takes a gradient step on the
    envelope objective (see the module docstring).

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
        Per-task design matrices (dense or sparse) and targets (labels in {-1, +1} for a
        classification loss).
    lam : float
        L2 weight in every ``F_t``.
    mu : float, default=1.0
        Proximal weight (``mu > 0``).
    loss : {"logistic", "squared", "smoothed_hinge", "hinge"}, default="logistic"
        The loss ``l``.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    rounds : int, default=100
        Maximum number of federated rounds.
    beta : float in (0, 1], default=1.0
        Global step ``beta / mu`` on the envelope (``1``: ``w`` becomes the weighted mean of
        the personal models; any ``beta <= 1`` is a safe step for the ``mu``-smooth
        envelope).
    weights : {"samples", "uniform"}, default="samples"
        ``p_t = n_t / N`` or ``1 / m``.
    tol : float, default=1e-10
        Relative local duality gap of each personal solve.
    grad_tol : float, default=0.0
        Stop once ``||sum_t p_t (w - theta_t)|| <= grad_tol`` (checked at recorded rounds).
    local_passes : float, optional
        ``None``: each node solves its personal problem exactly (to ``tol``; the estimated
        time counts the slowest node's SDCA steps). A number: each node makes that many
        SDCA passes (scaled by the systems model's work fraction) on its personal problem,
        warm-started from its previous duals -- the inexact personal step of the paper's
        K inner iterations; ``theta_t`` is then approximate.
    systems : SystemsModel, optional
        Heterogeneous local work, drops and the cost model (8 per SDCA step), as for every
        fmtl method; only the nodes that report move ``w``.
    random_state : int, Generator or None
        Seeds the systems model's draws and the coordinate orders of inexact passes.
    eval_every : int, default=1
        Record the History every this many rounds (and after the last).
    callback : callable, optional
        Called with each History record.
    checkpoint_dir, checkpoint_every, resume
        Checkpoint / resume, as :func:`fmtl.federated.fedavg.fedavg` (the checkpoint holds
        the global model and, with ``local_passes``, the personal problems' duals).

    Returns
    -------
    PFedMeResult
        Personal models, the global model and the History.

    Raises
    ------
    ValueError
        For invalid data or parameters (named): an unknown ``loss`` or bad ``gamma``;
        ``lam`` or ``mu`` not positive and finite; ``rounds`` or ``eval_every`` not an
        integer >= 1; ``tol`` or ``grad_tol`` negative or not finite; ``beta`` not in (0, 1];
        ``weights`` not ``"samples"`` or ``"uniform"``; ``local_passes`` (when given) not
        positive and finite; invalid data (no tasks, mismatched lengths, non-2-D or
        non-finite arrays, labels not in {-1, +1} for a classification loss); a
        ``systems`` model that does not fit the tasks (``drop_prob`` length,
        ``dead_nodes``); a negative
        ``checkpoint_every`` or one without ``checkpoint_dir``; or an unreadable checkpoint
        or one of another problem.
    TypeError
        For non-numeric data, ``ys`` None, or a ``systems`` that is not a
        :class:`SystemsModel`.
    RuntimeError
        If a node fails its personal step more than ``systems.max_failures`` times.

    See Also
    --------
    PFedMeResult : The result.
    fmtl.federated.ditto.personal_models : The exact personal step.
    fmtl.federated.ditto.ditto : Personal models around FedAvg's centre instead.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 3)) for _ in range(3)]
    >>> ys = [np.sign(X @ rng.normal(size=3)) for X in Xs]
    >>> res = pfedme(Xs, ys, lam=0.01, mu=0.5, rounds=30)
    >>> bool(res.history["grad_norm"][-1] < res.history["grad_norm"][0])
    True
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    mu = check_frac("mu", mu)
    rounds = check_positive_int("rounds", rounds)
    grad_tol = check_nonneg("grad_tol", grad_tol)
    tol = check_nonneg("tol", tol)
    if not (isinstance(beta, int | float) and 0 < beta <= 1):
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    if weights not in ("samples", "uniform"):
        raise ValueError(f"weights must be 'samples' or 'uniform', got {weights!r}")
    if local_passes is not None:
        local_passes = check_frac("local_passes", local_passes)
    tasks = as_tasks(Xs, ys, loss)
    m, d = tasks.n_tasks, tasks.n_features
    n = tasks.n_samples.astype(np.float64)
    p = n / n.sum() if weights == "samples" else np.full(m, 1.0 / m)
    exact_mode = local_passes is None
    loop = RoundLoop(
        tasks.n_samples,
        systems,
        8.0 * (1.0 if exact_mode else local_passes),
        random_state,
        eval_every,
        callback,
        slowest_node_time=exact_mode,
    )
    owner = np.repeat(np.arange(m), tasks.n_samples)
    w = np.zeros(d)
    warm = (np.zeros(tasks.y.shape[0]), np.zeros((m, d)))
    # theta_t(w) at the current w, solved to tol: shared by the evaluation, the next
    # round's clients (exact mode) and the final personal models
    cache: dict = {}

    def exact(w):
        if cache.get("w") is not w:
            cache["w"] = w
            cache["theta"], _, cache["done"] = personal_models(
                tasks, None, lam, mu, w, loss, tol=tol, return_steps=True
            )
        return cache["theta"], cache["done"]

    def client(active, steps, h):
        if exact_mode:
            theta, done = exact(w)
            loop.steps_done[:] = np.where(active, done, 0)
            return theta
        budget = np.floor(local_passes * steps).astype(np.int64)
        theta, _, _ = prox_sdca(
            tasks, lam, mu, np.tile(w, (m, 1)), loss,
            steps=np.where(active, np.maximum(budget, 1), 0),
            seeds=draw_seeds(loop.rng, m), active=active, state=warm,
        )  # fmt: skip
        return theta

    def server(theta, ok, h):
        nonlocal w
        q = loop.weights(p, ok)
        w = w - beta * (q @ np.where(ok[:, None], w - theta, 0.0))

    def evaluate():
        theta, _ = exact(w)
        z = _margins(tasks, theta[owner])
        ell = np.bincount(owner, loss.value(tasks.y, z), minlength=m) / np.maximum(n, 1)
        env = ell + lam / 2 * np.sum(theta**2, 1) + mu / 2 * np.sum((theta - w) ** 2, 1)
        return {"primal": float(p @ env), "grad_norm": float(mu * np.linalg.norm(p @ (w - theta)))}

    def state():
        return {"w": w, "alpha": warm[0], "b": warm[1]}

    def restore(arrays):
        nonlocal w
        w = arrays["w"]  # a new array: exact()'s cache (keyed on w's identity) recomputes
        warm[0][:], warm[1][:] = arrays["alpha"], arrays["b"]

    loop.checkpoint(
        checkpoint_dir,
        checkpoint_every,
        resume,
        tasks,
        "pfedme",
        random_state,
        lam=lam,
        mu=mu,
        loss=[loss.name, loss.param],
        rounds=rounds,
        beta=float(beta),
        weights=weights,
        tol=tol,
        grad_tol=grad_tol,
        local_passes=local_passes,
        systems=systems,
        eval_every=eval_every,
    )
    with numba_threads(None):
        loop.run(
            rounds,
            client,
            server,
            evaluate,
            lambda v: v["grad_norm"] <= grad_tol,
            True,
            state=state,
            restore=restore,
        )
        theta, steps = exact(w)
    silent = loop.finish()
    return PFedMeResult(
        coef=theta,
        global_coef=w,
        history=loop.history,
        never_reported=silent,
        personalization_time=local_phase_time(steps, 8.0, systems),
    )


def _margins(tasks, rows: np.ndarray) -> np.ndarray:
    # x_i . rows_i for every stored row, without densifying CSR data
    if tasks.sparse:
        import scipy.sparse as sp

        X = sp.csr_matrix(
            (tasks.data, tasks.indices, tasks.indptr), shape=(tasks.offsets[-1], tasks.n_features)
        )
        return np.asarray(X.multiply(rows).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", tasks.Xd, rows)
