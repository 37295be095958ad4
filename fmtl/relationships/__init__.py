"""Task-relationship structures: the learned closed-form Sigma-step and fixed Sigmas."""

from .fixed import check_sigma, identity_sigma, mean_regularized_sigma
from .learned import omega_update, resolve_sigma_prime, safety_rho, spectral_rho
from .lowrank import LowRankSigma, omega_update_lowrank

__all__ = [
    "LowRankSigma",
    "check_sigma",
    "identity_sigma",
    "mean_regularized_sigma",
    "omega_update",
    "omega_update_lowrank",
    "resolve_sigma_prime",
    "safety_rho",
    "spectral_rho",
]
