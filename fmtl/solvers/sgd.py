"""Numba local SGD for the primal methods (FedAvg and its relatives), all tasks in one call.

Task ``t`` starts from ``W0[t]`` and takes ``steps[t]`` steps on its own rows, visited in a
fresh random order per pass (SplitMix64 stream ``seeds[t]``, as in the SDCA kernel):

    w <- (1 - lr lam) w - lr l'(y_i, w.x_i) x_i

on ``mean_i l(y_i, w.x_i) + (lam/2) ||w||^2``. ``w`` is held as ``a * u`` so the shrinkage
is one scalar multiply and a CSR step touches only the row's non-zeros.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..losses._dispatch import loss_derivative
from .sdca import _launch, _row_dot, _shuffle


@njit(cache=True, fastmath=False)
def _local_sgd_task(
    t,
    Xd,
    data,
    indices,
    indptr,
    sparse,
    y,
    offsets,
    W0,
    code,
    param,
    lam,
    lr,
    steps,
    seeds,
    active,
    Wout,
):
    d = W0.shape[1]
    for j in range(d):
        Wout[t, j] = W0[t, j]
    start = offsets[t]
    n = offsets[t + 1] - start
    if n == 0 or not active[t] or steps[t] == 0:
        return
    u = Wout[t]
    a = 1.0
    shrink = 1.0 - lr * lam
    perm = np.arange(n)
    state = seeds[t]
    for s in range(steps[t]):
        k = s % n
        if k == 0:
            state = _shuffle(perm, state)
        i = start + perm[k]
        z = a * _row_dot(Xd, data, indices, indptr, sparse, i, u)
        g = loss_derivative(code, y[i], z, param)
        a *= shrink
        if g != 0.0:
            c = -lr * g / a
            if sparse:
                for p in range(indptr[i], indptr[i + 1]):
                    u[indices[p]] += c * data[p]
            else:
                for j in range(d):
                    u[j] += c * Xd[i, j]
        if a < 1e-100:  # fold the scale back in before it underflows
            for j in range(d):
                u[j] *= a
            a = 1.0
    for j in range(d):
        u[j] *= a


@njit(cache=True, fastmath=False, parallel=True)
def _local_sgd_parallel(
    Xd,
    data,
    indices,
    indptr,
    sparse,
    y,
    sqnorm,
    offsets,
    W0,
    code,
    param,
    lam,
    lr,
    steps,
    seeds,
    active,
    Wout,
):
    for t in prange(offsets.shape[0] - 1):
        _local_sgd_task(
            t,
            Xd,
            data,
            indices,
            indptr,
            sparse,
            y,
            offsets,
            W0,
            code,
            param,
            lam,
            lr,
            steps,
            seeds,
            active,
            Wout,
        )


def local_sgd_round(*args, parallel: bool = True) -> None:
    """Row ``t`` of ``Wout``: task ``t``'s model after ``steps[t]`` local SGD steps.

    Arguments: the packed data (``PackedTasks.kernel_args``), ``W0`` (start models, one row
    per task), loss ``code`` and ``param``, ``lam``, the step size ``lr``, ``steps``,
    ``seeds``, ``active`` and the output ``Wout`` (inactive or empty tasks keep ``W0``).
    Each task's computation depends only on its rows and seed, so results do not depend on
    ``parallel`` or the number of threads.
    """
    _launch(_local_sgd_parallel, args, parallel)
