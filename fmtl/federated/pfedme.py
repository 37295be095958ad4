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

from dataclasses import dataclass

import numpy as np

from ..losses import get_loss
from ._loop import Recorder, as_tasks, check_frac, check_lam, check_nonneg, check_positive_int
from .ditto import personal_models
from .history import History
from .systems import SystemsRuntime


@dataclass
class PFedMeResult:
    """What :func:`pfedme` returns.

    Attributes
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Personal models ``theta_t(w)`` at the final ``w``.
    global_coef : ndarray of shape (n_features,)
    history : History
        ``primal``: ``sum_t p_t Fhat_t(w)`` (envelope objective), ``grad_norm``: the norm of
        its gradient, per round.
    """

    coef: np.ndarray
    global_coef: np.ndarray
    history: History


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
) -> PFedMeResult:
    """Fit pFedMe with exact personal steps.

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
    lam : float
        L2 weight in every ``F_t``.
    mu : float, default=1.0
        Proximal weight (``mu > 0``).
    loss : str, default="logistic"
    gamma : float, default=1.0
    rounds : int, default=100
    beta : float in (0, 1], default=1.0
        Global step ``beta / mu`` on the envelope (``1``: ``w`` becomes the weighted mean of
        the personal models; any ``beta <= 1`` is a safe step for the ``mu``-smooth
        envelope).
    weights : {"samples", "uniform"}, default="samples"
        ``p_t = n_t / N`` or ``1 / m``.
    tol : float, default=1e-10
        Relative local duality gap of each personal solve.
    grad_tol : float, default=0.0
        Stop once ``||sum_t p_t (w - theta_t)|| <= grad_tol``.

    Returns
    -------
    PFedMeResult

    Raises
    ------
    ValueError
        For invalid data or parameters (named).

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
    if not (isinstance(beta, int | float) and 0 < beta <= 1):
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    if weights not in ("samples", "uniform"):
        raise ValueError(f"weights must be 'samples' or 'uniform', got {weights!r}")
    tasks = as_tasks(Xs, ys, loss)
    m, d = tasks.n_tasks, tasks.n_features
    n = tasks.n_samples.astype(np.float64)
    p = n / n.sum() if weights == "samples" else np.full(m, 1.0 / m)
    rec = Recorder(SystemsRuntime(None, tasks.n_samples, 1.0, flops_factor=8.0))
    owner = np.repeat(np.arange(m), tasks.n_samples)
    w = np.zeros(d)
    for h in range(rounds):
        # the packed tasks: validated and packed once, not every round
        theta, _ = personal_models(tasks, None, lam, mu, w, loss, tol=tol)
        grad = p @ (w - theta)  # (1/mu) grad of sum_t p_t Fhat_t
        # envelope value at w: F_t(theta_t) + (mu/2) ||theta_t - w||^2
        z = _margins(tasks, theta[owner])
        ell = np.bincount(owner, loss.value(tasks.y, z), minlength=m) / np.maximum(n, 1)
        env = ell + lam / 2 * np.sum(theta**2, 1) + mu / 2 * np.sum((theta - w) ** 2, 1)
        gnorm = float(mu * np.linalg.norm(grad))
        rec.add(
            h + 1,
            0,
            {"primal": float(p @ env), "grad_norm": gnorm},
            tasks.n_samples,
            np.ones(m, dtype=bool),
        )
        if gnorm <= grad_tol:
            break
        w = w - beta * grad
    theta, _ = personal_models(tasks, None, lam, mu, w, loss, tol=tol)
    return PFedMeResult(coef=theta, global_coef=w, history=rec.history)


def _margins(tasks, rows: np.ndarray) -> np.ndarray:
    # x_i . rows_i for every stored row, without densifying CSR data
    if tasks.sparse:
        import scipy.sparse as sp

        X = sp.csr_matrix(
            (tasks.data, tasks.indices, tasks.indptr), shape=(tasks.offsets[-1], tasks.n_features)
        )
        return np.asarray(X.multiply(rows).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", tasks.Xd, rows)
