"""Losses: primal value, convex conjugate and exact SDCA coordinate step, one module each.

Conventions (per sample, label ``y``, margin ``z = w.x``, dual variable ``a``):
``l(y, z)`` is the loss, ``-l*(-a)`` its negated conjugate at ``-a`` (``-inf`` outside the
dual domain), and ``sdca_delta(y, a, xv, q)`` the exact maximiser ``d`` of
``-l*(-(a + d)) - d * xv - q d^2 / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import hinge, logistic, smoothed_hinge, squared

_MODULES = {mod.NAME: mod for mod in (hinge, smoothed_hinge, squared, logistic)}
LOSS_NAMES: tuple[str, ...] = tuple(_MODULES)

__all__ = ["LOSS_NAMES", "Loss", "get_loss"]


@dataclass(frozen=True)
class Loss:
    """A loss resolved from its name: the code the jitted solvers dispatch on.

    Build it with :func:`get_loss`; the constructor does not validate its arguments.

    Parameters
    ----------
    name : str
        One of :data:`LOSS_NAMES`.
    code : int
        Integer the numba kernels branch on.
    param : float
        Smoothing ``gamma`` for ``"smoothed_hinge"``; unused (0.0) otherwise.
    classification : bool
        Whether labels must be in {-1, +1}.

    Raises
    ------
    dataclasses.FrozenInstanceError
        On assigning to a field (the instance is immutable).

    See Also
    --------
    get_loss : Resolves a loss by name.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.losses import get_loss
    >>> hinge = get_loss("hinge")
    >>> hinge.name, hinge.classification
    ('hinge', True)
    >>> y, z = np.array([1.0, -1.0]), np.array([0.5, 0.5])
    >>> hinge.value(y, z), hinge.derivative(y, z)
    (array([0.5, 1.5]), array([-1.,  1.]))
    >>> hinge.neg_conjugate(y, np.array([0.5, -0.5]))
    array([0.5, 0.5])
    """

    name: str
    code: int
    param: float
    classification: bool

    @property
    def dual_width(self) -> float:
        """The largest change ``|a_new - a|`` of one dual variable within the loss's dual
        domain: 1 for the classification losses (``a y`` stays in ``[0, 1]``), ``inf``
        for the squared loss (its dual is unconstrained)."""
        return 1.0 if self.classification else np.inf

    def mean_value_bound(
        self, mean_at_ref: float, step: float, row_norm: float, row_sqnorm: float
    ) -> float:
        """An upper bound on a task's mean loss at ``w``, from its mean loss at ``w_ref``,
        ``step = ||w - w_ref||`` and the task's mean row norm ``mean_i ||x_i||`` and mean
        squared row norm ``mean_i ||x_i||^2``: the classification losses are 1-Lipschitz
        in the margin (``+ row_norm * step``); the squared loss's root-mean is a norm
        (Minkowski: ``(sqrt(mean_at_ref) + sqrt(row_sqnorm / 2) * step)^2``)."""
        if self.classification:
            return float(mean_at_ref + row_norm * step)
        return float((np.sqrt(mean_at_ref) + np.sqrt(row_sqnorm / 2.0) * step) ** 2)

    def value(self, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Per-sample loss values ``l(y_i, z_i)``."""
        from ._vectorized import values

        return values(
            self.code, np.ascontiguousarray(y, float), np.ascontiguousarray(z, float), self.param
        )

    def derivative(self, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Per-sample derivative ``dl/dz (y_i, z_i)`` (a subgradient at the hinge's kink)."""
        from ._vectorized import derivatives

        return derivatives(
            self.code, np.ascontiguousarray(y, float), np.ascontiguousarray(z, float), self.param
        )

    def neg_conjugate(self, y: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Per-sample ``-l*(-a_i)`` (``-inf`` where ``a_i`` is dual infeasible)."""
        from ._vectorized import neg_conjugates

        return neg_conjugates(
            self.code, np.ascontiguousarray(y, float), np.ascontiguousarray(a, float), self.param
        )


def get_loss(name: str | Loss, gamma: float = 1.0) -> Loss:
    """Resolve a loss by name.

    Parameters
    ----------
    name : str or Loss
        ``"hinge"``, ``"smoothed_hinge"``, ``"squared"`` or ``"logistic"``.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"`` (must be > 0); ignored otherwise.

    Returns
    -------
    Loss

    Raises
    ------
    ValueError
        If ``name`` is unknown or ``gamma`` is not a positive finite number.

    Examples
    --------
    >>> from fmtl.losses import get_loss
    >>> get_loss("smoothed_hinge", gamma=0.5).param
    0.5
    """
    if isinstance(name, Loss):
        return name
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"loss={name!r} is unknown; expected one of {LOSS_NAMES}")
    mod = _MODULES[name]
    param = 0.0
    if name == "smoothed_hinge":
        if not (isinstance(gamma, (int, float, np.floating)) and np.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
        param = float(gamma)
    return Loss(name=name, code=mod.CODE, param=param, classification=mod.CLASSIFICATION)
