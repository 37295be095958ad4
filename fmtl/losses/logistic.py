"""Logistic loss ``l(y, z) = log(1 + exp(-y z))`` for labels ``y`` in {-1, +1}.

Dual variable ``a`` with ``b = a y`` in [0, 1]; ``-l*(-a) = -(b log b + (1-b) log(1-b))``.
The coordinate step solves a 1-D strictly concave problem by Newton's method safeguarded
with bisection, to 1e-12 in ``b``.
"""

import math

import numpy as np
from numba import njit

NAME = "logistic"
CODE = 3
CLASSIFICATION = True

_NEWTON_TOL = 1e-12
_NEWTON_MAX_ITER = 100


@njit(cache=True, fastmath=False)
def value(y, z, param):
    m = -y * z
    # log(1 + exp(m)) without overflow
    if m > 0.0:
        return m + math.log1p(math.exp(-m))
    return math.log1p(math.exp(m))


@njit(cache=True, fastmath=False)
def _entropy(b):
    s = 0.0
    if b > 0.0:
        s -= b * math.log(b)
    if b < 1.0:
        s -= (1.0 - b) * math.log1p(-b)
    return s


@njit(cache=True, fastmath=False)
def neg_conjugate(y, a, param):
    b = a * y
    if b < -1e-12 or b > 1.0 + 1e-12:
        return -np.inf
    return _entropy(min(1.0, max(0.0, b)))


@njit(cache=True, fastmath=False)
def _sigmoid(t):
    if t >= 0.0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


@njit(cache=True, fastmath=False)
def sdca_delta(y, a, xv, q, param):
    # root of f(b) = log((1-b)/b) - y xv - q (b - b_old), strictly decreasing on (0, 1)
    b_old = min(1.0, max(0.0, a * y))
    c = y * xv
    if q <= 0.0:
        return y * _sigmoid(-c) - a
    lo = 0.0
    hi = 1.0
    # start from the q = 0 solution moved towards b_old: both bracket the root
    b = 0.5 * (_sigmoid(-c) + b_old)
    if b <= 0.0 or b >= 1.0:
        b = 0.5
    for _ in range(_NEWTON_MAX_ITER):
        if b <= 1e-300 or b >= 1.0 - 1e-16:
            break  # root within rounding of an edge of the box; b stays inside [0, 1]
        f = math.log1p(-b) - math.log(b) - c - q * (b - b_old)
        if f > 0.0:
            lo = b
        else:
            hi = b
        fp = -1.0 / (b * (1.0 - b)) - q
        b_new = b - f / fp
        if not (lo < b_new < hi):
            b_new = 0.5 * (lo + hi)
        if abs(b_new - b) <= _NEWTON_TOL or hi - lo <= _NEWTON_TOL:
            b = b_new
            break
        b = b_new
    b = min(1.0, max(0.0, b))
    return y * b - a


@njit(cache=True, fastmath=False)
def derivative(y, z, param):
    return -y * _sigmoid(-y * z)
