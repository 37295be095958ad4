"""Set-up shared by the fixed-Sigma baselines (CoCoA, mini-batch SDCA, mini-batch SGD)."""

from __future__ import annotations

import numpy as np

from ..losses import get_loss
from ..relationships import check_sigma, identity_sigma
from ._loop import as_tasks, check_lam, check_positive_int


def setup(Xs, ys, lam, loss, gamma, sigma, rounds, eval_every):
    """Validated (tasks, loss, lam, Sigma, Omega) for a fixed-relationship run.

    The default ``Sigma = I / m`` is the reference code's (its convergence plots use it,
    which makes the tasks independent).
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    check_positive_int("rounds", rounds)
    check_positive_int("eval_every", eval_every)
    tasks = as_tasks(Xs, ys)
    m = tasks.n_tasks
    Sigma = identity_sigma(m) if sigma is None else check_sigma(sigma, m)
    w, V = np.linalg.eigh(Sigma)
    Omega = (V / w) @ V.T
    return tasks, loss, lam, Sigma, (Omega + Omega.T) / 2


def evaluate_now(h: int, rounds: int, eval_every: int) -> bool:
    return (h + 1) % eval_every == 0 or h + 1 == rounds
