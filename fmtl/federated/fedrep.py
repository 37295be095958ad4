"""FedRep (Collins et al., ICML 2021) for linear models: a shared representation ``B``
(d x k) and personal heads ``h_t`` (k), ``w_t = B h_t``.

Round (on :class:`fmtl.federated._rounds.RoundLoop`, so with the systems model's drops,
heterogeneous work and estimated time): every reporting node solves its head exactly on its
own data given ``B``,

    h_t = argmin_h  mean_i l(y_ti, h . (B^T x_ti)) + (lam/2) ||h||^2,

a k-dimensional convex problem (ridge in closed form for the squared loss; damped Newton for
the logistic and smoothed hinge losses; fmtl's SDCA on the projected data ``Z_t = X_t B``
for the hinge loss; each to a certified duality gap), then takes ``rep_steps`` (sub)gradient
steps on ``B`` of ``mean_i l(y_ti, x_ti^T B h_t)`` with its head fixed and sends its
``B_t``; the server averages the reporting nodes' ``B_t`` (weights ``n_t``, renormalised
over those that reported) and re-orthonormalises it (QR, as in the paper's analysis: only
the column space matters, the heads absorb the rest). The objective ``sum_t p_t mean_i
l(y_ti, x_ti^T B h_t) + (lam/2) sum_t ||h_t||^2`` is not convex in ``(B, h)``; its convex
relaxation is low-rank (trace-norm) MTL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .._random import rng_from
from ..losses import get_loss
from ..solvers._packing import pack_tasks
from ._loop import as_tasks, check_frac, check_lam, check_nonneg, check_positive_int
from ._rounds import RoundLoop
from .ditto import prox_sdca
from .history import History
from .systems import SystemsModel, local_phase_time


@dataclass
class FedRepResult:
    """What :func:`fedrep` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        ``w_t = B h_t``.
    representation : ndarray of shape (n_features, k)
        ``B`` with orthonormal columns.
    heads : ndarray of shape (n_tasks, k)
        Every node's exact head for the final ``B``.
    history : History
        ``primal``: the weighted mean loss plus the heads' penalty, per recorded round;
        and the systems columns (``est_time``, ``local_steps``, ``dropped``, ``failed``).
    head_gap : ndarray of shape (n_tasks,), default=empty
        Duality gap of each final head's problem: SDCA's certificate for the
        classification losses; for the squared loss (closed form) the gap at the dual
        point ``a_i = y_i - z_i`` when ``lam > 0``, NaN when ``lam == 0``.
    never_reported : ndarray of int, default=empty
        Nodes that never reported a round (the systems model dropped them every time).
    personalization_time : float, default=0.0
        Estimated time of the local phase after the last round that makes the personal
        models (each node's head solve at the final ``B``, counted as one pass;
        :func:`fmtl.federated.systems.local_phase_time`): add it to
        ``history["est_time"][-1]`` for the time the personal models cost.

    Raises
    ------
    TypeError
        If a field other than ``head_gap`` or ``never_reported`` is missing (dataclass
        constructor).

    See Also
    --------
    fedrep : Produces it.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import fedrep
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 4)) for _ in range(3)]
    >>> ys = [X @ rng.normal(size=4) for X in Xs]
    >>> res = fedrep(Xs, ys, rank=2, lam=0.1, rounds=5, random_state=0)
    >>> res.coef.shape, res.representation.shape, res.heads.shape, res.head_gap.shape
    ((3, 4), (4, 2), (3, 2), (3,))
    >>> bool(np.allclose(res.coef, res.heads @ res.representation.T))
    True
    """

    coef: np.ndarray
    representation: np.ndarray
    heads: np.ndarray
    history: History
    head_gap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    personalization_time: float = 0.0


_MAX_PASSES = 100_000  # safeguard cap on a head solve's SDCA passes


def _solve_head(H, g, lam):
    # a head's (Newton or normal) equations H h = g, with H = curvature + lam I
    try:
        return np.linalg.solve(H, g)
    except np.linalg.LinAlgError:  # lam lost in H's rounding: the head is not determined
        raise ValueError(
            f"lam={lam:g} is too small for these features: the head problem's Hessian is "
            "singular in float64 (an estimator's alpha is this lam; raise it)"
        ) from None


def _ridge_head(Z, y, lam):
    # the squared loss's head: ridge in the k features Z = X_t B, closed form
    n, k = Z.shape
    if n == 0:
        return np.zeros(k)
    return _solve_head(Z.T @ Z / n + lam * np.eye(k), Z.T @ y / n, lam)


def _dual_gap(Z, y, a, lam, loss):
    # the head problem's primal point v(a) = Z^T a / (lam n) and its Fenchel-Young gap
    n = Z.shape[0]
    v = Z.T @ a / (lam * n)
    z = Z @ v
    return v, float(np.mean(loss.value(y, z) - loss.neg_conjugate(y, a) + a * z))


def _curvature(loss, y, z):
    # second derivative of l(y, .) at z (labels +-1): logistic p(1 - p), smoothed hinge 1/gamma
    # on its quadratic piece
    if loss.name == "logistic":
        p = 1.0 / (1.0 + np.exp(-np.abs(z)))
        return p * (1.0 - p)
    r = 1.0 - y * z
    return np.where((r > 0) & (r < loss.param), 1.0 / loss.param, 0.0)


def _newton_head(Z, y, h, lam, loss, tol, max_iter: int = 200):
    """Exact head of a smooth classification loss (logistic, smoothed hinge) by damped
    Newton on the ``k``-dimensional problem, from ``h``: SDCA's rate degrades with
    ``||z||^2 / (lam n)`` (measured: 1e6 steps short of 1e-12 on features scaled by 100),
    Newton's does not. Stops at gap ``<= tol * mean l(y, 0)``; returns (head, gap)."""
    n, k = Z.shape
    if n == 0:
        return np.zeros(k), 0.0
    target = tol * float(np.mean(loss.value(y, np.zeros(n))))

    def primal(v):
        return float(np.mean(loss.value(y, Z @ v)) + lam / 2 * v @ v)

    gap = head_problem_gap(Z, y, h, lam, loss.name, loss.param or 1.0)
    for _ in range(max_iter):
        if gap <= target:
            break
        z = Z @ h
        g = Z.T @ loss.derivative(y, z) / n + lam * h
        H = (Z * _curvature(loss, y, z)[:, None]).T @ Z / n + lam * np.eye(k)
        step = _solve_head(H, g, lam)
        f0, t = primal(h), 1.0
        while primal(h - t * step) > f0 - 1e-4 * t * (g @ step) and t > 1e-12:
            t /= 2  # Armijo backtracking: the smoothed hinge is only piecewise quadratic
        h = h - t * step
        gap = head_problem_gap(Z, y, h, lam, loss.name, loss.param or 1.0)
    return h, gap


def _sdca_head(Z, y, alpha, lam, loss, tol, seed):
    """Exact head of a classification loss by SDCA on ``Z = X_t B``, warm-started from the
    duals ``alpha`` (updated in place): the gap ends ``<= tol * mean l(y, 0)``."""
    n, k = Z.shape
    if n == 0:
        return np.zeros(k), 0.0
    target = tol * float(np.mean(loss.value(y, np.zeros(n))))
    v, g0 = _dual_gap(Z, y, alpha, lam, loss)
    if g0 <= target:
        return v, g0
    tasks = pack_tasks([Z], [y])
    V, gaps, _ = prox_sdca(
        tasks,
        lam,
        0.0,
        np.zeros((1, k)),
        loss,
        steps=np.array([n * _MAX_PASSES], dtype=np.int64),
        seeds=np.array([seed], dtype=np.uint64),
        active=np.ones(1, dtype=bool),
        tol=target / g0,
        state=(alpha, (Z.T @ alpha / n)[None, :]),
    )
    return V[0], float(gaps[0])


def head_problem_gap(Z, y, h, lam: float, loss="squared", gamma: float = 1.0) -> float:
    """Duality gap of a FedRep head problem at a given head ``h``.

    The problem is ``min_h mean_i l(y_i, h.z_i) + (lam/2) ||h||^2``; the gap is taken at
    the dual point ``a_i = -l'(y_i, h.z_i)`` (an upper bound on ``h``'s suboptimality for
    the smooth losses; ``lam > 0``).

    Parameters
    ----------
    Z : ndarray of shape (n, k)
        Projected data ``X_t B``.
    y : ndarray of shape (n,)
        Targets (labels in {-1, +1} for a classification loss; not checked).
    h : ndarray of shape (k,)
        The head at which the gap is evaluated (an ndarray: a list is not converted).
    lam : float
        L2 weight of the head problem (``> 0``).
    loss : {"squared", "logistic", "smoothed_hinge", "hinge"}, default="squared"
        The loss ``l``.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.

    Returns
    -------
    float
        Primal minus dual objective at ``h`` (``0.0`` when ``Z`` has no rows).

    Raises
    ------
    ValueError
        For an unknown ``loss`` or bad ``gamma``, or ``lam`` not positive and finite
        (the only arguments validated). Shapes are not checked: a ``Z``, ``y`` or ``h``
        whose sizes do not match gives numpy's ``ValueError`` (``matmul: ... mismatch in
        its core dimension``), as does non-numeric ``Z`` or ``y`` (``could not convert
        string to float``).
    TypeError
        From numpy, for an ``h`` that is a list rather than an ndarray (``h @ h``).

    See Also
    --------
    fedrep : Reports this gap for the squared loss's closed-form heads.

    Notes
    -----
    Nothing else is checked: NaN or inf in the inputs propagate to the result, and labels
    outside {-1, +1} for a classification loss give an ``inf`` gap rather than an error.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    >>> h = np.linalg.solve(Z.T @ Z / 30 + 0.1 * np.eye(2), Z.T @ y / 30)
    >>> bool(head_problem_gap(Z, y, h, 0.1) < 1e-12)
    True
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = Z.shape[0]
    if n == 0:
        return 0.0
    z = Z @ h
    primal = float(np.mean(loss.value(y, z)) + lam / 2 * h @ h)
    a = -loss.derivative(y, z)
    v = Z.T @ a / (lam * n)
    dual = float(np.mean(loss.neg_conjugate(y, a)) - lam / 2 * v @ v)
    return primal - dual


def fedrep(
    Xs,
    ys,
    rank: int,
    lam: float = 0.0,
    loss="squared",
    *,
    gamma: float = 1.0,
    rounds: int = 100,
    rep_steps: int = 1,
    lr: float = 0.5,
    head_tol: float = 1e-12,
    systems: SystemsModel | None = None,
    random_state=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
) -> FedRepResult:
    """Fit FedRep: shared ``B`` of the given rank, exact personal heads.

    Each round every reporting node solves its head exactly for the current ``B``, takes
    ``rep_steps`` gradient steps on ``B``, and the server averages and re-orthonormalises
    the ``B_t`` (see the module docstring).

    Parameters
    ----------
    Xs, ys : lists of per-task arrays (dense or sparse)
        Real targets for ``loss="squared"``, labels in {-1, +1} otherwise.
    rank : int
        ``k``, the representation's dimension (``1 <= k <= d``).
    lam : float, default=0.0
        L2 penalty ``(lam/2) ||h_t||^2`` on the heads: ``>= 0`` for the squared loss
        (ridge), ``> 0`` for the classification losses (their head problems need it).
    loss : {"squared", "logistic", "smoothed_hinge", "hinge"}, default="squared"
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    rounds : int, default=100
        Federated rounds.
    rep_steps : int, default=1
        Local (sub)gradient steps on ``B`` per round at full speed (the systems model
        scales them with the node's drawn work fraction, at least one).
    lr : float, default=0.5
        Step size of those steps (on the mean loss).
    head_tol : float, default=1e-12
        Head solves of the classification losses (Newton from the node's previous head for
        the smooth losses, SDCA from its previous duals for the hinge) stop once their
        duality gap is at most ``head_tol`` times its value at ``h = 0``
        (``mean_i l(y_i, 0)``).
    systems : SystemsModel, optional
        Drops, dead nodes, heterogeneous work and the cost model (a round costs ``4 *
        (rep_steps + 1)`` per sample: the head solve plus the representation steps).
    random_state : int, Generator or None
        Seeds the random orthonormal initial ``B`` and then the systems model's draws
        (one Generator).
    eval_every : int, default=1
        Record the History every this many rounds (and after the last).
    callback : callable, optional
        Called with each History record.
    checkpoint_dir, checkpoint_every, resume
        Checkpoint / resume, as :func:`fmtl.federated.fedavg.fedavg` (the checkpoint holds
        the representation, the nodes' heads and their warm starts).

    Returns
    -------
    FedRepResult
        Personal models, the representation, the heads and their gaps, and the History.

    Raises
    ------
    ValueError
        For invalid data or parameters (named): an unknown ``loss`` or bad ``gamma``;
        ``rank`` not an integer in ``[1, n_features]``; ``lam`` negative or not finite
        (not positive, for a classification loss); ``rounds``, ``rep_steps`` or
        ``eval_every`` not an integer >= 1; ``lr`` or ``head_tol`` not positive and
        finite; invalid data (no tasks, mismatched lengths, non-2-D or non-finite arrays,
        labels not in {-1, +1} for a classification loss); a ``systems`` model that
        does not fit the tasks (``drop_prob`` length, ``dead_nodes``); a ``lam`` so small
        against the features that a head's Hessian is singular in float64; a negative
        ``checkpoint_every`` or one without ``checkpoint_dir``; or an unreadable checkpoint
        or one of another problem.
    TypeError
        For non-numeric data, ``ys`` None, or a ``systems`` that is not a
        :class:`SystemsModel`.
    RuntimeError
        If a node fails its update more than ``systems.max_failures`` times.

    Warns
    -----
    RuntimeWarning
        If some node never reported a round (its head is still fitted on the final
        ``B``).

    See Also
    --------
    FedRepResult : The result.
    head_problem_gap : The head problem's duality gap.

    Examples
    --------
    Regression on data from a rank-2 model:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> B = np.linalg.qr(rng.normal(size=(6, 2)))[0]
    >>> Xs = [rng.normal(size=(40, 6)) for _ in range(8)]
    >>> ys = [X @ B @ rng.normal(size=2) for X in Xs]
    >>> res = fedrep(Xs, ys, rank=2, rounds=50, random_state=0)
    >>> res.representation.shape, res.heads.shape
    ((6, 2), (8, 2))

    Classification (logistic heads, certified by SDCA), with dropped nodes:

    >>> from fmtl.federated import SystemsModel
    >>> ys = [np.sign(X @ B @ rng.normal(size=2)) for X in Xs]
    >>> res = fedrep(Xs, ys, rank=2, lam=0.01, loss="logistic", rounds=30,
    ...              systems=SystemsModel(drop_prob=0.2), random_state=0)
    >>> bool(res.head_gap.max() <= 1e-8), res.history["dropped"].shape
    (True, (30, 8))
    """
    loss = get_loss(loss, gamma)
    tasks = as_tasks(Xs, ys, loss)
    m, d = tasks.n_tasks, tasks.n_features
    rank = check_positive_int("rank", rank)
    if rank > d:
        raise ValueError(f"rank must be at most n_features={d}, got {rank}")
    if loss.name == "squared":
        lam = check_nonneg("lam", lam)
    else:
        lam = check_lam(lam)
    rounds = check_positive_int("rounds", rounds)
    rep_steps = check_positive_int("rep_steps", rep_steps)
    lr = check_frac("lr", lr)
    head_tol = check_frac("head_tol", head_tol)
    rng = rng_from(random_state)
    Xs = [X if sp.issparse(X) else np.asarray(X, dtype=np.float64) for X in Xs]
    ys = [np.asarray(y, dtype=np.float64).ravel() for y in ys]
    n = tasks.n_samples.astype(np.float64)
    p = n / n.sum()
    B = np.linalg.qr(rng.normal(size=(d, rank)))[0]
    loop = RoundLoop(tasks.n_samples, systems, 4.0 * (rep_steps + 1), rng, eval_every, callback)
    heads: dict[int, tuple[np.ndarray, float]] = {}  # node -> (head, gap) at the current B
    duals = [np.zeros(len(y)) for y in ys]  # SDCA duals of the hinge heads, warm starts
    last = np.zeros((m, rank))  # each node's previous head, the smooth losses' warm start

    def head(t):
        if t not in heads:
            Z = np.asarray(Xs[t] @ B)
            if loss.name == "squared":
                h = _ridge_head(Z, ys[t], lam)
                gap = head_problem_gap(Z, ys[t], h, lam) if lam > 0 else np.nan
            elif loss.name == "hinge":  # not smooth: SDCA on the dual, warm-started
                h, gap = _sdca_head(Z, ys[t], duals[t], lam, loss, head_tol, seed=t + 1)
            else:  # smooth: Newton from the node's previous head (B is orthonormal)
                h, gap = _newton_head(Z, ys[t], last[t], lam, loss, head_tol)
            last[t] = h
            heads[t] = (h, gap)
        return heads[t][0]

    def client(t, steps_t, h):
        X, y = Xs[t], ys[t]
        ht = head(t)
        Bt = B.copy()
        if len(y) == 0:
            return Bt
        for _ in range(loop.local_steps(t, steps_t, rep_steps)):
            g = loss.derivative(y, np.asarray(X @ (Bt @ ht)).ravel())
            Bt -= lr * np.outer(np.asarray(X.T @ g).ravel() / len(y), ht)
        return Bt

    def server(Bs, ok, h):
        nonlocal B
        q = loop.weights(p, ok)
        avg = np.zeros_like(B)
        for t in np.flatnonzero(ok):
            avg += q[t] * Bs[t]
        B = np.linalg.qr(avg)[0]
        heads.clear()

    def evaluate():
        H = np.array([head(t) for t in range(m)])
        fit = [
            np.mean(loss.value(y, np.asarray(X @ (B @ ht)).ravel())) if len(y) else 0.0
            for X, y, ht in zip(Xs, ys, H, strict=True)
        ]
        return {"primal": float(p @ np.array(fit) + lam / 2 * np.sum(H**2))}

    sizes = np.cumsum([len(y) for y in ys])[:-1]

    def state():
        # the heads cached at the current B and the warm starts of the next head solves:
        # recomputing them would move the heads by rounding, and the fit with them
        cached = np.zeros(m, dtype=bool)
        H, G = np.zeros((m, rank)), np.full(m, np.nan)
        for t, (ht, gap) in heads.items():
            cached[t], H[t], G[t] = True, ht, gap
        return {
            "B": B,
            "last": last,
            "duals": np.concatenate(duals),
            "cached": cached,
            "heads": H,
            "head_gaps": G,
        }

    def restore(arrays):
        nonlocal B
        B = arrays["B"]
        last[:] = arrays["last"]
        for dst, src in zip(duals, np.split(arrays["duals"], sizes), strict=True):
            dst[:] = src
        heads.clear()
        for t in np.flatnonzero(arrays["cached"]):
            heads[int(t)] = (arrays["heads"][t].copy(), float(arrays["head_gaps"][t]))

    loop.checkpoint(
        checkpoint_dir,
        checkpoint_every,
        resume,
        tasks,
        "fedrep",
        random_state,
        rank=rank,
        lam=lam,
        loss=[loss.name, loss.param],
        rounds=rounds,
        rep_steps=rep_steps,
        lr=lr,
        head_tol=head_tol,
        systems=systems,
        eval_every=eval_every,
    )
    loop.run(rounds, client, server, evaluate, state=state, restore=restore)
    H = np.array([head(t) for t in range(m)])
    gaps = np.array([heads[t][1] for t in range(m)])
    silent = loop.finish()
    return FedRepResult(
        coef=H @ B.T,
        representation=B,
        heads=H,
        history=loop.history,
        head_gap=gaps,
        never_reported=silent,
        # each node's head at the final B: counted as one pass over its data
        personalization_time=local_phase_time(tasks.n_samples, 4.0, systems),
    )
