"""The learned relationship solved to its joint optimum: quasi-Newton on Sigma itself.

MOCHA's alternation (a W-step, then the closed-form Sigma-step) is a majorise-minimise
scheme whose majoriser charges ``1 / eps`` for moving Sigma out of its current range; when
``d < m`` it stalls far from the joint optimum (measured: ``docs/problem.md``). This module
minimises the convex function ``g(Sigma) = min_W P(W, Sigma)`` directly:

* ``g`` is convex on ``{Sigma >= eps I, tr Sigma = 1}`` with gradient ``-B B^T / (2 lam)``
  (Danskin; ``B`` the W-step's dual rows), or ``-(I + rho Sigma)^-1 B B^T (I + rho
  Sigma)^-1 / (2 lam)`` with a ridge term;
* Sigma is parametrised by a factor ``L``: ``Sigma = eps I + (1 - m eps) L L^T / ||L||_F^2``
  (every ``L != 0`` is feasible), and L-BFGS runs on ``L``;
* when ``d < m`` it runs in *feature space*: the penalty's minimum over
  Sigma is a spectral function of ``W``'s singular values, so ``J* = min_M sum_t g_t(M)``
  over ``M >= eps I_d``, ``tr M = 1 - (m - d) eps``, where ``g_t`` is task ``t``'s own
  problem with penalty ``(lam/2) w^T M^-1 w``. The tasks decouple: every function value
  is one round in which each node solves its own problem on ``X_t M^(1/2)`` (a Local fit,
  certified), and ``d x d`` is small.

Each function value is a certified W-step to a relative gap ``tau`` that shrinks with the
progress (an inexact oracle that stays an order of magnitude below the decrease it must
see); the fit stops once the joint certificate ``P(W) - D(alpha)`` is ``<= tol |P(W)|``,
where ``P(W)`` uses the best Sigma for ``W`` (:func:`fmtl.relationships.omega_update`) and
``D`` is the exact joint dual (DESIGN.md section 2), a lower bound on ``J*``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp

from .._random import rng_from
from ..losses import Loss
from ..relationships import omega_update
from ..relationships.learned import _floored_spectrum
from ..solvers._packing import _EMPTY_F, _EMPTY_I, _EMPTY_I32, PackedTasks, dual_sums
from ._loop import objective_terms
from .engine import certificates_from_terms, joint_terms
from .history import History

TAU_START = 1e-3  # first W-steps' relative gap: the first L-BFGS steps gain more than this
TAU_MIN = 1e-12  # below this the W-step's certificate is rounding
ARMIJO = 1e-4
TAU_OF_TOL = 0.1  # the last W-steps' gap: a tenth of the joint tolerance
TAU_OF_DECREASE = 0.1
TAU_OF_GAP = 0.05
MEMORY = 10  # 30 and 100 pairs: the same evaluations on Land Mine
MAX_BACKTRACKS = 12
BUNDLE_MAX = 60  # duals kept for the hull certificate (measured: 40 gave 6x the sub-opt.)
BUNDLE_BYTES = 400 * 2**20
WSTEP_RESTARTS = 9  # a coupled W-step may take 10 x inner_iters rounds to reach tau
WARM_MIX = 0.01  # identity's share in a warm-started relationship
# task space: a closed-form Sigma-step every 5 accepted steps (measured on 9 clustered tasks x
# 10 features, hinge: certified 1e-4 in 60 W-steps instead of 2.9e-4 after 300; every 3:
# 180; in feature space it slowed `small` from 2.3 s to 4.4 s, so it is off there)
SIGMA_STEP_EVERY = 5
BUNDLE_EVERY = 5  # W-steps between hull certificates
SDP_MAX = 64  # Clarabel: 0.2 s at 39 rows, 10 s at 167 (measured)


def penalty_minimum(Wt: np.ndarray, sigma_floor: float) -> float:
    """``min tr(W Sigma^-1 W^T)`` over ``Sigma >= eps I``, ``tr Sigma = 1`` (rows of ``Wt``
    are tasks): ``sum_i s_i(W)^2 / sigma_i`` with the water-filled ``sigma_i`` of
    :func:`fmtl.relationships.omega_update`, from ``W``'s singular values."""
    m = Wt.shape[0]
    sv = np.zeros(m)
    k = min(Wt.shape)
    if k:
        sv[:k] = np.linalg.svd(Wt, compute_uv=False)
    s = _floored_spectrum(sv, sigma_floor)
    return float(np.sum(sv**2 / s))


def _joint_dual(conj_mean: np.ndarray, B: np.ndarray, lam, sigma_floor, ridge) -> float:
    """The exact joint dual ``sum_t mean(-l*(-a)) - max_Sigma tr(B^T M(Sigma) B) / (2 lam)``
    (:func:`fmtl.federated.engine.certificates_from_terms`' bound; its primal part unused)."""
    terms = joint_terms(B, sigma_floor, ridge)
    return certificates_from_terms(conj_mean, conj_mean, 0.0, lam, sigma_floor, **terms)[
        "joint_dual"
    ]


def joint_certificate(
    tasks: PackedTasks, alpha, B, Wt, lam: float, loss: Loss, sigma_floor: float, ridge=0.0
) -> dict:
    """The joint problem's primal at ``W`` (with its best Sigma), the exact joint dual at
    ``alpha`` and their gap (``rel_gap = gap / |primal|``): ``P(W) - D(alpha)`` bounds
    ``P(W) - J*`` for any dual-feasible ``alpha``."""
    loss_mean, conj_mean = objective_terms(tasks, alpha, Wt, loss)
    quad = penalty_minimum(Wt, sigma_floor) + ridge * float(np.sum(Wt * Wt))
    primal = float(loss_mean.sum()) + 0.5 * lam * quad
    dual = _joint_dual(conj_mean, B, lam, sigma_floor, ridge)
    gap = primal - dual
    return {
        "primal": primal,
        "dual": dual,
        "gap": gap,
        "rel_gap": gap / max(abs(primal), np.finfo(float).tiny),
        "conj": float(conj_mean.sum()),
    }


def _simplex_projection(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{theta >= 0, sum theta = 1}`` (sort-based)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.nonzero(u * np.arange(1, v.size + 1) > css)[0][-1]
    return np.maximum(v - css[k] / (k + 1.0), 0.0)


def bundle_weights(conj: np.ndarray, Bs: np.ndarray, lam: float, sigma_floor: float) -> np.ndarray:
    """Weights ``theta`` in the simplex for a good joint dual on the hull of earlier
    W-steps' duals: ``max_theta sum_k theta_k c_k - (eps ||B(theta)||_F^2 + (1 - m eps)
    lambda_max(B(theta)^T B(theta))) / (2 lam)``, ``B(theta) = sum_k theta_k B_k`` and
    ``c_k`` the conjugate terms (a lower bound of the conjugate at the combination, which
    is concave). ``Bs``: ``(K, m, d)``.

    Any ``theta`` gives a valid bound once the dual is evaluated exactly at
    ``alpha(theta)``, so this need only be good. Near the optimum one W-step's dual is
    only first-order accurate (``lambda_max`` is not smooth where the optimal Sigma has
    rank > 1); the hull of the last few dozen is accurate to the primal's order (measured:
    ``docs/problem.md``). Solved as a small SDP (cvxpy, Clarabel) when its matrix
    inequality is at most ``SDP_MAX`` rows, else by smoothed projected gradient.
    """
    K, m, d = Bs.shape
    if m > K * d:  # the same norms on a K d-row factor: B_k = Q R_k
        R = np.linalg.qr(np.concatenate(list(Bs), axis=1), mode="r")
        Bs = np.stack([R[:, k * d : (k + 1) * d] for k in range(K)])
    c = 1.0 - m * sigma_floor
    if Bs.shape[1] + d <= SDP_MAX:
        theta = _bundle_sdp(conj, Bs, lam, sigma_floor, c)
        if theta is not None:
            return theta
    return _bundle_smoothed(conj, Bs, lam, sigma_floor, c)


def _bundle_sdp(conj, Bs, lam, eps, c) -> np.ndarray | None:
    import cvxpy as cp

    K, rows, d = Bs.shape
    C = Bs.reshape(K, -1).T
    scale = float(np.abs(C).max()) or 1.0
    theta = cp.Variable(K, nonneg=True)
    Bt = cp.reshape((C / scale) @ theta, (rows, d), order="C")
    quad = eps * cp.sum_squares(Bt) + c * cp.square(cp.sigma_max(Bt))
    problem = cp.Problem(
        cp.Maximize(conj @ theta - quad * (scale**2 / (2.0 * lam))), [cp.sum(theta) == 1]
    )
    try:
        with warnings.catch_warnings():  # 'inaccurate' is fine: the bound is evaluated exactly
            warnings.simplefilter("ignore", UserWarning)
            problem.solve(solver="CLARABEL")
    except (cp.error.SolverError, ArithmeticError, ValueError):
        return None
    if theta.value is None or not np.all(np.isfinite(theta.value)):
        return None
    w = np.clip(theta.value, 0.0, None)
    return w / w.sum() if w.sum() > 0 else None


def _bundle_smoothed(conj, Bs, lam, eps, c, iters: int = 400) -> np.ndarray:
    """FISTA (backtracking) on the bound with ``lambda_max`` replaced by its log-sum-exp
    upper bound, the smoothing decreased by 10 from 1e-2 ``lambda_max`` to 1e-5."""
    K = Bs.shape[0]
    flat = Bs.reshape(K, -1)
    gram = flat @ flat.T  # <B_k, B_l>

    def value_grad(theta, mu):
        B = np.tensordot(theta, Bs, axes=1)
        # lambda_max(B^T B) = lambda_max(B B^T): the smaller Gram matrix
        rows = B.shape[0] < B.shape[1]
        e, V = np.linalg.eigh(B @ B.T if rows else B.T @ B)
        w = np.exp((e - e[-1]) / mu)
        P = (V * (w / w.sum())) @ V.T
        smax = e[-1] + mu * np.log(w.sum())
        val = conj @ theta - (eps * theta @ gram @ theta + c * smax) / (2.0 * lam)
        PB = P @ B if rows else B @ P
        return val, conj - (eps * gram @ theta + c * flat @ PB.ravel()) / lam

    theta = np.full(K, 1.0 / K)
    scale = float(np.linalg.norm(np.tensordot(theta, Bs, axes=1), 2) ** 2)
    step = 1.0
    for mu in scale * np.array([1e-2, 1e-3, 1e-4, 1e-5]):
        if not mu > 0:
            break
        y, prev, t = theta.copy(), theta.copy(), 1.0
        for _ in range(iters):
            fy, gy = value_grad(y, mu)
            # the simplex has diameter sqrt(2): a longer step is never needed
            step = min(step, 10.0 / max(float(np.linalg.norm(gy)), np.finfo(float).tiny))
            for _ in range(60):
                cand = _simplex_projection(y + step * gy)
                diff = cand - y
                if value_grad(cand, mu)[0] >= fy + gy @ diff - diff @ diff / (2 * step) - (
                    1e-15 * abs(fy)
                ):
                    break
                step *= 0.5
            t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
            y = _simplex_projection(cand + ((t - 1.0) / t_next) * (cand - prev))
            prev, t, step = cand, t_next, step * 1.5
        theta = prev
    return theta


class _Relationship:
    """Sigma (or M, in feature space) from the factor ``L``, a factor from a model, and the
    chain rule back to ``L``."""

    def __init__(self, m: int, d: int, sigma_floor: float, feature: bool):
        self.m, self.d, self.eps, self.feature = m, d, sigma_floor, feature
        self.k = self.d if feature else self.m
        self.c = 1.0 - self.m * sigma_floor

    def matrix(self, L: np.ndarray) -> np.ndarray:
        S = (self.c / float(np.sum(L * L))) * (L @ L.T)
        S[np.diag_indices_from(S)] += self.eps
        return (S + S.T) / 2.0

    def factor_of(self, Wt: np.ndarray) -> np.ndarray:
        """A factor near the best relationship for ``Wt`` (a warm start), of full rank: a
        zero column of ``L`` has zero gradient, so L-BFGS could never grow it back."""
        if not self.feature:
            e, V = np.linalg.eigh(omega_update(Wt, self.eps)[0])
        else:
            # M = U diag(s) U^T, U the left singular vectors of W (d x m), trace 1-(m-d)eps
            e, V = np.linalg.eigh(Wt.T @ Wt)
            total = 1.0 - (self.m - self.d) * self.eps
            e = total * _floored_spectrum(np.sqrt(np.clip(e, 0.0, None)), self.eps / total)
        p = np.clip(e - self.eps, 0.0, None) / self.c  # the spectraplex part, sum 1
        p = (1.0 - WARM_MIX) * p / max(p.sum(), np.finfo(float).tiny) + WARM_MIX / self.k
        return V * np.sqrt(p)

    def grad_factor(self, L: np.ndarray, G: np.ndarray) -> np.ndarray:
        """``d g / d L`` from ``G = d g / d S`` (symmetric)."""
        s = float(np.sum(L * L))
        return (2.0 * self.c / s) * (G @ L) - (2.0 * self.c / s**2) * float(
            np.sum(G * (L @ L.T))
        ) * L


def _transformed(tasks: PackedTasks, half: np.ndarray) -> PackedTasks:
    """``X_t M^(1/2)`` for every task, as dense packed tasks."""
    if tasks.sparse:
        X = sp.csr_matrix(
            (tasks.data, tasks.indices, tasks.indptr), shape=(tasks.y.shape[0], tasks.n_features)
        )
        Xh = np.ascontiguousarray(X @ half, dtype=np.float64)
    else:
        Xh = np.ascontiguousarray(tasks.Xd @ half)
    sq = np.einsum("ij,ij->i", Xh, Xh)
    return PackedTasks(
        Xh, _EMPTY_F, _EMPTY_I32, _EMPTY_I, False, tasks.y, sq, tasks.offsets, tasks.n_features
    )


class _Evaluation:
    """One function value: the certified W-step at ``S(L)`` and what L-BFGS needs of it."""

    __slots__ = ("L", "f", "noise", "grad", "result", "Wt", "B", "cert", "rounds", "local_steps")


def _lbfgs_direction(g: np.ndarray, pairs: list) -> np.ndarray:
    """``-H g`` by the two-loop recursion (Nocedal & Wright, Algorithm 7.4)."""
    q = g.copy()
    coeffs = []
    for s, y, rho in reversed(pairs):
        a = rho * float(s @ q)
        q -= a * y
        coeffs.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y, rho), a in zip(pairs, reversed(coeffs), strict=True):
        q += (a - rho * float(y @ q)) * s
    return -q


def joint_lbfgs(
    tasks: PackedTasks,
    loss: Loss,
    lam: float,
    *,
    sigma_floor: float,
    tol: float,
    max_evals: int,
    inner_iters: int,
    ridge: float = 0.0,
    random_state=None,
    n_threads: int | None = None,
    callback=None,
    warm_start=None,
    space: str = "auto",
    eval_every: int = 1,
):
    """Minimise ``sum_t mean loss + (lam/2) tr(W Sigma^-1 W^T)`` over ``W`` and ``Sigma >=
    eps I``, ``tr Sigma = 1`` by L-BFGS on Sigma's factor with certified W-steps (module
    docstring); returns a :class:`~fmtl.federated.MochaResult` whose ``sigma`` is the best
    relationship for ``coef`` and whose History holds one record per W-step (``rel_gap``:
    the joint certificate). Arguments are validated by :func:`fmtl.federated.mocha`."""
    from .mocha import MochaResult, mocha, symmetric_with_precision  # W-steps: mocha's

    m, d = tasks.n_tasks, tasks.n_features
    if space == "auto":
        space = "feature" if d < m else "task"
    rel = _Relationship(m, d, sigma_floor, space == "feature")
    rng = rng_from(random_state)
    history, t0 = History(), time.perf_counter()
    state = {"rounds": 0, "best_dual": -np.inf, "prev": warm_start, "best": None}

    def certified() -> dict:
        """The best model's primal, the best dual so far and their gap (History's columns;
        ``joint_*``: the same, under the alternation's names)."""
        primal, dual = state["best"].cert["primal"], state["best_dual"]
        gap = primal - dual
        relative = gap / max(abs(primal), np.finfo(float).tiny)
        return dict(
            primal=primal, dual=dual, gap=gap, rel_gap=relative, joint_dual=dual, joint_gap=gap
        )

    def gap_now() -> float:
        """The certified relative gap of the best model so far."""
        return certified()["rel_gap"]

    bundle: list = []  # (conjugate sum, B, alpha) of recent W-steps: the hull's certificate
    cap = int(min(BUNDLE_MAX, max(4, BUNDLE_BYTES // (8 * max(1, tasks.y.shape[0])))))
    since_bundle = [0]  # W-steps since the last hull certificate

    def improve_bound() -> None:
        """The best joint dual on the hull of the bundle (exact at the combination)."""
        since_bundle[0] = 0
        if ridge or len(bundle) < 3:
            return
        w = bundle_weights(
            np.array([c for c, _, _ in bundle]),
            np.stack([B for _, B, _ in bundle]),
            lam,
            sigma_floor,
        )
        alpha = sum(wk * a for wk, (_, _, a) in zip(w, bundle, strict=True))
        B = dual_sums(tasks, alpha)
        _, conj = objective_terms(tasks, alpha, np.zeros_like(B), loss)
        state["best_dual"] = max(state["best_dual"], _joint_dual(conj, B, lam, sigma_floor, 0.0))

    def evaluate(L: np.ndarray, tau: float) -> _Evaluation:
        S = rel.matrix(L)
        seed = int(rng.integers(2**63 - 1))
        common = dict(
            relationship="fixed", outer_iters=1, inner_iters=inner_iters, tol=tau,
            local_work="auto", sigma_prime="adaptive", random_state=seed,
            n_threads=n_threads, warm_start=state["prev"], eval_every=eval_every,
        )  # fmt: skip
        if rel.feature:
            # the W-step's matrix M (I + rho M)^-1 (the ridge term's, as in effective_sigma)
            e, V = np.linalg.eigh(S)
            shrink = 1.0 / (1.0 + ridge * e)
            r = np.sqrt(e * shrink)
            half, ihalf = (V * r) @ V.T, (V / r) @ V.T
            res = mocha(_transformed(tasks, half), None, lam / m, loss, sigma=np.eye(m) / m,
                        **common)  # fmt: skip
            B, Wt = res.B @ ihalf, res.coef @ half
            Vs = V * shrink
            inv = Vs @ V.T
            G = -(inv @ (B.T @ B) @ inv) / (2.0 * lam)
        else:
            res = mocha(tasks, None, lam, loss, sigma=S, ridge=ridge, **common)
            for _ in range(WSTEP_RESTARTS):
                # a near-singular Sigma slows a coupled W-step: finish it, within a cap
                if float(res.history["rel_gap"][-1]) <= tau:
                    break
                more = mocha(tasks, None, lam, loss, sigma=S, ridge=ridge,
                             **dict(common, warm_start=res))  # fmt: skip
                more.history.records[:0] = res.history.records
                res = more
            B, Wt = res.B, res.coef
            BB = B @ B.T
            if ridge:
                inv = np.linalg.inv(np.eye(m) + ridge * S)
                BB = inv @ BB @ inv
            G = -BB / (2.0 * lam)
        state["prev"] = res
        ev = _Evaluation()
        ev.L, ev.result, ev.Wt, ev.B = L, res, Wt, B
        ev.f = float(res.history["dual"][-1])  # D_S(alpha) <= g(S) <= D_S(alpha) + noise
        ev.noise = max(0.0, float(res.history["gap"][-1]))
        ev.grad = rel.grad_factor(L, (G + G.T) / 2.0)
        ev.cert = joint_certificate(tasks, res.dual_coef, B, Wt, lam, loss, sigma_floor, ridge)
        bundle.append((ev.cert["conj"], B, np.array(res.dual_coef)))
        del bundle[:-cap]
        ev.rounds = len(res.history)
        ev.local_steps = np.sum(res.history["local_steps"], axis=0)
        state["rounds"] += ev.rounds
        # every W-step's model is a candidate and its dual a lower bound on J*; the hull's
        # dual is better, and computed when worth its cost
        if state["best"] is None or ev.cert["primal"] < state["best"].cert["primal"]:
            state["best"] = ev
        state["best_dual"] = max(state["best_dual"], ev.cert["dual"])
        since_bundle[0] += 1
        # on a count, not a clock: the same seed gives the same fit
        if gap_now() > tol and since_bundle[0] >= BUNDLE_EVERY:
            improve_bound()
        record = dict(
            round=state["rounds"], outer=len(history) + 1, **certified(),
            point_primal=ev.cert["primal"], wstep_rel_gap=float(res.history["rel_gap"][-1]),
            tau=tau, wall_time=time.perf_counter() - t0, local_steps=ev.local_steps,
        )  # fmt: skip
        history.append(**record)
        if callback is not None:
            callback(record)
        return ev

    tau = TAU_START
    tau_floor = max(TAU_MIN, TAU_OF_TOL * tol) if tol > 0 else TAU_MIN
    L0 = np.eye(rel.k) / np.sqrt(rel.k)
    if warm_start is not None:
        L0 = rel.factor_of(_original_coef(warm_start))
    cur = evaluate(L0, tau)
    pairs: list = []
    steps = 0
    while len(history) < max_evals and not (tol > 0 and gap_now() <= tol):
        g = cur.grad.ravel()
        direction = _lbfgs_direction(g, pairs)
        slope = float(g @ direction)
        if not slope < 0:
            pairs, direction = [], -g
            slope = -float(g @ g)
        if slope == 0.0:
            break
        step = 1.0 if pairs else 0.5 * np.linalg.norm(cur.L) / np.linalg.norm(g)
        accepted = None
        for _ in range(MAX_BACKTRACKS):
            if len(history) >= max_evals:
                break
            trial = evaluate(cur.L + step * direction.reshape(cur.L.shape), tau)
            # the oracle is exact to its W-steps' gaps: allow that much in the decrease
            if trial.f <= cur.f + ARMIJO * step * slope + cur.noise + trial.noise:
                accepted = trial
                break
            step *= 0.5
        if accepted is None:
            if tau <= tau_floor or len(history) >= max_evals:
                break
            tau = max(tau_floor, 0.01 * tau)  # the line search failed in the oracle's noise
            pairs = []
            continue
        s = (accepted.L - cur.L).ravel()
        y = (accepted.grad - cur.grad).ravel()
        sy = float(s @ y)
        if sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y):
            pairs = [*pairs[-(MEMORY - 1) :], (s, y, 1.0 / sy)]
        decrease = (cur.f - accepted.f) / max(abs(accepted.f), np.finfo(float).tiny)
        cur = accepted
        steps += 1
        if not rel.feature and steps % SIGMA_STEP_EVERY == 0 and len(history) < max_evals:
            # MOCHA's closed-form Sigma-step at the best model: it never raises the joint
            # primal and puts the floor's directions exactly on the floor, where the
            # factor only shrinks them slowly; kept if its value is lower
            jump = evaluate(rel.factor_of(state["best"].Wt), tau)
            if jump.f < cur.f:
                cur, pairs = jump, []
        # the oracle an order of magnitude below the progress it has to resolve, or a
        # fraction of the certified gap (measured: either alone was slower)
        target = max(TAU_OF_DECREASE * max(decrease, 0.0), TAU_OF_GAP * gap_now())
        tau = float(np.clip(min(tau, target), tau_floor, TAU_START))
    if tol > 0 and gap_now() > tol and len(history) < max_evals and tau > tau_floor:
        # stopped early (no descent direction, or one task: nothing to learn): the last
        # W-step to the final accuracy, so that the model is certified where it can be
        tau = tau_floor
        evaluate(cur.L, tau)
    if tol > 0 and gap_now() > tol and since_bundle[0] > 0:
        improve_bound()  # the last evaluations' hull, before reporting
        history.records[-1].update(certified())
    best = state["best"]
    Sigma, Omega = symmetric_with_precision(omega_update(best.Wt, sigma_floor)[0])
    return MochaResult(
        coef=best.Wt,
        sigma=Sigma,
        omega=Omega,
        dual_coef=best.result.dual_coef,
        B=best.B,
        history=history,
        never_reported=best.result.never_reported,
    )


def _original_coef(warm_start) -> np.ndarray:
    coef = getattr(warm_start, "coef", None)
    if coef is None:
        raise TypeError(f"warm_start must be a MochaResult, got {type(warm_start).__name__}")
    return np.asarray(coef, dtype=np.float64)
