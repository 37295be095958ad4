"""Squared loss ``l(y, z) = (z - y)^2 / 2`` for real targets.

``-l*(-a) = a y - a^2 / 2`` (no constraint on ``a``).
"""

from numba import njit

NAME = "squared"
CODE = 2
CLASSIFICATION = False


@njit(cache=True, fastmath=False)
def value(y, z, param):
    r = z - y
    return 0.5 * r * r


@njit(cache=True, fastmath=False)
def neg_conjugate(y, a, param):
    return a * y - 0.5 * a * a


@njit(cache=True, fastmath=False)
def sdca_delta(y, a, xv, q, param):
    # stationary point of (a+d) y - (a+d)^2/2 - d xv - q d^2/2
    return (y - xv - a) / (1.0 + q)


@njit(cache=True, fastmath=False)
def derivative(y, z, param):
    return z - y
