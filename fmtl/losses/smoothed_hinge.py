"""Smoothed hinge loss with smoothing ``gamma`` (Shalev-Shwartz & Zhang, 2013).

With ``r = 1 - y z``: 0 if r <= 0, r^2 / (2 gamma) if 0 < r < gamma, r - gamma/2 otherwise.
Dual variable ``a`` with ``b = a y`` in [0, 1]; ``-l*(-a) = b - gamma b^2 / 2``.
"""

import numpy as np
from numba import njit

NAME = "smoothed_hinge"
CODE = 1
CLASSIFICATION = True


@njit(cache=True, fastmath=False)
def value(y, z, param):
    r = 1.0 - y * z
    if r <= 0.0:
        return 0.0
    if r < param:
        return r * r / (2.0 * param)
    return r - 0.5 * param


@njit(cache=True, fastmath=False)
def neg_conjugate(y, a, param):
    b = a * y
    if b < -1e-12 or b > 1.0 + 1e-12:
        return -np.inf
    return b - 0.5 * param * b * b


@njit(cache=True, fastmath=False)
def sdca_delta(y, a, xv, q, param):
    # argmax_b  b - gamma b^2/2 - (y b - a) xv - q/2 (y b - a)^2  over b in [0, 1]
    b_old = a * y
    b = (1.0 - y * xv + q * b_old) / (param + q)
    b = min(1.0, max(0.0, b))
    return y * b - a


@njit(cache=True, fastmath=False)
def derivative(y, z, param):
    r = 1.0 - y * z
    if r <= 0.0:
        return 0.0
    if r < param:
        return -y * r / param
    return -y
