"""Pieces every federated algorithm shares: validation, seeds, threads, dual rounds, records."""

from __future__ import annotations

import contextlib
import os
import time
import warnings

import numba
import numpy as np
import scipy.sparse as sp

from ..solvers._packing import PackedTasks, pack_tasks
from ..solvers.sdca import sdca_round, task_objective_terms
from .history import History
from .systems import SystemsRuntime


def check_lam(lam) -> float:
    if isinstance(lam, bool) or not (
        isinstance(lam, int | float | np.floating) and np.isfinite(lam) and lam > 0
    ):
        raise ValueError(f"lam (alpha) must be a positive finite number, got {lam!r}")
    return float(lam)


def check_positive_int(name: str, v, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def check_frac(name: str, v) -> float:
    if not (isinstance(v, int | float | np.floating) and np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(v)


def as_tasks(Xs, ys, loss=None) -> PackedTasks:
    """Validate per-task data and pack it (a PackedTasks passes through unchanged).

    Each ``Xs[t]`` must be 2-D (dense or scipy sparse) and finite with the same number of
    columns, each ``ys[t]`` 1-D, finite and as long as ``Xs[t]`` has rows; classification
    losses need labels in {-1, +1}.
    """
    if isinstance(Xs, PackedTasks):
        return Xs
    if ys is None:
        raise TypeError("ys is required unless Xs is a PackedTasks")
    Xs, ys = list(Xs), list(ys)
    if not Xs:
        raise ValueError("Xs is empty: at least one task is needed")
    if len(Xs) != len(ys):
        raise ValueError(f"Xs has {len(Xs)} tasks but ys has {len(ys)}")
    d = None
    clean_X, clean_y = [], []
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=np.float64)
            values = X.data
        else:
            try:
                X = np.ascontiguousarray(X, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise TypeError(f"Xs[{t}] must be a numeric array: {e}") from e
            values = X
        if X.ndim != 2:
            raise ValueError(f"Xs[{t}] must be 2-D, got {X.ndim}-D")
        if d is None:
            d = X.shape[1]
        elif X.shape[1] != d:
            raise ValueError(f"Xs[{t}] has {X.shape[1]} features, Xs[0] has {d}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"Xs[{t}] contains NaN or inf")
        try:
            y = np.asarray(y, dtype=np.float64).ravel()
        except (TypeError, ValueError) as e:
            raise TypeError(f"ys[{t}] must be numeric: {e}") from e
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"ys[{t}] has {y.shape[0]} values for {X.shape[0]} rows of Xs[{t}]")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"ys[{t}] contains NaN or inf")
        if loss is not None and loss.classification and np.any(np.abs(y) != 1.0):
            raise ValueError(f"ys[{t}] must hold labels -1/+1 for loss={loss.name!r}")
        clean_X.append(X)
        clean_y.append(y)
    return pack_tasks(clean_X, clean_y)


def check_nonneg(name: str, v) -> float:
    if isinstance(v, bool) or not (
        isinstance(v, int | float | np.integer | np.floating) and np.isfinite(v) and v >= 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def check_flag(name: str, v, allow_none: bool = False) -> bool | None:
    if v is None and allow_none:
        return None
    if not isinstance(v, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


# Debug mode (FMTL_DEBUG=1): after every round assert that every dual variable is feasible
# (a y in [0, 1] for the classification losses), the invariant the certificates rest on.
DEBUG = os.environ.get("FMTL_DEBUG", "") == "1"

# Below this many stored entries of X, one pass is cheaper than a parallel launch: on a loaded
# machine a launch waited ~14 ms for the scheduler (measured: 10 tasks x 200 x 100, 67 rounds/s
# threaded vs 1,530 serial with two other busy processes), so threads only pay for large rounds.
PARALLEL_MIN_WORK = 2_000_000


def parallel_worth_it(tasks: PackedTasks) -> bool:
    """Run the per-task kernels on threads? (Results are identical either way.)"""
    if tasks.n_tasks < 2 or numba.get_num_threads() < 2:
        return False
    nnz = tasks.data.shape[0] if tasks.sparse else tasks.Xd.size
    return nnz >= PARALLEL_MIN_WORK


def draw_seeds(rng: np.random.Generator, m: int) -> np.ndarray:
    """One 64-bit seed per node for this round's coordinate order."""
    return rng.integers(0, np.iinfo(np.uint64).max, size=m, dtype=np.uint64, endpoint=True)


@contextlib.contextmanager
def numba_threads(n_threads: int | None):
    """Run the block with ``n_threads`` numba threads (results do not depend on it) and
    single-threaded BLAS: a round's BLAS calls are small, and on 2 shared cores OpenBLAS
    threads competing with numba's were measured 10-60x slower than one thread."""
    from .._blas import single_threaded_blas

    prev = numba.get_num_threads()
    if n_threads is not None:
        top = numba.config.NUMBA_NUM_THREADS
        if (
            isinstance(n_threads, bool)
            or not isinstance(n_threads, int | np.integer)
            or not 1 <= n_threads <= top
        ):
            raise ValueError(
                f"n_jobs (n_threads) must be an integer in [1, {top}], got {n_threads!r}"
            )
        numba.set_num_threads(int(n_threads))
    try:
        with single_threaded_blas():
            yield
    finally:
        numba.set_num_threads(prev)


def bind_executor(executor, tasks: PackedTasks):
    """Check an ``executor`` argument and bind it to the fit's data (None: in-process).

    An executor runs the per-round kernels elsewhere, e.g.
    :class:`fmtl.distributed.dask.DaskExecutor`: it needs ``bind(tasks)``,
    ``sdca_round(tasks, *args)`` and ``minibatch_gradients(tasks, *args)`` taking the
    kernels' arguments after the packed data.
    """
    if executor is None:
        return None
    missing = [
        name
        for name in ("bind", "sdca_round", "minibatch_gradients")
        if not callable(getattr(executor, name, None))
    ]
    if missing:
        raise TypeError(
            "executor must be None or an executor such as fmtl.distributed.dask.DaskExecutor "
            f"(missing {', '.join(missing)}), got {type(executor).__name__}"
        )
    executor.bind(tasks)
    return executor


def run_sdca(tasks: PackedTasks, args: tuple, parallel: bool, **options) -> None:
    """The one call of the SDCA kernel (:func:`fmtl.solvers.sdca.sdca_round`) on packed
    data: the in-process pool, the Dask workers and the Flower clients all go through it, so
    a change of the kernel's calling convention is made here only. ``options``: the
    certified kernel's keywords (``shrink``, ``gap_rtol``, ``terms``)."""
    sdca_round(*tasks.kernel_args, *args, parallel=parallel, **options)


def objective_terms(tasks: PackedTasks, alpha: np.ndarray, Wt: np.ndarray, loss):
    """Per-task mean loss at ``Wt`` and mean ``-l*(-alpha)`` (jitted, parallel)."""
    m = tasks.n_tasks
    loss_mean = np.empty(m)
    conj_mean = np.empty(m)
    task_objective_terms(
        *tasks.kernel_args,
        alpha,
        np.ascontiguousarray(Wt),
        loss.code,
        loss.param,
        loss_mean,
        conj_mean,
        parallel=parallel_worth_it(tasks),
    )
    return loss_mean, conj_mean


class DualRound:
    """The in-process client pool of the dual methods: every node's dual block and one call
    of the SDCA kernel for a round over all nodes.

    With an ``executor`` (see :func:`bind_executor`) the kernel call runs there instead of
    in this process (the Dask pool); the inputs, outputs and failure handling are the same.
    The engine (:class:`fmtl.federated.engine.DualEngine`) drives it through
    :meth:`run`, :meth:`rescale`, :meth:`evaluate` and :meth:`gap_columns`.
    """

    def __init__(
        self,
        tasks: PackedTasks,
        loss,
        lam: float,
        record_gaps: bool,
        executor=None,
        certified: bool = False,
    ) -> None:
        m, d = tasks.n_tasks, tasks.n_features
        self.tasks, self.loss, self.lam, self.record = tasks, loss, lam, record_gaps
        self.executor = bind_executor(executor, tasks)
        # certified: the shrinking kernel, which stops a node on a certified local gap and
        # returns its objective terms at the node's new model (fmtl.solvers.sdca_shrink)
        self.certified = certified
        self.terms = (np.full(m, np.nan), np.full(m, np.nan))
        self.terms_are_model = False
        self.alpha = np.zeros(tasks.y.shape[0])
        self.alpha_before = self.alpha.copy()
        self.dB = np.zeros((m, d))
        self.steps_done = np.zeros(m, dtype=np.int64)
        self.failed = np.zeros(m, dtype=np.bool_)
        self.gap0 = np.empty(m)
        self.gap1 = np.empty(m)
        self.no_checks = np.zeros(m, dtype=np.int64)  # local gap checked at pass ends
        self.progress = np.full(m, np.nan)

    def run(
        self,
        Wt,
        sigma_diag,
        rho,
        steps,
        seeds,
        active,
        theta=0.0,
        check_every=None,
        feedback=True,
        gap_rtol: float = 0.0,
    ) -> np.ndarray:
        """Local SDCA on every active node (in this process, or on the executor); returns
        ``dB`` (rows ``db_t``) and marks in :attr:`failed` the nodes whose update was not
        finite (their blocks put back, their rows of ``dB`` zero). ``gap_rtol`` (certified
        pool, decoupled tasks): each node stops at a certified relative gap of its own
        problem, and its objective terms at its new model serve the next evaluation."""
        if check_every is None:
            check_every = self.no_checks
        self.alpha_before = alpha_before = self.alpha.copy()
        args = (
            self.alpha,
            np.ascontiguousarray(Wt),
            # a fresh writable copy: np.diag views are read-only, a distinct numba type
            np.array(sigma_diag, dtype=np.float64),
            float(rho),
            self.lam,
            self.loss.code,
            self.loss.param,
            steps,
            seeds,
            active,
            float(theta),
            check_every,
            bool(feedback),
            self.record,
            self.dB,
            self.steps_done,
            self.gap0,
            self.gap1,
        )
        options = {}
        if self.certified:
            self.terms[0][:] = np.nan
            self.terms[1][:] = np.nan
            options = {"shrink": True, "gap_rtol": float(gap_rtol), "terms": self.terms}
        if self.executor is None:
            run_sdca(self.tasks, args, parallel_worth_it(self.tasks), **options)
        else:
            self.executor.sdca_round(self.tasks, *args, **options)
        self._handle_failures()
        # with gap_rtol the engine solves decoupled tasks (diagonal Sigma, sigma' = 1): a
        # node's v_t is then its new w_t, so its certified terms are the certificate's
        self.terms_are_model = bool(
            self.certified and gap_rtol > 0 and np.all(active) and not self.failed.any()
        )
        if self.record:
            self._local_progress(alpha_before, Wt, sigma_diag, rho, active & ~self.failed)
        if DEBUG:
            check_dual_feasible(self.alpha, self.tasks.y, self.loss)
        return self.dB

    def rescale(self, s: float) -> None:
        """Keep the fraction ``s`` of this round's change of the duals (mini-batch SDCA's
        aggregation ``alpha += s (alpha_local - alpha)``)."""
        prev = self.alpha_before
        self.alpha[:] = prev + s * (self.alpha - prev)
        self.terms_are_model &= s == 1.0

    def conjugate_gain(self) -> float:
        """This round's increase of ``sum_t mean_i(-l*(-a_ti))`` (the line search's
        ``sum_t c_t``; failed nodes' blocks are already restored)."""
        return float(
            np.sum(conjugate_increase(self.loss, self.tasks, self.alpha, self.alpha_before))
        )

    def evaluate(self, Wt) -> tuple[np.ndarray, np.ndarray]:
        """Per-task mean loss at ``Wt`` and mean ``-l*(-alpha)``: the certificates' terms
        (from the certified kernel's last round when every node's terms are at ``Wt``)."""
        loss_mean, conj_mean = self.terms
        if self.terms_are_model and np.all(np.isfinite(loss_mean) & np.isfinite(conj_mean)):
            return loss_mean.copy(), conj_mean.copy()
        return objective_terms(self.tasks, self.alpha, Wt, self.loss)

    def arrays(self) -> dict:
        """What a checkpoint keeps of the pool: the duals."""
        return {"alpha": self.alpha}

    def load_arrays(self, arrays: dict) -> None:
        self.alpha[:] = arrays["alpha"]

    def update_bounds(self) -> np.ndarray:
        """The largest update each node's correct local solve returns
        (:func:`dual_update_bounds`); the engine refuses larger ones."""
        return dual_update_bounds(self.loss, row_norm_means(self.tasks))

    def drop(self, nodes: np.ndarray) -> None:
        """Undo this round's update of ``nodes`` (refused by the server): their blocks
        back as they were, their rows of ``dB`` and work zero."""
        nodes = np.array(nodes, dtype=np.bool_)
        self._undo(nodes)
        self.progress[nodes] = np.nan
        self.terms_are_model = False

    def _handle_failures(self) -> None:
        """A node whose update is not finite failed: undo its block (the engine reports it
        dropped)."""
        self.failed[:] = ~np.all(np.isfinite(self.dB), axis=1)
        self._undo(self.failed)

    def _undo(self, nodes: np.ndarray) -> None:
        # restore_failed_blocks also marks in ``nodes`` any node with a non-finite dual
        restore_failed_blocks(self.alpha, self.alpha_before, self.tasks.offsets, nodes)
        self.dB[nodes] = 0.0
        self.steps_done[nodes] = 0

    def _local_progress(self, alpha_before, Wt, sigma_diag, rho, reported) -> None:
        # G_t(da_t) - G_t(0): the increase of node t's subproblem objective this round
        conj = conjugate_increase(self.loss, self.tasks, self.alpha, alpha_before)
        dB = self.dB
        quad = rho * np.asarray(sigma_diag) / (2.0 * self.lam) * np.einsum("ij,ij->i", dB, dB)
        self.progress[:] = conj - np.einsum("ij,ij->i", Wt, dB) - quad
        self.progress[~np.asarray(reported, dtype=bool)] = np.nan

    def gap_columns(self) -> dict:
        return local_gap_columns(self) if self.record else {}


def dual_update_bounds(loss, row_norm_means) -> np.ndarray:
    """Per node, the largest ``||db_t||`` a correct local solve can return.

    ``db_t = X_t^T da_t / n_t`` and every ``|da_ti|`` is at most the width of the loss's
    dual domain (:attr:`fmtl.losses.Loss.dual_width`), so ``||db_t|| <= width *
    mean_i ||x_ti||``; the squared loss's dual is unconstrained (no bound, ``inf``).

    Parameters
    ----------
    loss : Loss
        The fit's loss.
    row_norm_means : array_like of shape (n_tasks,)
        Each task's mean row norm ``mean_i ||x_ti||`` (0 for an empty task).

    Returns
    -------
    ndarray of shape (n_tasks,)
        The bounds (with a relative slack of 1e-9 for rounding).

    Raises
    ------
    ValueError
        If a row norm mean is negative or not finite.

    Examples
    --------
    >>> from fmtl.losses import get_loss
    >>> dual_update_bounds(get_loss("hinge"), [2.0, 0.5]).round(6).tolist()
    [2.0, 0.5]
    >>> dual_update_bounds(get_loss("squared"), [2.0]).tolist()
    [inf]
    """
    r = np.asarray(row_norm_means, dtype=np.float64)
    if not np.all(np.isfinite(r) & (r >= 0)):
        raise ValueError(f"row norm means must be finite and >= 0, got {r!r}")
    if not np.isfinite(loss.dual_width):
        return np.full(r.shape, np.inf)
    return loss.dual_width * r * (1.0 + 1e-9)


def row_norm_means(tasks: PackedTasks, squared: bool = False) -> np.ndarray:
    """Each task's mean row norm ``mean_i ||x_ti||`` (``squared``: ``mean_i ||x_ti||^2``;
    0 for an empty task). The same sums in process and on a one-task client, so the
    server's bounds from a handshake equal the in-process ones bit for bit."""
    norms = tasks.sqnorm if squared else np.sqrt(tasks.sqnorm)
    o = tasks.offsets
    pairs = zip(o[:-1], o[1:], strict=True)
    return np.array([np.mean(norms[a:b]) if b > a else 0.0 for a, b in pairs])


def conjugate_increase(loss, tasks: PackedTasks, alpha, alpha_before) -> np.ndarray:
    """Per task, ``(1/n_t) sum_i [-l*(-a_i) - (-l*(-a_i^before))]``: the conjugate part of
    a round's local subproblem increase (only the moved coordinates are evaluated)."""
    n = tasks.n_samples
    moved = alpha != alpha_before
    diff = np.zeros_like(alpha)
    y = tasks.y[moved]
    diff[moved] = loss.neg_conjugate(y, alpha[moved]) - loss.neg_conjugate(y, alpha_before[moved])
    owner = np.repeat(np.arange(n.size), n)
    return np.bincount(owner, weights=diff, minlength=n.size) / np.maximum(n, 1)


def local_gap_columns(state) -> dict:
    """History columns of the nodes' local gaps (``state.gap0``, ``gap1``, ``progress``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(state.gap0 > 0, state.gap1 / state.gap0, 0.0)
    return {
        "local_gap_start": state.gap0.copy(),
        "local_gap_end": state.gap1.copy(),
        "local_gap_ratio": ratio,
        "local_progress": state.progress.copy(),
    }


def restore_failed_blocks(alpha, alpha_before, offsets, failed) -> np.ndarray:
    """Mark in ``failed`` every node with a non-finite dual variable, and put the dual
    blocks of all failed nodes back as they were before the round (both in place)."""
    bad_rows = np.flatnonzero(~np.isfinite(alpha))
    if bad_rows.size:
        failed[np.searchsorted(offsets, bad_rows, side="right") - 1] = True
    for t in np.flatnonzero(failed):
        alpha[offsets[t] : offsets[t + 1]] = alpha_before[offsets[t] : offsets[t + 1]]
    return failed


def check_dual_feasible(alpha: np.ndarray, y: np.ndarray, loss, tol: float = 1e-12) -> None:
    """Raise AssertionError if some ``alpha_i`` leaves the loss's dual domain."""
    if not loss.classification:
        return
    b = alpha * y
    bad = np.flatnonzero((b < -tol) | (b > 1 + tol) | ~np.isfinite(b))
    if bad.size:
        raise AssertionError(
            f"dual variables left the box [0, 1] at rows {bad[:10].tolist()} "
            f"(a*y = {b[bad[:3]].tolist()})"
        )


class Recorder:
    """Builds History records with wall time and estimated (systems-model) time."""

    def __init__(self, runtime: SystemsRuntime, callback=None) -> None:
        self.history = History()
        self.runtime = runtime
        self.callback = callback
        self.t0 = time.perf_counter()
        self.est_time = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def tick(self, steps_done: np.ndarray) -> None:
        """Account one round's estimated time (called every round, recorded or not)."""
        self.est_time += self.runtime.round_time(steps_done)

    def add(self, rnd: int, outer: int, values: dict, steps_done, active, extra=None) -> dict:
        rec = {
            "round": rnd,
            "outer": outer,
            **values,
            "wall_time": time.perf_counter() - self.t0,
            "est_time": self.est_time,
            "local_steps": np.where(active, steps_done, 0),
            "dropped": ~np.asarray(active, dtype=bool),
            "failed": self.runtime.last_failed.copy(),
        }
        if extra:
            rec.update(extra)
        self.history.append(**rec)
        if self.callback is not None:
            self.callback(rec)
        return rec

    def warn_silent_nodes(self) -> np.ndarray:
        silent = self.runtime.never_reported
        if silent.size:
            warnings.warn(
                f"nodes {silent.tolist()} never reported during the fit: their "
                "models come from the others' through Sigma only",
                RuntimeWarning,
                stacklevel=3,
            )
        return silent
