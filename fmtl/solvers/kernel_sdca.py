"""Numba SDCA for MOCHA's local dual subproblems in kernel form (Gram blocks, no ``w``).

The linear solver (:mod:`fmtl.solvers.sdca`) keeps node ``t``'s local point
``v = w_t + kappa db_t`` with ``kappa = rho Sigma_tt / lam`` and
``db_t = (1/n_t) X_t^T (a_t - a_t^start)``, and needs only the margins ``x_i.v`` of its own
rows. With the Gram matrix ``K`` (``K_ij = k(x_i, x_j)``) these are

    z_i = x_i.w_t + kappa sum_{j in t} K_ij (a_j - a_j^start) / n_t,

so node ``t`` keeps its ``n_t`` local margins and a step ``d`` on ``a_i`` adds
``kappa d K_ki / n_t`` to every ``z_k`` of the node: ``O(n_t)`` per step instead of ``O(d)``.
The coordinate update is the loss's exact step (:func:`fmtl.losses._dispatch.loss_sdca_delta`)
with ``q = kappa K_ii / n_t``, i.e. the linear solver's with ``||x_i||^2`` replaced by
``K_ii``; coordinate orders come from the same SplitMix64 streams (:func:`._shuffle`), so
for the linear kernel this is the linear solver's iteration up to rounding.

The round-start margins ``x_i.w_t(alpha)`` of every row come from :func:`task_margins`:
with ``beta_j = a_j / n_s`` (``s`` the owner of row ``j``), ``U[:, s] = K[:, s] beta_s`` and
``z_i = (U Sigma)[i, t(i)] / lam``. All arrays are C-contiguous float64 (int64 offsets and
step counts, uint64 seeds, bool masks): one compiled signature per kernel, nothing compiled
at import.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..losses._dispatch import loss_neg_conjugate, loss_sdca_delta, loss_value
from .sdca import _launch, _shuffle


@njit(cache=True, fastmath=False)
def _local_gap_kernel(y, start, n, alpha, z, code, param):
    # Fenchel-Young gap of the local subproblem at local margins z: mean of l + l* + a z
    if n == 0:
        return 0.0
    s = 0.0
    for k in range(n):
        i = start + k
        s += loss_value(code, y[i], z[k], param) - loss_neg_conjugate(code, y[i], alpha[i], param)
        s += alpha[i] * z[k]
    return s / n


@njit(cache=True, fastmath=False)
def _kernel_sdca_task(
    t,
    K,
    y,
    offsets,
    alpha,
    margins,
    sigma_diag,
    rho,
    lam,
    code,
    param,
    steps,
    seeds,
    active,
    theta,
    record_gaps,
    steps_done,
    gap_start,
    gap_end,
):
    # one node's local solve; touches only its dual block and its outputs
    steps_done[t] = 0
    gap_start[t] = np.nan
    gap_end[t] = np.nan
    start = offsets[t]
    n = offsets[t + 1] - start
    if n == 0 or not active[t]:
        return
    kappa = rho * sigma_diag[t] / lam
    z = np.empty(n)
    for k in range(n):
        z[k] = margins[start + k]
    want_gap = record_gaps or theta > 0.0
    g0 = 0.0
    if want_gap:
        g0 = _local_gap_kernel(y, start, n, alpha, z, code, param)
        gap_start[t] = g0
    perm = np.arange(n)
    state = seeds[t]
    n_steps = steps[t]
    s = 0
    while s < n_steps:
        k = s % n
        if k == 0:
            state = _shuffle(perm, state)
        p = perm[k]
        i = start + p
        q = kappa * K[i, i] / n
        delta = loss_sdca_delta(code, y[i], alpha[i], z[p], q, param)
        if delta != 0.0:
            alpha[i] += delta
            c = kappa * delta / n
            for r in range(n):  # K is symmetric: row i holds column i
                z[r] += c * K[i, start + r]
        s += 1
        if theta > 0.0 and k == n - 1:
            g = _local_gap_kernel(y, start, n, alpha, z, code, param)
            if g <= theta * g0:
                break
    steps_done[t] = s
    if want_gap:
        gap_end[t] = _local_gap_kernel(y, start, n, alpha, z, code, param)


@njit(cache=True, fastmath=False, parallel=True)
def _kernel_sdca_round_parallel(
    K,
    y,
    offsets,
    alpha,
    margins,
    sigma_diag,
    rho,
    lam,
    code,
    param,
    steps,
    seeds,
    active,
    theta,
    record_gaps,
    steps_done,
    gap_start,
    gap_end,
):
    for t in prange(offsets.shape[0] - 1):
        _kernel_sdca_task(
            t,
            K,
            y,
            offsets,
            alpha,
            margins,
            sigma_diag,
            rho,
            lam,
            code,
            param,
            steps,
            seeds,
            active,
            theta,
            record_gaps,
            steps_done,
            gap_start,
            gap_end,
        )


def kernel_sdca_round(*args, parallel: bool = True) -> None:
    """One federated round of local SDCA in kernel form on every active node.

    Arguments (in order): ``K`` (``N x N`` Gram matrix of all tasks' rows, symmetric,
    C-contiguous float64), ``y``, ``offsets`` (int64; task ``t`` owns rows
    ``offsets[t]:offsets[t+1]``), ``alpha`` (updated in place), ``margins`` (``x_i.w_t(i)``
    at the round's start, from :func:`task_margins`), ``sigma_diag``, ``rho``, ``lam``, loss
    ``code`` and ``param``, ``steps`` (int64), ``seeds`` (uint64), ``active`` (bool),
    ``theta``, ``record_gaps`` and the outputs ``steps_done`` (int64), ``gap_start``,
    ``gap_end``.

    Node ``t`` runs ``steps[t]`` coordinate steps in a fresh random order per pass over its
    rows (SplitMix64 stream ``seeds[t]``), or stops at the end of a pass once its local gap
    is at most ``theta`` times the starting gap (``theta > 0``). Local gaps before and after
    are written when ``record_gaps`` or ``theta > 0`` (else NaN). Each node's computation
    is the same on one thread or many, so results are bit-identical.
    """
    _launch(_kernel_sdca_round_parallel, args, parallel)


@njit(cache=True, fastmath=False)
def _task_products(K, beta, offsets, U):
    # U[:, s] = K[:, s-block] @ beta[s-block] = (K[s-block, :])^T beta_s (K symmetric);
    # row-major sweeps of K, O(N^2) in all
    N = K.shape[0]
    m = offsets.shape[0] - 1
    for i in range(N):
        for s in range(m):
            U[i, s] = 0.0
    for s in range(m):
        for j in range(offsets[s], offsets[s + 1]):
            b = beta[j]
            if b != 0.0:
                for i in range(N):
                    U[i, s] += b * K[j, i]


def task_products(K: np.ndarray, beta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``U`` of shape ``(N, m)`` with ``U[:, s] = K[:, rows of s] @ beta[rows of s]``.

    With ``beta_j = a_j / n_s`` and the linear kernel, ``U[i, s] = x_i.b_s`` (``b_s`` the row
    ``s`` of MOCHA's ``B``). ``O(N^2)`` time.
    """
    U = np.empty((K.shape[0], offsets.shape[0] - 1))
    _task_products(K, beta, offsets, U)
    return U


@njit(cache=True, fastmath=False)
def _margins_from_products(U, Sigma, offsets, lam, out):
    # out[i] = (U Sigma)[i, t(i)] / lam = x_i.w_t(alpha) for the row's own task t
    m = offsets.shape[0] - 1
    for t in range(m):
        for i in range(offsets[t], offsets[t + 1]):
            s_ = 0.0
            for s in range(m):
                s_ += U[i, s] * Sigma[s, t]
            out[i] = s_ / lam


def task_margins(U: np.ndarray, Sigma: np.ndarray, offsets: np.ndarray, lam: float) -> np.ndarray:
    """Each row's margin under its own task's model ``w_t(alpha) = (Sigma B)_t / lam``."""
    out = np.empty(U.shape[0])
    _margins_from_products(U, np.ascontiguousarray(Sigma), offsets, float(lam), out)
    return out
