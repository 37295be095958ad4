"""Ditto (Li et al., ICML 2021) on linear models: a global model, then personal models kept
near it by a proximal term.

Global: FedAvg (:func:`fmtl.federated.fedavg.fedavg`) on ``F(w) = sum_t (n_t/N) F_t(w)``
with ``F_t(w) = mean_i l(y_ti, w.x_ti) + (lam/2) ||w||^2``. Personal: each node solves

    v_t = argmin_v  F_t(v) + (mu/2) ||v - w||^2,

a strongly convex problem fmtl solves *exactly* (to a local duality gap ``tol``) with the
same numba SDCA kernel as MOCHA: it is MOCHA's local subproblem with centre ``mu w /
(lam + mu)`` and regularisation ``lam + mu``, started from zero duals. (The original
alternates SGD steps on both; with convex losses the exact personal step is its limit.)

Relation to MTL: if the centre is the mean of the personal models, ``w = mean_t v_t``, the
personal models of the joint problem ``min_{v, w} sum_t F_t(v_t) + (mu/2) sum_t ||v_t -
w||^2`` are mean-regularised MTL, ``sum_t mean_i l + (lam/2) tr(V (I + (mu/lam)(I -
11^T/m)) V^T)`` — in fmtl's parameterisation ``Sigma = mean_regularized_sigma(m, mu/lam)``
with ``lam_fmtl = lam / c``, ``c = 1 + (m-1)/(1 + mu/lam)``. Ditto's centre is the FedAvg
optimum instead of that mean, which is where the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..losses import get_loss
from ._loop import as_tasks, check_lam, check_nonneg, parallel_worth_it, run_sdca
from .fedavg import FedAvgResult, fedavg
from .history import History
from .systems import local_phase_time


@dataclass
class DittoResult:
    """What :func:`ditto` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Personal models ``v_t``.
    global_coef : ndarray of shape (n_features,)
        The centre ``w`` (FedAvg's model, or the one given).
    local_gap : ndarray of shape (n_tasks,)
        Each personal problem's final duality gap (a certificate of ``v_t``).
    history : History
        FedAvg's History (empty when ``global_coef`` was given).
    personalization_time : float, default=0.0
        Estimated time of the personal solves after FedAvg's last round (the slowest
        node's SDCA steps; :func:`fmtl.federated.systems.local_phase_time`): add it to
        ``history["est_time"][-1]`` for the time the personal models cost.

    Raises
    ------
    TypeError
        If a field other than ``personalization_time`` is missing (dataclass constructor).

    See Also
    --------
    ditto : Produces it.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import ditto
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> res = ditto(Xs, ys, lam=0.1, mu=1.0, rounds=5, random_state=0)
    >>> res.coef.shape, res.global_coef.shape, res.local_gap.shape, len(res.history)
    ((2, 3), (3,), (2,), 5)
    >>> bool(np.all(res.local_gap < 1e-8))
    True
    """

    coef: np.ndarray
    global_coef: np.ndarray
    local_gap: np.ndarray
    history: History
    personalization_time: float = 0.0


def personal_models(
    Xs,
    ys,
    lam: float,
    mu: float,
    w: np.ndarray,
    loss="logistic",
    *,
    gamma: float = 1.0,
    tol: float = 1e-10,
    max_passes: int = 10_000,
    return_steps: bool = False,
) -> tuple[np.ndarray, ...]:
    """Exact ``argmin_v F_t(v) + (mu/2) ||v - w||^2`` for every task, and its duality gap.

    Each task's problem is solved by SDCA (:func:`prox_sdca`) from zero duals, with
    ``F_t(v) = mean_i l(y_ti, v.x_ti) + (lam/2) ||v||^2``.

    Parameters
    ----------
    Xs, ys : lists of per-task arrays, or Xs a PackedTasks and ys None
        Per-task design matrices (dense or sparse) and targets (labels in {-1, +1} for a
        classification loss).
    lam : float
        ``lam > 0`` of ``F_t``.
    mu : float
        Proximal weight ``mu >= 0`` (0: purely local models).
    w : ndarray of shape (n_features,)
        The centre.
    loss : {"logistic", "squared", "smoothed_hinge", "hinge"}, default="logistic"
        The loss ``l``.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    tol : float, default=1e-10
        Stop once each task's local duality gap is at most ``tol`` times its start.
    max_passes : int, default=10000
        Cap on each task's SDCA passes over its data (not validated).
    return_steps : bool, default=False
        Also return the SDCA steps each task made (its work, for the cost model).

    Returns
    -------
    V : ndarray of shape (n_tasks, n_features)
        The personal models ``v_t`` (rows).
    gaps : ndarray of shape (n_tasks,)
        Each task's final local duality gap (a certificate of ``v_t``).
    steps : ndarray of int, shape (n_tasks,)
        Only with ``return_steps=True``.

    Raises
    ------
    ValueError
        For an unknown ``loss`` or bad ``gamma``; ``lam`` not positive and finite; ``mu``
        or ``tol`` negative or not finite; ``w`` not a finite vector of shape
        ``(n_features,)``; or
        invalid data (no tasks, mismatched lengths, non-2-D or non-finite arrays, labels
        not in {-1, +1} for a classification loss).
    TypeError
        For non-numeric ``Xs`` or ``ys``, or ``ys`` None with ``Xs`` not a PackedTasks.

    See Also
    --------
    ditto : Uses it around FedAvg's global model.
    fmtl.federated.pfedme.pfedme : Uses it for pFedMe's exact personal steps.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 3)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> V, gaps = personal_models(Xs, ys, 0.1, 1.0, np.zeros(3), "squared")
    >>> V.shape, bool(np.all(gaps < 1e-9))
    ((2, 3), True)
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    mu = check_nonneg("mu", mu)
    tol = check_nonneg("tol", tol)
    tasks = as_tasks(Xs, ys, loss)
    m, d = tasks.n_tasks, tasks.n_features
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (d,) or not np.all(np.isfinite(w)):
        raise ValueError(f"w must be a finite vector of shape ({d},), got shape {w.shape}")
    V, gaps, done = prox_sdca(
        tasks,
        lam,
        mu,
        np.tile(w, (m, 1)),
        loss,
        steps=(tasks.n_samples * max_passes).astype(np.int64),
        seeds=np.arange(1, m + 1, dtype=np.uint64),
        active=np.ones(m, dtype=bool),
        tol=tol,
    )
    return (V, gaps, done) if return_steps else (V, gaps)


def prox_sdca(
    tasks,
    lam: float,
    mu: float,
    centres: np.ndarray,
    loss,
    *,
    steps: np.ndarray,
    seeds: np.ndarray,
    active: np.ndarray,
    tol: float = 0.0,
    state: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SDCA on ``min_v F_t(v) + (mu/2) ||v - c_t||^2`` for the active tasks (packed data).

    It is MOCHA's local subproblem with centre ``mu c_t / (lam + mu)`` and regularisation
    ``lam + mu``. ``state = (alpha, b)`` warm-starts from earlier duals (``b`` rows
    ``X_t^T alpha_t / n_t``; both updated in place); without it the duals start at zero.
    Task ``t`` runs ``steps[t]`` coordinate steps or stops at local gap ``<= tol`` times its
    start. A low-level kernel driver: it validates nothing (the callers do).

    Parameters
    ----------
    tasks : PackedTasks
        Packed per-task data (:func:`fmtl.federated._loop.as_tasks`).
    lam : float
        L2 weight of ``F_t`` (``> 0``).
    mu : float
        Proximal weight (``>= 0``).
    centres : ndarray of shape (n_tasks, n_features)
        The centres ``c_t`` (rows).
    loss : Loss
        A resolved loss (:func:`fmtl.losses.get_loss`).
    steps : ndarray of int of shape (n_tasks,)
        Coordinate-step budget of each task.
    seeds : ndarray of uint64 of shape (n_tasks,)
        Seeds of each task's coordinate order.
    active : ndarray of bool of shape (n_tasks,)
        Tasks that run; the others keep their duals.
    tol : float, default=0.0
        Relative local duality gap at which a task stops early (0: run the budget).
    state : tuple (alpha, b), optional
        Warm-start duals, updated in place.

    Returns
    -------
    V : ndarray of shape (n_tasks, n_features)
        Primal points (rows of inactive tasks: their centre's point at the current duals).
    gaps : ndarray of shape (n_tasks,)
        The final local duality gaps.
    done : ndarray of int of shape (n_tasks,)
        The coordinate steps each task made.

    Raises
    ------
    ValueError
        Only from numpy (e.g. ``centres`` whose shape does not broadcast to ``(n_tasks,
        n_features)``); nothing is validated: bad ``lam``, ``mu``, ``loss`` or array
        types/lengths are not checked and may give numba typing errors or wrong results.

    See Also
    --------
    personal_models : The validated, exact-solve front end.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated._loop import as_tasks
    >>> from fmtl.losses import get_loss
    >>> rng = np.random.default_rng(0)
    >>> tasks = as_tasks([rng.normal(size=(20, 3)) for _ in range(2)],
    ...                  [rng.normal(size=20) for _ in range(2)])
    >>> V, gaps, done = prox_sdca(tasks, 0.1, 1.0, np.zeros((2, 3)), get_loss("squared"),
    ...                           steps=np.full(2, 20_000), seeds=np.array([1, 2], np.uint64),
    ...                           active=np.ones(2, dtype=bool), tol=1e-10)
    >>> V.shape, bool(np.all(gaps < 1e-8)), bool(np.all(done > 0))
    ((2, 3), True, True)
    """
    m, d = tasks.n_tasks, tasks.n_features
    lam2 = lam + mu
    if state is None:
        state = (np.zeros(tasks.y.shape[0]), np.zeros((m, d)))
    alpha, b = state
    Wt = mu * np.asarray(centres) / lam2 + b / lam2
    dB = np.zeros((m, d))
    done = np.zeros(m, dtype=np.int64)
    g0, g1 = np.empty(m), np.empty(m)
    args = (alpha, np.ascontiguousarray(Wt), np.ones(m), 1.0, lam2, loss.code, loss.param)
    budget = (np.asarray(steps, dtype=np.int64), np.asarray(seeds, dtype=np.uint64))
    local = (np.asarray(active, dtype=bool), float(tol), np.zeros(m, dtype=np.int64), True, True)
    run_sdca(tasks, (*args, *budget, *local, dB, done, g0, g1), parallel_worth_it(tasks))
    b += dB
    # v = centre part + b / lam2: the primal point of the local subproblem
    return Wt + dB / lam2, g1, done


def ditto(
    Xs,
    ys,
    lam: float,
    mu: float = 1.0,
    loss="logistic",
    *,
    gamma: float = 1.0,
    global_coef: np.ndarray | None = None,
    tol: float = 1e-10,
    random_state=None,
    **fedavg_kw,
) -> DittoResult:
    """Fit Ditto: FedAvg's global model, then exact personal models around it.

    The centre ``w`` is :func:`fmtl.federated.fedavg.fedavg`'s global model (or
    ``global_coef``); each personal model ``v_t`` then solves ``F_t(v) + (mu/2) ||v -
    w||^2`` exactly (:func:`personal_models`).

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
        Per-task design matrices (dense or sparse) and targets (labels in {-1, +1} for a
        classification loss).
    lam : float
        L2 weight in every ``F_t``.
    mu : float, default=1.0
        Proximal weight: 0 gives local models, ``mu -> inf`` the global one.
    loss : {"logistic", "squared", "smoothed_hinge", "hinge"}, default="logistic"
        The loss ``l``.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    global_coef : ndarray of shape (n_features,), optional
        Use this centre instead of running FedAvg.
    tol : float, default=1e-10
        Relative local duality gap of the personal solves.
    random_state : int, Generator or None
        Seeds FedAvg (unused when ``global_coef`` is given).
    **fedavg_kw
        Passed to :func:`fmtl.federated.fedavg.fedavg` (``rounds``, ``lr``, ...), also
        ``checkpoint_dir``, ``checkpoint_every`` and ``resume``: the checkpoint holds
        FedAvg's rounds, and the personal models (deterministic) are solved again from it.

    Returns
    -------
    DittoResult
        Personal models, the centre, the personal problems' duality gaps and FedAvg's
        History.

    Raises
    ------
    ValueError
        For an unknown ``loss`` or bad ``gamma``; ``lam`` not positive and finite; ``mu``
        or ``tol`` negative or not finite; a ``global_coef`` that is not a finite vector of shape
        ``(n_features,)``; invalid data (no tasks, mismatched lengths, non-2-D or
        non-finite arrays, labels not in {-1, +1} for a classification loss); or any
        FedAvg argument in ``fedavg_kw`` out of range (see
        :func:`fmtl.federated.fedavg.fedavg`).
    TypeError
        For non-numeric data, an unknown keyword in ``fedavg_kw``, or the
        ``TypeError`` cases of :func:`fmtl.federated.fedavg.fedavg` (``lr``,
        ``systems``, ``executor``).
    RuntimeError
        If a FedAvg node fails its local solve more than ``systems.max_failures`` times.

    See Also
    --------
    DittoResult : The result.
    personal_models : The personal step alone, for a given centre.
    fmtl.federated.pfedme.pfedme : The same personal problem, with the centre learned.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(40, 3)) for _ in range(3)]
    >>> ys = [np.sign(X @ rng.normal(size=3)) for X in Xs]
    >>> res = ditto(Xs, ys, lam=0.01, mu=0.1, rounds=50, random_state=0)
    >>> res.coef.shape
    (3, 3)
    """
    tol = check_nonneg("tol", tol)  # before FedAvg's rounds, not after them
    if global_coef is None:
        fa: FedAvgResult = fedavg(
            Xs, ys, lam, loss, gamma=gamma, random_state=random_state, **fedavg_kw
        )
        w, history = fa.global_coef, fa.history
    else:
        w, history = np.asarray(global_coef, dtype=np.float64), History()
    V, gaps, steps = personal_models(
        Xs, ys, lam, mu, w, loss, gamma=gamma, tol=tol, return_steps=True
    )
    cost = local_phase_time(steps, 8.0, fedavg_kw.get("systems"))
    return DittoResult(
        coef=V, global_coef=w, local_gap=gaps, history=history, personalization_time=cost
    )
