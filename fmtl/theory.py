"""MOCHA's convergence guarantees as executable predictions.

Smith, Chiang, Sanjabi & Talwalkar, *Federated Multi-Task Learning* (NeurIPS 2017),
Section 4: Assumption 1 bounds the quality ``theta_t^h`` of node ``t``'s local solution in
federated round ``h`` (``theta = 1`` for a dropped node, ``P[theta = 1] <= p_max < 1``,
``E[theta | theta < 1] <= Theta_max``); with ``Theta_bar = p_max + (1 - p_max) Theta_max``,
Theorem 1 gives a linear rate for ``(1/mu)``-smooth losses, ``H >= log(n / eps) / ((1 -
Theta_bar) s)`` rounds for ``E[D* - D(alpha^H)] <= eps`` with some ``s`` in (0, 1], and
Theorem 2 a sublinear ``O(1 / eps)`` rate for ``L``-Lipschitz losses. Both theorems are
about the W-step (``Sigma`` fixed); MOCHA's alternation with the Sigma-step is not covered.

This module restates them in fmtl's scaling (DESIGN.md section 1: per-task mean losses,
``W = Sigma B / lam``) with every constant explicit, following the CoCoA+ argument the
paper's appendix extends (Ma et al., 2015, Lemma 5 and Theorems 8 and 10). The derivation,
in full in ``docs/theory.md``: for any ``s`` in [0, 1] and ``u_i = -l'(w_t . x_i)``,

    D(alpha + d) - D(alpha) >= sum_t (1 - theta_t) s gap_t(alpha)
                              - sum_t (1 - theta_t) (s^2 / 2) c_t ||u_t - alpha_t||^2 / n_t,
    c_t = sigma' Sigma_tt sigma_t / (lam n_t) - mu (1 - s) / s,

where ``gap_t`` is task ``t``'s share of the duality gap and ``sigma_t = ||X_t||_2^2``.
Hence the linear factor ``s = min_t mu lam n_t / (mu lam n_t + sigma' Sigma_tt sigma_t)``
(``c_t <= 0``) and, for ``mu = 0``, the constant ``C = (diam^2 sigma' / lam) sum_t
Sigma_tt sigma_t / n_t`` with ``diam`` the diameter of the loss's dual domain.

Everything here is a bound: predictions are upper bounds on rounds, measured runs should
fall below them, and how far below is the point of ``benchmarks/theory_*.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .federated._loop import DualRound, as_tasks
from .federated.history import History
from .losses import Loss, get_loss
from .relationships import check_sigma, identity_sigma, resolve_sigma_prime

__all__ = [
    "LossConstants",
    "MochaConstants",
    "averaged_gap_bound",
    "dual_bound",
    "effective_theta",
    "exact_local_theta",
    "gap_bound",
    "loss_constants",
    "measured_rounds",
    "mocha_constants",
    "predicted_rounds",
    "sdca_theta",
    "task_spectral_norms",
    "theta_bar",
    "theta_upper",
]


@dataclass(frozen=True)
class LossConstants:
    """Constants of a shipped loss that enter the rates.

    Built by :func:`loss_constants`; frozen.

    Parameters
    ----------
    name : str
        The loss's name (one of :data:`fmtl.losses.LOSS_NAMES`).
    mu : float
        Strong convexity of ``l*`` (``l`` is ``(1/mu)``-smooth); 0 for the hinge loss.
    smoothness : float
        ``1 / mu`` (``inf`` for the hinge loss).
    lipschitz : float
        ``L`` (``inf`` for the squared loss, which is not globally Lipschitz).
    dual_diameter : float
        ``sup |u - a|`` over the dual domain (``a y`` in [0, 1] for the classification
        losses, so 1; ``inf`` for the squared loss). Theorem 2's ``2 L`` is its generic
        bound.

    Raises
    ------
    dataclasses.FrozenInstanceError
        On assigning to a field (the instance is immutable).

    See Also
    --------
    loss_constants : The constants of a shipped loss.

    Examples
    --------
    >>> from fmtl.theory import loss_constants
    >>> c = loss_constants("smoothed_hinge", gamma=0.5)
    >>> c.name, c.mu, c.smoothness, c.dual_diameter
    ('smoothed_hinge', 0.5, 2.0, 1.0)
    """

    name: str
    mu: float
    smoothness: float
    lipschitz: float
    dual_diameter: float


def loss_constants(loss: str | Loss = "hinge", gamma: float = 1.0) -> LossConstants:
    """Smoothness, strong convexity of the conjugate and Lipschitz constant of a loss.

    Parameters
    ----------
    loss : str or Loss, default="hinge"
        A name from :data:`fmtl.losses.LOSS_NAMES` or a resolved :class:`fmtl.losses.Loss`.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"`` (``r^2 / (2 gamma)`` near the hinge).

    Returns
    -------
    LossConstants
        ``mu``, ``1 / mu``, ``L`` and the dual domain's diameter for that loss.

    Raises
    ------
    ValueError
        For an unknown loss or a bad ``gamma``.

    Examples
    --------
    >>> c = loss_constants("logistic")
    >>> c.mu, c.smoothness, c.lipschitz
    (4.0, 0.25, 1.0)
    >>> loss_constants("hinge").mu
    0.0
    """
    loss = get_loss(loss, gamma)
    inf = float("inf")
    if loss.name == "hinge":
        return LossConstants("hinge", 0.0, inf, 1.0, 1.0)
    if loss.name == "smoothed_hinge":
        g = float(loss.param)
        return LossConstants("smoothed_hinge", g, 1.0 / g, 1.0, 1.0)
    if loss.name == "logistic":  # l'' = p (1 - p) <= 1/4
        return LossConstants("logistic", 4.0, 0.25, 1.0, 1.0)
    if loss.name == "squared":
        return LossConstants("squared", 1.0, 1.0, inf, inf)
    raise ValueError(f"no constants for loss {loss.name!r}")  # pragma: no cover


def task_spectral_norms(Xs) -> np.ndarray:
    """``sigma_t = ||X_t||_2^2``, the largest eigenvalue of ``X_t^T X_t``, per task.

    Parameters
    ----------
    Xs : list of arrays or sparse matrices, shape (n_t, d) each
        The per-task design matrices (2-D; empty tasks give 0).

    Returns
    -------
    ndarray of shape (n_tasks,)
        ``||X_t||_2^2`` per task.

    Raises
    ------
    AttributeError
        If an element of ``Xs`` is not an array or sparse matrix (it has no ``shape``).
    IndexError
        If an element of ``Xs`` is a 1-D array.

    Notes
    -----
    The inputs are not validated: a block holding NaN gives ``nan`` for its task.

    Examples
    --------
    >>> import numpy as np
    >>> task_spectral_norms([np.eye(3), 2 * np.ones((2, 2))])
    array([ 1., 16.])
    """
    out = np.zeros(len(Xs))
    for t, X in enumerate(Xs):
        if X.shape[0] == 0:
            continue
        G = X @ X.T if X.shape[0] <= X.shape[1] else X.T @ X
        G = G.toarray() if sp.issparse(G) else np.asarray(G, dtype=np.float64)
        out[t] = max(float(np.linalg.eigvalsh((G + G.T) / 2.0)[-1]), 0.0)
    return out


@dataclass(frozen=True)
class MochaConstants:
    """Everything the rate statements need for one problem and one ``Sigma``.

    Built by :func:`mocha_constants`; frozen.

    Parameters
    ----------
    loss : LossConstants
        The loss's constants.
    lam : float
        Regularisation strength.
    sigma_prime : float
        The ``sigma'`` the subproblems use.
    sigma_diag : ndarray of shape (m,)
        ``Sigma_tt``.
    n_samples : ndarray of shape (m,)
        ``n_t``.
    task_norms : ndarray of shape (m,)
        ``sigma_t = ||X_t||_2^2``.
    max_row_sqnorm : ndarray of shape (m,)
        ``R_t^2 = max_i ||x_ti||^2`` (local SDCA's constant).
    initial_gap : float
        ``P(0) - D(0) = sum_t mean_i l(y_ti, 0)``, which bounds ``D* - D(0)``.
    s : float
        Linear-rate factor ``min_t mu lam n_t / (mu lam n_t + sigma' Sigma_tt sigma_t)``
        (0 when ``mu = 0``).
    C : float
        Sublinear-rate constant ``(diam^2 sigma' / lam) sum_t Sigma_tt sigma_t / n_t``
        (``inf`` for the squared loss).

    Attributes
    ----------
    linear : bool
        Whether Theorem 1's linear rate applies (``s > 0``, i.e. ``mu > 0``).

    Raises
    ------
    dataclasses.FrozenInstanceError
        On assigning to a field (the instance is immutable).

    See Also
    --------
    mocha_constants : Computes these constants for a problem.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.theory import mocha_constants
    >>> c = mocha_constants([np.eye(2)], [np.ones(2)], lam=1.0, loss="squared")
    >>> c.linear, round(c.s, 4), c.initial_gap
    (True, 0.6667, 0.5)
    >>> mocha_constants([np.eye(2)], [np.ones(2)], lam=1.0, loss="hinge").linear
    False
    """

    loss: LossConstants
    lam: float
    sigma_prime: float
    sigma_diag: np.ndarray
    n_samples: np.ndarray
    task_norms: np.ndarray
    max_row_sqnorm: np.ndarray
    initial_gap: float
    s: float
    C: float

    @property
    def linear(self) -> bool:
        """Whether Theorem 1's linear rate applies (``mu > 0``)."""
        return self.s > 0.0


def mocha_constants(
    Xs,
    ys,
    lam: float,
    loss: str | Loss = "hinge",
    *,
    gamma: float = 1.0,
    sigma: np.ndarray | None = None,
    sigma_prime: str | float = "gershgorin",
) -> MochaConstants:
    """Compute the constants of MOCHA's rates for a fixed ``Sigma``.

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
        As for :func:`fmtl.federated.mocha`.
    lam : float
        Regularisation strength ``lambda > 0``.
    loss : str or Loss, default="hinge"
        The loss (see :func:`fmtl.losses.get_loss`).
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    sigma : ndarray of shape (m, m), optional
        The W-step's relationship (default ``I / m``).
    sigma_prime : {"gershgorin", "spectral"} or float, default="gershgorin"
        As for :func:`fmtl.federated.mocha`.

    Returns
    -------
    MochaConstants
        The constants of both theorems for this problem.

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``, a non-positive ``lam``, invalid data (no
        tasks, mismatched lengths, non-2-D or non-finite ``X``, labels not in {-1, +1} for
        a classification loss), a ``sigma`` that is not symmetric positive definite of
        shape ``(m, m)``, or a bad ``sigma_prime`` (the same checks as
        :func:`fmtl.federated.mocha`).
    TypeError
        If ``ys`` is None (and ``Xs`` is not packed) or the data are not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> c = mocha_constants(Xs, ys, lam=0.1, loss="squared")
    >>> bool(0 < c.s <= 1), c.initial_gap
    (True, 1.0)
    """
    from .federated._loop import check_lam

    lc = loss_constants(loss, gamma)
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    tasks = as_tasks(Xs, ys, loss)
    m = tasks.n_tasks
    Sigma = identity_sigma(m) if sigma is None else check_sigma(sigma, m)
    sp_ = resolve_sigma_prime(sigma_prime, Sigma)
    n = tasks.n_samples.astype(np.float64)
    sdiag = np.diag(Sigma).copy()
    norms = task_spectral_norms(_task_blocks(tasks))
    rmax = np.array(
        [
            tasks.sqnorm[tasks.offsets[t] : tasks.offsets[t + 1]].max() if n[t] else 0.0
            for t in range(m)
        ]
    )
    has = n > 0
    z = np.zeros(tasks.y.shape[0])
    owner = np.repeat(np.arange(m), tasks.n_samples)
    per = loss.value(tasks.y, z) - loss.neg_conjugate(tasks.y, z)
    initial_gap = float(np.sum(np.bincount(owner, per, minlength=m)[has] / n[has]))
    if lc.mu > 0:
        a = lc.mu * lam * n[has]
        s = float(np.min(a / (a + sp_ * sdiag[has] * norms[has])))
    else:
        s = 0.0
    C = float(lc.dual_diameter**2 * sp_ / lam * np.sum(sdiag[has] * norms[has] / n[has]))
    return MochaConstants(lc, lam, sp_, sdiag, tasks.n_samples, norms, rmax, initial_gap, s, C)


def _task_blocks(tasks) -> list:
    off = tasks.offsets
    if tasks.sparse:
        X = sp.csr_matrix(
            (tasks.data, tasks.indices, tasks.indptr), shape=(off[-1], tasks.n_features)
        )
    else:
        X = tasks.Xd
    return [X[off[t] : off[t + 1]] for t in range(tasks.n_tasks)]


def theta_bar(theta_max: float, p_max: float = 0.0) -> float:
    """Theorem 1's ``Theta_bar = p_max + (1 - p_max) Theta_max``.

    Parameters
    ----------
    theta_max : float in [0, 1]
        Bound on the expected local quality of a node that reports.
    p_max : float in [0, 1)
        Bound on each node's probability of dropping out of a round.

    Returns
    -------
    float
        ``Theta_bar`` in [0, 1).

    Raises
    ------
    ValueError
        Outside those ranges (``p_max = 1`` voids the guarantee).

    Examples
    --------
    >>> theta_bar(0.5, p_max=0.5)
    0.75
    """
    if not (0.0 <= theta_max <= 1.0):
        raise ValueError(f"theta_max must be in [0, 1], got {theta_max!r}")
    if not (0.0 <= p_max < 1.0):
        raise ValueError(f"p_max must be in [0, 1), got {p_max!r}")
    return float(p_max + (1.0 - p_max) * theta_max)


def sdca_theta(constants: MochaConstants, steps) -> np.ndarray:
    """A priori local quality of ``steps`` SDCA steps on each node's subproblem.

    Node ``t``'s subproblem is an SDCA problem with regularisation ``lam / (sigma'
    Sigma_tt)`` over ``n_t`` coordinates, so ``H`` uniformly sampled steps give
    ``E[theta] <= (1 - s_t / n_t)^H`` with ``s_t = mu lam n_t / (mu lam n_t + sigma'
    Sigma_tt R_t^2)`` (Shalev-Shwartz & Zhang, 2013, Theorem 5). fmtl's kernel samples
    without replacement (a fresh permutation each pass), which the theorem does not
    cover; the benchmarks compare this value with the measured one.

    Parameters
    ----------
    constants : MochaConstants
        Must have ``mu > 0`` (smooth loss).
    steps : int or array of shape (m,)
        Local steps per node per round.

    Returns
    -------
    ndarray of shape (m,)
        The bound per node (1 for empty nodes).

    Raises
    ------
    ValueError
        For the hinge loss (no linear local rate).

    Examples
    --------
    >>> import numpy as np
    >>> Xs = [np.eye(4)]; ys = [np.ones(4)]
    >>> c = mocha_constants(Xs, ys, lam=1.0, loss="squared")
    >>> sdca_theta(c, 4)  # s_t = 4 / (4 + 1): (1 - 0.2)^4
    array([0.4096])
    """
    c = constants
    if c.loss.mu <= 0:
        raise ValueError(f"no linear local rate for the {c.loss.name} loss (mu = 0)")
    n = c.n_samples.astype(np.float64)
    steps = np.broadcast_to(np.asarray(steps, dtype=np.float64), n.shape)
    a = c.loss.mu * c.lam * n
    with np.errstate(divide="ignore", invalid="ignore"):
        st = np.where(n > 0, a / (a + c.sigma_prime * c.sigma_diag * c.max_row_sqnorm), 0.0)
        out = np.where(n > 0, (1.0 - st / np.maximum(n, 1)) ** steps, 1.0)
    return out


def _check_theta_bar(tb: float) -> float:
    if not (0.0 <= tb < 1.0):
        raise ValueError(f"theta_bar must be in [0, 1), got {tb!r}")
    return float(tb)


def _sublinear_dual(c: MochaConstants, h: np.ndarray, q: float) -> np.ndarray:
    # Theorem 2's recursion E[eps'] <= eps - q max_{s in [0,1]} (s eps - s^2 C / 2) solved
    # in closed form: affine while eps >= C (s = 1), then 1/eps grows by q / (2 C) a round
    C, b0 = c.C, c.initial_gap
    h = np.asarray(h, dtype=np.float64)
    if b0 <= C:
        h0, b_h0 = 0.0, b0
    else:
        h0 = np.ceil(np.log((C / 2.0) / (b0 - C / 2.0)) / np.log1p(-q)) if q < 1 else 1.0
        b_h0 = C / 2.0 + (1.0 - q) ** h0 * (b0 - C / 2.0)
    with np.errstate(over="ignore"):
        phase1 = C / 2.0 + (1.0 - q) ** h * (b0 - C / 2.0)
    phase2 = 1.0 / (1.0 / b_h0 + q * np.maximum(h - h0, 0.0) / (2.0 * C))
    return np.where(h < h0, phase1, phase2)


def dual_bound(constants: MochaConstants, rounds: int, theta_bar: float = 0.0) -> np.ndarray:
    """Bound on the expected dual sub-optimality ``D* - D(alpha^h)``, ``h = 0..rounds``.

    Smooth losses (Theorem 1): ``eps_0 (1 - (1 - Theta_bar) s)^h``. Lipschitz losses
    (Theorem 2): the recursion ``b_{h+1} = b_h - (1 - Theta_bar) max_{s in [0,1]} (s b_h -
    s^2 C / 2)``, ``b_0 = eps_0``, bounded in closed form: ``C/2 + (Theta_bar)^h (b_0 -
    C/2)`` while above ``C``, then ``1 / b_h >= 1 / b_{h_0} + (1 - Theta_bar)(h - h_0) /
    (2C)``, which is ``O(1 / h)``. ``eps_0`` is the initial duality gap.

    Parameters
    ----------
    constants : MochaConstants
        From :func:`mocha_constants`.
    rounds : int
        Last round ``h`` bounded.
    theta_bar : float in [0, 1), default=0.0
        From :func:`theta_bar` (0: every node solves its subproblem exactly).

    Returns
    -------
    ndarray of shape (rounds + 1,)
        The bound at ``h = 0 .. rounds``.

    Raises
    ------
    ValueError
        For a bad ``theta_bar`` or a loss with no rate.

    Examples
    --------
    >>> import numpy as np
    >>> c = mocha_constants([np.eye(2)], [np.ones(2)], lam=1.0, loss="squared")
    >>> dual_bound(c, 2)  # s = 2/3, eps_0 = 1/2
    array([0.5       , 0.16666667, 0.05555556])
    """
    tb = _check_theta_bar(theta_bar)
    c = constants
    h = np.arange(rounds + 1)
    if c.linear:
        return c.initial_gap * (1.0 - (1.0 - tb) * c.s) ** h
    if not np.isfinite(c.C):
        raise ValueError("no rate for this loss (neither smooth nor Lipschitz)")
    return _sublinear_dual(c, h, 1.0 - tb)


def gap_bound(constants: MochaConstants, rounds: int, theta_bar: float = 0.0) -> np.ndarray:
    """Bound on the duality gap ``P(W(alpha^h)) - D(alpha^h)``, smooth losses.

    One more round gains at least ``(1 - Theta_bar) s gap(alpha^h)`` in expectation and
    cannot pass ``D*``, so ``gap(alpha^h) <= (D* - D(alpha^h)) / ((1 - Theta_bar) s)``:
    :func:`dual_bound` divided by ``(1 - Theta_bar) s``. For Lipschitz losses use
    :func:`averaged_gap_bound`.

    Parameters
    ----------
    constants : MochaConstants
        From :func:`mocha_constants`.
    rounds : int
        Last round ``h`` bounded.
    theta_bar : float in [0, 1), default=0.0
        From :func:`theta_bar`.

    Returns
    -------
    ndarray of shape (rounds + 1,)
        The bound at ``h = 0 .. rounds``.

    Raises
    ------
    ValueError
        For a loss without a linear rate or a bad ``theta_bar``.

    Examples
    --------
    >>> import numpy as np
    >>> c = mocha_constants([np.eye(2)], [np.ones(2)], lam=1.0, loss="squared")
    >>> gap_bound(c, 1)
    array([0.75, 0.25])
    """
    c = constants
    if not c.linear:
        raise ValueError(f"the {c.loss.name} loss has no linear rate: use averaged_gap_bound")
    tb = _check_theta_bar(theta_bar)
    return dual_bound(c, rounds, tb) / ((1.0 - tb) * c.s)


def _averaged_gap_at(c: MochaConstants, T: int, q: float) -> float:
    # min over s in (0, 1] and T0 < T of b_T0 / (q s (T - T0)) + s C / 2
    if T <= 0:
        return float("inf")
    if T <= 4096:
        T0 = np.arange(T, dtype=np.float64)
    else:  # dense near 0 and near T, geometric in between
        T0 = np.unique(
            np.concatenate(
                [np.arange(2048.0), T - np.arange(1.0, 2049.0), np.geomspace(1, T - 1, 2048)]
            ).round()
        )
        T0 = T0[(T0 >= 0) & (T0 < T)]
    N = T - T0
    bb = _sublinear_dual(c, T0, q)
    s = np.minimum(1.0, np.sqrt(2.0 * bb / (q * N * c.C))) if c.C > 0 else np.ones_like(bb)
    return float(np.min(bb / (q * s * N) + s * c.C / 2.0))


def averaged_gap_bound(
    constants: MochaConstants, rounds: int, theta_bar: float = 0.0
) -> np.ndarray:
    """Theorem 2's bound on the average duality gap over a window of rounds.

    Summing ``gap(alpha^h) <= (D(alpha^{h+1}) - D(alpha^h)) / ((1 - Theta_bar) s) + s C / 2``
    over ``h = T_0 .. T - 1`` gives ``mean gap <= b_{T_0} / ((1 - Theta_bar) s (T - T_0)) +
    s C / 2`` for every ``s`` in (0, 1]; the value at ``T`` is the minimum over ``s`` and
    over ``T_0 < T``. The smallest gap seen before round ``T`` is below that average.

    Parameters
    ----------
    constants : MochaConstants
        From :func:`mocha_constants`.
    rounds : int
        Last window end ``T`` bounded.
    theta_bar : float in [0, 1), default=0.0
        From :func:`theta_bar`.

    Returns
    -------
    ndarray of shape (rounds + 1,)
        Entry ``T`` bounds the best gap among rounds ``0 .. T - 1`` (entry 0 is ``inf``).

    Raises
    ------
    ValueError
        For a bad ``theta_bar`` or a loss that is not Lipschitz.

    Examples
    --------
    >>> import numpy as np
    >>> c = mocha_constants([np.eye(2)], [np.ones(2)], lam=1.0, loss="hinge")
    >>> b = averaged_gap_bound(c, 50)
    >>> bool(np.all(np.diff(b[1:]) <= 0))
    True
    """
    c = constants
    if not np.isfinite(c.C):
        raise ValueError(f"the {c.loss.name} loss is not Lipschitz: use gap_bound")
    q = 1.0 - _check_theta_bar(theta_bar)
    out = np.full(rounds + 1, np.inf)
    for T in range(1, rounds + 1):
        out[T] = min(out[T - 1], _averaged_gap_at(c, T, q))
    return out


def predicted_rounds(
    constants: MochaConstants, eps: float, theta_bar: float = 0.0, target: str = "gap"
) -> float:
    """Rounds after which the bound guarantees accuracy ``eps`` (an upper bound).

    Parameters
    ----------
    constants : MochaConstants
        From :func:`mocha_constants`.
    eps : float > 0
        Target, in the objective's units.
    theta_bar : float in [0, 1), default=0.0
        From :func:`theta_bar`.
    target : {"gap", "dual"}, default="gap"
        ``"gap"``: the duality gap (smooth losses: at round ``H``, :func:`gap_bound`;
        Lipschitz losses: the best gap before round ``H``, :func:`averaged_gap_bound`).
        ``"dual"``: ``D* - D(alpha^H)`` (:func:`dual_bound`).

    Returns
    -------
    float
        The smallest such ``H`` (``inf`` beyond ``10**12`` rounds).

    Raises
    ------
    ValueError
        For a bad ``eps``, ``theta_bar`` or ``target``, or a loss that is neither smooth
        nor Lipschitz.

    Examples
    --------
    >>> import numpy as np
    >>> c = mocha_constants([np.eye(2)], [np.ones(2)], lam=1.0, loss="squared")
    >>> predicted_rounds(c, 1e-3, target="dual")  # 0.5 / 3^H <= 1e-3
    6.0
    """
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    if target not in ("gap", "dual"):
        raise ValueError(f"target must be 'gap' or 'dual', got {target!r}")
    q = 1.0 - _check_theta_bar(theta_bar)
    c = constants
    if c.linear:
        start = c.initial_gap / (q * c.s) if target == "gap" else c.initial_gap
        if start <= eps:
            return 0.0
        return float(np.ceil(np.log(start / eps) / -np.log1p(-q * c.s)))
    if not np.isfinite(c.C):
        raise ValueError("no rate for this loss (neither smooth nor Lipschitz)")

    def ok(T: int) -> bool:
        if target == "dual":
            return float(_sublinear_dual(c, np.array([T]), q)[0]) <= eps
        return _averaged_gap_at(c, T, q) <= eps

    if target == "dual" and ok(0):
        return 0.0
    lo, hi = 0, 1
    while not ok(hi):  # doubling, then bisection (the bounds do not increase with T)
        lo, hi = hi, hi * 2
        if hi > 10**12:
            return float("inf")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return float(hi)


def measured_rounds(history: History, eps: float, column: str = "gap") -> float:
    """First recorded round at which ``history[column] <= eps`` (``nan`` if never).

    Parameters
    ----------
    history : History
        A run's records (with a ``round`` column).
    eps : float
        The threshold.
    column : str, default="gap"
        The column compared with ``eps``.

    Returns
    -------
    float
        The value of the ``round`` column there.

    Raises
    ------
    ValueError
        If ``history`` has no ``column`` column.
    KeyError
        If ``history`` has no ``round`` column and ``column`` reaches ``eps``.

    Examples
    --------
    >>> from fmtl.federated import History
    >>> h = History()
    >>> for r, g in enumerate([1.0, 0.1, 0.01], start=1):
    ...     h.append(round=r, gap=g)
    >>> measured_rounds(h, 0.05)
    3.0
    """
    vals = _history_array(history, column)
    hit = np.flatnonzero(vals <= eps)
    return float(history["round"][hit[0]]) if hit.size else float("nan")


def _history_array(history: History, key: str) -> np.ndarray:
    if key not in history.columns:
        raise ValueError(
            f"history has no {key!r} column: run with record_local_gaps=True and eval_every=1"
        )
    return np.asarray(history[key], dtype=np.float64)


def theta_upper(history: History) -> np.ndarray:
    """Certified upper bound on each node's realised ``theta_t^h`` from History.

    With ``g0, g1`` the node's local Fenchel gaps at the start and end of its round and
    ``p = G_t(d alpha_t) - G_t(0)`` its subproblem's increase (History columns
    ``local_gap_start``, ``local_gap_end``, ``local_progress``), the true
    ``theta = (G* - G(d)) / (G* - G(0))`` is at most both ``g1 / (g1 + p)`` (as ``G* -
    G(d) <= g1``) and ``1 - p / g0`` (as ``G* - G(0) <= g0``). Dropped or failed nodes get
    ``theta = 1``; a node already at its optimum (``g0 = 0``) gets 0.
    :func:`exact_local_theta` gives the exact value by solving the subproblems.

    Parameters
    ----------
    history : History
        From a run with ``record_local_gaps=True`` and ``eval_every=1``.

    Returns
    -------
    ndarray of shape (rounds, m)
        The bound per recorded round and node, in [0, 1].

    Raises
    ------
    ValueError
        If the local-gap columns are missing.
    KeyError
        If the ``dropped`` or ``failed`` column is missing.

    See Also
    --------
    effective_theta : The gap-weighted per-round value.
    exact_local_theta : The exact value, by solving the subproblems.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [X @ np.ones(3) for X in Xs]
    >>> res = mocha(Xs, ys, lam=0.1, loss="squared", relationship="fixed", outer_iters=1,
    ...             inner_iters=3, local_frac=0.5, record_local_gaps=True, random_state=0)
    >>> u = theta_upper(res.history)
    >>> u.shape, bool(np.all((0 <= u) & (u <= 1)))
    ((3, 2), True)
    """
    g0 = _history_array(history, "local_gap_start")
    g1 = _history_array(history, "local_gap_end")
    p = _history_array(history, "local_progress")
    off = np.asarray(history["dropped"], dtype=bool) | np.asarray(history["failed"], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        by_end = np.where(g1 + p > 0, g1 / (g1 + p), 0.0)
        by_start = np.where(g0 > 0, 1.0 - p / g0, 0.0)
    upper = np.clip(np.minimum(by_end, by_start), 0.0, 1.0)
    upper[off] = 1.0
    return upper


def effective_theta(history: History, initial_gap: float) -> np.ndarray:
    """Per-round ``Theta_h = 1 - sum_t (1 - theta_t) gap_t / gap``, gap-weighted over nodes.

    The round's guaranteed dual increase is ``s (1 - Theta_h) gap(alpha^h)``: node ``t``'s
    weight is its share ``gap_t`` of the duality gap at the round's start (its recorded
    ``local_gap_start``); dropped nodes count with ``theta = 1``. Uses
    :func:`theta_upper`, so the realised bound it gives is certified.

    Parameters
    ----------
    history : History
        With ``local_gap_start``, ``local_gap_end``, ``local_progress`` and ``gap`` every
        round.
    initial_gap : float
        The gap before round 1 (``MochaConstants.initial_gap`` when starting from 0).

    Returns
    -------
    ndarray of shape (rounds,)
        ``Theta_h`` per recorded round, in [0, 1].

    Raises
    ------
    ValueError
        If the local-gap or ``gap`` columns are missing.
    KeyError
        If the ``dropped`` or ``failed`` column is missing.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [X @ np.ones(3) for X in Xs]
    >>> res = mocha(Xs, ys, lam=0.1, loss="squared", relationship="fixed", outer_iters=1,
    ...             inner_iters=3, local_frac=0.5, record_local_gaps=True, random_state=0)
    >>> c = mocha_constants(Xs, ys, lam=0.1, loss="squared")
    >>> th = effective_theta(res.history, c.initial_gap)
    >>> th.shape, bool(np.all((0 <= th) & (th < 1)))
    ((3,), True)
    """
    upper = theta_upper(history)
    g0 = np.nan_to_num(_history_array(history, "local_gap_start"), nan=0.0)
    gaps = np.concatenate([[initial_gap], _history_array(history, "gap")[:-1]])
    gain = np.sum((1.0 - upper) * g0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.where(gaps > 0, 1.0 - gain / gaps, 0.0), 0.0, 1.0)


def exact_local_theta(
    Xs,
    ys,
    lam: float,
    alpha_before: np.ndarray,
    alpha_after: np.ndarray,
    loss: str | Loss = "hinge",
    *,
    gamma: float = 1.0,
    sigma: np.ndarray | None = None,
    sigma_prime: str | float = "gershgorin",
    tol: float = 1e-13,
    max_passes: int = 100_000,
) -> np.ndarray:
    """``theta_t = (G_t* - G_t(d_t)) / (G_t* - G_t(0))`` by solving each subproblem.

    ``d = alpha_after - alpha_before`` is one federated round's update; ``G_t`` is node
    ``t``'s subproblem at ``alpha_before`` (model ``W = Sigma B(alpha_before) / lam``),
    solved by SDCA until its Fenchel gap is ``<= tol`` times its initial gap.

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
        As for :func:`fmtl.federated.mocha`.
    lam : float
        Regularisation strength (not validated here: pass the run's ``lam``).
    alpha_before, alpha_after : ndarray of shape (n_samples_total,)
        Dual variables before and after the round (``MochaResult.dual_coef``).
    loss : str or Loss, default="hinge"
        As for :func:`fmtl.federated.mocha`.
    gamma : float, default=1.0
        As for :func:`fmtl.federated.mocha`.
    sigma : ndarray of shape (m, m), optional
        The fixed relationship of the round (default ``I / m``).
    sigma_prime : {"gershgorin", "spectral"} or float, default="gershgorin"
        As for :func:`fmtl.federated.mocha`.
    tol : float, default=1e-13
        Relative Fenchel gap at which each subproblem counts as solved.
    max_passes : int, default=100000
        Cap on SDCA passes over each node's data.

    Returns
    -------
    ndarray of shape (m,)
        ``theta_t``; ``nan`` for nodes already at their optimum (``G* = G(0)``).

    Raises
    ------
    ValueError
        If the dual vectors have the wrong shape or are not finite; for an unknown loss,
        invalid data, a bad ``sigma`` or ``sigma_prime`` (as :func:`mocha_constants`).
    TypeError
        If ``ys`` is None or the data are not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [X @ np.ones(3) for X in Xs]
    >>> res = mocha(Xs, ys, lam=0.1, loss="squared", relationship="fixed", outer_iters=1,
    ...             inner_iters=1, local_frac=0.5, random_state=0)
    >>> theta = exact_local_theta(Xs, ys, 0.1, np.zeros(40), res.dual_coef, loss="squared")
    >>> theta.shape, bool(np.all((0 < theta) & (theta < 1)))
    ((2,), True)
    >>> exact_local_theta(Xs, ys, 0.1, np.zeros(40), np.zeros(40), loss="squared")
    array([1., 1.])
    """
    loss = get_loss(loss, gamma)
    tasks = as_tasks(Xs, ys, loss)
    m = tasks.n_tasks
    for name, a in (("alpha_before", alpha_before), ("alpha_after", alpha_after)):
        a = np.asarray(a)
        if a.shape != tasks.y.shape or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be a finite array of shape {tasks.y.shape}")
    Sigma = identity_sigma(m) if sigma is None else check_sigma(sigma, m)
    rho = resolve_sigma_prime(sigma_prime, Sigma)
    Wt = Sigma @ _dual_to_B(tasks, np.asarray(alpha_before, dtype=np.float64)) / lam
    sdiag = np.diag(Sigma).copy()
    dual = DualRound(tasks, loss, lam, True)

    def progress(alpha_end: np.ndarray) -> np.ndarray:
        dual.alpha[:] = alpha_before
        a_end = np.asarray(alpha_end, dtype=np.float64)
        dual.dB[:] = _dual_to_B(tasks, a_end - dual.alpha)
        before = dual.alpha.copy()
        dual.alpha[:] = a_end
        dual._local_progress(before, Wt, sdiag, rho, np.ones(m, dtype=bool))
        return dual.progress.copy()

    achieved = progress(alpha_after)
    dual.alpha[:] = alpha_before
    n = tasks.n_samples
    dual.run(
        Wt,
        sdiag,
        rho,
        (n * max_passes).astype(np.int64),
        np.arange(1, m + 1, dtype=np.uint64),
        np.ones(m, dtype=bool),
        tol,
    )
    best = progress(dual.alpha.copy())
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(best > 0, (best - achieved) / best, np.nan)
    return theta


def _dual_to_B(tasks, alpha: np.ndarray) -> np.ndarray:
    # b_t = X_t^T a_t / n_t
    blocks = _task_blocks(tasks)
    B = np.zeros((tasks.n_tasks, tasks.n_features))
    off = tasks.offsets
    for t, X in enumerate(blocks):
        if X.shape[0]:
            B[t] = np.asarray(X.T @ alpha[off[t] : off[t + 1]]).ravel() / X.shape[0]
    return B
