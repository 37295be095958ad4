"""FedAvg (McMahan et al., 2017) on linear models, and FedAvg followed by local fine-tuning.

FedAvg fits one global ``w`` to ``F(w) = sum_t (n_t / N) mean_i l(y_ti, w.x_ti) + (lam/2)
||w||^2`` — the pooled problem ``(1/N) sum_all l + (lam/2) ||w||^2``, so its exact optimum is
a single-task fit on the pooled data. Round ``h``: every reporting node starts from the
server's ``w``, takes ``local_epochs * n_t`` SGD steps (:func:`fmtl.solvers.sgd.
local_sgd_round`) with step ``lr / (1 + lr_decay h)``, and the server averages the returned
models weighted by ``n_t`` over the nodes that reported. ``finetune_epochs > 0`` then lets
each node run that many epochs from the final ``w`` on its own data alone: the
"FedAvg + fine-tuning" personalisation baseline. Checkpoints (``checkpoint_dir``) hold the
global model after a round; fine-tuning runs again from it when a fit is resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._random import rng_from
from ..losses import get_loss
from ..solvers.sgd import local_sgd_round
from ._loop import (
    as_tasks,
    bind_executor,
    check_frac,
    check_lam,
    check_nonneg,
    check_positive_int,
    draw_seeds,
    numba_threads,
    objective_terms,
    parallel_worth_it,
)
from ._rounds import RoundLoop
from .history import History
from .systems import SystemsModel, local_phase_time


@dataclass
class FedAvgResult:
    """What :func:`fedavg` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Per-task models: every row is ``global_coef`` unless ``finetune_epochs > 0``.
    global_coef : ndarray of shape (n_features,)
        The final global model.
    history : History
        One record per evaluated round: ``primal`` is ``F`` at the global model.
    never_reported : ndarray of int, default=empty
        Nodes that returned nothing in any round (dead or always dropped).
    personalization_time : float, default=0.0
        Estimated time of the local phase after the last round that makes the personal
        models (``finetune_epochs`` of local SGD; 0 without fine-tuning;
        :func:`fmtl.federated.systems.local_phase_time`): add it to
        ``history["est_time"][-1]`` for the time the personal models cost.

    Raises
    ------
    TypeError
        If a field other than ``never_reported`` is missing (dataclass constructor).

    See Also
    --------
    fedavg : Produces it.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import fedavg
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> res = fedavg(Xs, ys, lam=0.01, rounds=5, finetune_epochs=1.0, random_state=0)
    >>> res.coef.shape, res.global_coef.shape, len(res.history)
    ((2, 3), (3,), 5)
    >>> bool(np.allclose(res.coef[0], res.global_coef))
    False
    """

    coef: np.ndarray
    global_coef: np.ndarray
    history: History
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    personalization_time: float = 0.0


def fedavg(
    Xs,
    ys,
    lam: float,
    loss="logistic",
    *,
    gamma: float = 1.0,
    rounds: int = 100,
    local_epochs: float = 1.0,
    lr: float = 0.1,
    lr_decay: float = 0.0,
    finetune_epochs: float = 0.0,
    systems: SystemsModel | None = None,
    random_state=None,
    n_threads: int | None = None,
    executor=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
) -> FedAvgResult:
    """Fit a global linear model with FedAvg (optionally fine-tuned per task).

    Parameters
    ----------
    Xs, ys : lists of per-task arrays (dense or sparse)
    lam : float
        L2 regularisation ``lam > 0`` (also applied in the local steps).
    loss : {"logistic", "squared", "smoothed_hinge", "hinge"}, default="logistic"
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.
    rounds : int, default=100
    local_epochs : float, default=1.0
        Local SGD steps per round as a multiple of ``n_t`` (at least one step), unless
        ``systems`` draws them.
    lr : float, default=0.1
        Step size of round 0 (must keep ``lr * lam < 1``).
    lr_decay : float, default=0.0
        Step size in round ``h``: ``lr / (1 + lr_decay h)``.
    finetune_epochs : float, default=0.0
        Local epochs each node runs from the final global model on its own data.
    systems : SystemsModel, optional
        Heterogeneous local work, drops and the cost model (flops factor 4).
    random_state : int, Generator or None
    n_threads : int, optional
    executor : DaskExecutor, optional
        Runs each round's local SGD elsewhere, e.g. on a ``dask.distributed`` cluster
        (:class:`fmtl.distributed.dask.DaskExecutor`); results are bit-identical.
    eval_every : int, default=1
    callback : callable, optional
        Called with each History record.
    checkpoint_dir : str or Path, optional
        Directory for ``checkpoint.npz``: the global model, the RNG state, the systems
        model's counters, History and the round, written atomically every
        ``checkpoint_every`` rounds and at the end.
    checkpoint_every : int, default=0
        Rounds between checkpoints (0: only the final one).
    resume : bool, default=True
        Continue from the checkpoint in ``checkpoint_dir`` if there is one: the result is
        bit-identical to an uninterrupted fit's (History's ``wall_time`` aside). A
        checkpoint of other data, settings or seed is refused (ValueError).

    Returns
    -------
    FedAvgResult
        Per-task (fine-tuned) models, the global model and History.

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``; ``lam``, ``rounds``, ``eval_every`` or
        ``local_epochs`` out of range; a negative ``finetune_epochs`` or ``lr_decay``;
        an ``lr`` that is not positive with ``lr * lam < 1``; invalid data (no tasks,
        mismatched lengths, non-2-D or non-finite arrays, labels not in {-1, +1} for a
        classification loss); a ``systems`` model that does not fit the tasks; a negative
        ``checkpoint_every`` or one without ``checkpoint_dir``; or an unreadable
        checkpoint or one of another problem.
    TypeError
        For non-numeric data or ``lr``, ``ys`` None with unpacked ``Xs``, a ``systems``
        that is not a :class:`SystemsModel`, or an ``executor`` that lacks ``bind``,
        ``sdca_round``, ``minibatch_gradients`` or ``local_sgd_round``.
    RuntimeError
        If a node fails its local solve more than ``systems.max_failures`` times.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.fedavg import fedavg
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(40, 3)) for _ in range(4)]
    >>> ys = [np.sign(X @ np.ones(3)) for X in Xs]
    >>> res = fedavg(Xs, ys, lam=0.01, rounds=30, random_state=0)
    >>> res.coef.shape, bool(res.history["primal"][-1] < res.history["primal"][0])
    ((4, 3), True)
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    rounds = check_positive_int("rounds", rounds)
    eval_every = check_positive_int("eval_every", eval_every)
    local_epochs = check_frac("local_epochs", local_epochs)
    finetune_epochs = check_nonneg("finetune_epochs", finetune_epochs)
    lr_decay = check_nonneg("lr_decay", lr_decay)
    if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating):
        raise TypeError(f"lr must be a number, got {lr!r}")
    if not (np.isfinite(lr) and 0 < lr and lr * lam < 1):
        raise ValueError(f"lr must be positive with lr * lam < 1, got lr={lr!r}")
    tasks = as_tasks(Xs, ys, loss)
    executor = bind_executor(executor, tasks)
    if executor is not None and not callable(getattr(executor, "local_sgd_round", None)):
        raise TypeError(f"executor {type(executor).__name__} cannot run local SGD")
    m, d = tasks.n_tasks, tasks.n_features
    n = tasks.n_samples.astype(np.float64)
    weights = n / n.sum()
    rng = rng_from(random_state)
    loop = RoundLoop(
        tasks.n_samples, systems, 4.0, rng, eval_every, callback, local_frac=local_epochs
    )
    no_dual = np.zeros(tasks.y.shape[0])
    w = np.zeros(d)
    W0 = np.zeros((m, d))
    Wout = np.zeros((m, d))

    def sgd(W0, step, steps, seeds, active, out):
        args = (W0, loss.code, loss.param, lam, step, steps, seeds, active, out)
        if executor is None:
            local_sgd_round(*tasks.kernel_args, *args, parallel=parallel_worth_it(tasks))
        else:
            executor.local_sgd_round(tasks, *args)

    def client(active, steps, h):
        W0[:] = w
        sgd(W0, lr / (1.0 + lr_decay * h), steps, draw_seeds(rng, m), active, Wout)
        return Wout

    def server(W, ok, h):
        w[:] = (weights[ok] / weights[ok].sum()) @ W[ok]  # in place: the checkpoint's state

    def evaluate():
        W0[:] = w
        loss_mean, _ = objective_terms(tasks, no_dual, W0, loss)
        return {"primal": float(weights @ loss_mean + 0.5 * lam * (w @ w))}

    loop.checkpoint(
        checkpoint_dir,
        checkpoint_every,
        resume,
        tasks,
        "fedavg",
        random_state,
        lam=lam,
        loss=[loss.name, loss.param],
        rounds=rounds,
        local_epochs=local_epochs,
        lr=float(lr),
        lr_decay=lr_decay,
        finetune_epochs=finetune_epochs,
        systems=systems,
        eval_every=eval_every,
    )
    with numba_threads(n_threads):
        loop.run(rounds, client, server, evaluate, batched=True, state=lambda: {"w": w})
        coef = np.tile(w, (m, 1))
        personal_time = 0.0
        if finetune_epochs > 0:
            ft = np.where(n > 0, np.maximum(1, np.floor(finetune_epochs * n)), 0)
            W0[:] = w
            sgd(
                W0,
                lr / (1.0 + lr_decay * rounds),
                ft.astype(np.int64),
                draw_seeds(rng, m),
                np.ones(m, dtype=bool),
                coef,
            )
            personal_time = local_phase_time(ft, 4.0, systems)
    silent = loop.finish()
    return FedAvgResult(
        coef=coef,
        global_coef=w,
        history=loop.history,
        never_reported=silent,
        personalization_time=personal_time,
    )
