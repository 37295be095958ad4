"""Mini-batch SDCA (the reference's baseline) on the W-problem for a fixed Sigma.

Each node takes its local SDCA steps independently from the round's starting model (no
local feedback, ``sigma' = 1``); the server applies the average change,
``alpha += s (alpha_local - alpha)`` and ``B += s dB`` with
``s = scaling / sum_t steps_t`` (so ``alpha`` stays dual feasible for ``s <= 1``).
"""

from __future__ import annotations

import numpy as np

from ._fixed import evaluate_now, setup, start
from ._loop import DualRound, Recorder, check_frac, draw_seeds, numba_threads
from .mocha import MochaResult, certificates
from .systems import SystemsModel, SystemsRuntime


def mbsdca(
    Xs,
    ys,
    lam: float,
    loss="hinge",
    *,
    gamma: float = 1.0,
    sigma: np.ndarray | None = None,
    local_frac: float = 0.5,
    scaling: float = 10.0,
    rounds: int = 100,
    systems: SystemsModel | None = None,
    random_state=None,
    n_threads: int | None = None,
    executor=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
) -> MochaResult:
    """Fit the W-problem for a fixed Sigma with mini-batch SDCA (certified gaps).

    Parameters
    ----------
    Xs, ys, lam, loss, gamma, sigma
        As :func:`fmtl.federated.cocoa.cocoa`.
    local_frac : float, default=0.5
        Local steps per round as a fraction of ``n_t`` (the mini-batch size).
    scaling : float, default=10.0
        Aggregation ``s = scaling / total steps`` (capped at 1 to keep duals feasible).
    rounds : int, default=100
        Federated rounds.
    systems : SystemsModel, optional
        Heterogeneous mini-batch sizes, drops, cost (flops factor 6).
    random_state : int, Generator or None
        Seeds the per-round coordinate orders and draws.
    n_threads : int, optional
        Numba threads for the local solves (results do not depend on it).
    executor : DaskExecutor, optional
        Runs each round's local solves elsewhere instead of in this process, e.g. on a
        ``dask.distributed`` cluster (:class:`fmtl.distributed.dask.DaskExecutor`, extra
        ``dask``); results are bit-identical to the in-process fit.
    eval_every : int, default=1
        Evaluate certificates every this many rounds (and at the last one).
    callback : callable, optional
        Called with each History record.

    checkpoint_dir, checkpoint_every, resume
        Checkpoint / resume, as :func:`fmtl.federated.mocha`.

    Returns
    -------
    MochaResult
        Models, dual variables and History (records carry the aggregation ``scale``).

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``; ``lam``, ``rounds`` or ``eval_every`` out
        of range; invalid data (no tasks, mismatched lengths, non-2-D or non-finite
        arrays, labels not in {-1, +1} for a classification loss); a ``sigma`` of the
        wrong shape or not symmetric positive definite;
        a non-positive ``local_frac`` or ``scaling``; a ``systems`` model that does
        not fit the tasks; a negative ``checkpoint_every`` or one without
        ``checkpoint_dir``; or an unreadable checkpoint or one of another problem.
    TypeError
        For non-numeric data or ``sigma``, ``ys`` None with unpacked ``Xs``, a
        ``systems`` that is not a :class:`~fmtl.federated.SystemsModel`, or an
        ``executor`` without ``bind``, ``sdca_round`` and ``minibatch_gradients``.
    RuntimeError
        If a node fails its local solve more than ``systems.max_failures`` times.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.mbsdca import mbsdca
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(3)]
    >>> ys = [np.sign(X @ np.ones(4)) for X in Xs]
    >>> h = mbsdca(Xs, ys, lam=0.1, rounds=50, random_state=0).history
    >>> bool(h["gap"][-1] < h["gap"][0])
    True
    """
    tasks, loss, lam, Sigma, Omega = setup(Xs, ys, lam, loss, gamma, sigma, rounds, eval_every)
    local_frac = check_frac("local_frac", local_frac)
    scaling = check_frac("scaling", scaling)
    runtime = SystemsRuntime(systems, tasks.n_samples, local_frac, flops_factor=6.0)
    rng = np.random.default_rng(random_state)
    m = tasks.n_tasks
    sdiag = np.diag(Sigma)
    dual = DualRound(tasks, loss, lam, record_gaps=False, runtime=runtime, executor=executor)
    rec = Recorder(runtime, callback)
    B = np.zeros((m, tasks.n_features))
    state = {"alpha": dual.alpha, "B": B}
    ckpt, pos, rng = start(
        checkpoint_dir,
        checkpoint_every,
        resume,
        tasks,
        "mbsdca",
        runtime,
        rec,
        rng,
        state,
        lam=lam,
        loss=[loss.name, loss.param],
        sigma=Sigma,
        local_frac=local_frac,
        scaling=scaling,
        rounds=rounds,
        systems=systems,
        eval_every=eval_every,
    )
    Wt = Sigma @ B / lam
    with numba_threads(n_threads):
        for h in range(pos["h"], rounds):
            steps, active = runtime.draw(rng)
            alpha_prev = dual.alpha.copy()
            dB = dual.run(Wt, sdiag, 1.0, steps, draw_seeds(rng, m), active, feedback=False)
            total = float(np.sum(np.where(active, dual.steps_done, 0)))
            s = min(1.0, scaling / total) if total > 0 else 0.0
            dual.alpha[:] = alpha_prev + s * (dual.alpha - alpha_prev)
            B += s * dB
            Wt = Sigma @ B / lam
            rec.tick(dual.steps_done)
            if evaluate_now(h, rounds, eval_every):
                cert = certificates(tasks, dual.alpha, B, Sigma, lam, loss, Wt=Wt)
                rec.add(h + 1, 0, {**cert, "scale": s}, dual.steps_done, active)
            pos["h"] = pos["rnd"] = h + 1
            ckpt.maybe_save(pos, state, rng, runtime, rec)
    ckpt.save(pos, state, rng, runtime, rec)
    silent = rec.warn_silent_nodes()
    return MochaResult(
        coef=Wt,
        sigma=Sigma,
        omega=Omega,
        dual_coef=dual.alpha,
        B=B,
        history=rec.history,
        never_reported=silent,
    )
