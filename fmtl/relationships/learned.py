"""The learned task relationship: MOCHA's closed-form Sigma-step (DESIGN.md section 2)."""

from __future__ import annotations

import numpy as np


def _floored_spectrum(r: np.ndarray, floor: float) -> np.ndarray:
    """``s_i = max(floor, r_i / mu)`` with ``mu > 0`` chosen so that ``sum(s) = 1``.

    ``r >= 0``. Exact: scan how many entries sit above the floor (largest ``r`` first).
    """
    m = r.shape[0]
    if not np.any(r > 0):
        return np.full(m, 1.0 / m)
    order = np.argsort(-r)
    rs = r[order]
    csum = np.cumsum(rs)
    s = np.full(m, floor)
    for k in range(1, m + 1):
        # k largest entries free, the rest at the floor
        mu = csum[k - 1] / (1.0 - (m - k) * floor)
        if rs[k - 1] / mu > floor and (k == m or rs[k] / mu <= floor):
            s[order[:k]] = rs[:k] / mu
            return s
    # unreachable for floor * m < 1 with some r > 0; keep a defined answer
    s[order] = rs / csum[-1]
    return s


def omega_update(Wt: np.ndarray, sigma_floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form Sigma-step: ``argmin tr(Sigma^{-1} A)`` over ``Sigma >= floor*I, tr = 1``.

    With ``A = W^T W = V diag(a) V^T`` the minimiser is ``V diag(s) V^T`` with
    ``s_i = max(floor, sqrt(a_i) / mu)`` and ``mu`` such that ``sum(s) = 1``. The floor
    is on Sigma itself, so MOCHA's fixed point is the optimum of the constrained joint
    problem that :func:`fmtl.reference.solve_joint` solves with the same ``eps``. With
    ``sigma_floor = 0`` this is the paper's ``A^{1/2} / tr(A^{1/2})`` with the eigenvalues
    of ``A`` floored at ``1e-7 * max(a)`` (the MATLAB reference floors at an absolute
    1e-7); ``W = 0`` gives ``I / m``.

    Parameters
    ----------
    Wt : ndarray of shape (n_tasks, n_features)
        Task models, one row per task (``W^T`` in the paper's notation).
    sigma_floor : float, default=1e-6
        Lower bound on the eigenvalues of Sigma; ``0 <= sigma_floor < 1 / n_tasks``.

    Returns
    -------
    Sigma : ndarray of shape (n_tasks, n_tasks)
        The relationship matrix (trace 1).
    Omega : ndarray of shape (n_tasks, n_tasks)
        Its inverse, from the same eigendecomposition.

    Raises
    ------
    ValueError
        If ``Wt`` is not 2-D with at least one row, contains NaN or inf, or
        ``sigma_floor`` is outside ``[0, 1 / n_tasks)``.

    See Also
    --------
    omega_update_lowrank : The same step in identity-plus-low-rank form.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import omega_update
    >>> Sigma, Omega = omega_update(np.eye(3), sigma_floor=0.0)
    >>> np.allclose(Sigma, np.eye(3) / 3), np.allclose(Omega, 3 * np.eye(3))
    (True, True)
    """
    Wt = np.asarray(Wt, dtype=np.float64)
    if Wt.ndim != 2 or Wt.shape[0] == 0:
        raise ValueError(f"Wt must be 2-D with at least one row (task), got shape {Wt.shape}")
    if not np.all(np.isfinite(Wt)):
        raise ValueError("Wt contains NaN or inf")
    m = Wt.shape[0]
    if not (0.0 <= sigma_floor < 1.0 / m):
        raise ValueError(
            f"sigma_floor must be in [0, 1/n_tasks) = [0, {1.0 / m:.3g}), got {sigma_floor!r}"
        )
    scale = np.abs(Wt).max() if Wt.size else 0.0
    # Sigma is invariant to the scale of W: normalise so A neither underflows nor overflows
    A = (Wt / scale) @ (Wt / scale).T if scale > 0 else np.zeros((m, m))
    if m >= 64:
        # multithreaded OpenBLAS eigh was 60x slower on 2 shared cores (158 ms vs 2.6 ms, m=160)
        from .._blas import single_threaded_blas

        with single_threaded_blas():
            a, V = np.linalg.eigh((A + A.T) / 2.0)
    else:
        a, V = np.linalg.eigh((A + A.T) / 2.0)
    if sigma_floor > 0.0:
        s = _floored_spectrum(np.sqrt(np.clip(a, 0.0, None)), sigma_floor)
    elif a.max() > 0.0:
        # unconstrained step; eigenvalues of A floored relative to its scale (the MATLAB
        # reference uses an absolute 1e-7) so that Omega stays finite
        r = np.sqrt(np.clip(a, 1e-7 * a.max(), None))
        s = r / r.sum()
    else:
        s = np.full(m, 1.0 / m)
    Sigma = (V * s) @ V.T
    Omega = (V / s) @ V.T
    return (Sigma + Sigma.T) / 2.0, (Omega + Omega.T) / 2.0


def safety_rho(Sigma: np.ndarray) -> float:
    """MOCHA's safe subproblem parameter ``sigma' = max_t sum_s |Sigma_ts| / Sigma_tt``.

    It bounds ``tr(dB Sigma dB^T) <= sigma' sum_t Sigma_tt ||db_t||^2`` for any ``dB``,
    so adding all local updates never decreases the dual objective.

    Parameters
    ----------
    Sigma : array_like of shape (m, m)
        Relationship matrix with a positive diagonal (not validated: see
        :func:`check_sigma`).

    Returns
    -------
    float
        ``sigma'`` (at least 1).

    Raises
    ------
    numpy.exceptions.AxisError
        If ``Sigma`` is 1-D.

    See Also
    --------
    spectral_rho : The smallest safe value (never larger than this one).

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import safety_rho
    >>> safety_rho(np.array([[2.0, 1.0], [1.0, 2.0]]))
    1.5
    """
    Sigma = np.asarray(Sigma, dtype=np.float64)
    return float(np.max(np.abs(Sigma).sum(axis=1) / np.diag(Sigma)))


def spectral_rho(Sigma: np.ndarray) -> float:
    """Smallest safe ``sigma'``: ``lambda_max(D^{-1/2} Sigma D^{-1/2})``, ``D = diag(Sigma)``.

    ``tr(dB^T Sigma dB) <= sigma' sum_t Sigma_tt ||db_t||^2`` holds for every ``dB`` iff
    ``Sigma <= sigma' D``, i.e. iff ``sigma'`` is at least this value; :func:`safety_rho`
    (a Gershgorin bound on the same eigenvalue) is never smaller.

    Parameters
    ----------
    Sigma : array_like of shape (m, m)
        Symmetric relationship matrix with a positive diagonal (not validated: see
        :func:`check_sigma`).

    Returns
    -------
    float
        ``lambda_max(D^{-1/2} Sigma D^{-1/2})``.

    Raises
    ------
    ValueError
        If ``Sigma`` is not square (numpy cannot broadcast the scaling).
    numpy.linalg.LinAlgError
        If the eigensolver does not converge (e.g. NaN from a non-positive diagonal).

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import spectral_rho
    >>> S = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, -1.0], [1.0, -1.0, 2.0]])
    >>> round(spectral_rho(S), 10), safety_rho(S)
    (1.5, 2.0)
    """
    Sigma = np.asarray(Sigma, dtype=np.float64)
    r = 1.0 / np.sqrt(np.diag(Sigma))
    M = Sigma * r[:, None] * r[None, :]
    return float(np.linalg.eigvalsh((M + M.T) / 2.0)[-1])


def resolve_sigma_prime(rule, Sigma: np.ndarray) -> float:
    """``sigma'`` for ``Sigma`` from a rule: ``"gershgorin"``, ``"spectral"`` or a number.

    For a :class:`~fmtl.relationships.LowRankSigma`, ``"spectral"`` is a safe upper bound
    (Weyl) computed in ``O(m r^2)`` and ``"gershgorin"`` is exact in ``O(m^2 r)``.

    Parameters
    ----------
    rule : {"gershgorin", "spectral"} or float
        :func:`safety_rho`, :func:`spectral_rho`, or a positive number used as is.
    Sigma : ndarray of shape (m, m) or LowRankSigma
        The relationship matrix.

    Returns
    -------
    float
        The subproblems' ``sigma'``.

    Raises
    ------
    ValueError
        For an unknown string or a number that is not positive and finite.
    TypeError
        If ``rule`` is neither a string nor a number (booleans are refused).

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import resolve_sigma_prime
    >>> S = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> resolve_sigma_prime("gershgorin", S), resolve_sigma_prime(3, S)
    (1.5, 3.0)
    >>> resolve_sigma_prime("exact", S)
    Traceback (most recent call last):
    ...
    ValueError: sigma_prime must be 'gershgorin', 'spectral' or a number, got 'exact'
    """
    if isinstance(rule, str):
        if hasattr(Sigma, "row_abs_sums"):  # LowRankSigma: no m x m matrix
            if rule == "gershgorin":
                return float(np.max(Sigma.row_abs_sums() / Sigma.diagonal()))
            if rule == "spectral":
                return Sigma.spectral_sigma_prime_bound()
        if rule == "gershgorin":
            return safety_rho(Sigma)
        if rule == "spectral":
            return spectral_rho(Sigma)
        raise ValueError(f"sigma_prime must be 'gershgorin', 'spectral' or a number, got {rule!r}")
    if isinstance(rule, bool) or not isinstance(rule, int | float | np.integer | np.floating):
        raise TypeError(f"sigma_prime must be 'gershgorin', 'spectral' or a number, got {rule!r}")
    if not (np.isfinite(rule) and rule > 0):
        raise ValueError(f"sigma_prime must be a positive finite number, got {rule!r}")
    return float(rule)
