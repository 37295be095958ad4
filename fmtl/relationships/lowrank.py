"""Sigma as identity plus low rank: MOCHA's Sigma-step for many tasks in O(m d^2).

With ``W^T`` of shape (m, d), ``A = W^T W`` has rank ``r <= min(m, d)``. The closed-form
Sigma-step (:func:`fmtl.relationships.omega_update`) puts ``s_i = max(eps, sqrt(a_i)/mu)``
on ``A``'s eigenvectors, so every direction outside ``A``'s range gets the same value:

    Sigma = c0 I + U diag(c) U^T,    U: (m, r) orthonormal (left singular vectors of W^T),

*exactly* the dense step's answer, from a thin SVD of ``W^T`` (``O(m d^2)``) instead of an
``m x m`` eigendecomposition (``O(m^3)``), stored in ``O(m r)`` instead of ``O(m^2)``.
``Sigma B`` costs ``O(m d r)``; ``Sigma^{-1}`` has the same form.
"""

from __future__ import annotations

import numpy as np

from .learned import _floored_spectrum


class LowRankSigma:
    """A symmetric matrix ``c0 I + U diag(c) U^T`` (``U`` with orthonormal columns).

    Parameters
    ----------
    c0 : float
        Weight of the identity (the floor of the spectrum), > 0.
    U : ndarray of shape (m, r)
        Orthonormal columns.
    c : ndarray of shape (r,)
        Extra weight on each column's direction (eigenvalue ``c0 + c_i``; must keep
        every eigenvalue > 0).

    Attributes
    ----------
    shape : tuple of int
        ``(m, m)``.
    rank : int
        ``r``, the number of directions off the floor.

    Raises
    ------
    ValueError
        If ``U`` is not 2-D with as many columns as ``c`` has entries, ``c0`` is not
        positive and finite, ``c`` is not finite, or some ``c0 + c_i <= 0``.

    See Also
    --------
    omega_update_lowrank : Builds one by MOCHA's Sigma-step.

    Examples
    --------
    >>> import numpy as np
    >>> S = LowRankSigma(0.25, np.array([[1.0], [0.0], [0.0]]), np.array([0.25]))
    >>> S.to_dense()
    array([[0.5 , 0.  , 0.  ],
           [0.  , 0.25, 0.  ],
           [0.  , 0.  , 0.25]])
    >>> float(S.trace()), S.diagonal().tolist()
    (1.0, [0.5, 0.25, 0.25])
    """

    __array_priority__ = 20  # B @ S and S @ B both come here, not to numpy

    def __init__(self, c0: float, U: np.ndarray, c: np.ndarray) -> None:
        U = np.ascontiguousarray(U, dtype=np.float64)
        c = np.ascontiguousarray(c, dtype=np.float64).ravel()
        if U.ndim != 2 or U.shape[1] != c.shape[0]:
            raise ValueError(f"U must be (m, r) and c (r,), got {U.shape} and {c.shape}")
        if not (np.isfinite(c0) and c0 > 0) or not np.all(np.isfinite(c)):
            raise ValueError("c0 must be positive and finite, c finite")
        if np.any(c0 + c <= 0):
            raise ValueError("every eigenvalue c0 + c_i must be positive")
        self.c0, self.U, self.c = float(c0), U, c

    @property
    def shape(self) -> tuple[int, int]:
        m = self.U.shape[0]
        return (m, m)

    @property
    def rank(self) -> int:
        """Number of directions off the floor (``r``)."""
        return self.U.shape[1]

    def __matmul__(self, B: np.ndarray) -> np.ndarray:
        B = np.asarray(B, dtype=np.float64)
        return self.c0 * B + self.U @ (self.c[:, None] * (self.U.T @ B))

    def diagonal(self) -> np.ndarray:
        """``diag(Sigma)`` in ``O(m r)``."""
        return self.c0 + (self.U * self.U) @ self.c

    def trace(self) -> float:
        return self.c0 * self.U.shape[0] + float(self.c.sum())

    def eigenvalues(self) -> np.ndarray:
        """All ``m`` eigenvalues, ascending."""
        m, r = self.U.shape
        return np.sort(np.concatenate([np.full(m - r, self.c0), self.c0 + self.c]))

    def inverse(self) -> LowRankSigma:
        """``Sigma^{-1} = (1/c0) I + U diag(1/(c0 + c) - 1/c0) U^T`` (same form)."""
        return LowRankSigma(1.0 / self.c0, self.U, 1.0 / (self.c0 + self.c) - 1.0 / self.c0)

    def to_dense(self) -> np.ndarray:
        """The ``m x m`` matrix (``O(m^2)`` memory: for small ``m`` and tests)."""
        S = (self.U * self.c) @ self.U.T
        S[np.diag_indices_from(S)] += self.c0
        return (S + S.T) / 2.0

    def row_abs_sums(self, block: int = 1024) -> np.ndarray:
        """``sum_s |Sigma_ts|`` per row, in row blocks (``O(m^2 r)`` time, ``O(block m)``
        memory): what the Gershgorin ``sigma'`` needs."""
        m = self.U.shape[0]
        if self.rank == 0:
            return np.full(m, self.c0)
        out = np.empty(m)
        UC = self.U * self.c
        for i in range(0, m, block):
            R = UC[i : i + block] @ self.U.T
            R[np.arange(R.shape[0]), np.arange(i, i + R.shape[0])] += self.c0
            out[i : i + block] = np.abs(R).sum(axis=1)
        return out

    def spectral_sigma_prime_bound(self) -> float:
        """Safe upper bound on ``lambda_max(D^{-1/2} Sigma D^{-1/2})`` in ``O(m r^2)``.

        Weyl: ``c0 max(1/D) + lambda_max(C^{1/2} U^T D^{-1} U C^{1/2})`` for ``c >= 0``
        (negative ``c`` only lower the maximum, so they are dropped).
        """
        D = self.diagonal()
        cp = np.sqrt(np.clip(self.c, 0.0, None))
        Z = (self.U / np.sqrt(D)[:, None]) * cp
        top = float(np.linalg.eigvalsh(Z.T @ Z)[-1]) if Z.shape[1] else 0.0
        return float(self.c0 * np.max(1.0 / D) + top)

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays for a checkpoint (``c0`` as a 0-d array)."""
        return {"Sigma_c0": np.array(self.c0), "Sigma_U": self.U, "Sigma_c": self.c}

    @classmethod
    def from_arrays(cls, arrays: dict) -> LowRankSigma:
        return cls(float(arrays["Sigma_c0"]), arrays["Sigma_U"], arrays["Sigma_c"])

    @classmethod
    def identity(cls, m: int, d: int = 0) -> LowRankSigma:
        """``I / m`` (the start of MOCHA)."""
        return cls(1.0 / m, np.zeros((m, 0)), np.zeros(0))

    def __repr__(self) -> str:
        return f"LowRankSigma(m={self.shape[0]}, rank={self.rank}, floor={self.c0:.3g})"


def omega_update_lowrank(Wt: np.ndarray, sigma_floor: float = 1e-6) -> LowRankSigma:
    """MOCHA's closed-form Sigma-step in identity-plus-low-rank form.

    The same matrix as :func:`fmtl.relationships.omega_update`, in ``O(m d^2)`` time and
    ``O(m d)`` memory.

    Parameters
    ----------
    Wt : ndarray of shape (n_tasks, n_features)
        Task models, one row per task.
    sigma_floor : float, default=1e-6
        ``0 <= sigma_floor < 1 / n_tasks``; with 0, ``A``'s eigenvalues are floored at
        ``1e-7 max(a)`` as in :func:`omega_update`.

    Returns
    -------
    LowRankSigma
        Sigma; its ``inverse()`` is Omega.

    Raises
    ------
    ValueError
        If ``Wt`` is not 2-D with at least one row, is not finite, or the floor is outside
        its range.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.relationships import omega_update
    >>> Wt = np.random.default_rng(0).normal(size=(40, 3))
    >>> S = omega_update_lowrank(Wt, 1e-3)
    >>> S.rank, bool(np.allclose(S.to_dense(), omega_update(Wt, 1e-3)[0], atol=1e-12))
    (3, True)
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
    if scale == 0.0:
        return LowRankSigma.identity(m)
    U, sv, _ = np.linalg.svd(Wt / scale, full_matrices=False)  # sv^2: A's nonzero spectrum
    k = sv.shape[0]
    r = np.zeros(m)
    r[:k] = sv  # sqrt of A's eigenvalues; the other m - k are 0
    if sigma_floor > 0.0:
        s = _floored_spectrum(r, sigma_floor)
    else:
        r = np.maximum(r, np.sqrt(1e-7) * sv[0])
        s = r / r.sum()
    c0 = float(s[k:].max()) if k < m else float(s.min())
    return LowRankSigma(c0, U, s[:k] - c0)
