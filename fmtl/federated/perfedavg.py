"""Per-FedAvg (Fallah et al., NeurIPS 2020): FedAvg on the MAML objective, linear models.

Objective: ``min_w sum_t p_t F_t(w - a grad F_t(w))`` with ``F_t(v) = mean_i l(y_ti,
v.x_ti) + (lam/2) ||v||^2`` and ``p_t = n_t / N``: a model that is good *after one local
gradient step* of size ``a``. Round: every node takes ``local_steps`` full-batch steps of
size ``beta`` on its term, with the exact gradient ``(I - a hess F_t(w)) grad F_t(w - a
grad F_t(w))`` (``order=2``, Hessian-vector product) or the first-order approximation
``grad F_t(w - a grad F_t(w))`` (``order=1``, FO-MAML); the server averages with ``p_t``.
Personal models: ``adapt_steps`` gradient steps of size ``a`` from the final ``w``.
``inner_steps = k > 1`` scores the model after ``k`` adaptation steps instead (k-step
MAML): ``F_t(u^k)``, ``u^{j+1} = u^j - a grad F_t(u^j)``, exact gradient ``prod_j (I - a
hess F_t(u^j)) grad F_t(u^k)`` by ``k`` backward Hessian-vector products.

For the squared loss ``F_t`` is quadratic, the MAML objective is a convex quadratic, and
:func:`maml_squared_optimum` gives its minimiser in closed form (the reference the tests
use: ``order=2`` with one local step is gradient descent on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..losses import get_loss
from ._loop import as_tasks, check_frac, check_lam, check_nonneg, check_positive_int
from ._rounds import RoundLoop
from .history import History
from .systems import SystemsModel, local_phase_time


@dataclass
class PerFedAvgResult:
    """What :func:`perfedavg` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Personal models after ``adapt_steps`` local steps from ``global_coef``.
    global_coef : ndarray of shape (n_features,)
        The final global (meta) model ``w``.
    history : History
        ``primal``: the MAML objective at the global model, per round.
    never_reported : ndarray of int, default=empty
        Nodes that never reported a round (the systems model dropped them every time).
    personalization_time : float, default=0.0
        Estimated time of the local phase after the last round that makes the personal
        models (``adapt_steps`` full-batch gradient steps;
        :func:`fmtl.federated.systems.local_phase_time`): add it to
        ``history["est_time"][-1]`` for the time the personal models cost.

    Raises
    ------
    TypeError
        If a field other than ``never_reported`` is missing (dataclass constructor).

    See Also
    --------
    perfedavg : Produces it.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import perfedavg
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [X @ np.ones(3) for X in Xs]
    >>> res = perfedavg(Xs, ys, lam=0.01, rounds=5)
    >>> res.coef.shape, res.global_coef.shape, len(res.history)
    ((2, 3), (3,), 5)
    >>> bool(np.allclose(res.coef[0], res.global_coef))  # adapted by one local step
    False
    """

    coef: np.ndarray
    global_coef: np.ndarray
    history: History
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    personalization_time: float = 0.0


def _grad(X, y, w, loss, lam):
    z = np.asarray(X @ w).ravel()
    return np.asarray(X.T @ loss.derivative(y, z)).ravel() / len(y) + lam * w


def _hvp(X, y, w, v, loss, lam):
    # hess F_t(w) v = X^T diag(l'') X v / n + lam v
    z = np.asarray(X @ w).ravel()
    if loss.name == "squared":
        curv = np.ones_like(z)
    else:
        s = 1.0 / (1.0 + np.exp(-y * z))
        curv = s * (1.0 - s)
    return np.asarray(X.T @ (curv * np.asarray(X @ v).ravel())).ravel() / len(y) + lam * v


def _value(X, y, w, loss, lam):
    return float(np.mean(loss.value(y, np.asarray(X @ w).ravel())) + lam / 2 * w @ w)


def _adapt(X, y, w, a, k, loss, lam):
    """The inner loop ``u_0 = w``, ``u_{j+1} = u_j - a grad F(u_j)``: all ``k + 1`` points."""
    us = [w]
    for _ in range(k):
        us.append(us[-1] - a * _grad(X, y, us[-1], loss, lam))
    return us


def _maml_grad(X, y, w, a, k, loss, lam, order):
    """Gradient of ``F(u_k(w))``: ``prod_j (I - a H(u_j)) grad F(u_k)`` applied backwards by
    Hessian-vector products (``order=2``), or ``grad F(u_k)`` (first-order MAML)."""
    us = _adapt(X, y, w, a, k, loss, lam)
    g = _grad(X, y, us[-1], loss, lam)
    if order == 2:
        for u in reversed(us[:-1]):
            g = g - a * _hvp(X, y, u, g, loss, lam)
    return g


def maml_squared_optimum(Xs, ys, lam: float, a: float, inner_steps: int = 1) -> np.ndarray:
    """Closed-form minimiser of the MAML objective ``sum_t p_t F_t(u_t^k(w))`` for the
    squared loss, ``u^k`` being ``k = inner_steps`` gradient steps of size ``a`` from ``w``.

    With ``A_t = X_t^T X_t / n_t + lam I`` and ``b_t = X_t^T y_t / n_t``, one step maps
    ``u`` to ``M_t u + a b_t`` (``M_t = I - a A_t``), so ``u^k = P_t w + q_t`` with ``P_t =
    M_t^k`` and ``q_t = a sum_{j<k} M_t^j b_t``, and the optimum solves ``sum_t p_t P_t A_t
    P_t w = sum_t p_t P_t (b_t - A_t q_t)`` (for ``k = 1``: ``M_t (b_t - a A_t b_t)``).

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
        Per-task design matrices (dense or sparse) and real targets.
    lam : float
        L2 weight of every ``F_t`` (``0`` allowed).
    a : float
        Adaptation step size of the MAML objective.
    inner_steps : int, default=1
        ``k``, the adaptation steps inside the objective.

    Returns
    -------
    ndarray of shape (n_features,)
        The minimiser ``w``.

    Raises
    ------
    numpy.linalg.LinAlgError
        If the linear system is singular (e.g. ``lam = 0`` with rank-deficient data).
    ValueError
        Only from numpy or ``zip``: tasks with different numbers of features, ``Xs`` and
        ``ys`` of different lengths (``zip(strict=True)``), a ``y`` not as long as its
        ``X`` has rows, or non-numeric data. Nothing is validated: ``lam``, ``a``, NaN or
        inf are not checked (NaN propagates), and empty ``Xs`` gives an ``IndexError``.

    See Also
    --------
    perfedavg : Its iterative, federated counterpart (any loss it supports).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [X @ np.ones(3) for X in Xs]
    >>> maml_squared_optimum(Xs, ys, 0.0, 0.0).round(6).tolist()  # a = 0: least squares
    [1.0, 1.0, 1.0]
    """
    d = Xs[0].shape[1]
    n = np.array([X.shape[0] for X in Xs], dtype=np.float64)
    p = n / n.sum()
    lhs, rhs = np.zeros((d, d)), np.zeros(d)
    for pt, X, y in zip(p, Xs, ys, strict=True):
        X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
        A = X.T @ X / len(y) + lam * np.eye(d)
        b = X.T @ np.asarray(y, dtype=np.float64) / len(y)
        M = np.eye(d) - a * A
        P, q = np.eye(d), np.zeros(d)
        for _ in range(inner_steps):
            P, q = M @ P, M @ q + a * b
        lhs += pt * P.T @ A @ P
        rhs += pt * P.T @ (b - A @ q)
    return np.linalg.solve(lhs, rhs)


def perfedavg(
    Xs,
    ys,
    lam: float,
    loss="squared",
    *,
    a: float = 0.1,
    beta: float = 0.1,
    rounds: int = 200,
    local_steps: int = 1,
    order: int = 2,
    adapt_steps: int = 1,
    inner_steps: int = 1,
    systems: SystemsModel | None = None,
    random_state=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
) -> PerFedAvgResult:
    """Fit Per-FedAvg with full-batch local steps.

    FedAvg on the MAML objective ``sum_t p_t F_t(w - a grad F_t(w))``; the personal models
    are ``adapt_steps`` gradient steps of size ``a`` from the final ``w`` (see the module
    docstring).

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
        Per-task design matrices (dense or sparse) and targets (labels in {-1, +1} for the
        logistic loss).
    lam : float
        L2 weight of every ``F_t``.
    loss : {"squared", "logistic"}, default="squared"
    a : float, default=0.1
        Adaptation (inner) step size.
    beta : float, default=0.1
        Local (outer) step size.
    rounds, local_steps : int, default=200, 1
        Federated rounds, and full-batch local steps per round at full speed.
    order : {1, 2}, default=2
        2: exact MAML gradient (Hessian-vector product); 1: first-order approximation.
    adapt_steps : int, default=1
        Local steps of size ``a`` that make the personal models.
    inner_steps : int, default=1
        ``k``: the MAML objective scores the model after ``k`` adaptation steps,
        ``sum_t p_t F_t(u_t^k(w))``; its exact gradient multiplies ``grad F_t(u^k)`` by
        ``(I - a H(u_j))`` for ``j = k-1, ..., 0`` (``k`` Hessian-vector products).
    systems : SystemsModel, optional
        Heterogeneous local work (fewer local steps, at least one), drops and the cost
        model (a local step costs ``4 * 3`` per sample with the Hessian-vector product,
        ``4 * 2`` first-order), as for every fmtl method.
    random_state : int, Generator or None
        Seeds the systems model's draws (the method itself is deterministic).
    eval_every : int, default=1
        Record the History every this many rounds (and after the last).
    callback : callable, optional
        Called with each History record.
    checkpoint_dir, checkpoint_every, resume
        Checkpoint / resume, as :func:`fmtl.federated.fedavg.fedavg` (the checkpoint holds
        the global model).

    Returns
    -------
    PerFedAvgResult
        Personal (adapted) models, the global model and the History.

    Raises
    ------
    ValueError
        For invalid data or parameters (named): a ``loss`` other than ``"squared"`` or
        ``"logistic"``; ``lam`` not positive and finite; ``a`` negative or not finite;
        ``beta`` not positive and finite; ``rounds``, ``local_steps`` or ``eval_every``
        not an integer >= 1, ``adapt_steps`` not an integer >= 0; ``order`` not 1 or 2;
        invalid data (no tasks, mismatched lengths, non-2-D or non-finite arrays, labels
        not in {-1, +1} for the logistic loss); a ``systems`` model that does not fit
        the tasks (``drop_prob`` length, ``dead_nodes``); a negative
        ``checkpoint_every`` or one without ``checkpoint_dir``; or an unreadable checkpoint
        or one of another problem.
    TypeError
        For non-numeric data, ``ys`` None, or a ``systems`` that is not a
        :class:`SystemsModel`.
    RuntimeError
        If a node fails its update more than ``systems.max_failures`` times.

    See Also
    --------
    PerFedAvgResult : The result.
    maml_squared_optimum : The closed-form optimum for the squared loss.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 3)) for _ in range(3)]
    >>> ys = [X @ rng.normal(size=3) for X in Xs]
    >>> res = perfedavg(Xs, ys, lam=0.01, rounds=50)
    >>> bool(res.history["primal"][-1] < res.history["primal"][0])
    True
    """
    loss = get_loss(loss)
    if loss.name not in ("squared", "logistic"):
        raise ValueError(f"loss must be 'squared' or 'logistic', got {loss.name!r}")
    lam = check_lam(lam)
    a = check_nonneg("a", a)
    beta = check_frac("beta", beta)
    rounds = check_positive_int("rounds", rounds)
    local_steps = check_positive_int("local_steps", local_steps)
    adapt_steps = check_positive_int("adapt_steps", adapt_steps, lo=0)
    inner_steps = check_positive_int("inner_steps", inner_steps)
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    tasks = as_tasks(Xs, ys, loss)
    m, d = tasks.n_tasks, tasks.n_features
    ys = [np.asarray(y, dtype=np.float64) for y in ys]
    n = tasks.n_samples.astype(np.float64)
    p = n / n.sum()
    # gradient/HVP evaluations per local step: k inner gradients, the outer one, k HVPs
    passes = local_steps * (2 * inner_steps + 1 if order == 2 else inner_steps + 1)
    loop = RoundLoop(tasks.n_samples, systems, 4.0 * passes, random_state, eval_every, callback)
    w = np.zeros(d)

    def maml_value(w):
        return sum(
            pt * _value(X, y, _adapt(X, y, w, a, inner_steps, loss, lam)[-1], loss, lam)
            for pt, X, y in zip(p, Xs, ys, strict=True)
        )

    def client(t, steps_t, h):
        X, y = Xs[t], ys[t]
        v = w.copy()
        for _ in range(loop.local_steps(t, steps_t, local_steps)):
            v = v - beta * _maml_grad(X, y, v, a, inner_steps, loss, lam, order)
        return v

    def server(W, ok, h):
        w[:] = loop.weights(p, ok) @ np.where(ok[:, None], W, 0.0)  # in place: checkpointed

    loop.checkpoint(
        checkpoint_dir,
        checkpoint_every,
        resume,
        tasks,
        "perfedavg",
        random_state,
        lam=lam,
        loss=[loss.name, loss.param],
        a=a,
        beta=beta,
        rounds=rounds,
        local_steps=local_steps,
        order=order,
        adapt_steps=adapt_steps,
        inner_steps=inner_steps,
        systems=systems,
        eval_every=eval_every,
    )
    loop.run(
        rounds,
        client,
        server,
        lambda: {"primal": float(maml_value(w))},
        state=lambda: {"w": w},
    )
    coef = np.empty((m, d))
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        v = w.copy()
        for _ in range(adapt_steps):
            v = v - a * _grad(X, y, v, loss, lam)
        coef[t] = v
    silent = loop.finish()
    return PerFedAvgResult(
        coef=coef,
        global_coef=w,
        history=loop.history,
        never_reported=silent,
        personalization_time=local_phase_time(adapt_steps * tasks.n_samples, 4.0, systems),
    )
