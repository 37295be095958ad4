"""The server's line search on a round's aggregated update, and the adaptive sigma' it drives.

After a round the server holds every node's ``db_t`` and the scalar ``c_t``, the increase
of the node's conjugate term ``mean_i(-l*(-a_ti))``. Scaling the whole round by ``gamma``
(``alpha + gamma d_alpha``, ``B + gamma dB``) changes the dual objective by

    D(gamma) - D(0) >= gamma A - gamma^2 Q / 2,
    A = sum_t c_t - <W, dB>,   Q = tr(dB^T Sigma dB) / lam,

with equality for the hinge loss (its conjugate is linear on the box) and ``>=`` for every
other loss (the conjugate term is concave along the segment, so it gains at least
``gamma c_t``). The server maximises that bound over ``gamma in [0, 1]``:
``gamma* = min(1, A / Q)``. ``A >= 0`` whenever every node's local solve did not lose
subproblem value, so the dual objective never decreases, whatever ``sigma'`` the nodes
used; ``docs/theory.md`` ("Adaptive sigma'") shows the rate guarantee that remains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AdaptiveSigmaPrime", "round_line_search"]


def round_line_search(conj_gain: float, w_dot_db: float, quad: float) -> tuple[float, float]:
    """``gamma*`` maximising ``gamma A - gamma^2 Q / 2`` on ``[0, 1]`` and that value.

    Parameters
    ----------
    conj_gain : float
        ``sum_t c_t``: the round's increase of the conjugate term, summed over nodes.
    w_dot_db : float
        ``<W, dB>`` at the round's starting model.
    quad : float
        ``Q = tr(dB^T Sigma dB) / lam >= 0``.

    Returns
    -------
    gamma : float
        The step in ``[0, 1]`` (1 when ``Q = 0``; 0 when ``A <= 0``: the round is
        rejected).
    gain : float
        The certified lower bound ``gamma A - gamma^2 Q / 2 >= 0`` on the dual increase.

    Raises
    ------
    ValueError
        If an argument is not finite or ``quad`` is negative.

    Examples
    --------
    >>> from fmtl.federated.line_search import round_line_search
    >>> round_line_search(3.0, 1.0, 4.0)  # A = 2, Q = 4: gamma = 1/2, gain = 1/2
    (0.5, 0.5)
    >>> round_line_search(3.0, 1.0, 1.0)  # A / Q > 1: the full step
    (1.0, 1.5)
    """
    vals = (conj_gain, w_dot_db, quad)
    if not all(np.isfinite(v) for v in vals) or quad < 0:
        raise ValueError(f"line search terms must be finite with quad >= 0, got {vals}")
    a = float(conj_gain) - float(w_dot_db)
    if a <= 0.0:
        return 0.0, 0.0
    gamma = 1.0 if quad <= a else a / float(quad)
    return gamma, gamma * a - 0.5 * gamma * gamma * float(quad)


@dataclass
class AdaptiveSigmaPrime:
    """sigma' that follows the line search between ``low`` and the safe value ``safe``.

    A round whose step was cut (``gamma < 1``) overshot: the next round uses
    ``min(safe, sigma' / gamma)``, the value at which the cut step would have been taken
    whole. A full step lowers sigma' by ``shrink`` (not below ``low``), so the nodes take
    larger local steps while the aggregate stays acceptable.

    Parameters
    ----------
    safe : float
        The smallest safe value (``fmtl.relationships.spectral_rho``); never exceeded.
    low : float, default=1.0
        The smallest value tried: 1 is each node acting as if its task were alone.
    shrink : float, default=0.5
        Factor applied after a full step, in ``(0, 1]``.

    Attributes
    ----------
    value : float
        The sigma' of the next round (starts at ``low``).

    Raises
    ------
    ValueError
        If ``safe`` or ``low`` is not positive and finite, or ``shrink`` is outside
        ``(0, 1]``.

    Examples
    --------
    >>> from fmtl.federated.line_search import AdaptiveSigmaPrime
    >>> s = AdaptiveSigmaPrime(safe=4.0)
    >>> s.value, s.update(0.5), s.update(1.0), s.update(0.01)
    (1.0, 2.0, 1.0, 4.0)
    """

    safe: float
    low: float = 1.0
    shrink: float = 0.5
    value: float = np.nan

    def __post_init__(self) -> None:
        for name in ("safe", "low"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be positive and finite, got {v!r}")
        if not (0.0 < self.shrink <= 1.0):
            raise ValueError(f"shrink must be in (0, 1], got {self.shrink!r}")
        self.low = min(float(self.low), float(self.safe))
        if not np.isfinite(self.value):
            self.value = self.low

    def update(self, gamma: float) -> float:
        """Next sigma' after a round whose line search returned ``gamma``."""
        if gamma < 1.0:
            self.value = min(self.safe, self.value / max(gamma, 1e-12))
        else:
            self.value = max(self.low, self.value * self.shrink)
        return self.value
