"""pFedHN (Shamsian et al., ICML 2021) with a linear hypernetwork: ``w_t = Phi v_t``.

The server holds the hypernetwork ``Phi`` (d x k) and one embedding ``v_t`` (k) per
client. Round: client ``t`` receives ``w_t = Phi v_t``, takes ``local_steps`` full-batch
gradient steps of size ``lr`` on ``F_t(w) = mean_i l(y_ti, w.x_ti) + (lam/2) ||w||^2`` and
returns ``dw_t = w_t' - w_t``; the server applies the chain rule with ``-dw_t`` as the
gradient with respect to ``w_t``: ``Phi += eta sum_t p_t dw_t v_t^T`` and ``v_t += eta Phi^T
dw_t``. With one local step this is exactly gradient descent (step ``lr eta``) on
``sum_t p_t F_t(Phi v_t)`` in ``Phi`` and on ``F_t(Phi v_t)`` in ``v_t`` (tested by finite
differences). A new client is fitted by learning only its embedding
(:func:`fit_new_embedding`), with ``Phi`` fixed. Squared and logistic losses; kernel
variants through an explicit feature map of the inputs (``Nystroem``, ``RBFSampler``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..losses import get_loss
from ._loop import Recorder, as_tasks, check_frac, check_lam, check_positive_int
from .history import History
from .perfedavg import _grad, _value
from .systems import SystemsRuntime


@dataclass
class PFedHNResult:
    """What :func:`pfedhn` returns.

    Attributes
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        ``w_t = Phi v_t``.
    hypernetwork : ndarray of shape (n_features, k)
    embeddings : ndarray of shape (n_tasks, k)
    history : History
        ``primal``: ``sum_t p_t F_t(Phi v_t)`` per round.
    """

    coef: np.ndarray
    hypernetwork: np.ndarray
    embeddings: np.ndarray
    history: History


def pfedhn(
    Xs,
    ys,
    lam: float,
    loss="squared",
    *,
    embedding_dim: int = 2,
    rounds: int = 200,
    local_steps: int = 1,
    lr: float = 0.5,
    eta: float = 1.0,
    random_state=None,
) -> PFedHNResult:
    """Fit a linear pFedHN.

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
    lam : float
    loss : {"squared", "logistic"}, default="squared"
    embedding_dim : int, default=2
        ``k``.
    rounds, local_steps : int
    lr : float, default=0.5
        Clients' local step size.
    eta : float, default=1.0
        Server step size on ``Phi`` and the embeddings.
    random_state : int, Generator or None
        Seeds the initial ``Phi`` and embeddings (small Gaussians).

    Returns
    -------
    PFedHNResult

    Raises
    ------
    ValueError
        For invalid data or parameters (named).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(5)]
    >>> ys = [X @ rng.normal(size=4) for X in Xs]
    >>> res = pfedhn(Xs, ys, lam=0.01, embedding_dim=3, rounds=100, random_state=0)
    >>> bool(res.history["primal"][-1] < res.history["primal"][0])
    True
    """
    loss = get_loss(loss)
    if loss.name not in ("squared", "logistic"):
        raise ValueError(f"loss must be 'squared' or 'logistic', got {loss.name!r}")
    lam = check_lam(lam)
    k = check_positive_int("embedding_dim", embedding_dim)
    rounds = check_positive_int("rounds", rounds)
    local_steps = check_positive_int("local_steps", local_steps)
    lr = check_frac("lr", lr)
    eta = check_frac("eta", eta)
    tasks = as_tasks(Xs, ys, loss)
    m, d = tasks.n_tasks, tasks.n_features
    ys = [np.asarray(y, dtype=np.float64) for y in ys]
    n = tasks.n_samples.astype(np.float64)
    p = n / n.sum()
    rng = np.random.default_rng(random_state)
    Phi = rng.normal(scale=0.1, size=(d, k))
    V = rng.normal(scale=0.1, size=(m, k))
    rec = Recorder(SystemsRuntime(None, tasks.n_samples, 1.0, flops_factor=4.0))
    for h in range(rounds):
        dW = np.empty((m, d))
        for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
            w = Phi @ V[t]
            v = w.copy()
            for _ in range(local_steps):
                v = v - lr * _grad(X, y, v, loss, lam)
            dW[t] = v - w
        # chain rule through w_t = Phi v_t, both with the round's Phi
        Phi, V = Phi + eta * (dW * p[:, None]).T @ V, V + eta * dW @ Phi
        W = V @ Phi.T
        primal = sum(
            pt * _value(X, y, w, loss, lam) for pt, X, y, w in zip(p, Xs, ys, W, strict=True)
        )
        rec.add(h + 1, 0, {"primal": float(primal)}, tasks.n_samples, np.ones(m, dtype=bool))
    return PFedHNResult(coef=V @ Phi.T, hypernetwork=Phi, embeddings=V, history=rec.history)


def fit_new_embedding(
    X, y, Phi: np.ndarray, lam: float, loss="squared", *, rounds: int = 500, lr: float = 0.5
) -> np.ndarray:
    """Embedding ``v`` of an unseen client, ``Phi`` fixed: gradient descent on
    ``F(Phi v)`` through the same client update (``dw``) and chain rule ``v += Phi^T dw``.

    Returns
    -------
    ndarray of shape (k,)
        The model of the new client is ``Phi @ v``.
    """
    loss = get_loss(loss)
    lam = check_lam(lam)
    rounds = check_positive_int("rounds", rounds)
    lr = check_frac("lr", lr)
    Phi = np.asarray(Phi, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if Phi.ndim != 2 or Phi.shape[0] != X.shape[1]:
        raise ValueError(f"Phi must have shape ({X.shape[1]}, k), got {Phi.shape}")
    v = np.zeros(Phi.shape[1])
    for _ in range(rounds):
        w = Phi @ v
        dw = -lr * _grad(X, y, w, loss, lam)
        v = v + Phi.T @ dw
    return v
