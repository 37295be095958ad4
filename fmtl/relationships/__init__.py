"""Task-relationship structures: the learned closed-form Sigma-step and fixed Sigmas."""

from .fixed import check_sigma, identity_sigma, mean_regularized_sigma
from .learned import omega_update, resolve_sigma_prime, safety_rho, spectral_rho

__all__ = [
    "check_sigma",
    "identity_sigma",
    "mean_regularized_sigma",
    "omega_update",
    "resolve_sigma_prime",
    "safety_rho",
    "spectral_rho",
]
