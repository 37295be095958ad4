"""Jitted dispatch from a loss code to the loss's kernels.

Numba cannot cache kernels that take functions as arguments, so solvers receive an
integer ``code`` and call these. Adding a loss: one module + one branch per function here.
"""

from numba import njit

from . import hinge, logistic, smoothed_hinge, squared


@njit(cache=True, fastmath=False)
def loss_value(code, y, z, param):
    if code == 0:
        return hinge.value(y, z, param)
    if code == 1:
        return smoothed_hinge.value(y, z, param)
    if code == 2:
        return squared.value(y, z, param)
    return logistic.value(y, z, param)


@njit(cache=True, fastmath=False)
def loss_neg_conjugate(code, y, a, param):
    if code == 0:
        return hinge.neg_conjugate(y, a, param)
    if code == 1:
        return smoothed_hinge.neg_conjugate(y, a, param)
    if code == 2:
        return squared.neg_conjugate(y, a, param)
    return logistic.neg_conjugate(y, a, param)


@njit(cache=True, fastmath=False)
def loss_sdca_delta(code, y, a, xv, q, param):
    if code == 0:
        return hinge.sdca_delta(y, a, xv, q, param)
    if code == 1:
        return smoothed_hinge.sdca_delta(y, a, xv, q, param)
    if code == 2:
        return squared.sdca_delta(y, a, xv, q, param)
    return logistic.sdca_delta(y, a, xv, q, param)


@njit(cache=True, fastmath=False)
def loss_derivative(code, y, z, param):
    if code == 0:
        return hinge.derivative(y, z, param)
    if code == 1:
        return smoothed_hinge.derivative(y, z, param)
    if code == 2:
        return squared.derivative(y, z, param)
    return logistic.derivative(y, z, param)
