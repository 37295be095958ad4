"""Fixed task relationships: Sigma given once, never updated."""

from __future__ import annotations

import numpy as np


def identity_sigma(n_tasks: int) -> np.ndarray:
    """``Sigma = I / m``: tasks decouple (each a ridge problem with strength ``lam * m``).

    Parameters
    ----------
    n_tasks : int
        Number of tasks ``m``.

    Returns
    -------
    ndarray of shape (n_tasks, n_tasks)
        ``I / m`` (trace 1).

    Raises
    ------
    ValueError
        If ``n_tasks`` is negative (from :func:`numpy.eye`).
    TypeError
        If ``n_tasks`` is not an integer (from :func:`numpy.eye`).

    See Also
    --------
    mean_regularized_sigma : Couples the tasks through their mean.

    Examples
    --------
    >>> from fmtl.relationships import identity_sigma
    >>> identity_sigma(2)
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    return np.eye(n_tasks) / n_tasks


def mean_regularized_sigma(n_tasks: int, kappa: float) -> np.ndarray:
    """Mean-regularised relationship, normalised to trace 1.

    ``Omega = c (I + kappa (I - 11^T / m))`` with ``c = 1 + (m - 1) / (1 + kappa)``, so
    ``Sigma = Omega^{-1}`` has trace 1 and

        (lam/2) tr(W Omega W^T) = (lam c / 2) [ sum_t ||w_t||^2 + kappa sum_t ||w_t - w_bar||^2 ].

    ``kappa = 0`` gives :func:`identity_sigma`; ``kappa -> inf`` forces all ``w_t`` to their
    mean (a global model).

    Parameters
    ----------
    n_tasks : int
        Number of tasks ``m``.
    kappa : float
        Weight ``>= 0`` of the pull towards the mean model.

    Returns
    -------
    ndarray of shape (n_tasks, n_tasks)
        ``Sigma``, symmetric positive definite with trace 1.

    Raises
    ------
    TypeError
        If ``kappa`` is not a number (booleans included) or ``n_tasks`` is not an integer.
    ValueError
        If ``kappa`` is negative, not finite or so large that ``Sigma`` is numerically
        singular (above ``1e-3 / (n_tasks eps) - 1``), or ``n_tasks`` is negative.

    See Also
    --------
    proximal_as_mean_regularized : The same structure from Ditto's/pFedMe's parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import mean_regularized_sigma
    >>> float(np.trace(mean_regularized_sigma(4, kappa=3.0)))
    1.0
    """
    if isinstance(kappa, bool) or not isinstance(kappa, int | float | np.integer | np.floating):
        raise TypeError(f"kappa must be a number, got {kappa!r}")
    if not (np.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
    # Sigma's eigenvalues differ by the factor 1 + kappa; the rank-one part J = 11^T/m
    # carries ~m eps of rounding, so past 1e-3 / (m eps) the small ones are lost in it
    tasks = n_tasks if isinstance(n_tasks, int | np.integer) and n_tasks > 0 else 1
    top = 1e-3 / (tasks * np.finfo(np.float64).eps) - 1.0
    if kappa > top:
        raise ValueError(
            f"kappa={kappa!r} makes Sigma numerically singular for {n_tasks} tasks (its "
            f"eigenvalues differ by the factor 1 + kappa): kappa must be <= {top:.3g}; "
            "kappa -> inf is one shared model (GlobalClassifier / GlobalRegressor)"
        )
    m = n_tasks
    c = 1.0 + (m - 1) / (1.0 + kappa)
    J = np.full((m, m), 1.0 / m)
    # Omega / c has eigenvalue 1 on the mean direction and 1 + kappa on its complement
    return (J + (np.eye(m) - J) / (1.0 + kappa)) / c


def proximal_as_mean_regularized(n_tasks: int, lam: float, mu: float):
    """MOCHA's ``(lam_fmtl, Sigma)`` for ``sum_t [F_t(v_t) + (mu/2) ||v_t - vbar||^2]``.

    With ``F_t(v) = mean_i l + (lam/2) ||v||^2`` the proximal objective (Ditto's and
    pFedMe's, centred at the mean ``vbar``) is ``sum_t mean_i l + (lam/2) tr(V (I + kappa
    (I - 11^T/m)) V^T)``, ``kappa = mu / lam``: :func:`mean_regularized_sigma` with that
    ``kappa`` and ``lam_fmtl = lam / c``, ``c = 1 + (m - 1)/(1 + kappa)``.

    Parameters
    ----------
    n_tasks : int
        Number of tasks ``m``.
    lam : float
        The per-task ridge strength of ``F_t`` (> 0).
    mu : float
        The proximal weight (>= 0).

    Returns
    -------
    lam_fmtl : float
        ``lam / c``, the ``lam`` to pass to :func:`fmtl.federated.mocha`.
    Sigma : ndarray of shape (n_tasks, n_tasks)
        :func:`mean_regularized_sigma` with ``kappa = mu / lam``.

    Raises
    ------
    ValueError
        Unless ``lam > 0`` and ``mu >= 0`` are finite.
    TypeError
        If ``lam`` or ``mu`` is not a number.

    Examples
    --------
    >>> lam_f, S = proximal_as_mean_regularized(3, lam=0.1, mu=0.1)
    >>> round(lam_f, 6), S.shape
    (0.05, (3, 3))
    """
    if not (np.isfinite(lam) and lam > 0 and np.isfinite(mu) and mu >= 0):
        raise ValueError(f"need lam > 0 and mu >= 0, got lam={lam!r}, mu={mu!r}")
    kappa = mu / lam
    return lam / (1.0 + (n_tasks - 1) / (1.0 + kappa)), mean_regularized_sigma(n_tasks, kappa)


def check_sigma(Sigma, n_tasks: int, name: str = "sigma") -> np.ndarray:
    """Validate a user-given relationship matrix: finite, symmetric, positive definite.

    Parameters
    ----------
    Sigma : array_like of shape (n_tasks, n_tasks)
        The matrix to check.
    n_tasks : int
        The number of tasks it must match.
    name : str, default="sigma"
        Name used in the error messages.

    Returns
    -------
    ndarray of shape (n_tasks, n_tasks)
        ``Sigma`` as float64, exactly symmetrised (``(S + S^T) / 2``).

    Raises
    ------
    TypeError
        If ``Sigma`` is not numeric.
    ValueError
        If it has the wrong shape, contains NaN or inf, is not symmetric or is not
        positive definite.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import check_sigma
    >>> check_sigma([[2.0, 1.0], [1.0, 2.0]], 2)
    array([[2., 1.],
           [1., 2.]])
    >>> check_sigma(np.array([[1.0, 2.0], [2.0, 1.0]]), 2)
    Traceback (most recent call last):
    ...
    ValueError: sigma must be positive definite (smallest eigenvalue -1)
    """
    try:
        S = np.asarray(Sigma, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a numeric (n_tasks, n_tasks) matrix: {e}") from e
    if S.shape != (n_tasks, n_tasks):
        raise ValueError(f"{name} must have shape ({n_tasks}, {n_tasks}), got {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError(f"{name} contains NaN or inf")
    if not np.allclose(S, S.T, rtol=1e-10, atol=1e-12 * np.abs(S).max()):
        raise ValueError(f"{name} must be symmetric")
    ev = np.linalg.eigvalsh(S)
    if ev[0] <= 0:
        raise ValueError(f"{name} must be positive definite (smallest eigenvalue {ev[0]:.3g})")
    return (S + S.T) / 2.0
