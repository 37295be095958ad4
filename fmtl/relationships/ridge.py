"""The general regulariser ``(lam/2) [tr(W Sigma^{-1} W^T) + rho ||W||_F^2]`` (MTRL's and
the MOCHA paper's ridge term) as MOCHA sees it.

It is ``(lam/2) tr(W (Sigma^{-1} + rho I) W^T)``: for a fixed ``Sigma`` the W-step is the
fixed-relationship problem with ``Sigma`` replaced by the *effective* matrix
``M = (Sigma^{-1} + rho I)^{-1} = Sigma (I + rho Sigma)^{-1}`` (same eigenvectors,
eigenvalues ``s / (1 + rho s)``), so ``W(alpha) = B M / lam`` and the fixed-Sigma dual has
``tr(B M B^T) / (2 lam)``. The ridge term does not depend on ``Sigma``: the Sigma-step is
unchanged. The joint bound needs ``max_{Sigma >= eps I, tr Sigma = 1} tr(G M(Sigma))``,
which :func:`max_effective_trace` computes from the eigenvalues of ``G``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .lowrank import LowRankSigma


def check_ridge(ridge) -> float:
    """Validate the ridge weight ``rho``: a finite number ``>= 0``.

    Parameters
    ----------
    ridge : float
        The weight ``rho`` of ``(lam/2) rho ||W||_F^2``.

    Returns
    -------
    float
        ``ridge`` as a Python float.

    Raises
    ------
    TypeError
        If ``ridge`` is not a real number (booleans and strings included).
    ValueError
        If it is negative, NaN or infinite.

    Examples
    --------
    >>> from fmtl.relationships import check_ridge
    >>> check_ridge(0), check_ridge(2.5)
    (0.0, 2.5)
    >>> check_ridge(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: ridge must be a finite number >= 0, got -1.0
    """
    if isinstance(ridge, bool | np.bool_) or not isinstance(ridge, numbers.Real):
        raise TypeError(f"ridge must be a real number, got {ridge!r}")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    return float(ridge)


def effective_sigma(Sigma, ridge: float):
    """The W-step's matrix ``M = (Sigma^{-1} + ridge I)^{-1} = Sigma (I + ridge Sigma)^{-1}``.

    With ``ridge = 0`` it is ``Sigma`` itself (the same object, so a fit without the
    ridge term does exactly what it did before). Otherwise ``M`` has ``Sigma``'s
    eigenvectors and eigenvalues ``s / (1 + ridge s) <= min(s, 1 / ridge)``; a
    :class:`~fmtl.relationships.LowRankSigma` stays identity plus the same low rank.

    Parameters
    ----------
    Sigma : ndarray of shape (m, m) or LowRankSigma
        Symmetric positive definite relationship (not validated: see
        :func:`check_sigma`).
    ridge : float
        ``rho >= 0`` (not validated: see :func:`check_ridge`).

    Returns
    -------
    ndarray of shape (m, m) or LowRankSigma
        ``M``, symmetric positive definite, of the same kind as ``Sigma``.

    Raises
    ------
    numpy.linalg.LinAlgError
        If the eigendecomposition of a dense ``Sigma`` does not converge (NaN entries).

    See Also
    --------
    max_effective_trace : The joint certificate's term for this ``M``.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import effective_sigma
    >>> S = np.diag([0.75, 0.25])
    >>> effective_sigma(S, 4.0)  # 0.75 / (1 + 4 * 0.75), 0.25 / (1 + 4 * 0.25)
    array([[0.1875, 0.    ],
           [0.    , 0.125 ]])
    >>> effective_sigma(S, 0.0) is S
    True
    """
    if ridge == 0.0:
        return Sigma
    if isinstance(Sigma, LowRankSigma):
        c0, c = Sigma.c0, Sigma.c
        # h(c0 + c) - h(c0) with h(s) = s / (1 + rho s), without cancellation
        dc = c / ((1.0 + ridge * c0) * (1.0 + ridge * (c0 + c)))
        return LowRankSigma(c0 / (1.0 + ridge * c0), Sigma.U, dc)
    S = np.asarray(Sigma, dtype=np.float64)
    s, V = np.linalg.eigh((S + S.T) / 2.0)
    M = (V * (s / (1.0 + ridge * s))) @ V.T
    return (M + M.T) / 2.0


def max_effective_trace(gram_eigenvalues, sigma_floor: float, ridge: float) -> float:
    """``max tr(G M(Sigma))`` over ``Sigma >= eps I``, ``tr Sigma = 1``, with
    ``M(Sigma) = Sigma (I + ridge Sigma)^{-1}``, from the eigenvalues ``g`` of ``G``.

    With ``G = B^T B`` it is the term of the joint bound ``D_joint = sum_t mean(-l*(-a)) -
    max / (2 lam)`` (DESIGN.md section 2). ``ridge = 0``: ``eps tr G + (1 - m eps)
    lambda_max(G)``. Otherwise, by von Neumann's trace inequality (``M`` has ``Sigma``'s
    eigenvectors and increasing eigenvalues ``h(s) = s / (1 + ridge s)``, and the
    constraints only see the spectrum) the maximum is over ``Sigma`` sharing ``G``'s
    eigenvectors: ``max sum_i g_i h(s_i)`` over ``sum_i s_i = 1``, ``s_i >= eps``, a concave
    water-filling with ``s_i = max(eps, (sqrt(g_i / nu) - 1) / ridge)``. ``nu`` is found
    exactly (which ``s_i`` sit on the floor, largest ``g`` first), and the value returned is
    the Lagrangian bound ``nu + sum_i max_{s >= eps} (g_i h(s) - nu s)``, an upper bound for
    *every* ``nu > 0`` that equals the maximum at the optimal one: rounding in ``nu`` can
    only loosen it, never make the certificate invalid.

    Parameters
    ----------
    gram_eigenvalues : array_like of shape (m,)
        All ``m`` eigenvalues of ``G`` (negative rounding noise is clipped to 0).
    sigma_floor : float
        ``eps``, ``0 <= eps < 1 / m``.
    ridge : float
        ``rho >= 0``.

    Returns
    -------
    float
        The maximum (0 for ``G = 0``).

    Raises
    ------
    ValueError
        If ``gram_eigenvalues`` is empty or not finite, or ``sigma_floor`` is outside
        ``[0, 1 / m)``.

    Examples
    --------
    >>> from fmtl.relationships import max_effective_trace
    >>> max_effective_trace([4.0, 1.0], 0.0, 0.0)  # all of Sigma on the top eigenvector
    4.0
    >>> round(max_effective_trace([4.0, 1.0], 0.0, 10.0), 12)  # s = (0.7, 0.3)
    0.425
    """
    g = np.clip(np.asarray(gram_eigenvalues, dtype=np.float64).ravel(), 0.0, None)
    m = g.shape[0]
    if m == 0 or not np.all(np.isfinite(g)):
        raise ValueError("gram_eigenvalues must be a non-empty finite vector")
    eps = float(sigma_floor)
    if not (0.0 <= eps < 1.0 / m):
        raise ValueError(f"sigma_floor must be in [0, 1/m), got {sigma_floor!r}")
    if ridge == 0.0:
        return float(eps * g.sum() + (1 - m * eps) * g.max())
    if not np.any(g > 0):
        return 0.0
    g = np.sort(g)[::-1]
    r = np.sqrt(g)
    k = np.arange(1, m + 1)
    csum = np.cumsum(r)
    thr = 1.0 + ridge * eps  # s_i > eps iff r_i t > thr, with t = 1 / sqrt(nu)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ridge * (1.0 - (m - k) * eps) + k) / csum  # the k largest free: sum s = 1
    above = (csum > 0) & (r * t > thr)
    nxt = np.append(r[1:], 0.0)
    valid = above & ((nxt * t <= thr) | (k == m))
    if valid.any():
        j = int(np.flatnonzero(valid)[0])
    else:  # rounding at a boundary: any nu gives a valid (slightly looser) bound
        j = int(np.flatnonzero(above)[-1]) if above.any() else 0
    sq = 1.0 / t[j]  # sqrt(nu)
    nu = sq * sq
    free = r > sq * thr
    # per eigenvalue max_{s >= eps} g h(s) - nu s: (r - sqrt(nu))^2 / rho when free
    value = nu + float(np.sum((r[free] - sq) ** 2)) / ridge
    floor = ~free
    value += float(np.sum(g[floor])) * eps / thr - nu * eps * int(np.sum(floor))
    return float(value)
