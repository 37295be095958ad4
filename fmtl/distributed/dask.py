"""The per-task local solves of fmtl's algorithms on a ``dask.distributed`` cluster.

:class:`DaskExecutor` splits the tasks into contiguous chunks, scatters each chunk's data
(``X``, ``y``, row norms) once to one worker and, every round, runs the same numba
kernels as the in-process fits (:func:`fmtl.solvers.sdca.sdca_round`,
:func:`fmtl.solvers.sdca.minibatch_gradients`) on each chunk where its data lives. Pass it
as ``executor=`` to :func:`fmtl.federated.mocha`, :func:`fmtl.federated.cocoa.cocoa`,
:func:`fmtl.federated.mbsdca.mbsdca` or :func:`fmtl.federated.mbsgd.mbsgd`.

Each task's computation in the kernels depends only on its own rows, its seed and the
round's inputs, so a fit with an executor is bit-identical to the in-process fit with
the same ``random_state``, whatever the number of chunks or workers.

``distributed`` is imported when a :class:`DaskExecutor` is built, not when this module
is imported. The functions that run on workers are module-level functions here, so
workers in other processes import them from ``fmtl`` (never from ``__main__``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..federated._loop import as_tasks, check_positive_int, parallel_worth_it, run_sdca
from ..solvers._packing import PackedTasks
from ..solvers.sdca import minibatch_gradients
from ..solvers.sgd import local_sgd_round

__all__ = ["DaskExecutor"]


class DaskExecutor:
    """Run the per-round local solves of an fmtl fit on a ``dask.distributed`` cluster.

    The tasks are split into ``n_chunks`` contiguous chunks of about equal work (stored
    entries of ``X``), and each chunk's data is scattered once, to one worker, when the
    executor is bound to a data set (:meth:`bind`, called by the fits). Every round then
    sends each chunk's worker one small task pinned to it (``workers=[address]``,
    ``allow_other_workers=False``) with that round's inputs for the chunk: the current
    models ``w_t``, the dual variables of the chunk's rows, step budgets, seeds and the
    active mask. The worker runs the numba kernel on the resident data and returns the
    updated dual block and the rows of ``dB`` (or of the gradient ``G`` for mini-batch
    SGD), which are written into the caller's arrays.

    Design choice: the dual variables travel with each round's call (``8 n_t`` bytes per
    task each way, about ``1 / n_features`` of the bytes of a dense ``X``) instead of
    staying on the workers, so the worker functions are pure, the server can rescale or
    restore ``alpha`` (mini-batch SDCA, failed nodes, checkpoint resume) without a sync
    protocol, and a retried task gives the same result. ``X``, ``y`` and the row norms
    never travel after the first scatter.

    Results are bit-identical to the in-process fit (same seeds, same kernels, each task
    touching only its own rows).

    Parameters
    ----------
    client : distributed.Client
        A synchronous client with at least one worker (wait for a cluster that is still
        starting with ``client.wait_for_workers(n)`` first).
    n_chunks : int, optional
        Number of chunks; default the number of workers at :meth:`bind` time (never more
        than the number of tasks). Chunks are assigned to the workers (sorted by address)
        round-robin.

    Attributes
    ----------
    chunks : list of (int, int)
        Task ranges ``[t0, t1)`` of the chunks (empty until bound).
    chunk_workers : list of str
        Worker address that holds each chunk's data.

    Raises
    ------
    TypeError
        If ``client`` is not a ``distributed.Client``.
    ValueError
        If the client is asynchronous or has no workers, ``n_chunks`` is not an integer
        >= 1, or (from :meth:`bind`) the executor already holds another data set.
    ImportError
        If ``dask.distributed`` is not installed.

    Notes
    -----
    The scattered data lives only on its worker: if that worker dies the next round fails
    with dask's error, and the executor must be rebuilt (or :meth:`release` d and bound
    again). An executor serves one data set at a time; fitting other data raises
    ``ValueError`` until :meth:`release` is called. Worker-side kernels choose threads as
    in-process fits do (numba threads only for large chunks).

    Examples
    --------
    >>> import numpy as np
    >>> from distributed import Client, LocalCluster
    >>> from fmtl.distributed.dask import DaskExecutor
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(40, 5)) for _ in range(4)]
    >>> ys = [np.sign(X @ np.ones(5)) for X in Xs]
    >>> cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                        dashboard_address=None)
    >>> client = Client(cluster)
    >>> ex = DaskExecutor(client)
    >>> res = mocha(Xs, ys, lam=0.1, outer_iters=2, inner_iters=5, random_state=0,
    ...             executor=ex)
    >>> ex.chunks
    [(0, 2), (2, 4)]
    >>> ref = mocha(Xs, ys, lam=0.1, outer_iters=2, inner_iters=5, random_state=0)
    >>> bool(np.array_equal(res.coef, ref.coef))
    True
    >>> ex.release(); client.close(); cluster.close()
    """

    def __init__(self, client, n_chunks: int | None = None) -> None:
        try:
            import distributed
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "DaskExecutor needs dask.distributed: pip install 'fmtl[dask]'"
            ) from e
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        if client.asynchronous:
            raise ValueError("DaskExecutor needs a synchronous Client (asynchronous=False)")
        self.client = client
        self.n_chunks = None if n_chunks is None else check_positive_int("n_chunks", n_chunks)
        self._workers()  # fail early on a client without workers
        self.chunks: list[tuple[int, int]] = []
        self.chunk_workers: list[str] = []
        self._futures: list = []
        self._rows: list[tuple[int, int]] = []
        self._tasks: PackedTasks | None = None
        self._digest: str | None = None

    def __repr__(self) -> str:
        state = f"{len(self.chunks)} chunks bound" if self.bound else "unbound"
        return f"DaskExecutor({state}, n_chunks={self.n_chunks})"

    @property
    def bound(self) -> bool:
        """Whether a data set is scattered."""
        return self._tasks is not None

    def _workers(self) -> list[str]:
        workers = sorted(self.client.nthreads())
        if not workers:
            raise ValueError(
                "the dask client has no workers: start some, or wait for them with "
                "client.wait_for_workers(n), before building a DaskExecutor"
            )
        return workers

    def bind(self, Xs, ys=None) -> DaskExecutor:
        """Scatter the data of ``Xs`` (a PackedTasks, or per-task arrays with ``ys``).

        Idempotent for the same data (compared by content): nothing is sent again. Data
        other than the bound set raises ``ValueError``; call :meth:`release` first.
        Returns ``self``.
        """
        if isinstance(Xs, PackedTasks):
            tasks = Xs
        else:
            tasks = as_tasks(Xs, ys)
        if tasks is self._tasks:
            return self
        digest = _digest(tasks)
        if self._tasks is not None:
            if digest != self._digest:
                raise ValueError(
                    f"this DaskExecutor holds another data set ({self._tasks.n_tasks} tasks, "
                    f"{int(self._tasks.offsets[-1])} rows, {self._tasks.n_features} features; "
                    f"got {tasks.n_tasks} tasks, {int(tasks.offsets[-1])} rows, "
                    f"{tasks.n_features} features or other values): call release() first "
                    "or build a new DaskExecutor"
                )
            self._tasks = tasks  # same content: keep the scattered copies
            return self
        workers = self._workers()
        k = min(self.n_chunks or len(workers), tasks.n_tasks)
        bounds = _partition(tasks, k)
        chunks = [(bounds[i], bounds[i + 1]) for i in range(k)]
        chunk_workers = [workers[i % len(workers)] for i in range(k)]
        futures = []
        for (t0, t1), addr in zip(chunks, chunk_workers, strict=True):
            futures.append(self.client.scatter(_chunk(tasks, t0, t1), workers=[addr], hash=False))
        self.chunks, self.chunk_workers, self._futures = chunks, chunk_workers, futures
        self._rows = [(int(tasks.offsets[t0]), int(tasks.offsets[t1])) for t0, t1 in chunks]
        self._tasks, self._digest = tasks, digest
        return self

    def release(self) -> None:
        """Drop the scattered data (the workers free it); the executor can bind again."""
        for f in self._futures:
            f.release()
        self.chunks, self.chunk_workers, self._futures, self._rows = [], [], [], []
        self._tasks = self._digest = None

    def _run(self, tasks: PackedTasks, func, per_task: tuple, per_row: tuple, shared: tuple):
        # one pinned task per chunk; per_task/per_row arrays are sliced to the chunk
        self.bind(tasks)
        futures = []
        for fut, (t0, t1), (r0, r1), addr in zip(
            self._futures, self.chunks, self._rows, self.chunk_workers, strict=True
        ):
            args = (
                *(a[r0:r1] for a in per_row),
                *(a[t0:t1] for a in per_task),
                *shared,
            )
            futures.append(
                self.client.submit(
                    func, fut, *args, workers=[addr], allow_other_workers=False, pure=False
                )
            )
        return self.client.gather(futures)

    def sdca_round(
        self,
        tasks: PackedTasks,
        alpha,
        Wt,
        sigma_diag,
        rho,
        lam,
        code,
        param,
        steps,
        seeds,
        active,
        theta,
        check_every,
        feedback,
        record_gaps,
        dB,
        steps_done,
        gap_start,
        gap_end,
        shrink: bool = False,
        gap_rtol: float = 0.0,
        terms: tuple | None = None,
    ) -> None:
        """:func:`fmtl.solvers.sdca.sdca_round` on the cluster (``tasks`` in place of the
        packed data arguments); updates ``alpha`` and writes the outputs in place. The
        certified kernel's options (``shrink``, ``gap_rtol``, ``terms``) as in
        ``sdca_round``."""
        certified = bool(shrink or gap_rtol or terms is not None)
        results = self._run(
            tasks,
            _sdca_chunk,
            per_task=(Wt, sigma_diag, steps, seeds, active, check_every),
            per_row=(alpha,),
            shared=(rho, lam, code, param, theta, feedback, record_gaps, shrink, gap_rtol,
                    certified),
        )  # fmt: skip
        for (t0, t1), (r0, r1), (a, db, done, g0, g1, tl, tc) in zip(
            self.chunks, self._rows, results, strict=True
        ):
            alpha[r0:r1] = a
            dB[t0:t1] = db
            steps_done[t0:t1] = done
            gap_start[t0:t1] = g0
            gap_end[t0:t1] = g1
            if terms is not None:
                terms[0][t0:t1] = tl
                terms[1][t0:t1] = tc

    def minibatch_gradients(
        self, tasks: PackedTasks, Wt, code, param, steps, seeds, active, G
    ) -> None:
        """:func:`fmtl.solvers.sdca.minibatch_gradients` on the cluster; writes ``G``."""
        results = self._run(
            tasks,
            _gradient_chunk,
            per_task=(Wt, steps, seeds, active),
            per_row=(),
            shared=(code, param),
        )
        for (t0, t1), g in zip(self.chunks, results, strict=True):
            G[t0:t1] = g

    def local_sgd_round(
        self, tasks: PackedTasks, W0, code, param, lam, lr, steps, seeds, active, Wout
    ) -> None:
        """:func:`fmtl.solvers.sgd.local_sgd_round` on the cluster (FedAvg); writes
        ``Wout``."""
        results = self._run(
            tasks,
            _sgd_chunk,
            per_task=(W0, steps, seeds, active),
            per_row=(),
            shared=(code, param, lam, lr),
        )
        for (t0, t1), w in zip(self.chunks, results, strict=True):
            Wout[t0:t1] = w


def _digest(tasks: PackedTasks) -> str:
    """Content hash of the data a chunk set is built from."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tasks.sparse, tasks.n_features)).encode())
    for a in (tasks.offsets, tasks.y, tasks.Xd, tasks.data, tasks.indices, tasks.indptr):
        a = np.ascontiguousarray(a)
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _partition(tasks: PackedTasks, k: int) -> list[int]:
    """Boundaries ``0 = b_0 < ... < b_k = m`` splitting the tasks into ``k`` contiguous
    chunks of about equal work (stored entries plus rows)."""
    m, off = tasks.n_tasks, tasks.offsets
    if tasks.sparse:
        work = np.diff(tasks.indptr[off]) + np.diff(off)
    else:
        work = np.diff(off) * (tasks.n_features + 1)
    cum = np.concatenate([[0], np.cumsum(work, dtype=np.float64)])
    bounds = [0]
    for i in range(1, k):
        target = i * cum[-1] / k
        b = int(np.searchsorted(cum, target))
        if b > 0 and target - cum[b - 1] <= cum[min(b, m)] - target:
            b -= 1
        bounds.append(min(max(b, bounds[-1] + 1), m - (k - i)))
    bounds.append(m)
    return bounds


def _chunk(tasks: PackedTasks, t0: int, t1: int) -> PackedTasks:
    """Tasks ``t0:t1`` as their own PackedTasks (views; same layout)."""
    off = tasks.offsets
    r0, r1 = int(off[t0]), int(off[t1])
    offsets = np.ascontiguousarray(off[t0 : t1 + 1] - r0)
    y, sqnorm = tasks.y[r0:r1], tasks.sqnorm[r0:r1]
    if tasks.sparse:
        p0, p1 = int(tasks.indptr[r0]), int(tasks.indptr[r1])
        indptr = np.ascontiguousarray(tasks.indptr[r0 : r1 + 1] - p0)
        return PackedTasks(
            tasks.Xd,
            tasks.data[p0:p1],
            tasks.indices[p0:p1],
            indptr,
            True,
            y,
            sqnorm,
            offsets,
            tasks.n_features,
        )
    return PackedTasks(
        tasks.Xd[r0:r1],
        tasks.data,
        tasks.indices,
        tasks.indptr,
        False,
        y,
        sqnorm,
        offsets,
        tasks.n_features,
    )


# --- run on the workers -------------------------------------------------------------------

# numba's workqueue layer is guarded at every kernel launch (fmtl.solvers.sdca._launch),
# so worker threads (threads_per_worker > 1, processes=False) need no lock of their own


def _sdca_chunk(
    chunk: PackedTasks,
    alpha,
    Wt,
    sigma_diag,
    steps,
    seeds,
    active,
    check_every,
    rho,
    lam,
    code,
    param,
    theta,
    feedback,
    record_gaps,
    shrink=False,
    gap_rtol=0.0,
    certified=False,
):
    """One round of local SDCA on a chunk; returns (alpha, dB, steps_done, gap0, gap1,
    loss terms, conjugate terms) (the terms NaN unless ``certified``)."""
    m, d = chunk.n_tasks, chunk.n_features
    alpha = np.array(alpha, dtype=np.float64)  # a copy: never write into the caller's
    dB = np.zeros((m, d))
    steps_done = np.zeros(m, dtype=np.int64)
    gap_start = np.empty(m)
    gap_end = np.empty(m)
    terms = (np.full(m, np.nan), np.full(m, np.nan))
    options = {"shrink": shrink, "gap_rtol": gap_rtol, "terms": terms} if certified else {}
    args = (alpha, Wt, sigma_diag, rho, lam, code, param, steps, seeds, active, theta)
    outputs = (check_every, feedback, record_gaps, dB, steps_done, gap_start, gap_end)
    run_sdca(chunk, (*args, *outputs), parallel_worth_it(chunk), **options)
    return alpha, dB, steps_done, gap_start, gap_end, *terms


def _gradient_chunk(chunk: PackedTasks, Wt, steps, seeds, active, code, param):
    """Mini-batch gradient rows of a chunk's tasks."""
    G = np.zeros((chunk.n_tasks, chunk.n_features))
    minibatch_gradients(
        *chunk.kernel_args,
        Wt,
        code,
        param,
        steps,
        seeds,
        active,
        G,
        parallel=parallel_worth_it(chunk),
    )
    return G


def _sgd_chunk(chunk: PackedTasks, W0, steps, seeds, active, code, param, lam, lr):
    """Local SGD models of a chunk's tasks (FedAvg)."""
    Wout = np.zeros((chunk.n_tasks, chunk.n_features))
    local_sgd_round(
        *chunk.kernel_args,
        W0,
        code,
        param,
        lam,
        lr,
        steps,
        seeds,
        active,
        Wout,
        parallel=parallel_worth_it(chunk),
    )
    return Wout
