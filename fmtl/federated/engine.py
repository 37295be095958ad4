"""One server state machine for fmtl's dual methods, and the loop that drives it.

MOCHA (learned or fixed Sigma, dense or low-rank), CoCoA, mini-batch SDCA and kernel MOCHA
are *configurations* of :class:`DualEngine`; they differ only in the numbers they pass it
(schedule, ``sigma'`` rule, local accuracy, aggregation) and in the client pool that runs
their local solves. The engine holds what the server knows: ``B`` (row ``t`` is ``b_t =
X_t^T a_t / n_t``), ``Sigma`` (dense or :class:`~fmtl.relationships.LowRankSigma`),
``sigma'``, the model ``W = M B / lam`` (``M = Sigma`` unless a ridge term makes it
``Sigma (I + rho Sigma)^{-1}``), the RNG, the systems runtime (work draws,
drops, failures, estimated time), the loop position and History. All of it is vectors over
tasks: a round costs a few array operations whatever the number of tasks.

A round is four calls (the same for every engine, in-process or federated):

1. :meth:`DualEngine.begin_round`: at the start of a W-step the closed-form Sigma-step
   (learned relationship) and ``sigma'``; then the systems draws (work, drops) and one
   64-bit seed per node, in that order (the RNG stream every fit has always used);
2. :meth:`DualEngine.end_train` with the nodes' ``dB``, work done and failures: ``B +=
   dB`` (or ``s dB`` for mini-batch SDCA), ``W = M B / lam``, estimated time;
3. if due, :meth:`DualEngine.end_eval` with the nodes' mean loss and mean ``-l*(-a)``:
   the certificates (:func:`certificates_from_terms`) and a History record;
4. :meth:`DualEngine.end_round`: tolerances, end of the W-step, end of the fit.

A *client pool* does the nodes' side: ``run(model, sigma_diag, rho, steps, seeds, active,
theta, check_every, feedback) -> dB`` with ``steps_done`` and ``failed`` attributes,
``evaluate(model) -> (loss_mean, conj_mean)``, ``gap_columns()``, ``rescale(s)`` (only for
scaled aggregation) and ``arrays()`` / ``load_arrays()`` for checkpoints. In-process
(:class:`fmtl.federated._loop.DualRound`), on Dask (the same pool with a
:class:`~fmtl.distributed.dask.DaskExecutor`) and in kernel form (kernel MOCHA) the pool
is driven by :func:`run_engine`; the Flower server
(:class:`fmtl.distributed.protocol.MochaServerState`) calls the four methods itself,
turning the clients' messages into the engine's vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..relationships import (
    LowRankSigma,
    effective_sigma,
    max_effective_trace,
    omega_update,
    omega_update_lowrank,
    resolve_sigma_prime,
)
from ._loop import Recorder, draw_seeds, dual_update_bounds
from .checkpoint import Checkpointer
from .history import History
from .line_search import AdaptiveSigmaPrime, round_line_search
from .systems import SystemsRuntime

# rounds at a fixed number of local passes over which adaptive local work measures its rate
_WORK_WINDOW = 4

__all__ = [
    "DualEngine",
    "EngineRound",
    "certificates_from_terms",
    "dual_update_bounds",
    "run_engine",
]


def certificates_from_terms(
    loss_mean: np.ndarray,
    conj_mean: np.ndarray,
    wb: float,
    lam: float,
    sigma_floor: float | None = None,
    bb_trace: float = 0.0,
    bb_lmax: float = 0.0,
    joint_quad: float | None = None,
) -> dict:
    """Primal, dual and duality gap of MOCHA's problem from per-task terms.

    ``primal = sum_t loss_mean_t + <W, B> / 2`` and ``dual = sum_t conj_mean_t - <W, B> /
    2`` at ``W = W(alpha) = Sigma B / lam`` (``(lam/2) tr(W Omega W^T)`` and ``tr(B^T Sigma
    B) / (2 lam)`` are both ``<W, B> / 2`` there; with a ridge term ``W = M B / lam`` for
    the effective matrix ``M``, :func:`fmtl.relationships.effective_sigma`, and the same
    holds). With ``sigma_floor`` the joint bound ``joint_dual = sum_t conj_mean_t - (eps
    tr(B B^T) + (1 - m eps) lmax(B B^T)) / (2 lam)`` on ``min_{W, Sigma >= eps I, tr Sigma
    = 1} P`` (DESIGN.md section 2), or ``sum_t conj_mean_t - joint_quad / (2 lam)`` when
    ``joint_quad`` is given (the ridge term's maximum,
    :func:`fmtl.relationships.max_effective_trace`). Every fmtl
    certificate is this function: :func:`fmtl.federated.certificates` (linear, from the
    data), kernel MOCHA (from Gram blocks) and the Flower server (from the clients'
    scalars).

    Parameters
    ----------
    loss_mean : ndarray of shape (n_tasks,)
        Per task, the mean loss at ``w_t``.
    conj_mean : ndarray of shape (n_tasks,)
        Per task, the mean ``-l*(-alpha_i)``.
    wb : float
        ``<W, B> = sum_t w_t . b_t`` (kernel form: ``sum_i beta_i f_t(i)(x_i)``).
    lam : float
        Regularisation strength.
    sigma_floor : float, optional
        ``eps`` of the learned relationship's constraint; adds ``joint_dual`` and
        ``joint_gap``.
    bb_trace, bb_lmax : float, default=0.0
        ``tr(B B^T)`` and ``lambda_max(B B^T)`` (used only with ``sigma_floor``).
    joint_quad : float, optional
        ``max_{Sigma >= eps I, tr Sigma = 1} tr(B^T M(Sigma) B)``; replaces the term from
        ``bb_trace`` and ``bb_lmax`` (used only with ``sigma_floor``).

    Returns
    -------
    dict
        ``primal``, ``dual``, ``gap``, ``rel_gap`` (``gap / |primal|``), and
        ``joint_dual``, ``joint_gap`` with ``sigma_floor``. NaN terms (a node that did not
        answer) give NaN certificates.

    Raises
    ------
    AttributeError
        If ``loss_mean`` or ``conj_mean`` is not an array (no ``sum``).

    See Also
    --------
    fmtl.federated.certificates : The same from the data and the duals.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.engine import certificates_from_terms
    >>> certificates_from_terms(np.array([1.0, 1.0]), np.array([0.5, 0.25]), 0.5, 0.1)
    {'primal': 2.25, 'dual': 0.5, 'gap': 1.75, 'rel_gap': 0.7777777777777778}
    """
    quad = 0.5 * wb
    primal = float(loss_mean.sum()) + quad
    dual = float(conj_mean.sum()) - quad
    out = {
        "primal": primal,
        "dual": dual,
        "gap": primal - dual,
        "rel_gap": (primal - dual) / max(abs(primal), np.finfo(float).tiny),
    }
    if sigma_floor is not None:
        m = loss_mean.shape[0]
        if joint_quad is None:
            joint_dual = float(conj_mean.sum()) - (
                sigma_floor * bb_trace + (1 - m * sigma_floor) * bb_lmax
            ) / (2 * lam)
        else:
            joint_dual = float(conj_mean.sum()) - joint_quad / (2 * lam)
        out["joint_dual"] = joint_dual
        out["joint_gap"] = primal - joint_dual
    return out


def gram_terms(B: np.ndarray) -> tuple[float, float]:
    """``(tr(B B^T), lambda_max(B B^T))`` from the smaller of the two Gram matrices."""
    G = B @ B.T if B.shape[0] <= B.shape[1] else B.T @ B
    lmax = float(np.linalg.eigvalsh(G)[-1]) if G.size else 0.0
    return float(np.sum(B * B)), lmax


def gram_eigenvalues(B: np.ndarray) -> np.ndarray:
    """All ``m`` eigenvalues of ``B B^T`` (``B``: ``m x d``), from the smaller Gram matrix
    (the other ``m - d`` are 0)."""
    m = B.shape[0]
    G = B @ B.T if m <= B.shape[1] else B.T @ B
    g = np.zeros(m)
    if G.size:
        e = np.linalg.eigvalsh(G)
        g[: e.shape[0]] = e[::-1]
    return g


def joint_terms(
    B: np.ndarray,
    sigma_floor: float,
    ridge: float,
    gram: Callable[[], tuple[float, float]] | None = None,
) -> dict:
    """The keywords of :func:`certificates_from_terms`' joint bound for ``B``:
    ``bb_trace`` and ``bb_lmax`` without ridge, ``joint_quad`` with it. ``gram``: computes
    the trace and largest eigenvalue of ``B^T B`` another way (kernel MOCHA's task Gram)."""
    if ridge == 0.0:
        bb_trace, bb_lmax = gram() if gram is not None else gram_terms(B)
        return {"bb_trace": bb_trace, "bb_lmax": bb_lmax}
    return {"joint_quad": max_effective_trace(gram_eigenvalues(B), sigma_floor, ridge)}


@dataclass
class EngineRound:
    """One federated round as the engine drew it (what the nodes are asked to do).

    Parameters
    ----------
    rnd : int
        Its number (1-based, over the whole fit).
    steps : ndarray of int, shape (n_tasks,)
        Local step budgets.
    active : ndarray of bool, shape (n_tasks,)
        Nodes that take part (cleared for nodes that fail, in place).
    seeds : ndarray of uint64, shape (n_tasks,)
        Per-node seeds of the coordinate orders.
    steps_done : ndarray of int, optional
        Work the nodes report (set by :meth:`DualEngine.end_train`).
    scale : float, optional
        The factor the round's update is aggregated with (set by
        :meth:`DualEngine.end_train`): mini-batch SDCA's ``s``, or the line search's step
        under ``sigma_prime="adaptive"``; None: the whole update.
    w_step_done : bool, default=False
        Whether the round ends its W-step (last round, or ``tol`` reached).
    rho : float, optional
        The ``sigma'`` the nodes used (set by :meth:`DualEngine.end_train`).
    screened : ndarray of bool, optional
        Nodes whose update :meth:`DualEngine.end_train` refused as larger than their
        :attr:`DualEngine.update_bound` (dropped for the round, like a failed node).

    Raises
    ------
    TypeError
        If a required field is missing (dataclass constructor).

    Examples
    --------
    >>> import numpy as np
    >>> r = EngineRound(1, np.array([5, 5]), np.ones(2, bool), np.arange(2, dtype=np.uint64))
    >>> r.rnd, r.steps_done is None
    (1, True)
    """

    rnd: int
    steps: np.ndarray
    active: np.ndarray
    seeds: np.ndarray
    steps_done: np.ndarray | None = None
    scale: float | None = None
    w_step_done: bool = False
    rho: float | None = None
    screened: np.ndarray | None = None


class DualEngine:
    """The server state machine of the dual methods (see the module docstring).

    Parameters
    ----------
    B : ndarray of shape (n_tasks, n_features)
        Initial ``B`` (zeros, or a warm start's); updated in place.
    Sigma : ndarray of shape (n_tasks, n_tasks) or LowRankSigma
        Initial relationship.
    lam : float
        Regularisation strength.
    runtime : SystemsRuntime
        The systems model's draws and cost accounting for this fit.
    rng : numpy.random.Generator
        Draws work, drops and seeds (in that order, every round).
    learned : bool, default=False
        Learn Sigma: the closed-form Sigma-step at the start of every outer round after the
        first, joint certificates, ``outer_tol``.
    sigma_floor : float, default=1e-6
        ``eps`` of ``Sigma >= eps I`` (learned relationship).
    sigma_prime : {"gershgorin", "spectral", "adaptive"} or float, default="gershgorin"
        The subproblems' ``sigma'`` rule, re-evaluated after each Sigma-step.
        ``"adaptive"``: :class:`~fmtl.federated.line_search.AdaptiveSigmaPrime` between 1
        and the spectral (safe) value, each round aggregated with the server's line search
        (:func:`~fmtl.federated.line_search.round_line_search`); the pool must then pass
        its conjugate gain to :meth:`end_train`.
    outer_iters, inner_iters : int, default=1, 1
        Outer rounds and federated rounds per W-step (a single loop: ``outer_iters=1``).
    eval_every : int, default=1
        Certificates every this many rounds and at the end of each W-step.
    tol : float, default=0.0
        End the W-step once the relative gap is ``<= tol``.
    outer_tol : float, default=0.0
        End the fit once an outer round decreases the primal by ``<= outer_tol`` relative.
    theta : float, default=0.0
        Local relative accuracy sent to the nodes (MOCHA's ``local_theta``, CoCoA's
        ``theta``).
    check_every : ndarray of int, optional
        Local-gap check interval per node (CoCoA); None: at pass ends only.
    feedback : bool, default=True
        Nodes feed their own updates back into their local model (False: mini-batch SDCA).
    scaling : float, optional
        Mini-batch SDCA's aggregation: ``s = min(1, scaling / total steps)`` applied to
        ``dB`` (and by the pool to the duals); None: ``B += dB``.
    local_work : {"fixed", "auto"}, default="fixed"
        ``"fixed"``: the nodes run the step budgets the systems runtime draws (the paper's
        local work). ``"auto"``: the pool runs the certified shrinking kernel; when the
        tasks are decoupled (diagonal Sigma and ``sigma' = 1``: Local, one task) every node
        solves its own problem in the round to a certified relative gap of ``tol`` (a cap
        of ``decoupled_passes`` times its budget), so a W-step takes one round of
        communication.
    decoupled_passes : int, default=1000
        The step-budget multiplier of that one-round solve.
    ridge : float, default=0.0
        ``rho`` of the regulariser ``(lam/2) [tr(W Sigma^{-1} W^T) + rho ||W||_F^2]``: the
        W-step uses ``M = Sigma (I + rho Sigma)^{-1}`` in place of ``Sigma``
        (:func:`fmtl.relationships.effective_sigma`), and the joint bound the ridge term's
        maximum (:func:`fmtl.relationships.max_effective_trace`).
    callback : callable, optional
        Called with each History record.

    Attributes
    ----------
    B, Sigma : as the parameters, current
    M : ndarray of shape (n_tasks, n_tasks) or LowRankSigma
        The W-step's matrix, derived from ``Sigma`` whenever it is set (``Sigma`` itself
        with ``ridge=0``).
    rho : float
        The W-step's ``sigma'``.
    model : ndarray of shape (n_tasks, n_features)
        ``W = M B / lam`` (rows are tasks).
    pos : dict
        The loop position (``outer``, ``h``, ``rnd``, ``finished``, ...), checkpointed.
    rec : Recorder
        History and estimated time.
    update_bound : ndarray of shape (n_tasks,) or None
        The largest ``||db_t||`` a correct local solve can return (see
        :func:`dual_update_bounds`; set by :func:`run_engine` from the pool, by a
        protocol server from the handshake). A larger update is refused: the node counts
        as failed for the round (``systems.max_failures``) and History's ``screened``
        column (updates refused so far, per node) records it. None: no bound.

    Raises
    ------
    AttributeError
        From :meth:`begin_round`, if ``Sigma`` is not an array or LowRankSigma.
    RuntimeError
        From :meth:`end_train`, once a node fails more than ``systems.max_failures``
        times.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated._loop import DualRound, as_tasks
    >>> from fmtl.federated.engine import DualEngine, run_engine
    >>> from fmtl.federated.systems import SystemsRuntime
    >>> from fmtl.losses import get_loss
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> tasks = as_tasks(Xs, [np.sign(X[:, 0]) for X in Xs])
    >>> runtime = SystemsRuntime(None, tasks.n_samples, 1.0, flops_factor=8.0)
    >>> engine = DualEngine(np.zeros((2, 3)), np.eye(2) / 2, 0.1, runtime,
    ...                     np.random.default_rng(0), inner_iters=20)
    >>> pool = DualRound(tasks, get_loss("hinge"), 0.1, record_gaps=False)
    >>> history = run_engine(engine, pool)
    >>> len(history), bool(history["gap"][-1] < history["gap"][0])
    (20, True)
    """

    record_key = "rho"

    def __init__(
        self,
        B: np.ndarray,
        Sigma,
        lam: float,
        runtime: SystemsRuntime,
        rng: np.random.Generator,
        *,
        learned: bool = False,
        sigma_floor: float = 1e-6,
        sigma_prime: str | float = "gershgorin",
        outer_iters: int = 1,
        inner_iters: int = 1,
        eval_every: int = 1,
        tol: float = 0.0,
        outer_tol: float = 0.0,
        theta: float = 0.0,
        check_every: np.ndarray | None = None,
        feedback: bool = True,
        scaling: float | None = None,
        local_work: str = "fixed",
        decoupled_passes: int = 1000,
        ridge: float = 0.0,
        callback=None,
    ) -> None:
        self.ridge = float(ridge)
        self.B, self.Sigma, self.lam = B, Sigma, lam
        self.m = int(runtime.n.shape[0])
        self.runtime, self.rng = runtime, rng
        self.rec = Recorder(runtime, callback)
        self.update_bound: np.ndarray | None = None
        self.screened = np.zeros(self.m, dtype=np.int64)  # updates refused so far
        self.learned = learned
        self.sigma_floor = sigma_floor
        self.joint_floor = sigma_floor if learned else None
        self.sigma_prime = sigma_prime
        self.outer_iters, self.inner_iters = outer_iters, inner_iters
        self.eval_every, self.tol, self.outer_tol = eval_every, tol, outer_tol
        self.theta, self.check_every, self.feedback = theta, check_every, feedback
        self.scaling = scaling
        if scaling is not None:
            self.record_key = "scale"
        if local_work not in ("fixed", "auto"):
            raise ValueError(f"local_work must be 'fixed' or 'auto', got {local_work!r}")
        self.certified = local_work == "auto"
        self.decoupled_passes = decoupled_passes
        self.decoupled = False
        self.line_search = sigma_prime == "adaptive"
        self._adaptive: AdaptiveSigmaPrime | None = None
        self.rho = 1.0
        self.sdiag = np.ones(self.m)
        self.model = None
        self.round: EngineRound | None = None
        self.cert: dict | None = None
        self._w_step_ready = False
        # the loop position (checkpointed): next (outer, h), rounds done, the primal at the
        # end of the last W-step (outer_tol) and of the last evaluation in the current one
        self.pos = {
            "outer": 0,
            "h": 0,
            "rnd": 0,
            "prev_outer_primal": np.inf,
            "last_primal": None,
            "finished": False,
        }
        if self.line_search:
            self.pos["sigma_prime"] = 1.0  # the adaptive sigma' of the next round
        if self.certified:
            # adaptive local work (coupled tasks): passes per round, the last measured
            # convergence rate per unit of cost and the round's certified dual gain
            self.pos.update(local_passes=1.0, work_rate=np.nan, work_gap=np.nan)

    @property
    def Sigma(self):
        """The relationship (learned or fixed); setting it also sets :attr:`M`."""
        return self._Sigma

    @Sigma.setter
    def Sigma(self, S) -> None:
        # the one place the W-step's matrix comes from Sigma (every start, step, resume)
        self._Sigma = S
        self.M = effective_sigma(S, self.ridge)

    # -- hooks of the linear (B-based) form; kernel MOCHA overrides them -----------------
    def _update_model(self) -> None:
        self.model = self.M @ self.B / self.lam

    def _aggregate(self, dB: np.ndarray, scale: float | None) -> None:
        if scale is None:
            self.B += dB
        else:
            self.B += scale * dB

    def _sigma_step(self):
        W = self.M @ self.B / self.lam
        if isinstance(self.Sigma, LowRankSigma):
            return omega_update_lowrank(W, self.sigma_floor)
        return omega_update(W, self.sigma_floor)[0]

    def _wb(self) -> float:
        return float(np.sum(self.model * self.B))

    def _quad(self, dB: np.ndarray) -> float:
        return float(np.sum(dB * (self.M @ dB))) / self.lam

    def _line_search(self, dB: np.ndarray, conj_gain: float) -> tuple[float, float]:
        # gamma* maximising the certified dual increase gamma A - gamma^2 Q / 2, and it
        return round_line_search(conj_gain, float(np.sum(self.model * dB)), self._quad(dB))

    def _gram_terms(self) -> tuple[float, float]:
        return gram_terms(self.B)

    def _joint_terms(self) -> dict:
        """The joint bound's keywords of :func:`certificates_from_terms` (none without a
        learned relationship)."""
        if self.joint_floor is None:
            return {}
        return joint_terms(self.B, self.joint_floor, self.ridge, gram=self._gram_terms)

    @property
    def work_check_due(self) -> bool:
        """Whether this round ends a window of adaptive local work (coupled tasks under
        ``local_work="auto"``): the duality gap is then measured, recorded or not."""
        return (
            self.certified
            and not self.decoupled
            and self.round is not None
            and self.round.rnd % _WORK_WINDOW == 0
        )

    def observe_gap(self, loss_mean, conj_mean) -> None:
        """The duality gap at the end of a window of adaptive local work (from the nodes'
        terms, as the certificates), when the round is not evaluated anyway."""
        cert = certificates_from_terms(loss_mean, conj_mean, self._wb(), self.lam)
        self._adapt_local_work(cert["gap"])

    def _adapt_local_work(self, gap: float) -> None:
        """Hill-climb the local passes per round on the measured decrease of the duality
        gap per unit of cost over a window of ``_WORK_WINDOW`` rounds: a round costs its
        passes plus the server's evaluation (one pass) and its communication, in passes,
        from the systems model's cost model. Doubling continues while the rate improves; a
        worse rate halves (1 to 64 passes). The windows do not depend on ``eval_every``, so
        neither does the fit."""
        pos = self.pos
        prev, passes = pos["work_gap"], pos["local_passes"]
        pos["work_gap"] = gap = float(gap)  # plain floats: the position is saved as JSON
        if not (np.isfinite(prev) and prev > 0 and gap > 0):
            return
        comm = self.runtime.comm / (self.runtime.flops * float(self.runtime.n.sum()) or 1.0)
        rate = float(np.log(prev / gap) / (_WORK_WINDOW * (passes + 1.0 + comm)))
        last = pos["work_rate"]
        if np.isfinite(last) and rate < last:
            passes = max(1.0, passes / 2.0)
        else:
            passes = min(64.0, passes * 2.0)
        pos["work_rate"], pos["local_passes"] = rate, passes

    def local_options(self) -> dict:
        """Extra keywords of the pool's ``run`` this round: the certified relative gap of
        a decoupled one-round solve."""
        if not self.decoupled:
            return {}
        return {"gap_rtol": self.tol if self.tol > 0 else 1e-12}

    # -- a round -------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return bool(self.pos["finished"]) or self.pos["outer"] >= self.outer_iters

    def begin_round(self) -> EngineRound | None:
        """Start a round: the Sigma-step and ``sigma'`` at a W-step's start, then the
        systems draws and seeds; None once the fit is finished."""
        if self.finished:
            return None
        pos = self.pos
        if pos["h"] == 0 or not self._w_step_ready:
            if self.learned and pos["outer"] > 0 and pos["h"] == 0:
                self.Sigma = self._sigma_step()
                if self.certified:
                    pos["work_gap"] = pos["work_rate"] = np.nan
            if self.line_search:
                # the safe value caps the adaptive one; its level carries over W-steps
                safe = resolve_sigma_prime("spectral", self.M)
                self._adaptive = AdaptiveSigmaPrime(safe, value=min(pos["sigma_prime"], safe))
                self.rho = self._adaptive.value
            else:
                self.rho = resolve_sigma_prime(self.sigma_prime, self.M)
            S = self.M  # sigma' and the nodes' Sigma_tt are the W-step matrix's
            self.sdiag = S.diagonal() if isinstance(S, LowRankSigma) else np.diag(S)
            self._update_model()
            self._w_step_ready = True
            diagonal = isinstance(S, np.ndarray) and not np.any(S - np.diag(self.sdiag))
            # decoupled tasks: sigma' = 1 is safe (and exact), so no line search either
            self.decoupled = self.certified and diagonal and (self.line_search or self.rho == 1.0)
            if self.decoupled:
                self.rho = 1.0
        steps, active = self.runtime.draw(self.rng)
        if self.decoupled:  # each node solves its own problem this round (to tol)
            steps = steps * self.decoupled_passes
        elif self.certified:
            steps = np.round(steps * pos["local_passes"]).astype(np.int64)
        seeds = draw_seeds(self.rng, self.m)
        self.round = EngineRound(pos["rnd"] + 1, steps, active, seeds)
        self.cert = None
        return self.round

    def end_train(
        self, dB: np.ndarray, steps_done: np.ndarray, failed=None, conj_gain: float | None = None
    ) -> bool:
        """Aggregate the round's updates (rows of failed or silent nodes must be zero);
        returns whether the certificates are due. ``conj_gain``: the nodes' summed increase
        of their conjugate terms, required by the line search (``sigma_prime="adaptive"``);
        the pool must then keep the fraction ``round.scale`` of its duals' change."""
        r = self.round
        if r is None:
            raise RuntimeError("end_train() without begin_round()")
        failed = self._screen(dB, r, failed)
        if failed is not None:
            self.runtime.fail(failed, r.active)  # also clears them from r.active
        r.rho = self.rho
        if self.scaling is not None:
            total = float(np.sum(np.where(r.active, steps_done, 0)))
            r.scale = min(1.0, self.scaling / total) if total > 0 else 0.0
        elif self.line_search and not self.decoupled:
            if conj_gain is None:
                raise ValueError("sigma_prime='adaptive' needs the round's conj_gain")
            r.scale = self._line_search(dB, conj_gain)[0]
            self.rho = self.pos["sigma_prime"] = self._adaptive.update(r.scale)
        self._aggregate(dB, r.scale)
        self._update_model()
        r.steps_done = steps_done
        self.pos["rnd"] = r.rnd
        self.rec.tick(np.where(r.active, steps_done, 0))
        h = self.pos["h"]
        r.w_step_done = h + 1 == self.inner_iters
        return not ((h + 1) % self.eval_every and h + 1 < self.inner_iters)

    def _screen(self, dB: np.ndarray, r: EngineRound, failed):
        """Refuse the updates beyond :attr:`update_bound` (rows zeroed in place; the nodes
        join ``failed``): a finite but huge ``db_t`` is a faulty node, not progress."""
        r.screened = np.zeros(self.m, dtype=np.bool_)
        if self.update_bound is None:
            return failed
        norms = np.sqrt(np.einsum("ij,ij->i", dB, dB))
        ok = r.active if failed is None else r.active & ~failed
        r.screened = ok & (norms > self.update_bound)
        if not r.screened.any():
            return failed
        dB[r.screened] = 0.0
        self.screened += r.screened
        return r.screened if failed is None else failed | r.screened

    def eval_point(self) -> dict:
        """The server's side of this round's certificates (after :meth:`end_train`), for
        :meth:`end_eval` to record them after the round has ended.

        A federated server that asks for the nodes' certificate terms together with the
        next round's work (one round trip per round instead of two) keeps this, ends the
        round and starts the next one, and records the certificates before the next
        :meth:`end_train`. Only for fits whose schedule does not depend on the
        certificates: ``tol = 0``, ``outer_tol = 0`` and fixed local work
        (:attr:`certificates_steer`)."""
        r = self.round
        return {
            "round": r,
            "outer": self.pos["outer"],
            "rho": self.rho,
            "wb": self._wb(),
            "joint": self._joint_terms(),
            "screened": self.screened.copy(),
        }

    @property
    def certificates_steer(self) -> bool:
        """Whether the certificates can change what the next round does (``tol``,
        ``outer_tol``, adaptive local work); if not, they may be recorded late
        (:meth:`eval_point`)."""
        return self.tol > 0 or self.outer_tol > 0 or self.certified

    def end_eval(
        self,
        loss_mean,
        conj_mean,
        extra=None,
        skip_nonfinite: bool = False,
        point=None,
        primal_is_bound: bool = False,
    ) -> dict:
        """Certificates from the nodes' terms, recorded in History; returns the record.
        ``skip_nonfinite``: a non-finite primal (a node did not answer) does not count for
        ``outer_tol``; nor does one that is an upper bound (``primal_is_bound``: a node's
        terms were bounded). ``point``: an earlier round's :meth:`eval_point`, certified
        now (it must come before the next :meth:`end_train`, which accounts the next
        round's time and failures)."""
        late = point is not None
        if late:
            keys = ("round", "outer", "rho", "wb", "joint", "screened")
            r, outer, rho, wb, joint, screened = (point[k] for k in keys)
        else:
            r, outer, rho, wb = self.round, self.pos["outer"], self.rho, self._wb()
            joint = self._joint_terms()
            screened = self.screened.copy()
        cert = certificates_from_terms(
            loss_mean, conj_mean, wb, self.lam, self.joint_floor, **joint
        )
        if self.scaling is not None:
            values = {self.record_key: r.scale}
        elif self.line_search:  # the sigma' this round used and its aggregation step
            values = {self.record_key: r.rho, "step": 1.0 if r.scale is None else r.scale}
        else:
            values = {self.record_key: rho}
        values["screened"] = screened
        rec = self.rec.add(r.rnd, outer, {**cert, **values}, r.steps_done, r.active, extra)
        if late:  # the round is over and (certificates_steer is False) nothing reads them
            return rec
        if not primal_is_bound and (not skip_nonfinite or np.isfinite(cert["primal"])):
            self.pos["last_primal"] = cert["primal"]
        if self.work_check_due:
            self._adapt_local_work(cert["gap"])
        r.w_step_done |= self.tol > 0 and cert["rel_gap"] <= self.tol
        self.cert = cert
        return rec

    def end_round(self) -> None:
        """Advance the loop position: end of the W-step, ``outer_tol``, end of the fit."""
        pos, r = self.pos, self.round
        outer, h = pos["outer"], pos["h"]
        done = r.w_step_done
        pos["outer"], pos["h"] = (outer + 1, 0) if done else (outer, h + 1)
        if done and self.learned and pos["last_primal"] is not None:
            p = pos["last_primal"]
            if self.outer_tol > 0 and pos["prev_outer_primal"] - p <= self.outer_tol * abs(p):
                pos["finished"] = True
            pos["prev_outer_primal"] = p
        if done and pos["outer"] == self.outer_iters:
            pos["finished"] = True
        if done and not self.learned and self.cert is not None and self.tol > 0:
            # a fixed Sigma certified to tol: another W-step would repeat the same problem
            pos["finished"] |= self.cert["rel_gap"] <= self.tol
        self.round = None

    # -- checkpoints ---------------------------------------------------------------------
    def arrays(self) -> dict:
        """The server state a checkpoint stores (the pool adds the duals)."""
        S = self.Sigma
        sigma = S.arrays() if isinstance(S, LowRankSigma) else {"Sigma": S}
        return {"B": self.B, "screened": self.screened, **sigma}

    def load_arrays(self, arrays: dict) -> None:
        self.B[:] = arrays["B"]
        self.screened[:] = arrays.get("screened", 0)  # absent from older checkpoints
        self.Sigma = _sigma_from_arrays(arrays)

    def checkpointer(
        self, directory, every: int, tasks, algorithm: str, random_state, **settings
    ) -> Checkpointer:
        """The fit's :class:`~fmtl.federated.checkpoint.Checkpointer`: a checkpoint is
        resumed only by a fit of the same data, ``algorithm``, settings and seed."""
        return Checkpointer.for_fit(directory, every, tasks, algorithm, random_state, **settings)

    def resume(self, ckpt: Checkpointer, enabled: bool, pool) -> bool:
        """Restore the engine and ``pool`` from ``ckpt`` if it holds a checkpoint; returns
        whether it did."""
        saved = ckpt.resume(enabled, self.runtime, self.rec, self.pos, pool.arrays())
        if saved is None:
            return False
        arrays, self.rng = saved
        self.load_arrays(arrays)
        pool.load_arrays(arrays)
        self._w_step_ready = False
        return True

    def save(self, ckpt: Checkpointer, pool, final: bool = False) -> None:
        state = {**pool.arrays(), **self.arrays()}
        if final:
            ckpt.save(self.pos, state, self.rng, self.runtime, self.rec)
        else:
            ckpt.maybe_save(self.pos, state, self.rng, self.runtime, self.rec)

    @property
    def history(self) -> History:
        return self.rec.history


def _sigma_from_arrays(arrays: dict):
    if "Sigma" in arrays:
        return np.array(arrays["Sigma"])
    return LowRankSigma.from_arrays(arrays)


def run_engine(engine: DualEngine, pool, ckpt: Checkpointer | None = None) -> History:
    """Drive ``engine`` against a client ``pool`` until the fit is finished.

    Per round: :meth:`DualEngine.begin_round`, the pool's local solves, :meth:`DualEngine.
    end_train` (and the pool's ``rescale`` under scaled aggregation), if due the pool's
    ``evaluate`` and :meth:`DualEngine.end_eval`, :meth:`DualEngine.end_round`, then a
    checkpoint when one is due; a final checkpoint at the end.

    Parameters
    ----------
    engine : DualEngine
        A configured engine (possibly resumed).
    pool : client pool
        ``run``, ``evaluate``, ``gap_columns``, ``arrays`` and (scaled aggregation)
        ``rescale``, e.g. :class:`fmtl.federated._loop.DualRound`.
    ckpt : Checkpointer, optional
        Where to checkpoint.

    Returns
    -------
    History
        The engine's History.

    Raises
    ------
    RuntimeError
        If a node fails more than ``systems.max_failures`` times.

    Examples
    --------
    See :class:`DualEngine`.

    >>> from fmtl.federated.engine import run_engine
    >>> callable(run_engine)
    True
    """
    if engine.update_bound is None and hasattr(pool, "update_bounds"):
        engine.update_bound = pool.update_bounds()
    while (r := engine.begin_round()) is not None:
        dB = pool.run(
            engine.model,
            engine.sdiag,
            engine.rho,
            r.steps,
            r.seeds,
            r.active,
            engine.theta,
            engine.check_every,
            engine.feedback,
            **engine.local_options(),
        )
        gain = pool.conjugate_gain() if engine.line_search and not engine.decoupled else None
        due = engine.end_train(dB, pool.steps_done, pool.failed, gain)
        if r.screened.any():
            pool.drop(r.screened)
        if r.scale is not None:
            pool.rescale(r.scale)
        if due:
            engine.end_eval(*pool.evaluate(engine.model), pool.gap_columns())
        elif engine.work_check_due:
            engine.observe_gap(*pool.evaluate(engine.model))
        engine.end_round()
        if ckpt is not None:
            engine.save(ckpt, pool)
    if ckpt is not None:
        engine.save(ckpt, pool, final=True)
        ckpt.release()
    return engine.history
