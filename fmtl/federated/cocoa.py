"""CoCoA (Jaggi et al. 2014; Smith et al. 2016) on MOCHA's W-problem for a fixed Sigma.

Every node solves the same local subproblem as MOCHA, but always to a fixed relative
accuracy ``theta`` (its local Fenchel gap at most ``theta`` times the gap it started the
round with), whatever that costs: the round lasts as long as the slowest node
(estimated time ``flops * m * max_t steps_t + comm``, the reference's accounting).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._random import rng_from
from ._fixed import setup
from ._loop import DualRound, check_nonneg, numba_threads
from .engine import DualEngine, run_engine
from .mocha import MochaResult, dual_result, resume_or_warm_start
from .systems import SystemsModel, SystemsRuntime


def cocoa(
    Xs,
    ys,
    lam: float,
    loss="hinge",
    *,
    gamma: float = 1.0,
    sigma: np.ndarray | None = None,
    theta: float = 0.5,
    max_local_passes: float = 20.0,
    check_every: int | None = None,
    rounds: int = 100,
    tol: float = 0.0,
    systems: SystemsModel | None = None,
    random_state=None,
    n_threads: int | None = None,
    executor=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
    warm_start: MochaResult | None = None,
) -> MochaResult:
    """Fit the W-problem for a fixed Sigma with CoCoA (each node to accuracy ``theta``).

    Parameters
    ----------
    Xs, ys, lam, loss, gamma
        As :func:`fmtl.federated.mocha`.
    sigma : ndarray of shape (m, m), optional
        Fixed relationship (default ``I / m``, as the reference's plots).
    theta : float, default=0.5
        Target relative local gap per node and round, in (0, 1).
    max_local_passes : float, default=20.0
        Cap on local work per round, in passes over the node's data.
    check_every : int, optional
        Check the local gap every this many steps (default ``ceil(n_t / 10)`` per node;
        the reference checks every 5 steps).
    rounds : int, default=100
        Federated rounds.
    tol : float, default=0.0
        Stop once the certified relative duality gap is ``<= tol``.
    systems : SystemsModel, optional
        Drops and cost model (heterogeneity does not apply: CoCoA fixes the accuracy).
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
    warm_start : MochaResult, optional
        Start from an earlier fit's dual variables on the same data (any ``lam``), as
        :func:`fmtl.federated.mocha`'s ``warm_start`` (its ``sigma`` is not used: CoCoA's
        is fixed).

    Returns
    -------
    MochaResult
        History records also carry ``local_gap_ratio`` (realised theta per node).

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``; ``lam``, ``rounds`` or ``eval_every`` out
        of range; invalid data (no tasks, mismatched lengths, non-2-D or non-finite
        arrays, labels not in {-1, +1} for a classification loss); a ``sigma`` of the
        wrong shape or not symmetric positive definite;
        ``theta`` outside (0, 1), a non-positive ``max_local_passes``, ``check_every``
        < 1 or a negative ``tol``; a ``systems`` model that does
        not fit the tasks; a negative ``checkpoint_every`` or one without
        ``checkpoint_dir``; an unreadable checkpoint or one of another problem; or a
        ``warm_start`` whose dual variables do not fit the data.
    TypeError
        For non-numeric data or ``sigma``, ``ys`` None with unpacked ``Xs``, a
        ``systems`` that is not a :class:`~fmtl.federated.SystemsModel`, or an
        ``executor`` without ``bind``, ``sdca_round`` and ``minibatch_gradients``, or a
        ``warm_start`` without ``dual_coef``.
    RuntimeError
        If a node fails its local solve more than ``systems.max_failures`` times.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.cocoa import cocoa
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(3)]
    >>> ys = [np.sign(X @ np.ones(4)) for X in Xs]
    >>> res = cocoa(Xs, ys, lam=0.1, theta=0.5, rounds=30, random_state=0)
    >>> bool(np.all(res.history["local_gap_ratio"] <= 0.5))
    True
    """
    tasks, loss, lam, Sigma, Omega = setup(Xs, ys, lam, loss, gamma, sigma, rounds, eval_every)
    tol = check_nonneg("tol", tol)
    if not (0.0 < theta < 1.0):
        raise ValueError(f"theta must be in (0, 1), got {theta!r}")
    if not (np.isfinite(max_local_passes) and max_local_passes > 0):
        raise ValueError(f"max_local_passes must be a positive number, got {max_local_passes!r}")
    n = tasks.n_samples
    if check_every is None:
        check = np.maximum(1, np.ceil(n / 10)).astype(np.int64)
    else:
        if int(check_every) < 1:
            raise ValueError(f"check_every must be an integer >= 1, got {check_every!r}")
        check = np.full(n.shape[0], int(check_every), dtype=np.int64)
    if systems is not None and systems.heterogeneity is not None:
        systems = dataclasses.replace(systems, heterogeneity=None)
    runtime = SystemsRuntime(
        systems, n, max_local_passes, flops_factor=8.0, slowest_node_time=True
    )
    m = tasks.n_tasks
    pool = DualRound(tasks, loss, lam, record_gaps=True, executor=executor)
    engine = DualEngine(
        np.zeros((m, tasks.n_features)),
        Sigma,
        lam,
        runtime,
        rng_from(random_state),
        inner_iters=rounds,
        eval_every=eval_every,
        tol=tol,
        theta=theta,
        check_every=check,
        callback=callback,
    )
    ckpt = engine.checkpointer(
        checkpoint_dir,
        checkpoint_every,
        tasks,
        "cocoa",
        random_state,
        lam=lam,
        loss=[loss.name, loss.param],
        sigma=Sigma,
        theta=theta,
        max_local_passes=max_local_passes,
        check=check,
        rounds=rounds,
        tol=tol,
        systems=systems,
        eval_every=eval_every,
    )
    resume_or_warm_start(engine, pool, ckpt, resume, warm_start, tasks, loss)
    with numba_threads(n_threads):
        run_engine(engine, pool, ckpt)
    return dual_result(engine, pool, Sigma, Omega)
