"""Array versions of the scalar loss kernels (used for reporting, not in hot loops)."""

import numpy as np
from numba import njit

from ._dispatch import loss_derivative, loss_neg_conjugate, loss_value


@njit(cache=True, fastmath=False)
def values(code, y, z, param):
    out = np.empty(y.shape[0])
    for i in range(y.shape[0]):
        out[i] = loss_value(code, y[i], z[i], param)
    return out


@njit(cache=True, fastmath=False)
def neg_conjugates(code, y, a, param):
    out = np.empty(y.shape[0])
    for i in range(y.shape[0]):
        out[i] = loss_neg_conjugate(code, y[i], a[i], param)
    return out


@njit(cache=True, fastmath=False)
def derivatives(code, y, z, param):
    out = np.empty(y.shape[0])
    for i in range(y.shape[0]):
        out[i] = loss_derivative(code, y[i], z[i], param)
    return out
