"""Hinge loss ``l(y, z) = max(0, 1 - y z)`` for labels ``y`` in {-1, +1}.

Dual variable ``a`` with ``b = a y`` in [0, 1]; ``-l*(-a) = b``.
"""

import numpy as np
from numba import njit

NAME = "hinge"
CODE = 0
CLASSIFICATION = True


@njit(cache=True, fastmath=False)
def value(y, z, param):
    r = 1.0 - y * z
    return r if r > 0.0 else 0.0


@njit(cache=True, fastmath=False)
def neg_conjugate(y, a, param):
    b = a * y
    if b < -1e-12 or b > 1.0 + 1e-12:
        return -np.inf
    return b


@njit(cache=True, fastmath=False)
def sdca_delta(y, a, xv, q, param):
    # argmax_b  b - (y b - a) xv - q/2 (y b - a)^2  over b in [0, 1]
    b_old = a * y
    if q > 0.0:
        b = b_old + (1.0 - y * xv) / q
    else:
        b = 1.0 if 1.0 - y * xv > 0.0 else 0.0
    b = min(1.0, max(0.0, b))
    return y * b - a


@njit(cache=True, fastmath=False)
def derivative(y, z, param):
    # a subgradient (0 at the kink)
    return -y if y * z < 1.0 else 0.0
