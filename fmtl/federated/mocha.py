"""MOCHA (Smith et al., NeurIPS 2017, Algorithm 1) with certified duality gaps.

State kept by the server: ``B`` (row ``t`` is ``b_t = X_t^T a_t / n_t``), ``Sigma``,
``Omega``; the model is always ``W = W(alpha) = Sigma B / lam`` (rows are tasks), which
makes every reported gap a certificate (DESIGN.md section 2, point 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._random import rng_from
from ..losses import Loss, get_loss
from ..relationships import (
    LowRankSigma,
    check_ridge,
    check_sigma,
    effective_sigma,
    identity_sigma,
    omega_update_lowrank,
    resolve_sigma_prime,
)
from ..solvers._packing import PackedTasks, dual_sums
from ._loop import (
    DualRound,
    as_tasks,
    check_dual_feasible,
    check_flag,
    check_frac,
    check_lam,
    check_nonneg,
    check_positive_int,
    numba_threads,
    objective_terms,
)
from .engine import DualEngine, certificates_from_terms, joint_terms, run_engine
from .history import History
from .joint import joint_lbfgs
from .systems import SystemsModel, SystemsRuntime


@dataclass
class MochaResult:
    """What :func:`mocha` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Task models (``W^T``), equal to ``M B / lam`` with ``M = sigma`` (no ridge term)
        or ``effective_sigma(sigma, ridge)`` (:func:`fmtl.relationships.effective_sigma`).
    sigma : ndarray of shape (n_tasks, n_tasks) or LowRankSigma
        Final relationship (``coef`` is the W-step solution for it); a
        :class:`~fmtl.relationships.LowRankSigma` with ``sigma_step="lowrank"``.
    omega : ndarray of shape (n_tasks, n_tasks) or LowRankSigma
        Its inverse (a ridge term adds ``ridge * I`` to it in the regulariser).
    dual_coef : ndarray of shape (n_samples_total,)
        Dual variables, stacked task after task.
    B : ndarray of shape (n_tasks, n_features)
        Row ``t`` is ``b_t = X_t^T a_t / n_t`` (so ``coef = sigma @ B / lam`` without a
        ridge term).
    history : History
        One record per evaluated federated round.
    never_reported : ndarray of int, default=empty
        Nodes that returned nothing in any round (dead or always dropped).

    Raises
    ------
    TypeError
        If a field other than ``never_reported`` is missing (dataclass constructor).

    See Also
    --------
    mocha : Produces it.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(10, 2)) for _ in range(3)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> res = mocha(Xs, ys, lam=0.1, outer_iters=2, inner_iters=5, random_state=0)
    >>> res.coef.shape, res.sigma.shape, res.dual_coef.shape, len(res.history)
    ((3, 2), (3, 3), (30,), 10)
    >>> bool(np.allclose(res.coef, res.sigma @ res.B / 0.1)), res.never_reported.size
    (True, 0)
    """

    coef: np.ndarray
    sigma: np.ndarray
    omega: np.ndarray
    dual_coef: np.ndarray
    B: np.ndarray
    history: History
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def certificates(
    tasks: PackedTasks,
    alpha: np.ndarray,
    B: np.ndarray,
    Sigma: np.ndarray,
    lam: float,
    loss: Loss,
    sigma_floor: float | None = None,
    Wt: np.ndarray | None = None,
    ridge: float = 0.0,
) -> dict:
    """Primal, dual and duality gap at ``W(alpha) = Sigma B / lam``.

    ``Wt`` may pass that product when the caller already holds it (the round loops do).

    ``primal = sum_t mean loss + (lam/2) tr(W Omega W^T)`` and ``dual = sum_t mean
    (-l*(-a)) - tr(B^T Sigma B) / (2 lam)``; since ``Omega W = B / lam`` both quadratic
    terms equal ``<W, B> / 2``. With ``sigma_floor`` given, also the joint bound
    ``joint_dual = sum_t mean(-l*(-a)) - (eps tr(B B^T) + (1 - m eps) lmax(B B^T)) /
    (2 lam)`` on ``min_{W, Sigma >= eps I, tr Sigma = 1} P`` and ``joint_gap``.

    With ``ridge = rho > 0`` the regulariser is ``(lam/2) tr(W (Omega + rho I) W^T)``:
    ``W(alpha) = M B / lam`` and ``tr(B^T M B) / (2 lam)`` with ``M = Sigma (I + rho
    Sigma)^{-1}`` (:func:`fmtl.relationships.effective_sigma`), and the joint bound uses
    ``max_Sigma tr(B^T M(Sigma) B)`` (:func:`fmtl.relationships.max_effective_trace`).

    Parameters
    ----------
    tasks : PackedTasks
        The data, from :func:`fmtl.solvers.pack_tasks` (validated beforehand).
    alpha : ndarray of shape (n_samples_total,)
        Dual variables, stacked task after task.
    B : ndarray of shape (n_tasks, n_features)
        ``b_t = X_t^T a_t / n_t`` per row.
    Sigma : ndarray of shape (n_tasks, n_tasks) or LowRankSigma
        The relationship.
    lam : float
        Regularisation strength.
    loss : Loss
        A resolved loss (:func:`fmtl.losses.get_loss`), not a name.
    sigma_floor : float, optional
        ``eps`` of the learned relationship's constraint; adds ``joint_dual`` and
        ``joint_gap``.
    Wt : ndarray of shape (n_tasks, n_features), optional
        ``M B / lam`` if already computed.
    ridge : float, default=0.0
        ``rho >= 0`` of the ridge term (not validated: see
        :func:`fmtl.relationships.check_ridge`).

    Returns
    -------
    dict
        ``primal``, ``dual``, ``gap`` and ``rel_gap`` (``gap / |primal|``) as floats, plus
        ``joint_dual`` and ``joint_gap`` when ``sigma_floor`` is given. ``dual`` is
        ``-inf`` for a dual-infeasible ``alpha``.

    Raises
    ------
    AttributeError
        If ``tasks`` is not a :class:`~fmtl.solvers.PackedTasks` or ``loss`` is a name
        instead of a :class:`~fmtl.losses.Loss`.
    ValueError
        From numpy, if ``Sigma`` and ``B`` do not have matching shapes. The shapes of
        ``alpha`` and ``Wt`` are not checked (this is the round loops' fast path).

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import certificates
    >>> from fmtl.losses import get_loss
    >>> from fmtl.solvers import pack_tasks
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(10, 2)) for _ in range(2)]
    >>> tasks = pack_tasks(Xs, [np.sign(X[:, 0]) for X in Xs])
    >>> certificates(tasks, np.zeros(20), np.zeros((2, 2)), np.eye(2) / 2, 0.1,
    ...              get_loss("hinge"))
    {'primal': 2.0, 'dual': 0.0, 'gap': 2.0, 'rel_gap': 1.0}
    """
    if Wt is None:
        Wt = effective_sigma(Sigma, ridge) @ B / lam
    loss_mean, conj_mean = objective_terms(tasks, alpha, Wt, loss)
    joint = joint_terms(B, sigma_floor, ridge) if sigma_floor is not None else {}
    return certificates_from_terms(
        loss_mean, conj_mean, float(np.sum(Wt * B)), lam, sigma_floor, **joint
    )


def mocha(
    Xs,
    ys,
    lam: float,
    loss: str | Loss = "hinge",
    *,
    gamma: float = 1.0,
    relationship: str = "learned",
    sigma: np.ndarray | None = None,
    outer_iters: int = 10,
    inner_iters: int = 50,
    local_frac: float = 1.0,
    local_theta: float = 0.0,
    tol: float = 0.0,
    outer_tol: float = 0.0,
    sigma_floor: float = 1e-6,
    sigma_prime: str | float = "gershgorin",
    sigma_step: str = "dense",
    random_state=None,
    n_threads: int | None = None,
    executor=None,
    systems: SystemsModel | None = None,
    record_local_gaps: bool | None = None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
    warm_start: MochaResult | None = None,
    local_work: str = "fixed",
    ridge: float = 0.0,
    sigma_solver: str = "alternation",
) -> MochaResult:
    """Fit all task models with MOCHA.

    Minimises ``sum_t (1/n_t) sum_i l(y_ti, w_t.x_ti) + (lam/2) tr(W Omega W^T)`` over ``W``
    (and over ``Sigma = Omega^{-1}`` with ``Sigma >= sigma_floor I``, ``tr Sigma = 1`` when
    ``relationship="learned"``); with ``ridge = rho > 0`` the regulariser is ``(lam/2)
    [tr(W Omega W^T) + rho ||W||_F^2]``. Outer round ``k`` is a W-step of up to ``inner_iters``
    federated rounds; outer rounds after the first start with the closed-form Sigma-step
    (:func:`fmtl.relationships.omega_update`), so the returned ``coef`` is always the
    W-step solution for the returned ``sigma``.

    In each federated round every node runs ``max(1, floor(local_frac * n_t))`` SDCA steps
    on its local subproblem with ``sigma' = rho = max_t sum_s |Sigma_ts| / Sigma_tt`` and
    returns ``db_t``; the server sets ``B += dB`` and ``W = Sigma B / lam``.

    Parameters
    ----------
    Xs, ys : list of arrays, or Xs a PackedTasks and ys None
        Per-task design matrices (dense or scipy sparse, ``n_t x d``) and targets
        (``{-1, +1}`` for classification losses).
    lam : float
        Regularisation strength ``lambda > 0``.
    loss : {"hinge", "smoothed_hinge", "squared", "logistic"} or Loss
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    relationship : {"learned", "fixed"}
        ``"fixed"`` uses ``sigma`` (default ``I / m``) and never updates it.
    sigma : ndarray of shape (m, m), optional
        Fixed relationship (symmetric positive definite; used as given).
    outer_iters, inner_iters : int
        Outer rounds and federated rounds per W-step.
    local_frac : float, default=1.0
        Local SDCA steps per round: ``floor(local_frac * n_t)`` (at least 1), unless
        ``systems`` draws them.
    local_theta : float, default=0.0
        If > 0, a node also stops (at the end of a pass over its data) once its local
        Fenchel gap is ``<= local_theta`` times the gap it started the round with.
    tol : float, default=0.0
        Stop a W-step once the relative duality gap for the current Sigma is ``<= tol``;
        with a fixed relationship that ends the fit (the next W-step would solve the same
        problem again).
    outer_tol : float, default=0.0
        Stop once an outer round decreases the primal objective by ``<= outer_tol``
        relative.
    sigma_floor : float, default=1e-6
        ``eps`` of the constraint ``Sigma >= eps I`` (learned relationship).
    sigma_prime : {"gershgorin", "spectral", "adaptive"} or float, default="gershgorin"
        The subproblems' safety parameter ``sigma'``: the paper's Gershgorin value
        ``max_t sum_s |Sigma_ts| / Sigma_tt``, the smallest safe value
        ``lambda_max(D^{-1/2} Sigma D^{-1/2})`` (:func:`fmtl.relationships.spectral_rho`),
        ``"adaptive"`` (a smaller ``sigma'``, from 1 up to the spectral value, with every
        round aggregated by the server's line search, which never lets the dual decrease:
        :mod:`fmtl.federated.line_search`, ``docs/theory.md``; History records the step
        in ``"step"``), or a number used as is (below the spectral value the dual may
        decrease and the method may diverge: for experiments, see :mod:`fmtl.theory`).
    sigma_step : {"dense", "lowrank"}, default="dense"
        How Sigma is held and updated. ``"lowrank"`` keeps it as identity plus rank
        ``<= min(m, d)`` (:class:`fmtl.relationships.LowRankSigma`): the same Sigma-step
        (to rounding) in ``O(m d^2)`` time and ``O(m d)`` memory instead of ``O(m^3)`` and
        ``O(m^2)``, and ``Sigma B`` in ``O(m d r)``; use it for thousands of tasks. The
        result's ``sigma`` and ``omega`` are then ``LowRankSigma`` objects (``to_dense()``
        for small ``m``).
    random_state : int, Generator or None
        Seeds the per-round coordinate orders.
    n_threads : int, optional
        Numba threads for the local solves (results do not depend on it).
    executor : DaskExecutor, optional
        Runs each round's local solves elsewhere instead of in this process, e.g. on a
        ``dask.distributed`` cluster (:class:`fmtl.distributed.dask.DaskExecutor`, extra
        ``dask``); results are bit-identical to the in-process fit.
    systems : SystemsModel, optional
        Systems heterogeneity, dropped nodes and the cost model (estimated time,
        flops factor 8). A dropped node contributes nothing that round.
    record_local_gaps : bool, optional
        Record each node's local gap before and after its round (``local_gap_ratio``,
        the realised relative decrease); default: on when ``systems`` is given.
    eval_every : int, default=1
        Evaluate certificates every this many rounds (and at the end of each W-step).
    callback : callable, optional
        Called with each History record.
    checkpoint_dir : str or Path, optional
        Directory for ``checkpoint.npz``: alpha, B, Sigma, the RNG state, the systems
        model's counters, History and the loop position, written atomically every
        ``checkpoint_every`` rounds and at the end.
    checkpoint_every : int, default=0
        Rounds between checkpoints (0: only the final one).
    resume : bool, default=True
        Continue from the checkpoint in ``checkpoint_dir`` if there is one. The resumed
        fit gives bit-identical ``coef`` and History (``wall_time`` aside) to an
        uninterrupted one; a checkpoint of another problem or settings is refused.
    local_work : {"fixed", "auto"}, default="fixed"
        ``"fixed"``: each node runs the step budget of ``local_frac`` (or of ``systems``)
        with the paper's SDCA. ``"auto"``: the certified shrinking SDCA kernel
        (:mod:`fmtl.solvers.sdca_shrink`; liblinear's active-set rule for the box losses,
        stops only on a certified local gap); with decoupled tasks (``Sigma`` diagonal and
        ``sigma' = 1``: Local, a single task) each node solves its own problem to a
        certified relative gap of ``tol`` in one round, so a W-step costs one round of
        communication. Estimated time then counts the slowest node's actual work.
    warm_start : MochaResult, optional
        Start from an earlier fit on the same data (any ``lam``, loss parameters unchanged):
        its dual variables, and its ``sigma`` when ``relationship="learned"``. The dual
        feasible set does not depend on ``lam``, so a fit along a ``lam`` path (cross-
        validation, a regularisation path) starts each solve from its neighbour's duals
        with ``W = Sigma B / lam`` instead of from zero. A checkpoint, when resumed, takes
        precedence.
    ridge : float, default=0.0
        ``rho >= 0``: the general regulariser ``(lam/2) tr(W (Omega + rho I) W^T)`` of
        MTRL and the MOCHA paper (scale-free in ``lam``). The W-steps, ``sigma'`` and the
        nodes' ``Sigma_tt`` use ``M = Sigma (I + rho Sigma)^{-1}``
        (:func:`fmtl.relationships.effective_sigma`), so ``coef = M B / lam``; the
        Sigma-step is unchanged (the ridge term does not depend on Sigma) and ``sigma``
        stays the learned trace-1 relationship; the joint certificate maximises over
        Sigma exactly (:func:`fmtl.relationships.max_effective_trace`).
    sigma_solver : {"alternation", "lbfgs"}, default="alternation"
        How a learned relationship is found. ``"alternation"``: the paper's outer loop (a
        W-step, then the closed-form Sigma-step), which can stall far from the joint
        optimum when ``d < m`` (``docs/problem.md``). ``"lbfgs"``: quasi-Newton on Sigma
        itself with certified W-steps (:func:`fmtl.federated.joint.joint_lbfgs`), in
        process: ``tol`` is then the joint problem's certified relative gap (History's
        ``rel_gap``, one record per W-step), ``outer_iters`` the most W-steps and
        ``inner_iters`` the rounds of each (``eval_every`` thins their evaluations); it
        needs ``sigma_floor > 0`` and takes no ``executor``, ``systems``,
        ``checkpoint_dir``, ``local_theta`` or ``outer_tol``. The returned ``sigma`` is the
        best relationship for ``coef``.

    Returns
    -------
    MochaResult
        Task models, final ``sigma``/``omega``, dual variables and History.

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``; ``lam``, ``outer_iters``, ``inner_iters``,
        ``eval_every`` or ``local_frac`` out of range; ``local_theta`` outside [0, 1);
        a negative, NaN or infinite ``ridge``;
        an unknown ``relationship``, ``sigma_step`` or ``sigma_prime``; a ``sigma`` of the
        wrong shape or not symmetric positive definite; ``sigma_floor`` outside
        ``[0, 1 / n_tasks)``; invalid data (no tasks, mismatched lengths, non-2-D or
        non-finite arrays, labels not in {-1, +1} for a classification loss); a
        ``systems`` model that does not fit the tasks; a negative ``checkpoint_every`` or
        one without ``checkpoint_dir``; an unreadable checkpoint or one of another
        problem; or a ``warm_start`` whose dual variables do not fit the data (length,
        non-finite values, outside the loss's dual domain) or whose ``sigma`` has the
        wrong shape.
    TypeError
        For non-numeric data, ``ys`` None with unpacked ``Xs``, a non-numeric
        ``sigma``/``sigma_floor``/``sigma_prime``/``ridge``, a non-boolean
        ``record_local_gaps``,
        a ``systems`` that is not a :class:`SystemsModel`, or an ``executor`` without
        ``bind``, ``sdca_round`` and ``minibatch_gradients``.
    RuntimeError
        If a node fails its local solve more than ``systems.max_failures`` times.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(3)]
    >>> ys = [np.sign(X @ np.ones(4)) for X in Xs]
    >>> res = mocha(Xs, ys, lam=0.1, loss="squared", relationship="fixed",
    ...             outer_iters=1, inner_iters=100, tol=1e-10, random_state=0)
    >>> bool(res.history["rel_gap"][-1] <= 1e-10)
    True
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    ridge = check_ridge(ridge)
    if sigma_step not in ("dense", "lowrank"):
        raise ValueError(f"sigma_step must be 'dense' or 'lowrank', got {sigma_step!r}")
    lowrank = sigma_step == "lowrank"
    outer_iters, inner_iters, eval_every, local_frac, tol, outer_tol, record_local_gaps = (
        check_schedule(
            outer_iters, inner_iters, eval_every, local_frac, local_theta, relationship, tol,
            outer_tol, record_local_gaps, sigma_floor, sigma_prime, systems, allow_adaptive=True,
        )
    )  # fmt: skip
    tasks = as_tasks(Xs, ys, loss)
    m = tasks.n_tasks
    learned = relationship == "learned"
    Sigma = initial_sigma(relationship, sigma, sigma_floor, m, lowrank)
    if sigma_solver not in ("alternation", "lbfgs"):
        raise ValueError(f"sigma_solver must be 'alternation' or 'lbfgs', got {sigma_solver!r}")
    if learned and sigma_solver == "lbfgs":
        check_lbfgs_options(
            sigma_floor=sigma_floor, executor=executor, systems=systems,
            checkpoint_dir=checkpoint_dir, local_theta=local_theta, outer_tol=outer_tol,
        )  # fmt: skip
        with numba_threads(n_threads):
            res = joint_lbfgs(
                tasks, loss, lam, sigma_floor=sigma_floor, tol=tol, max_evals=outer_iters,
                inner_iters=inner_iters, ridge=ridge, random_state=random_state,
                n_threads=n_threads, callback=callback, warm_start=warm_start,
                eval_every=eval_every,
            )  # fmt: skip
        if lowrank:
            res.sigma = omega_update_lowrank(res.coef, sigma_floor)
            res.omega = res.sigma.inverse()
        return res
    if local_work not in ("fixed", "auto"):
        raise ValueError(f"local_work must be 'fixed' or 'auto', got {local_work!r}")
    auto = local_work == "auto"
    runtime = SystemsRuntime(
        systems, tasks.n_samples, local_frac, flops_factor=8.0, slowest_node_time=auto
    )
    pool = DualRound(tasks, loss, lam, record_local_gaps, executor, certified=auto)
    engine = DualEngine(
        np.zeros((m, tasks.n_features)),
        Sigma,
        lam,
        runtime,
        rng_from(random_state),
        learned=learned,
        sigma_floor=sigma_floor,
        sigma_prime=sigma_prime,
        outer_iters=outer_iters,
        inner_iters=inner_iters,
        eval_every=eval_every,
        tol=tol,
        outer_tol=outer_tol,
        theta=local_theta,
        local_work=local_work,
        ridge=ridge,
        callback=callback,
    )
    ckpt = engine.checkpointer(
        checkpoint_dir,
        checkpoint_every,
        tasks,
        "mocha",
        random_state,
        lam=lam,
        loss=[loss.name, loss.param],
        relationship=relationship,
        sigma=_sigma_key(sigma),
        sigma_floor=sigma_floor,
        sigma_prime=sigma_prime,
        sigma_step=sigma_step,
        local_frac=local_frac,
        local_theta=local_theta,
        outer_iters=outer_iters,
        inner_iters=inner_iters,
        eval_every=eval_every,
        tol=tol,
        outer_tol=outer_tol,
        systems=systems,
        record_local_gaps=record_local_gaps,
        **({"local_work": local_work} if auto else {}),  # old checkpoints stay valid
        **({"ridge": ridge} if ridge else {}),
    )
    resume_or_warm_start(engine, pool, ckpt, resume, warm_start, tasks, loss, learned)
    with numba_threads(n_threads):
        run_engine(engine, pool, ckpt)
    return dual_result(engine, pool)


def check_lbfgs_options(**options) -> None:
    """Refuse the options ``sigma_solver="lbfgs"`` does not take, naming them."""
    if not options.pop("sigma_floor") > 0:
        raise ValueError("sigma_solver='lbfgs' needs sigma_floor > 0")
    defaults = {"local_theta": 0.0, "outer_tol": 0.0}
    for name, value in options.items():
        if value != defaults.get(name):
            raise ValueError(
                f"sigma_solver='lbfgs' runs in process with certified W-steps and takes no "
                f"{name}={value!r}; use sigma_solver='alternation' for it"
            )


def dual_result(engine: DualEngine, pool, Sigma=None, Omega=None) -> MochaResult:
    """The :class:`MochaResult` of a finished linear fit (``Sigma``/``Omega``: a fixed
    relationship's, already symmetric with its inverse)."""
    Wt = engine.M @ engine.B / engine.lam
    silent = engine.rec.warn_silent_nodes()
    if Sigma is None:
        Sigma = engine.Sigma
        if isinstance(Sigma, LowRankSigma):
            Omega = Sigma.inverse()
        else:
            Sigma, Omega = symmetric_with_precision(Sigma)
    return MochaResult(
        coef=Wt,
        sigma=Sigma,
        omega=Omega,
        dual_coef=pool.alpha,
        B=engine.B,
        history=engine.rec.history,
        never_reported=silent,
    )


def resume_or_warm_start(
    engine: DualEngine, pool, ckpt, resume: bool, warm_start, tasks, loss, learned=False
) -> None:
    """Restore a fit from its checkpoint, or else start it from ``warm_start`` if given."""
    if not engine.resume(ckpt, resume, pool) and warm_start is not None:
        pool.alpha[:], engine.B[:], engine.Sigma = apply_warm_start(
            warm_start, tasks, loss, engine.Sigma, learned
        )


def apply_warm_start(warm_start, tasks: PackedTasks, loss: Loss, Sigma, learned: bool):
    """Validated ``(alpha, B, Sigma)`` to start a fit from an earlier result's duals (and
    its ``sigma`` for a learned relationship; ``Sigma`` is kept otherwise)."""
    alpha = getattr(warm_start, "dual_coef", None)
    if alpha is None:
        raise TypeError(
            f"warm_start must be a MochaResult (with dual_coef), got {type(warm_start).__name__}"
        )
    alpha = np.array(alpha, dtype=np.float64)
    total = tasks.y.shape[0]
    if alpha.shape != (total,):
        raise ValueError(
            f"warm_start.dual_coef has shape {alpha.shape}, the data has {total} rows"
        )
    if not np.all(np.isfinite(alpha)):
        raise ValueError("warm_start.dual_coef contains NaN or inf")
    try:
        check_dual_feasible(alpha, tasks.y, loss)
    except AssertionError as e:
        raise ValueError(f"warm_start.dual_coef is not dual feasible for this data: {e}") from e
    if learned:
        ws = warm_start.sigma
        if isinstance(Sigma, LowRankSigma) != isinstance(ws, LowRankSigma):
            ws = ws.to_dense() if isinstance(ws, LowRankSigma) else None
        if ws is None or ws.shape != Sigma.shape:
            raise ValueError(
                f"warm_start.sigma must be a {Sigma.shape} relationship of the same kind"
            )
        Sigma = ws if isinstance(ws, LowRankSigma) else np.array(ws, dtype=np.float64)
    return alpha, dual_sums(tasks, alpha), Sigma


def check_schedule(
    outer_iters,
    inner_iters,
    eval_every,
    local_frac,
    local_theta,
    relationship,
    tol,
    outer_tol,
    record_local_gaps,
    sigma_floor,
    sigma_prime,
    systems,
    allow_adaptive: bool = False,
) -> tuple:
    """Validate the schedule and relationship arguments MOCHA's solvers share (linear and
    kernel form); returns ``(outer_iters, inner_iters, eval_every, local_frac, tol,
    outer_tol, record_local_gaps)`` with ``record_local_gaps`` resolved (None: record
    under a systems model). ``sigma_prime="adaptive"`` only where ``allow_adaptive`` (the
    linear engine, in process or federated, whose clients rescale their duals after the
    line search)."""
    outer_iters = check_positive_int("outer_iters", outer_iters)
    inner_iters = check_positive_int("inner_iters", inner_iters)
    eval_every = check_positive_int("eval_every", eval_every)
    local_frac = check_frac("local_frac", local_frac)
    if not (np.isfinite(local_theta) and 0.0 <= local_theta < 1.0):
        raise ValueError(f"local_theta must be in [0, 1), got {local_theta!r}")
    if relationship not in ("learned", "fixed"):
        raise ValueError(f"relationship must be 'learned' or 'fixed', got {relationship!r}")
    tol = check_nonneg("tol", tol)
    outer_tol = check_nonneg("outer_tol", outer_tol)
    record_local_gaps = check_flag("record_local_gaps", record_local_gaps, allow_none=True)
    if isinstance(sigma_floor, bool) or not isinstance(sigma_floor, int | float | np.floating):
        raise TypeError(f"sigma_floor must be a number, got {sigma_floor!r}")
    if isinstance(sigma_prime, str) and sigma_prime == "adaptive":
        if not allow_adaptive:
            raise ValueError(
                "sigma_prime='adaptive' (the server's line search) is available in mocha(), "
                "the estimators and the Flower server, not in kernel MOCHA; use "
                "'gershgorin', 'spectral' or a number here"
            )
    else:
        resolve_sigma_prime(sigma_prime, np.eye(1))  # validate before any work
    if record_local_gaps is None:
        record_local_gaps = systems is not None
    return outer_iters, inner_iters, eval_every, local_frac, tol, outer_tol, record_local_gaps


def initial_sigma(
    relationship, sigma, sigma_floor, m: int, lowrank: bool = False, accept_lowrank: bool = True
):
    """The W-step's first Sigma: identity/m for a learned relationship (after checking
    ``sigma_floor`` against ``m``) or when none is given (as a LowRankSigma if ``lowrank``),
    else the user's, checked (a LowRankSigma kept as it is if ``accept_lowrank``)."""
    if relationship == "learned":
        if not (0.0 <= sigma_floor < 1.0 / m):
            raise ValueError(f"sigma_floor must be in [0, 1/n_tasks), got {sigma_floor!r}")
    if relationship == "learned" or sigma is None:
        return LowRankSigma.identity(m) if lowrank else identity_sigma(m)
    if accept_lowrank and isinstance(sigma, LowRankSigma):
        if sigma.shape != (m, m):
            raise ValueError(f"sigma must be ({m}, {m}), got {sigma.shape}")
        return sigma
    return check_sigma(sigma, m)


def symmetric_with_precision(Sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Sigma`` symmetrised and its inverse ``Omega`` (by ``eigh``, symmetrised)."""
    Sigma = (Sigma + Sigma.T) / 2.0
    w, V = np.linalg.eigh(Sigma)
    Omega = (V / w) @ V.T
    return Sigma, (Omega + Omega.T) / 2


def _sigma_key(sigma):
    # what a checkpoint's fingerprint records of a user-given Sigma
    if isinstance(sigma, LowRankSigma):
        return np.concatenate([[sigma.c0], sigma.U.ravel(), sigma.c])
    return sigma
