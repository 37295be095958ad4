"""The round loop every model-exchanging method shares (FedAvg, pFedMe, Per-FedAvg, FedRep,
pFedHN).

One round: the systems model draws each node's local work and who reports
(:class:`fmtl.federated.systems.SystemsRuntime`); every reporting node runs the method's
client update; an update that is not finite is a failed node (dropped for the round, as in
MOCHA); the server combines the updates of the nodes that reported; the round's estimated
time is accounted and, every ``eval_every`` rounds, a History record is written with the
same columns as MOCHA's (``round``, ``est_time``, ``local_steps``, ``dropped``, ``failed``,
...). The methods differ only in the three callables they pass to :meth:`RoundLoop.run`.

Checkpoints (:meth:`RoundLoop.checkpoint`) use the dual methods' machinery
(:class:`fmtl.federated.checkpoint.Checkpointer`): the method's state arrays, the RNG, the
systems counters, History and the loop position, every ``checkpoint_every`` rounds and at
the end; a resumed fit continues bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._random import rng_from
from ._loop import Recorder, check_positive_int
from .checkpoint import Checkpointer
from .history import History
from .systems import SystemsModel, SystemsRuntime


class RoundLoop:
    """Systems draws, failures, aggregation weights, estimated time and records of a fit.

    Parameters
    ----------
    n_samples : ndarray of int, shape (n_tasks,)
    systems : SystemsModel or None
    flops_factor : float
        Estimated-time cost of one sample visit times the passes over its data a node
        makes in a round at full speed (e.g. ``4 * 3`` for three gradient evaluations).
    random_state : int, Generator or None
        Seeds the systems draws (drops, heterogeneity).
    eval_every : int
    callback : callable, optional
    slowest_node_time : bool, default=False
        Estimated time from the slowest node's work (methods that solve to an accuracy and
        report their work in :attr:`steps_done`) instead of the round's fixed budget.
    local_frac : float, default=1.0
        Work budget at full speed in passes (the systems model's ``local_frac``): methods
        that count work in single-sample steps (FedAvg's SGD) use their epochs here and
        read ``steps_t`` directly; full-batch methods keep 1 and use :meth:`local_steps`.
    """

    def __init__(
        self,
        n_samples: np.ndarray,
        systems: SystemsModel | None,
        flops_factor: float,
        random_state=None,
        eval_every: int = 1,
        callback=None,
        slowest_node_time: bool = False,
        local_frac: float = 1.0,
    ) -> None:
        self.n = np.asarray(n_samples)
        self.runtime = SystemsRuntime(
            systems,
            self.n,
            local_frac,
            flops_factor=flops_factor,
            slowest_node_time=slowest_node_time,
        )
        self.recorder = Recorder(self.runtime, callback)
        self.rng = rng_from(random_state)
        self.eval_every = check_positive_int("eval_every", eval_every)
        self.ckpt = Checkpointer(None, 0, {})
        self.resume_enabled = False

    def checkpoint(
        self, directory, every: int, resume: bool, tasks, algorithm: str, random_state, **settings
    ) -> None:
        """Checkpoint the fit in ``directory`` every ``every`` rounds (0: only at the end)
        and, with ``resume``, continue from the checkpoint there; ``settings`` are every
        argument that changes the rounds' result (with the data and the seed they make
        the fingerprint a checkpoint must match)."""
        self.ckpt = Checkpointer.for_fit(
            directory, every, tasks, algorithm, random_state, **settings
        )
        self.resume_enabled = bool(resume)

    @property
    def history(self) -> History:
        return self.recorder.history

    def run(
        self,
        rounds: int,
        client: Callable[[int, int, int], np.ndarray],
        server: Callable[[np.ndarray, np.ndarray, int], None],
        evaluate: Callable[[], dict],
        stop: Callable[[dict], bool] | None = None,
        batched: bool = False,
        state: Callable[[], dict] | None = None,
        restore: Callable[[dict], None] | None = None,
    ) -> int:
        """Run up to ``rounds`` rounds; returns the number run (over the whole fit, when
        resumed from a checkpoint).

        ``client(t, steps_t, h)`` returns node ``t``'s update (an array; non-finite entries
        mark a failed node); ``server(updates, ok, h)`` applies the updates of the nodes in
        the boolean mask ``ok`` (``updates[t]`` is meaningless elsewhere), called only when
        some node reported; ``evaluate()`` returns the record's values; ``stop(values)``
        ends the fit early after a recorded round. ``batched=True``: one call
        ``client(active, steps, h)`` returns the ``(n_tasks, ...)`` updates of all active
        nodes at once. A client may record the work it did in ``self.steps_done[t]``.
        ``state()`` returns the method's arrays (what a checkpoint saves; required with a
        checkpoint) and ``restore(arrays)`` puts saved ones back (default: copied into
        ``state()``'s arrays, for methods that update their state in place).
        """
        m = self.n.shape[0]
        updates = None
        pos = {"h": 0, "rnd": 0, "finished": False}
        if self.ckpt.directory is not None:
            if state is None:
                raise TypeError("a checkpointed RoundLoop.run needs state")
            current = state()
            saved = self.ckpt.resume(
                self.resume_enabled, self.runtime, self.recorder, pos, current
            )
            if saved is not None:
                arrays, rng = saved
                if type(rng.bit_generator) is not type(self.rng.bit_generator):
                    raise ValueError(
                        f"the checkpoint in {self.ckpt.directory} continues a "
                        f"{type(rng.bit_generator).__name__} stream, this fit draws from a "
                        f"{type(self.rng.bit_generator).__name__}"
                    )
                # in place: the methods hold this Generator (seeds of their local steps)
                self.rng.bit_generator.state = rng.bit_generator.state
                if restore is not None:
                    restore(arrays)
                else:
                    for k, a in current.items():
                        a[...] = arrays[k]
        for h in range(pos["h"], rounds):
            if pos["finished"]:  # stopped early (``stop``) before the checkpoint
                break
            steps, active = self.runtime.draw(self.rng)
            self.steps_done = steps.copy()
            if batched:
                updates = np.asarray(client(active.copy(), steps, h), dtype=np.float64)
            else:
                for t in np.flatnonzero(active):
                    u = np.asarray(client(int(t), int(steps[t]), h), dtype=np.float64)
                    if updates is None:
                        updates = np.zeros((m, *u.shape))
                    updates[t] = u
            failed = np.zeros(m, dtype=bool)
            if updates is not None:
                flat = updates.reshape(m, -1)
                failed = active & ~np.all(np.isfinite(flat), axis=1)
            self.runtime.fail(failed, active)  # also clears them from ``active``
            if active.any():
                server(updates, active.copy(), h)
            self.recorder.tick(np.where(active, self.steps_done, 0))
            pos["h"] = pos["rnd"] = h + 1
            if (h + 1) % self.eval_every == 0 or h + 1 == rounds:
                values = evaluate()
                self.recorder.add(h + 1, 0, values, self.steps_done, active)
                if stop is not None and stop(values):
                    pos["finished"] = True
                    break
            if self.ckpt.every:
                self.ckpt.maybe_save(pos, state(), self.rng, self.runtime, self.recorder)
        if self.ckpt.directory is not None:
            self.ckpt.save(pos, state(), self.rng, self.runtime, self.recorder)
            self.ckpt.release()
        return pos["rnd"]

    def local_steps(self, t: int, steps_t: int, per_round: int) -> int:
        """Steps node ``t`` makes this round: ``per_round`` at full speed, scaled by the
        work fraction the systems model drew (``steps_t / n_t`` of the fastest node's),
        at least one."""
        n_t = int(self.n[t])
        if n_t <= 0:
            return 0
        top = 1.0 if self.runtime.range is None else self.runtime.range[1]
        return int(max(1, round(per_round * (steps_t / n_t) / top)))

    def weights(self, p: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Aggregation weights ``p_t`` renormalised over the nodes that reported."""
        q = np.where(ok, p, 0.0)
        return q / q.sum()

    def finish(self) -> np.ndarray:
        """Warn about nodes that never reported; returns them."""
        return self.recorder.warn_silent_nodes()
