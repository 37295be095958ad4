"""FedRep (Collins et al., ICML 2021) for linear regression: a shared representation
``B`` (d x k) and personal heads ``h_t`` (k), ``w_t = B h_t``.

Round: every node solves its head exactly on its own data given ``B`` (ridge in the k
features ``X_t B``), then takes ``rep_steps`` gradient steps on ``B`` with its head
fixed; the server averages the nodes' ``B`` (weights ``n_t``) and re-orthonormalises it
(QR, as in the paper's analysis: only the column space matters, the heads absorb the
rest). The objective ``sum_t p_t [mean_i (y_ti - x_ti B h_t)^2 / 2] + (lam/2) sum ||h_t||^2``
is not convex in ``(B, h)``; its convex relaxation is low-rank (trace-norm) MTL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._loop import Recorder, as_tasks, check_frac, check_nonneg, check_positive_int
from .history import History
from .systems import SystemsRuntime


@dataclass
class FedRepResult:
    """What :func:`fedrep` returns.

    Attributes
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        ``w_t = B h_t``.
    representation : ndarray of shape (n_features, k)
        ``B`` with orthonormal columns.
    heads : ndarray of shape (n_tasks, k)
    history : History
        ``primal``: the weighted mean squared loss plus the heads' penalty, per round.
    """

    coef: np.ndarray
    representation: np.ndarray
    heads: np.ndarray
    history: History


def _heads(Xs, ys, B, lam):
    k = B.shape[1]
    H = np.empty((len(Xs), k))
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        Z = np.asarray(X @ B)
        n = Z.shape[0]
        H[t] = np.linalg.solve(Z.T @ Z / n + lam * np.eye(k), Z.T @ y / n)
    return H


def fedrep(
    Xs,
    ys,
    rank: int,
    lam: float = 0.0,
    *,
    rounds: int = 100,
    rep_steps: int = 1,
    lr: float = 0.5,
    random_state=None,
) -> FedRepResult:
    """Fit FedRep (squared loss): shared ``B`` of the given rank, exact personal heads.

    Parameters
    ----------
    Xs, ys : lists of per-task arrays (dense or sparse), real targets
    rank : int
        ``k``, the representation's dimension (``1 <= k <= d``).
    lam : float, default=0.0
        Ridge penalty on the heads (``>= 0``).
    rounds : int, default=100
    rep_steps : int, default=1
        Local gradient steps on ``B`` per round.
    lr : float, default=0.5
        Step size of those steps (on the mean squared loss).
    random_state : int, Generator or None
        Seeds the random orthonormal initial ``B``.

    Returns
    -------
    FedRepResult

    Raises
    ------
    ValueError
        For invalid data or parameters (named).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> B = np.linalg.qr(rng.normal(size=(6, 2)))[0]
    >>> Xs = [rng.normal(size=(40, 6)) for _ in range(8)]
    >>> ys = [X @ B @ rng.normal(size=2) for X in Xs]
    >>> res = fedrep(Xs, ys, rank=2, rounds=50, random_state=0)
    >>> res.representation.shape, res.heads.shape
    ((6, 2), (8, 2))
    """
    tasks = as_tasks(Xs, ys)
    d = tasks.n_features
    rank = check_positive_int("rank", rank)
    if rank > d:
        raise ValueError(f"rank must be at most n_features={d}, got {rank}")
    lam = check_nonneg("lam", lam)
    rounds = check_positive_int("rounds", rounds)
    rep_steps = check_positive_int("rep_steps", rep_steps)
    lr = check_frac("lr", lr)
    rng = np.random.default_rng(random_state)
    Xs = [X for X in Xs]
    ys = [np.asarray(y, dtype=np.float64) for y in ys]
    n = tasks.n_samples.astype(np.float64)
    p = n / n.sum()
    B = np.linalg.qr(rng.normal(size=(d, rank)))[0]
    rec = Recorder(SystemsRuntime(None, tasks.n_samples, 1.0, flops_factor=4.0))
    for h in range(rounds):
        H = _heads(Xs, ys, B, lam)
        Bs = np.zeros_like(B)
        for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
            Bt = B.copy()
            for _ in range(rep_steps):
                r = np.asarray(X @ (Bt @ H[t])) - y
                Bt -= lr * np.outer(np.asarray(X.T @ r).ravel() / len(y), H[t])
            Bs += p[t] * Bt
        B = np.linalg.qr(Bs)[0]
        H = _heads(Xs, ys, B, lam)
        mse = [
            np.mean((np.asarray(X @ (B @ ht)) - y) ** 2) / 2
            for X, y, ht in zip(Xs, ys, H, strict=True)
        ]
        primal = float(p @ np.array(mse) + lam / 2 * np.sum(H**2))
        rec.add(h + 1, 0, {"primal": primal}, tasks.n_samples, np.ones(len(Xs), dtype=bool))
    return FedRepResult(coef=H @ B.T, representation=B, heads=H, history=rec.history)
