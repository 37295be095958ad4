"""Set-up shared by the fixed-Sigma baselines (CoCoA, mini-batch SDCA, mini-batch SGD)."""

from __future__ import annotations

import numpy as np

from ..losses import get_loss
from ..relationships import check_sigma, identity_sigma
from ._loop import as_tasks, check_lam, check_positive_int
from .checkpoint import Checkpointer


def setup(Xs, ys, lam, loss, gamma, sigma, rounds, eval_every):
    """Validated (tasks, loss, lam, Sigma, Omega) for a fixed-relationship run.

    The default ``Sigma = I / m`` is the reference code's (its convergence plots use it,
    which makes the tasks independent).
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    check_positive_int("rounds", rounds)
    check_positive_int("eval_every", eval_every)
    tasks = as_tasks(Xs, ys, loss)
    m = tasks.n_tasks
    Sigma = identity_sigma(m) if sigma is None else check_sigma(sigma, m)
    w, V = np.linalg.eigh(Sigma)
    Omega = (V / w) @ V.T
    return tasks, loss, lam, Sigma, (Omega + Omega.T) / 2


def evaluate_now(h: int, rounds: int, eval_every: int) -> bool:
    return (h + 1) % eval_every == 0 or h + 1 == rounds


def start(
    checkpoint_dir,
    checkpoint_every,
    resume,
    tasks,
    algorithm,
    runtime,
    rec,
    rng,
    random_state,
    arrays: dict,
    **settings,
):
    """Checkpointer for a single-loop run; restores ``arrays`` (in place), the RNG and the
    position ``{"h": next round, "rnd": rounds done}`` when resuming."""
    ckpt = Checkpointer.for_fit(
        checkpoint_dir, checkpoint_every, tasks, algorithm, random_state, **settings
    )
    pos = {"h": 0, "rnd": 0}
    saved = ckpt.resume(resume, runtime, rec, pos, arrays)
    if saved is not None:
        stored, rng = saved
        for k, a in arrays.items():
            a[...] = stored[k]
    return ckpt, pos, rng
