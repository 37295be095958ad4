"""Numba SDCA for MOCHA's local dual subproblems, all tasks in one parallel call.

Task ``t`` with current model ``w_t`` maximises over its dual block ``a_t``

    -(1/n_t) sum_i l*(-a_ti) - db_t . w_t - (rho Sigma_tt / (2 lam)) ||db_t||^2,
    db_t = (1/n_t) X_t^T (a_t - a_t^start),

(DESIGN.md section 2). Coordinate ``i`` moves by the exact maximiser of
``-l*(-(a_i + d)) - d x_i.v - q d^2 / 2`` with ``v = w_t + (rho Sigma_tt / lam) db_t`` and
``q = rho Sigma_tt ||x_i||^2 / (lam n_t)``. Each task touches only its own rows, dual
block and output row, so results do not depend on the number of threads.

Randomness: each task's coordinate order comes from a SplitMix64 stream seeded with a
64-bit integer drawn by the caller from its ``numpy.random.Generator``.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numba
import numpy as np
from numba import njit, prange

from ..losses._dispatch import (
    loss_derivative,
    loss_neg_conjugate,
    loss_sdca_delta,
    loss_value,
)
from ._jit import note_if_cold

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, fastmath=False)
def _splitmix64(state):
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return state, z


@njit(cache=True, fastmath=False)
def _shuffle(perm, state):
    return _shuffle_prefix(perm, perm.shape[0], state)


@njit(cache=True, fastmath=False)
def _shuffle_prefix(perm, k_end, state):
    # Fisher-Yates of perm[:k_end] with 53-bit uniforms
    for k in range(k_end - 1, 0, -1):
        state, z = _splitmix64(state)
        u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        j = int(u * (k + 1))
        if j > k:
            j = k
        tmp = perm[k]
        perm[k] = perm[j]
        perm[j] = tmp
    return state


@njit(cache=True, fastmath=False)
def _row_dot(Xd, data, indices, indptr, sparse, i, v):
    s = 0.0
    if sparse:
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * v[indices[p]]
    else:
        for j in range(Xd.shape[1]):
            s += Xd[i, j] * v[j]
    return s


@njit(cache=True, fastmath=False)
def _row_axpy2(Xd, data, indices, indptr, sparse, i, c1, out1, c2, out2):
    # out1 += c1 x_i and out2 += c2 x_i in one pass over the row
    if sparse:
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            out1[j] += c1 * data[p]
            out2[j] += c2 * data[p]
    else:
        for j in range(Xd.shape[1]):
            out1[j] += c1 * Xd[i, j]
            out2[j] += c2 * Xd[i, j]


@njit(cache=True, fastmath=False)
def row_sqnorms(Xd, data, indices, indptr, sparse, n_rows):
    """Squared Euclidean norm of every row."""
    out = np.empty(n_rows)
    for i in range(n_rows):
        s = 0.0
        if sparse:
            for p in range(indptr[i], indptr[i + 1]):
                s += data[p] * data[p]
        else:
            for j in range(Xd.shape[1]):
                s += Xd[i, j] * Xd[i, j]
        out[i] = s
    return out


@njit(cache=True, fastmath=False)
def _local_gap(Xd, data, indices, indptr, sparse, y, start, stop, alpha, v, code, param):
    # Fenchel-Young gap of the local subproblem at (v, a): mean of l(z) + l*(-a) + a z >= 0
    n = stop - start
    if n == 0:
        return 0.0
    s = 0.0
    for i in range(start, stop):
        z = _row_dot(Xd, data, indices, indptr, sparse, i, v)
        s += loss_value(code, y[i], z, param) - loss_neg_conjugate(code, y[i], alpha[i], param)
        s += alpha[i] * z
    return s / n


@njit(cache=True, fastmath=False)
def _sdca_task(
    t,
    Xd,
    data,
    indices,
    indptr,
    sparse,
    y,
    sqnorm,
    offsets,
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
):
    # one node's local solve; touches only its rows, dual block and output row
    d = Wt.shape[1]
    for j in range(d):
        dB[t, j] = 0.0
    steps_done[t] = 0
    gap_start[t] = np.nan
    gap_end[t] = np.nan
    start = offsets[t]
    n = offsets[t + 1] - start
    if n == 0 or not active[t]:
        return
    kappa = rho * sigma_diag[t] / lam  # v = w_t + kappa * db_t
    kappa_v = kappa if feedback else 0.0
    v = Wt[t].copy()
    dbt = dB[t]
    want_gap = record_gaps or theta > 0.0
    g0 = 0.0
    if want_gap:
        g0 = _local_gap(
            Xd, data, indices, indptr, sparse, y, start, start + n, alpha, v, code, param
        )
        gap_start[t] = g0
    perm = np.arange(n)
    state = seeds[t]
    n_steps = steps[t]
    s = 0
    while s < n_steps:
        k = s % n
        if k == 0:
            state = _shuffle(perm, state)
        i = start + perm[k]
        xv = _row_dot(Xd, data, indices, indptr, sparse, i, v)
        q = kappa * sqnorm[i] / n
        delta = loss_sdca_delta(code, y[i], alpha[i], xv, q, param)
        if delta != 0.0:
            alpha[i] += delta
            _row_axpy2(
                Xd, data, indices, indptr, sparse, i, kappa_v * delta / n, v, delta / n, dbt
            )
        s += 1
        check = k == n - 1 if check_every[t] <= 0 else s % check_every[t] == 0
        if theta > 0.0 and check:
            g = _local_gap(
                Xd, data, indices, indptr, sparse, y, start, start + n, alpha, v, code, param
            )
            if g <= theta * g0:
                break
    steps_done[t] = s
    if want_gap:
        gap_end[t] = _local_gap(
            Xd, data, indices, indptr, sparse, y, start, start + n, alpha, v, code, param
        )


@njit(cache=True, fastmath=False, parallel=True)
def _sdca_round_parallel(
    Xd,
    data,
    indices,
    indptr,
    sparse,
    y,
    sqnorm,
    offsets,
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
):
    for t in prange(offsets.shape[0] - 1):
        _sdca_task(
            t,
            Xd,
            data,
            indices,
            indptr,
            sparse,
            y,
            sqnorm,
            offsets,
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
        )


def sdca_round(
    *args,
    parallel: bool = True,
    shrink: bool = False,
    gap_target=None,
    gap_rtol: float = 0.0,
    terms: tuple | None = None,
    stats: np.ndarray | None = None,
) -> None:
    """One federated round of local SDCA on every active task.

    Arguments (in order): the packed data (``PackedTasks.kernel_args``), ``alpha``, ``Wt``,
    ``sigma_diag``, ``rho``, ``lam``, loss ``code`` and ``param``, ``steps``, ``seeds``,
    ``active``, ``theta``, ``check_every``, ``feedback``, ``record_gaps`` and the outputs
    ``dB``, ``steps_done``, ``gap_start``, ``gap_end``.

    Updates ``alpha`` in place and writes each task's ``db_t`` into row ``t`` of ``dB``
    (zero for inactive tasks). Task ``t`` runs ``steps[t]`` coordinate steps, or stops
    once its local gap is at most ``theta`` times the starting gap (``theta > 0``; checked
    every ``check_every[t]`` steps, or at the end of each pass where it is ``<= 0``).
    With ``feedback=False`` the local point ``v`` stays at ``w_t`` (mini-batch SDCA: every
    step sees the round's starting model). Local gaps before/after are written when
    ``record_gaps`` or ``theta > 0``; otherwise they are NaN. ``parallel`` runs tasks on
    numba threads; each task's computation is the same either way, so results are
    bit-identical.

    The keyword-only options below select the certified kernel
    (:mod:`fmtl.solvers.sdca_shrink`); with all of them at their defaults the original
    kernel runs, bit for bit as before.

    Parameters
    ----------
    shrink : bool, default False
        Shrink the active set (liblinear's rule) for the box losses (hinge, smoothed
        hinge); read-only certification passes over all rows restore it. Ignored (full
        passes) for squared and logistic losses and with ``feedback=False``. With a
        target, certifications run when a running gap estimate predicts it is met (see
        :mod:`fmtl.solvers.sdca_shrink`); a task never stops on an uncertified gap.
    gap_target : float or array of shape (m,), optional
        Absolute per-task target for the certified local gap: task ``t`` stops at the first
        certificate ``<= max(theta * gap_start[t], gap_target[t], gap_rtol * P_t)``.
    gap_rtol : float, default 0.0
        Relative target: ``P_t = mean_i l(x_i.v) + ||v||^2 / (2 kappa)``, ``kappa =
        rho sigma_diag[t] / lam``, which for one task with ``Sigma = [[1]]`` and ``rho = 1``
        is the primal objective at the new model, so the stop is a certified relative
        duality gap.
    terms : tuple of two float arrays of shape (m,), optional
        Outputs: mean loss at ``v_t`` and mean ``-l*(-a_ti)`` whenever ``gap_end[t]`` is
        written (NaN otherwise). ``v_t = w_t + kappa db_t`` is the new model when
        ``rho = 1`` and ``Sigma`` is diagonal (e.g. one task), so a caller can then skip
        :func:`task_objective_terms`.
    stats : int64 array of shape (m, 4), optional
        Output per task: update visits, certification passes, update passes, final
        active-set size.

    With the certified kernel ``steps[t]`` caps the coordinate visits of update *and*
    certification passes (``steps_done[t]`` counts both); ``check_every`` is ignored (the
    certification schedule is automatic); ``gap_end[t]`` is the certified gap when the
    task stopped on its target, else (with ``record_gaps``) the gap at the end, else NaN.
    """
    if not shrink and gap_target is None and not gap_rtol and terms is None and stats is None:
        _launch(_sdca_round_parallel, args, parallel)
        return
    from .sdca_shrink import bundle_round, shrink_round_parallel

    _launch(
        shrink_round_parallel,
        bundle_round(
            args, shrink=shrink, gap_target=gap_target, gap_rtol=gap_rtol, terms=terms, stats=stats
        ),
        parallel,
    )


# numba's workqueue threading layer is not thread-safe: two threads of one process that
# launch prange kernels at once (even on one thread each) abort the process ("Concurrent
# access has been detected"); tbb and omp are safe. Launches take this lock while that
# layer is in use, or may be: before the process's first launch the layer is not chosen.
_WORKQUEUE_LOCK = threading.RLock()


_FORKED = False  # set in a child forked from this process


def _note_fork() -> None:
    global _FORKED
    _FORKED = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork)


def parallel_guard():
    """The context every prange launch runs in: :data:`_WORKQUEUE_LOCK` under numba's
    workqueue layer (or before any layer is chosen), nothing under tbb or omp.

    Raises
    ------
    RuntimeError
        In a process forked from one that had already launched kernels on numba's omp
        layer: GNU OpenMP is not fork-safe, and numba terminates such a child at its
        first launch.
    """
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel launch yet in this process
        return _WORKQUEUE_LOCK
    if _FORKED and layer == "omp":
        raise RuntimeError(
            "fmtl's numba kernels cannot run in this process: it was forked from one that "
            "had already run them on numba's OpenMP threading layer, which is not "
            "fork-safe (the child would be terminated). Start worker processes with "
            "multiprocessing's 'spawn' or 'forkserver' method, or select another layer "
            "before the first fit (NUMBA_THREADING_LAYER=tbb after pip install tbb, or "
            "workqueue): docs/deploying.md"
        )
    return _WORKQUEUE_LOCK if layer == "workqueue" else contextlib.nullcontext()


def _launch(kernel, args: tuple, parallel: bool) -> None:
    note_if_cold(kernel)  # one line on stderr before a first compile
    # Not parallel: the same prange kernel on one thread. Measured 1.4-1.9x faster per
    # step than a plain-loop twin kernel (numba compiles the task body better inside the
    # parfor), and a team of one runs on the calling thread, so no scheduler wait.
    with parallel_guard():
        if parallel:
            kernel(*args)
            return
        prev = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            kernel(*args)
        finally:
            numba.set_num_threads(prev)


@njit(cache=True, fastmath=False)
def _objective_task(
    t,
    Xd,
    data,
    indices,
    indptr,
    sparse,
    y,
    offsets,
    alpha,
    Wt,
    code,
    param,
    loss_mean,
    neg_conj_mean,
):
    start = offsets[t]
    stop = offsets[t + 1]
    s_loss = 0.0
    s_conj = 0.0
    w = Wt[t]
    for i in range(start, stop):
        z = _row_dot(Xd, data, indices, indptr, sparse, i, w)
        s_loss += loss_value(code, y[i], z, param)
        s_conj += loss_neg_conjugate(code, y[i], alpha[i], param)
    n = stop - start
    loss_mean[t] = s_loss / n if n > 0 else 0.0
    neg_conj_mean[t] = s_conj / n if n > 0 else 0.0


@njit(cache=True, fastmath=False, parallel=True)
def _objective_parallel(
    Xd,
    data,
    indices,
    indptr,
    sparse,
    y,
    sqnorm,
    offsets,
    alpha,
    Wt,
    code,
    param,
    loss_mean,
    neg_conj_mean,
):
    for t in prange(offsets.shape[0] - 1):
        _objective_task(
            t,
            Xd,
            data,
            indices,
            indptr,
            sparse,
            y,
            offsets,
            alpha,
            Wt,
            code,
            param,
            loss_mean,
            neg_conj_mean,
        )


def task_objective_terms(*args, parallel: bool = True) -> None:
    """Per task: mean loss at ``w_t`` and mean ``-l*(-a_ti)`` (0 for empty tasks).

    Arguments: the packed data, ``alpha``, ``Wt``, loss ``code`` and ``param``, and the
    outputs ``loss_mean``, ``neg_conj_mean``.
    """
    _launch(_objective_parallel, args, parallel)


@njit(cache=True, fastmath=False)
def _gradient_task(
    t, Xd, data, indices, indptr, sparse, y, offsets, Wt, code, param, steps, seeds, active, G
):
    d = Wt.shape[1]
    for j in range(d):
        G[t, j] = 0.0
    start = offsets[t]
    n = offsets[t + 1] - start
    if n == 0 or not active[t] or steps[t] == 0:
        return
    w = Wt[t]
    g = G[t]
    perm = np.arange(n)
    state = seeds[t]
    for s in range(steps[t]):
        k = s % n
        if k == 0:
            state = _shuffle(perm, state)
        i = start + perm[k]
        z = _row_dot(Xd, data, indices, indptr, sparse, i, w)
        c = loss_derivative(code, y[i], z, param) / steps[t]
        if c != 0.0:
            _row_axpy(Xd, data, indices, indptr, sparse, i, c, g)


@njit(cache=True, fastmath=False, parallel=True)
def _gradients_parallel(
    Xd, data, indices, indptr, sparse, y, sqnorm, offsets, Wt, code, param, steps, seeds, active, G
):
    for t in prange(offsets.shape[0] - 1):
        _gradient_task(
            t,
            Xd,
            data,
            indices,
            indptr,
            sparse,
            y,
            offsets,
            Wt,
            code,
            param,
            steps,
            seeds,
            active,
            G,
        )


def minibatch_gradients(*args, parallel: bool = True) -> None:
    """Row ``t`` of ``G``: mean loss (sub)gradient of task ``t`` over ``steps[t]`` rows.

    Arguments: the packed data, ``Wt``, loss ``code`` and ``param``, ``steps``, ``seeds``,
    ``active`` and the output ``G``. Rows are visited in a fresh random order per pass
    (SplitMix64 stream ``seeds[t]``), as in the SDCA kernel; inactive or empty tasks get a
    zero row.
    """
    _launch(_gradients_parallel, args, parallel)


@njit(cache=True, fastmath=False)
def _row_axpy(Xd, data, indices, indptr, sparse, i, c, out):
    if sparse:
        for p in range(indptr[i], indptr[i + 1]):
            out[indices[p]] += c * data[p]
    else:
        for j in range(Xd.shape[1]):
            out[j] += c * Xd[i, j]
