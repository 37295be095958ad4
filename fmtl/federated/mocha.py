"""MOCHA (Smith et al., NeurIPS 2017, Algorithm 1) with certified duality gaps.

State kept by the server: ``B`` (row ``t`` is ``b_t = X_t^T a_t / n_t``), ``Sigma``,
``Omega``; the model is always ``W = W(alpha) = Sigma B / lam`` (rows are tasks), which
makes every reported gap a certificate (DESIGN.md section 2, point 3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from ..losses import Loss, get_loss
from ..relationships import check_sigma, identity_sigma, omega_update, safety_rho
from ..solvers._packing import PackedTasks, pack_tasks
from ..solvers.sdca import sdca_round, task_objective_terms
from .history import History


@dataclass
class MochaResult:
    """What :func:`mocha` returns.

    Attributes
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Task models (``W^T``), equal to ``Sigma B / lam``.
    sigma, omega : ndarray of shape (n_tasks, n_tasks)
        Final relationship and its inverse (``coef`` is the W-step solution for them).
    dual_coef : ndarray of shape (n_samples_total,)
        Dual variables, stacked task after task.
    history : History
        One record per evaluated federated round.
    """

    coef: np.ndarray
    sigma: np.ndarray
    omega: np.ndarray
    dual_coef: np.ndarray
    B: np.ndarray
    history: History


def objective_terms(tasks: PackedTasks, alpha: np.ndarray, Wt: np.ndarray, loss: Loss):
    """Per-task mean loss at ``Wt`` and mean ``-l*(-alpha)`` (jitted, parallel)."""
    m = tasks.n_tasks
    loss_mean = np.empty(m)
    conj_mean = np.empty(m)
    task_objective_terms(
        *tasks.kernel_args,
        alpha,
        np.ascontiguousarray(Wt),
        loss.code,
        loss.param,
        loss_mean,
        conj_mean,
    )
    return loss_mean, conj_mean


def certificates(
    tasks: PackedTasks,
    alpha: np.ndarray,
    B: np.ndarray,
    Sigma: np.ndarray,
    lam: float,
    loss: Loss,
    sigma_floor: float | None = None,
) -> dict:
    """Primal, dual and duality gap at ``W(alpha) = Sigma B / lam``.

    ``primal = sum_t mean loss + (lam/2) tr(W Omega W^T)`` and ``dual = sum_t mean
    (-l*(-a)) - tr(B^T Sigma B) / (2 lam)``; since ``Omega W = B / lam`` both quadratic
    terms equal ``<W, B> / 2``. With ``sigma_floor`` given, also the joint bound
    ``joint_dual = sum_t mean(-l*(-a)) - (eps tr(B B^T) + (1 - m eps) lmax(B B^T)) /
    (2 lam)`` on ``min_{W, Sigma >= eps I, tr Sigma = 1} P`` and ``joint_gap``.
    """
    Wt = Sigma @ B / lam
    loss_mean, conj_mean = objective_terms(tasks, alpha, Wt, loss)
    quad = 0.5 * float(np.sum(Wt * B))
    primal = float(loss_mean.sum()) + quad
    dual = float(conj_mean.sum()) - quad
    out = {
        "primal": primal,
        "dual": dual,
        "gap": primal - dual,
        "rel_gap": (primal - dual) / max(abs(primal), np.finfo(float).tiny),
    }
    if sigma_floor is not None:
        m = B.shape[0]
        G = B @ B.T if B.shape[0] <= B.shape[1] else B.T @ B
        lmax = float(np.linalg.eigvalsh(G)[-1]) if G.size else 0.0
        tr = float(np.sum(B * B))
        joint_dual = float(conj_mean.sum()) - (sigma_floor * tr + (1 - m * sigma_floor) * lmax) / (
            2 * lam
        )
        out["joint_dual"] = joint_dual
        out["joint_gap"] = primal - joint_dual
    return out


def _steps_per_node(n: np.ndarray, local_frac: float) -> np.ndarray:
    return np.where(n > 0, np.maximum(1, np.ceil(local_frac * n)), 0).astype(np.int64)


def mocha(
    Xs,
    ys,
    lam: float,
    loss: str | Loss = "hinge",
    *,
    gamma: float = 1.0,
    relationship: str = "learned",
    sigma: np.ndarray | None = None,
    outer_iters: int = 10,
    inner_iters: int = 50,
    local_frac: float = 1.0,
    local_theta: float = 0.0,
    tol: float = 0.0,
    outer_tol: float = 0.0,
    sigma_floor: float = 1e-6,
    random_state=None,
    n_threads: int | None = None,
    record_local_gaps: bool = False,
    eval_every: int = 1,
    callback=None,
) -> MochaResult:
    """Fit all task models with MOCHA.

    Minimises ``sum_t (1/n_t) sum_i l(y_ti, w_t.x_ti) + (lam/2) tr(W Omega W^T)`` over ``W``
    (and over ``Sigma = Omega^{-1}`` with ``Sigma >= sigma_floor I``, ``tr Sigma = 1`` when
    ``relationship="learned"``). Outer round ``k`` is a W-step of up to ``inner_iters``
    federated rounds; outer rounds after the first start with the closed-form Sigma-step
    (:func:`fmtl.relationships.omega_update`), so the returned ``coef`` is always the
    W-step solution for the returned ``sigma``.

    In each federated round every node runs ``ceil(local_frac * n_t)`` SDCA steps on its
    local subproblem with ``sigma' = rho = max_t sum_s |Sigma_ts| / Sigma_tt`` and
    returns ``db_t``; the server sets ``B += dB`` and ``W = Sigma B / lam``.

    Parameters
    ----------
    Xs, ys : list of arrays, or Xs a PackedTasks and ys None
        Per-task design matrices (dense or scipy sparse, ``n_t x d``) and targets
        (``{-1, +1}`` for classification losses).
    lam : float
        Regularisation strength ``lambda > 0``.
    loss : {"hinge", "smoothed_hinge", "squared", "logistic"} or Loss
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    relationship : {"learned", "fixed"}
        ``"fixed"`` uses ``sigma`` (default ``I / m``) and never updates it.
    sigma : ndarray of shape (m, m), optional
        Fixed relationship (symmetric positive definite; used as given).
    outer_iters, inner_iters : int
        Outer rounds and federated rounds per W-step.
    local_frac : float, default=1.0
        Local SDCA steps per round as a fraction of ``n_t``.
    local_theta : float, default=0.0
        If > 0, a node also stops (at the end of a pass over its data) once its local
        Fenchel gap is ``<= local_theta`` times the gap it started the round with.
    tol : float, default=0.0
        Stop a W-step once the relative duality gap for the current Sigma is ``<= tol``.
    outer_tol : float, default=0.0
        Stop once an outer round decreases the primal objective by ``<= outer_tol``
        relative.
    sigma_floor : float, default=1e-6
        ``eps`` of the constraint ``Sigma >= eps I`` (learned relationship).
    random_state : int, Generator or None
        Seeds the per-round coordinate orders.
    n_threads : int, optional
        Numba threads for the local solves (results do not depend on it).
    record_local_gaps : bool, default=False
        Record each node's local gap before and after its local solve (``theta``).
    eval_every : int, default=1
        Evaluate certificates every this many rounds (and at the end of each W-step).
    callback : callable, optional
        Called with each History record.

    Returns
    -------
    MochaResult

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(3)]
    >>> ys = [np.sign(X @ np.ones(4)) for X in Xs]
    >>> res = mocha(Xs, ys, lam=0.1, loss="squared", relationship="fixed",
    ...             outer_iters=1, inner_iters=100, tol=1e-10, random_state=0)
    >>> bool(res.history["rel_gap"][-1] <= 1e-10)
    True
    """
    loss = get_loss(loss, gamma)
    if not (isinstance(lam, (int, float, np.floating)) and np.isfinite(lam) and lam > 0):
        raise ValueError(f"lam (alpha) must be a positive finite number, got {lam!r}")
    for name, v, lo in (
        ("outer_iters", outer_iters, 1),
        ("inner_iters", inner_iters, 1),
        ("eval_every", eval_every, 1),
    ):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not (np.isfinite(local_frac) and local_frac > 0):
        raise ValueError(f"local_frac must be a positive finite number, got {local_frac!r}")
    if not (np.isfinite(local_theta) and 0.0 <= local_theta < 1.0):
        raise ValueError(f"local_theta must be in [0, 1), got {local_theta!r}")
    if relationship not in ("learned", "fixed"):
        raise ValueError(f"relationship must be 'learned' or 'fixed', got {relationship!r}")
    tasks = Xs if isinstance(Xs, PackedTasks) else pack_tasks(list(Xs), list(ys))
    m, d = tasks.n_tasks, tasks.n_features
    n = tasks.n_samples
    rng = np.random.default_rng(random_state)

    learned = relationship == "learned"
    if learned:
        if not (0.0 <= sigma_floor < 1.0 / m):
            raise ValueError(f"sigma_floor must be in [0, 1/n_tasks), got {sigma_floor!r}")
        Sigma = identity_sigma(m)
    else:
        Sigma = identity_sigma(m) if sigma is None else check_sigma(sigma, m)
    rho = safety_rho(Sigma)
    joint_floor = sigma_floor if learned else None

    alpha = np.zeros(tasks.y.shape[0])
    B = np.zeros((m, d))
    Wt = np.zeros((m, d))
    dB = np.zeros((m, d))
    steps_done = np.zeros(m, dtype=np.int64)
    gap0 = np.empty(m)
    gap1 = np.empty(m)
    active = np.ones(m, dtype=np.bool_)
    steps = _steps_per_node(n, local_frac)
    history = History()
    prev_threads = numba.get_num_threads()
    if n_threads is not None:
        numba.set_num_threads(int(n_threads))
    t0 = time.perf_counter()
    rnd = 0
    prev_outer_primal = np.inf
    try:
        for outer in range(outer_iters):
            if learned and outer > 0:
                Sigma, _ = omega_update(Wt, sigma_floor)
                rho = safety_rho(Sigma)
                Wt = Sigma @ B / lam
            sdiag = np.ascontiguousarray(np.diag(Sigma))
            cert = None
            for h in range(inner_iters):
                seeds = rng.integers(
                    0, np.iinfo(np.uint64).max, size=m, dtype=np.uint64, endpoint=True
                )
                sdca_round(
                    *tasks.kernel_args,
                    alpha,
                    Wt,
                    sdiag,
                    rho,
                    lam,
                    loss.code,
                    loss.param,
                    steps,
                    seeds,
                    active,
                    float(local_theta),
                    record_local_gaps,
                    dB,
                    steps_done,
                    gap0,
                    gap1,
                )
                B += dB
                Wt = Sigma @ B / lam
                rnd += 1
                if (h + 1) % eval_every and h + 1 < inner_iters:
                    continue
                cert = certificates(tasks, alpha, B, Sigma, lam, loss, joint_floor)
                rec = {
                    "round": rnd,
                    "outer": outer,
                    **cert,
                    "rho": rho,
                    "wall_time": time.perf_counter() - t0,
                    "local_steps": steps_done.copy(),
                }
                if record_local_gaps:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        rec["local_gap_start"] = gap0.copy()
                        rec["local_gap_end"] = gap1.copy()
                        rec["local_gap_ratio"] = np.where(gap0 > 0, gap1 / gap0, 0.0)
                history.append(**rec)
                if callback is not None:
                    callback(rec)
                if tol > 0 and cert["rel_gap"] <= tol:
                    break
            if not learned:
                continue
            if (
                cert is not None
                and prev_outer_primal - cert["primal"] <= outer_tol * abs(cert["primal"])
                and outer_tol > 0
            ):
                break
            if cert is not None:
                prev_outer_primal = cert["primal"]
    finally:
        if n_threads is not None:
            numba.set_num_threads(prev_threads)
    Sigma = (Sigma + Sigma.T) / 2.0
    w, V = np.linalg.eigh(Sigma)
    Omega = (V / w) @ V.T
    return MochaResult(
        coef=Wt, sigma=Sigma, omega=(Omega + Omega.T) / 2, dual_coef=alpha, B=B, history=history
    )
