"""Mini-batch SGD (the reference's primal baseline) on the W-problem for a fixed Sigma.

Round ``h``: node ``t`` averages loss subgradients over a mini-batch of its rows at
``w_t``; the server steps ``W <- W - eta_h (G + lam Omega W)`` with ``eta_h = scaling / h``
and projects ``W`` onto the Frobenius ball of radius ``sqrt(2 P(0) / (lam lmin(Omega)))``,
which contains the optimum. Differences from the MATLAB reference, on purpose: the
reference omits ``lam`` on the ``Omega`` term, averages each task's gradient over all
tasks' steps, and projects each ``w_t`` on the radius ``1/sqrt(lam)`` of the single-task
hinge problem; fmtl uses the gradient of the objective it reports.
"""

from __future__ import annotations

import numpy as np

from .._random import rng_from
from ..solvers.sdca import minibatch_gradients
from ._fixed import evaluate_now, setup, start
from ._loop import (
    Recorder,
    bind_executor,
    check_frac,
    draw_seeds,
    numba_threads,
    objective_terms,
    parallel_worth_it,
)
from .mocha import MochaResult
from .systems import SystemsModel, SystemsRuntime


def mbsgd(
    Xs,
    ys,
    lam: float,
    loss="hinge",
    *,
    gamma: float = 1.0,
    sigma: np.ndarray | None = None,
    local_frac: float = 0.5,
    scaling: float = 0.1,
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
    """Fit the W-problem for a fixed Sigma with projected mini-batch SGD (primal only).

    Parameters
    ----------
    Xs, ys, lam, loss, gamma, sigma
        As :func:`fmtl.federated.cocoa.cocoa`.
    local_frac : float, default=0.5
        Mini-batch size per round as a fraction of ``n_t``.
    scaling : float, default=0.1
        Step size ``eta_h = scaling / h``.
    rounds : int, default=100
        Federated rounds.
    systems : SystemsModel, optional
        Heterogeneous mini-batch sizes, drops, cost (flops factor 4).
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
        No dual: ``dual_coef`` and ``B`` are empty and History has ``primal`` only.

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
    >>> from fmtl.federated.mbsgd import mbsgd
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(3)]
    >>> ys = [np.sign(X @ np.ones(4)) for X in Xs]
    >>> h = mbsgd(Xs, ys, lam=0.1, rounds=50, random_state=0).history
    >>> bool(h["primal"][-1] < h["primal"][0])
    True
    """
    tasks, loss, lam, Sigma, Omega = setup(Xs, ys, lam, loss, gamma, sigma, rounds, eval_every)
    local_frac = check_frac("local_frac", local_frac)
    scaling = check_frac("scaling", scaling)
    runtime = SystemsRuntime(systems, tasks.n_samples, local_frac, flops_factor=4.0)
    rng = rng_from(random_state)
    m, d = tasks.n_tasks, tasks.n_features
    no_dual = np.zeros(tasks.y.shape[0])
    p0 = float(objective_terms(tasks, no_dual, np.zeros((m, d)), loss)[0].sum())
    radius = np.sqrt(2.0 * p0 / (lam * np.linalg.eigvalsh(Omega)[0]))
    executor = bind_executor(executor, tasks)
    rec = Recorder(runtime, callback)
    Wt = np.zeros((m, d))
    G = np.zeros((m, d))
    state = {"Wt": Wt}
    ckpt, pos, rng = start(
        checkpoint_dir,
        checkpoint_every,
        resume,
        tasks,
        "mbsgd",
        runtime,
        rec,
        rng,
        random_state,
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
    with numba_threads(n_threads):
        parallel = parallel_worth_it(tasks)
        for h in range(pos["h"], rounds):
            steps, active = runtime.draw(rng)
            args = (Wt, loss.code, loss.param, steps, draw_seeds(rng, m), active, G)
            if executor is None:
                minibatch_gradients(*tasks.kernel_args, *args, parallel=parallel)
            else:
                executor.minibatch_gradients(tasks, *args)
            runtime.fail(~np.all(np.isfinite(G), axis=1), active)
            G[~active] = 0.0  # failed (and dropped) nodes contribute nothing
            # in place: the checkpoint state refers to this array
            Wt -= (scaling / (h + 1)) * (G + lam * (Omega @ Wt))
            norm = np.linalg.norm(Wt)
            if norm > radius:
                Wt *= radius / norm
            done = np.where(active, steps, 0)
            rec.tick(done)
            if evaluate_now(h, rounds, eval_every):
                loss_mean = objective_terms(tasks, no_dual, Wt, loss)[0]
                primal = float(loss_mean.sum()) + 0.5 * lam * float(np.sum(Wt * (Omega @ Wt)))
                rec.add(h + 1, 0, {"primal": primal}, done, active)
            pos["h"] = pos["rnd"] = h + 1
            ckpt.maybe_save(pos, state, rng, runtime, rec)
    ckpt.save(pos, state, rng, runtime, rec)
    silent = rec.warn_silent_nodes()
    return MochaResult(
        coef=Wt,
        sigma=Sigma,
        omega=Omega,
        dual_coef=np.zeros(0),
        B=np.zeros((0, d)),
        history=rec.history,
        never_reported=silent,
    )
