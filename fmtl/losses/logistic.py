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

#: Newton in the log-odds stops at |du| <= this (1 + |u|): the coordinate step's dual value
#: is then within ~1e-20 of its maximum, and a certificate never relies on it.
_LOGODDS_TOL = 1e-9


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


@njit(cache=True, fastmath=False)
def sdca_delta_logodds(y, a, xv, q, param):
    # The same maximiser as sdca_delta, by safeguarded Newton in the log-odds u = log(b/(1-b)):
    # f(u) = -u - c - q (sigmoid(u) - b_old) is strictly decreasing with f' in [-1 - q/4, -1],
    # nearly linear unless q is large, so Newton from the q = 0 solution moved once towards
    # b_old converges in a few steps, each with one exp and no log. Bisection of the bracket
    # [-c - q (1 - b_old), -c + q b_old] replaces any step that leaves it or does not halve
    # |f| (large q). Stops once the step, or after a Newton step its predicted successor, is
    # below _LOGODDS_TOL (1 + |u|): b to ~1e-10, the step's dual value to ~1e-20 of its
    # maximum. Used by the certified kernel (sdca_shrink); sdca_delta stays as it is for
    # the original one.
    b_old = min(1.0, max(0.0, a * y))
    c = y * xv
    if q <= 0.0:
        return y * _sigmoid(-c) - a
    lo = -c - q * (1.0 - b_old)  # f(lo) >= 0
    hi = -c + q * b_old  # f(hi) <= 0
    u = -c - q * (_sigmoid(-c) - b_old)
    if not (lo <= u <= hi):
        u = 0.5 * (lo + hi)
    f_prev = np.inf
    for _ in range(2 * _NEWTON_MAX_ITER):
        s = _sigmoid(u)
        f = -u - c - q * (s - b_old)
        if f > 0.0:
            lo = u
        elif f < 0.0:
            hi = u
        else:
            break
        u_new = u + f / (1.0 + q * s * (1.0 - s))
        newton = True
        if abs(f) > 0.5 * abs(f_prev) or not (lo <= u_new <= hi):
            u_new = 0.5 * (lo + hi)
            newton = False
        f_prev = f
        du = u_new - u
        tol = _LOGODDS_TOL * (1.0 + abs(u))
        # Newton converges quadratically (|f''| <= q / 10): after a Newton step du, u_new
        # is within ~q du^2 / 10 of the root, and sigmoid(u_new) is s + s (1 - s) du to
        # O(du^2): no further exp is needed once both are below the tolerance
        if abs(du) <= tol or (newton and du * du * (1.0 + q) <= tol):
            b = s + s * (1.0 - s) * du
            return y * min(1.0, max(0.0, b)) - a
        u = u_new
        if hi - lo <= tol:
            break
    return y * _sigmoid(u) - a
