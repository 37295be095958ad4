"""Task-relationship structures: the learned closed-form Sigma-step and fixed Sigmas."""

from .fixed import (
    check_sigma,
    identity_sigma,
    mean_regularized_sigma,
    proximal_as_mean_regularized,
)
from .learned import omega_update, resolve_sigma_prime, safety_rho, spectral_rho
from .lowrank import LowRankSigma, omega_update_lowrank
from .ridge import check_ridge, effective_sigma, max_effective_trace

__all__ = [
    "LowRankSigma",
    "check_ridge",
    "check_sigma",
    "effective_sigma",
    "identity_sigma",
    "max_effective_trace",
    "mean_regularized_sigma",
    "omega_update",
    "omega_update_lowrank",
    "proximal_as_mean_regularized",
    "resolve_sigma_prime",
    "safety_rho",
    "spectral_rho",
]
