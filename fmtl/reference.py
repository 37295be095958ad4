"""Reference (ground-truth) solutions of the convex MTL problem via cvxpy.

This module solves the centralised multi-task problem of MOCHA (Smith et al., NeurIPS 2017)
to high accuracy with an interior-point conic solver, so that the federated solvers in
:mod:`fmtl` can be certified against it.  With ``m`` tasks, task ``t`` holding ``X_t``
(``n_t x d``) and ``y_t`` (``n_t``), ``W = [w_1, ..., w_m]`` (``d x m``) and
``Omega = Sigma^{-1}``, the primal objective is

.. math::

    P(W; \\Omega) = \\sum_t \\frac{1}{n_t} \\sum_i \\ell(y_{ti}, w_t^\\top x_{ti})
                   + \\frac{\\lambda}{2} \\operatorname{tr}(W \\Omega W^\\top).

With ``ridge = rho > 0`` (MTRL's and the MOCHA paper's general regulariser) every function
adds ``(lambda / 2) rho ||W||_F^2``, i.e. the penalty is ``(lambda/2) tr(W (Omega + rho I)
W^T)``; ``Sigma`` stays the (trace-1) relationship.

Tasks with zero samples contribute no loss term.  With intercepts (``fit_intercept=True``;
liblinear's convention, as in :class:`fmtl.MochaClassifier`) every row gets a constant feature
``s = intercept_scaling`` appended, ``W`` a last row ``b / s`` and the predictions become
``w_t^T x + b_t``: the intercepts are penalised inside ``tr(W Omega W^T)`` like every other
weight.  :func:`solve_fixed_sigma` minimises ``P`` over ``W`` for a given ``Sigma``;
:func:`solve_joint` minimises over ``(W, Sigma)`` subject to ``Sigma >= eps * I`` and
``tr(Sigma) = 1``.  :func:`primal_objective` is an independent numpy
evaluation of ``P`` and is what :attr:`ReferenceSolution.objective` reports.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

__all__ = [
    "CLARABEL_SETTINGS_FIXED",
    "CLARABEL_SETTINGS_JOINT",
    "LOSS_NAMES",
    "ReferenceSolution",
    "ReferenceSolveError",
    "cvxpy_loss",
    "primal_objective",
    "solve_fixed_sigma",
    "solve_joint",
]

LOSS_NAMES: tuple[str, ...] = ("hinge", "smoothed_hinge", "squared", "logistic")
"""Names of the supported losses."""

_LABEL_LOSSES = frozenset({"hinge", "smoothed_hinge", "logistic"})


def _clarabel_ladder(tol_feas_floor: float) -> tuple[Mapping[str, Any], ...]:
    steps = []
    for tol in (1e-10, 1e-9, 1e-8):
        base = {
            "tol_gap_abs": tol,
            "tol_gap_rel": tol,
            "tol_feas": max(tol, tol_feas_floor),
            "max_iter": 500,
        }
        steps.append(MappingProxyType(base))
        steps.append(MappingProxyType({**base, "equilibrate_enable": False}))
    return tuple(steps)


CLARABEL_SETTINGS_FIXED: tuple[Mapping[str, Any], ...] = _clarabel_ladder(1e-10)
"""Clarabel settings tried in order by :func:`solve_fixed_sigma` until one ends ``optimal``.

Gap tolerances ``1e-10 -> 1e-9 -> 1e-8`` (``tol_feas`` equal to the gap tolerance), each first
with Clarabel's default equilibration and then with ``equilibrate_enable=False``.  User
``**solver_kwargs`` are merged on top of every step.  In a randomised stress test (200
problems, m <= 11, d <= 11, n_t <= 79, all losses) the first step failed (``optimal_inaccurate``)
on 4 of 50 logistic problems and the second step solved all of them; ``1e-12`` typically ends
``optimal_inaccurate``.
"""

CLARABEL_SETTINGS_JOINT: tuple[Mapping[str, Any], ...] = _clarabel_ladder(1e-8)
"""Clarabel settings tried in order by :func:`solve_joint` until one ends ``optimal``.

As :data:`CLARABEL_SETTINGS_FIXED` but with ``tol_feas = 1e-8`` throughout: on the SDP the
primal residual can stall around ``2e-9`` after the gap has fallen below ``1e-11`` (e.g. 29
tasks x 511 samples, hinge), and the smoothed hinge failed about half the time at
``tol_feas = 1e-10``.  In a randomised stress test (160 problems) the first step solved 155 and
the second step the remaining 5 (4 smoothed hinge, 1 logistic).
"""


class ReferenceSolveError(RuntimeError):
    """Raised when the reference solver fails or does not report an optimal status.

    A :class:`RuntimeError` whose message lists every attempted solver setting and its
    outcome (for Clarabel, each step of the settings ladder).

    Parameters
    ----------
    *args : object
        The message, as for any exception.

    Raises
    ------
    ReferenceSolveError
        Raised by :func:`solve_fixed_sigma` and :func:`solve_joint` (never by its own
        constructor).

    Examples
    --------
    >>> import numpy as np
    >>> Xs, ys = [np.eye(2)], [np.array([1.0, -1.0])]
    >>> try:
    ...     solve_fixed_sigma(Xs, ys, np.eye(1), lam=1.0, loss="logistic", max_iter=1)
    ... except ReferenceSolveError as e:
    ...     print(str(e).splitlines()[0])
    cvxpy solver CLARABEL did not reach status 'optimal'; attempts:
    """


@dataclass(frozen=True, eq=False)
class ReferenceSolution:
    """Result of a reference solve.

    Returned by :func:`solve_fixed_sigma` and :func:`solve_joint`; the fields are also the
    constructor's parameters (a frozen dataclass).

    Parameters
    ----------
    W : ndarray of shape (d, m)
        Optimal weights, one column per task (read-only).
    Sigma : ndarray of shape (m, m)
        Task covariance: the given one for :func:`solve_fixed_sigma`, the optimal one for
        :func:`solve_joint` (read-only).
    objective : float
        ``P(W; Sigma^{-1})`` re-evaluated in numpy by :func:`primal_objective`.
    solver_objective : float
        Optimal value reported by the solver.
    solver : str
        Name of the cvxpy solver used.
    status : str
        cvxpy status (always ``"optimal"``; other statuses raise).
    solve_time : float
        Wall-clock seconds spent in ``problem.solve`` (includes cvxpy compilation, summed over
        all attempts of the Clarabel settings ladder).
    solver_options : Mapping[str, Any]
        Keyword arguments of the successful ``problem.solve`` call (read-only).
    intercept : ndarray of shape (m,) or None
        Optimal intercepts ``b`` (read-only): ``intercept_scaling`` times the constant
        feature's weights with ``fit_intercept=True``, zeros without; ``None`` only when
        constructed directly without one.

    Raises
    ------
    dataclasses.FrozenInstanceError
        On assigning to a field (the instance is immutable).

    Examples
    --------
    >>> import numpy as np
    >>> Xs = [np.eye(2), np.ones((1, 2))]
    >>> ys = [np.array([1.0, -1.0]), np.array([1.0])]
    >>> sol = solve_fixed_sigma(Xs, ys, np.eye(2) / 2, lam=1.0, loss="squared")
    >>> sol.status, sol.solver, sol.W.shape, round(sol.objective, 6)
    ('optimal', 'CLARABEL', (2, 2), 0.65)
    >>> sol.W.flags.writeable
    False
    """

    W: np.ndarray
    Sigma: np.ndarray
    objective: float
    solver_objective: float
    solver: str
    status: str
    solve_time: float
    solver_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    intercept: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_positive_scalar(value: Any, name: str, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0 or (value == 0.0 and not zero_ok):
        raise ValueError(f"{name} must be finite and {'>=' if zero_ok else '>'} 0, got {value!r}")
    return value


def _check_ridge(value: Any) -> float:
    return _check_positive_scalar(value, "ridge", zero_ok=True)


def _check_loss(loss: Any, gamma: Any) -> tuple[str, float]:
    if not isinstance(loss, str) or loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES}, got {loss!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"gamma must be a real number, got {gamma!r}")
    gamma = float(gamma)
    if not math.isfinite(gamma):
        raise ValueError(f"gamma must be finite, got {gamma!r}")
    if loss == "smoothed_hinge" and gamma <= 0.0:
        raise ValueError(f"gamma must be > 0 for loss 'smoothed_hinge', got {gamma!r}")
    return loss, gamma


def _as_matrix(X: Any, name: str) -> np.ndarray | sp.csr_array:
    if sp.issparse(X):
        X = sp.csr_array(X, dtype=np.float64)
        if not np.all(np.isfinite(X.data)):
            raise ValueError(f"{name} contains NaN or inf")
        return X
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric 2-D array or scipy sparse matrix") from exc
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_t, d), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or inf")
    return X


def _validate_data(
    Xs: Sequence[Any], ys: Sequence[Any], loss: str
) -> tuple[list[np.ndarray | sp.csr_array], list[np.ndarray], int]:
    """Validate the per-task data; return (Xs, ys, d) with float64 arrays."""
    for arg, name in ((Xs, "Xs"), (ys, "ys")):
        if isinstance(arg, np.ndarray | str | bytes) or sp.issparse(arg):
            raise ValueError(f"{name} must be a sequence (list/tuple) with one entry per task")
        if not isinstance(arg, Sequence):
            raise ValueError(f"{name} must be a sequence (list/tuple) with one entry per task")
    if len(Xs) != len(ys):
        raise ValueError(
            f"Xs and ys must have the same length (number of tasks), got {len(Xs)} and {len(ys)}"
        )
    if len(Xs) == 0:
        raise ValueError("Xs and ys must contain at least one task")
    out_X: list[np.ndarray | sp.csr_array] = []
    out_y: list[np.ndarray] = []
    d: int | None = None
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        X = _as_matrix(X, f"Xs[{t}]")
        if d is None:
            d = X.shape[1]
        elif X.shape[1] != d:
            raise ValueError(
                f"Xs[{t}] has {X.shape[1]} features but Xs[0] has {d}; feature counts must agree"
            )
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ys[{t}] must be a numeric 1-D array") from exc
        if y.ndim != 1:
            raise ValueError(f"ys[{t}] must be 1-D, got shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"ys[{t}] has {y.shape[0]} entries but Xs[{t}] has {X.shape[0]} rows")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"ys[{t}] contains NaN or inf")
        if loss in _LABEL_LOSSES and not np.all(np.abs(y) == 1.0):
            raise ValueError(f"ys[{t}] must contain only -1/+1 labels for loss {loss!r}")
        out_X.append(X)
        out_y.append(y)
    assert d is not None
    if d == 0:
        raise ValueError("Xs must have at least one feature column")
    return out_X, out_y, d


def _check_intercept_scaling(fit_intercept: Any, intercept_scaling: Any) -> float | None:
    """The constant feature's value, or ``None`` without an intercept."""
    if not isinstance(fit_intercept, bool | np.bool_):
        raise ValueError(f"fit_intercept must be True or False, got {fit_intercept!r}")
    if not fit_intercept:
        return None
    return _check_positive_scalar(intercept_scaling, "intercept_scaling")


def _augment(Xs: list[np.ndarray | sp.csr_array], scaling: float):
    """Every task's rows with the constant feature ``scaling`` appended (liblinear's way)."""
    out: list[np.ndarray | sp.csr_array] = []
    for X in Xs:
        column = np.full((X.shape[0], 1), scaling)
        if sp.issparse(X):
            out.append(sp.csr_array(sp.hstack([X, sp.csr_array(column)], format="csr")))
        else:
            out.append(np.hstack([X, column]))
    return out


def _check_square(M: Any, m: int, name: str) -> np.ndarray:
    try:
        M = np.asarray(M, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric ({m}, {m}) array") from exc
    if M.shape != (m, m):
        raise ValueError(f"{name} must have shape ({m}, {m}), got {M.shape}")
    if not np.all(np.isfinite(M)):
        raise ValueError(f"{name} contains NaN or inf")
    return M


def _spd_eigh(S: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric positive definite matrix (validated)."""
    scale = max(1.0, float(np.max(np.abs(S))))
    if not np.allclose(S, S.T, rtol=0.0, atol=1e-10 * scale):
        raise ValueError(f"{name} must be symmetric")
    S = 0.5 * (S + S.T)
    vals, vecs = np.linalg.eigh(S)
    if vals[0] <= max(vals[-1], 0.0) * S.shape[0] * np.finfo(np.float64).eps:
        raise ValueError(
            f"{name} must be positive definite (smallest eigenvalue {vals[0]:.3e}, "
            f"largest {vals[-1]:.3e})"
        )
    return vals, vecs


def _check_solver(solver: Any) -> str:
    if not isinstance(solver, str):
        raise ValueError(f"solver must be a cvxpy solver name (str), got {solver!r}")
    solver = solver.upper()
    if solver not in cp.installed_solvers():
        raise ValueError(
            f"solver {solver!r} is not installed; installed: {sorted(cp.installed_solvers())}"
        )
    return solver


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


def _numpy_loss(name: str, z: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    """Elementwise loss values ``l(y_i, z_i)`` in numpy."""
    if name == "hinge":
        return np.maximum(0.0, 1.0 - y * z)
    if name == "smoothed_hinge":
        r = 1.0 - y * z
        return np.where(r <= 0.0, 0.0, np.where(r < gamma, r * r / (2.0 * gamma), r - gamma / 2))
    if name == "squared":
        return 0.5 * (z - y) ** 2
    if name == "logistic":
        return np.logaddexp(0.0, -y * z)
    raise ValueError(f"loss must be one of {LOSS_NAMES}, got {name!r}")  # pragma: no cover


def cvxpy_loss(name: str, z: cp.Expression, y: Any, gamma: float = 1.0) -> cp.Expression:
    """Return the cvxpy expression of ``sum_i l(y_i, z_i)``.

    Parameters
    ----------
    name : str
        One of :data:`LOSS_NAMES`.
    z : cvxpy.Expression of shape (n,)
        Predictions, e.g. ``X @ w``.
    y : array_like of shape (n,) or cvxpy.Expression
        Targets (labels in ``{-1, +1}`` for the classification losses; not checked here).
    gamma : float, default 1.0
        Smoothing parameter of ``"smoothed_hinge"`` (must be > 0 for it; ignored otherwise).

    Returns
    -------
    cvxpy.Expression
        A convex (DCP) scalar expression.  The smoothed hinge is written as
        ``huber(pos(1 - y z), gamma) / (2 gamma)``, which is DCP because ``huber`` is
        increasing on nonnegative arguments.

    Raises
    ------
    ValueError
        If ``name`` is unknown, ``gamma`` is not a finite real number (or not > 0 for
        ``"smoothed_hinge"``), or ``y`` and ``z`` have incompatible shapes (from cvxpy).

    Examples
    --------
    >>> import cvxpy as cp
    >>> import numpy as np
    >>> z = cp.Constant(np.array([2.0, 0.5, -1.0]))
    >>> float(cvxpy_loss("hinge", z, np.array([1.0, 1.0, 1.0])).value)
    2.5
    >>> float(cvxpy_loss("smoothed_hinge", z, np.ones(3), gamma=1.0).value)
    1.625
    """
    name, gamma = _check_loss(name, gamma)
    if not isinstance(y, cp.Expression):
        y = np.asarray(y, dtype=np.float64)
        if y.size == 0:
            return cp.Constant(0.0)
    if name == "squared":
        return 0.5 * cp.sum_squares(z - y)
    margin = cp.multiply(y, z)
    if name == "hinge":
        return cp.sum(cp.pos(1 - margin))
    if name == "smoothed_hinge":
        return cp.sum(cp.huber(cp.pos(1 - margin), gamma)) / (2.0 * gamma)
    return cp.sum(cp.logistic(-margin))


# --------------------------------------------------------------------------------------------
# objective
# --------------------------------------------------------------------------------------------


def _loss_term(
    Xs: list[np.ndarray | sp.csr_array],
    ys: list[np.ndarray],
    W: np.ndarray,
    loss: str,
    gamma: float,
) -> float:
    total = 0.0
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        if y.shape[0] == 0:
            continue
        z = np.asarray(X @ W[:, t], dtype=np.float64).ravel()
        total += float(np.mean(_numpy_loss(loss, z, y, gamma)))
    return total


def primal_objective(
    Xs: Sequence[Any],
    ys: Sequence[Any],
    W: Any,
    Omega: Any,
    lam: float,
    loss: str = "hinge",
    gamma: float = 1.0,
    *,
    intercept: Any = None,
    intercept_scaling: float = 1.0,
    ridge: float = 0.0,
) -> float:
    """Evaluate the MTL primal objective ``P(W; Omega)`` in plain numpy.

    ``P(W; Omega) = sum_t mean_i l(y_ti, w_t^T x_ti + b_t) + (lam / 2) tr(W' Omega W'^T)``
    with ``W'`` the weights ``W`` and, given ``intercept``, a last row ``b / intercept_scaling``
    (liblinear's penalised intercept; no ``intercept``: ``b = 0`` and ``W' = W``), plus
    ``(lam / 2) ridge ||W'||_F^2``; tasks with no samples contribute no loss term.

    Parameters
    ----------
    Xs : sequence of array_like or sparse matrix
        ``m`` design matrices, ``Xs[t]`` of shape ``(n_t, d)``.
    ys : sequence of array_like
        ``m`` target vectors, ``ys[t]`` of shape ``(n_t,)``.
    W : array_like of shape (d, m)
        Weights, one column per task.
    Omega : array_like of shape (m, m)
        Task precision matrix ``Sigma^{-1}`` (used as given: ``tr(W Omega W^T)``).
    lam : float
        Regularisation strength, finite and > 0.
    loss : {"hinge", "smoothed_hinge", "squared", "logistic"}, default "hinge"
        Loss function.
    gamma : float, default 1.0
        Smoothing parameter of ``"smoothed_hinge"``.
    intercept : array_like of shape (m,), optional
        Intercepts ``b_t``, e.g. :attr:`ReferenceSolution.intercept` or an estimator's
        ``intercept_``.
    intercept_scaling : float, default 1.0
        Value of the constant feature the intercepts were fitted with (> 0; used only with
        ``intercept``).
    ridge : float, default 0.0
        Weight ``rho >= 0`` of the ridge term (the intercepts' weights included).

    Returns
    -------
    float
        The objective value.

    Raises
    ------
    ValueError
        If ``lam`` is not a finite number > 0, the loss or ``gamma`` is invalid, the data
        are invalid (not one entry per task, no tasks, non-numeric, not 2-D/1-D,
        mismatched lengths or features, NaN or inf, labels not in {-1, +1} for a
        classification loss), ``W``/``Omega`` are not finite arrays of shape
        ``(d, m)``/``(m, m)``, ``intercept`` is not a finite array of shape ``(m,)``, or
        ``ridge`` is not a finite number >= 0.

    Examples
    --------
    >>> import numpy as np
    >>> Xs = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0]])]
    >>> ys = [np.array([1.0, -1.0]), np.array([1.0])]
    >>> W = np.zeros((2, 2))
    >>> primal_objective(Xs, ys, W, np.eye(2), lam=0.5)  # hinge: 1 + 1
    2.0
    >>> # b = (1, 1): mean hinge 1 (task 0) + 0 (task 1), penalty (0.5 / 2) (1 + 1)
    >>> primal_objective(Xs, ys, W, np.eye(2), lam=0.5, intercept=[1.0, 1.0])
    1.5
    >>> # and ridge 2: (0.5 / 2) 2 (1 + 1) more
    >>> primal_objective(Xs, ys, W, np.eye(2), lam=0.5, intercept=[1.0, 1.0], ridge=2.0)
    2.5
    """
    lam = _check_positive_scalar(lam, "lam")
    ridge = _check_ridge(ridge)
    loss, gamma = _check_loss(loss, gamma)
    Xs_v, ys_v, d = _validate_data(Xs, ys, loss)
    m = len(Xs_v)
    try:
        W = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"W must be a numeric ({d}, {m}) array") from exc
    if W.shape != (d, m):
        raise ValueError(f"W must have shape (d, m) = ({d}, {m}), got {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or inf")
    Omega = _check_square(Omega, m, "Omega")
    if intercept is not None:
        scaling = _check_positive_scalar(intercept_scaling, "intercept_scaling")
        try:
            b = np.asarray(intercept, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"intercept must be a numeric ({m},) array") from exc
        if b.shape != (m,):
            raise ValueError(f"intercept must have shape ({m},), got {b.shape}")
        if not np.all(np.isfinite(b)):
            raise ValueError("intercept contains NaN or inf")
        Xs_v, W = _augment(Xs_v, scaling), np.vstack([W, b / scaling])
    reg = 0.5 * lam * float(np.sum((W @ Omega) * W))
    if ridge > 0.0:
        reg += 0.5 * lam * ridge * float(np.sum(W * W))
    return _loss_term(Xs_v, ys_v, W, loss, gamma) + reg


# --------------------------------------------------------------------------------------------
# solvers
# --------------------------------------------------------------------------------------------


def _data_loss_expr(
    Xs: list[np.ndarray | sp.csr_array],
    ys: list[np.ndarray],
    W: cp.Variable,
    loss: str,
    gamma: float,
) -> cp.Expression:
    terms = []
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        n_t = y.shape[0]
        if n_t == 0:
            continue
        terms.append(cvxpy_loss(loss, cp.Constant(X) @ W[:, t], y, gamma) / n_t)
    return cp.sum(cp.hstack(terms)) if terms else cp.Constant(0.0)


def _run(
    problem: cp.Problem,
    solver: str,
    solver_kwargs: dict[str, Any],
    clarabel_ladder: Sequence[Mapping[str, Any]],
) -> tuple[float, str, float, Mapping[str, Any]]:
    """Solve ``problem``; for Clarabel walk the settings ladder until the status is optimal."""
    attempts: list[dict[str, Any]] = []
    for step in clarabel_ladder if solver == "CLARABEL" else ({},):
        kwargs = {**step, **solver_kwargs}
        if kwargs not in attempts:
            attempts.append(kwargs)
    failures: list[str] = []
    elapsed = 0.0
    for kwargs in attempts:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                problem.solve(solver=solver, **kwargs)
        except cp.error.SolverError as exc:
            elapsed += time.perf_counter() - t0
            failures.append(f"{kwargs}: solver error ({exc})")
            continue
        elapsed += time.perf_counter() - t0
        if problem.status == cp.OPTIMAL:
            return float(problem.value), problem.status, elapsed, MappingProxyType(kwargs)
        failures.append(f"{kwargs}: status {problem.status!r}")
    raise ReferenceSolveError(
        f"cvxpy solver {solver} did not reach status 'optimal'; attempts:\n  "
        + "\n  ".join(failures)
        + "\nloosen the tolerances via solver kwargs (e.g. tol_gap_abs, tol_gap_rel, tol_feas "
        "for CLARABEL) or try another solver"
    )


def _split_intercept(
    W: np.ndarray, d: int, scaling: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(weights, intercepts) of a solution on the augmented rows (zeros without one)."""
    if scaling is None:
        return W, np.zeros(W.shape[1])
    return W[:d], scaling * W[d]


def _objective(
    Xs, ys, W, b, Omega, lam, loss, gamma, scaling: float | None, ridge: float = 0.0
) -> float:
    if scaling is None:
        return primal_objective(Xs, ys, W, Omega, lam, loss, gamma, ridge=ridge)
    return primal_objective(
        Xs, ys, W, Omega, lam, loss, gamma, intercept=b, intercept_scaling=scaling, ridge=ridge
    )


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


def solve_fixed_sigma(
    Xs: Sequence[Any],
    ys: Sequence[Any],
    Sigma: Any,
    lam: float,
    loss: str = "hinge",
    gamma: float = 1.0,
    solver: str | None = None,
    *,
    fit_intercept: bool = False,
    intercept_scaling: float = 1.0,
    ridge: float = 0.0,
    **solver_kwargs: Any,
) -> ReferenceSolution:
    """Minimise ``P(W; Sigma^{-1})`` over ``W`` for a fixed task covariance ``Sigma``.

    ``Omega = Sigma^{-1} = L L^T`` with ``L = V diag(s^{-1/2})`` from the eigendecomposition
    ``Sigma = V diag(s) V^T``; the regulariser is written ``(lam / 2) ||W L||_F^2`` (plus
    ``(lam / 2) ridge ||W||_F^2``).

    Parameters
    ----------
    Xs, ys : sequence
        Per-task data, see :func:`primal_objective`.  ``Xs[t]`` may be scipy sparse.
    Sigma : array_like of shape (m, m)
        Symmetric positive definite task covariance.
    lam : float
        Regularisation strength, finite and > 0.
    loss : {"hinge", "smoothed_hinge", "squared", "logistic"}, default "hinge"
        Loss function.
    gamma : float, default 1.0
        Smoothing parameter of ``"smoothed_hinge"``.
    solver : str, optional
        cvxpy solver name; default ``"CLARABEL"`` (see :data:`CLARABEL_SETTINGS_FIXED`).  Avoid
        ``"HIGHS"``: with cvxpy 1.9 / HiGHS 1.16 its QP path was observed to report
        ``optimal`` at ``W = 0`` for a hinge problem whose true optimum is far from 0.
    fit_intercept : bool, default False
        Also fit one intercept per task, liblinear's way (see the module docstring): the
        constant feature ``intercept_scaling`` is appended to every ``Xs[t]``.
    intercept_scaling : float, default 1.0
        Value of that feature (> 0).
    ridge : float, default 0.0
        Weight ``rho >= 0`` of ``(lam / 2) rho ||W||_F^2`` (see the module docstring).
    **solver_kwargs
        Passed to ``cvxpy.Problem.solve``; for Clarabel they override every ladder step.

    Returns
    -------
    ReferenceSolution
        ``Sigma`` is the (symmetrised) given matrix.

    Raises
    ------
    ValueError
        On invalid inputs (the message names the offending argument).
    ReferenceSolveError
        If the solver fails or its status is not ``"optimal"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.standard_normal((20, 3)) for _ in range(2)]
    >>> ys = [np.where(X @ np.ones(3) >= 0, 1.0, -1.0) for X in Xs]
    >>> sol = solve_fixed_sigma(Xs, ys, np.eye(2) / 2, lam=0.1)
    >>> sol.W.shape, sol.status
    ((3, 2), 'optimal')
    >>> bool(abs(sol.objective - sol.solver_objective) < 1e-7)
    True
    >>> solve_fixed_sigma(Xs, ys, np.eye(2) / 2, lam=0.1, fit_intercept=True).intercept.shape
    (2,)
    """
    lam = _check_positive_scalar(lam, "lam")
    ridge = _check_ridge(ridge)
    loss, gamma = _check_loss(loss, gamma)
    Xs_v, ys_v, d = _validate_data(Xs, ys, loss)
    m = len(Xs_v)
    scaling = _check_intercept_scaling(fit_intercept, intercept_scaling)
    Xs_fit = Xs_v if scaling is None else _augment(Xs_v, scaling)
    solver = _check_solver("CLARABEL" if solver is None else solver)
    Sigma = _check_square(Sigma, m, "Sigma")
    vals, vecs = _spd_eigh(Sigma, "Sigma")
    Sigma = 0.5 * (Sigma + Sigma.T)
    L = vecs / np.sqrt(vals)  # Omega = L @ L.T
    Omega = (vecs / vals) @ vecs.T

    W = cp.Variable((Xs_fit[0].shape[1], m))
    objective = _data_loss_expr(Xs_fit, ys_v, W, loss, gamma) + (lam / 2) * cp.sum_squares(W @ L)
    if ridge > 0.0:
        objective = objective + (lam * ridge / 2) * cp.sum_squares(W)
    problem = cp.Problem(cp.Minimize(objective))
    solver_obj, status, elapsed, used = _run(
        problem, solver, solver_kwargs, CLARABEL_SETTINGS_FIXED
    )

    W_val, b = _split_intercept(np.asarray(W.value, dtype=np.float64), d, scaling)
    return ReferenceSolution(
        W=_frozen(W_val),
        Sigma=_frozen(Sigma),
        objective=_objective(Xs_v, ys_v, W_val, b, Omega, lam, loss, gamma, scaling, ridge),
        solver_objective=solver_obj,
        solver=solver,
        status=status,
        solve_time=elapsed,
        solver_options=used,
        intercept=_frozen(b),
    )


def solve_joint(
    Xs: Sequence[Any],
    ys: Sequence[Any],
    lam: float,
    loss: str = "hinge",
    gamma: float = 1.0,
    eps: float = 1e-6,
    solver: str = "CLARABEL",
    *,
    fit_intercept: bool = False,
    intercept_scaling: float = 1.0,
    ridge: float = 0.0,
    **solver_kwargs: Any,
) -> ReferenceSolution:
    """Jointly minimise over ``(W, Sigma)`` with ``Sigma >= eps I`` and ``tr(Sigma) = 1``.

    Solves ``min_{W, Sigma} sum_t mean_i l(y_ti, w_t^T x_ti) + (lam / 2) tr(W Sigma^{-1} W^T)``
    (``+ (lam / 2) ridge ||W||_F^2``: still jointly convex) as an SDP via
    ``cvxpy.matrix_frac(W.T, Sigma)``.

    Parameters
    ----------
    Xs, ys : sequence
        Per-task data, see :func:`primal_objective`.  ``Xs[t]`` may be scipy sparse.
    lam : float
        Regularisation strength, finite and > 0.
    loss : {"hinge", "smoothed_hinge", "squared", "logistic"}, default "hinge"
        Loss function.
    gamma : float, default 1.0
        Smoothing parameter of ``"smoothed_hinge"``.
    eps : float, default 1e-6
        Lower bound on the eigenvalues of ``Sigma``; requires ``0 < eps`` and ``eps * m < 1``.
    solver : str, default "CLARABEL"
        cvxpy solver name (must support SDPs; SCS is markedly less accurate).  Clarabel uses
        :data:`CLARABEL_SETTINGS_JOINT`.
    fit_intercept : bool, default False
        Also fit one intercept per task, liblinear's way (see the module docstring); the
        intercepts then also inform the optimal ``Sigma``.
    intercept_scaling : float, default 1.0
        Value of the constant feature (> 0).
    ridge : float, default 0.0
        Weight ``rho >= 0`` of ``(lam / 2) rho ||W||_F^2`` (see the module docstring).
    **solver_kwargs
        Passed to ``cvxpy.Problem.solve``; for Clarabel they override every ladder step.

    Returns
    -------
    ReferenceSolution
        ``Sigma`` is the solver's optimal (symmetrised) covariance; ``objective`` is
        ``primal_objective`` at ``(W, inv(Sigma))``.

    Raises
    ------
    ValueError
        On invalid inputs (the message names the offending argument).
    ReferenceSolveError
        If the solver fails or its status is not ``"optimal"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.standard_normal((15, 3)) for _ in range(3)]
    >>> ys = [X @ np.ones(3) for X in Xs]
    >>> sol = solve_joint(Xs, ys, lam=0.1, loss="squared")
    >>> sol.Sigma.shape, bool(abs(np.trace(sol.Sigma) - 1) < 1e-8)
    ((3, 3), True)
    """
    lam = _check_positive_scalar(lam, "lam")
    ridge = _check_ridge(ridge)
    loss, gamma = _check_loss(loss, gamma)
    Xs_v, ys_v, d = _validate_data(Xs, ys, loss)
    m = len(Xs_v)
    eps = _check_positive_scalar(eps, "eps")
    if eps * m >= 1.0:
        raise ValueError(f"eps must satisfy eps * m < 1 (eps={eps!r}, m={m})")
    scaling = _check_intercept_scaling(fit_intercept, intercept_scaling)
    Xs_fit = Xs_v if scaling is None else _augment(Xs_v, scaling)
    solver = _check_solver(solver)

    W = cp.Variable((Xs_fit[0].shape[1], m))
    S = cp.Variable((m, m), symmetric=True)
    objective = _data_loss_expr(Xs_fit, ys_v, W, loss, gamma) + (lam / 2) * cp.matrix_frac(W.T, S)
    if ridge > 0.0:
        objective = objective + (lam * ridge / 2) * cp.sum_squares(W)
    constraints = [S >> eps * np.eye(m), cp.trace(S) == 1]
    problem = cp.Problem(cp.Minimize(objective), constraints)
    solver_obj, status, elapsed, used = _run(
        problem, solver, solver_kwargs, CLARABEL_SETTINGS_JOINT
    )

    W_val, b = _split_intercept(np.asarray(W.value, dtype=np.float64), d, scaling)
    S_val = np.asarray(S.value, dtype=np.float64)
    S_val = 0.5 * (S_val + S_val.T)
    vals, vecs = np.linalg.eigh(S_val)
    if vals[0] <= 0.0:
        raise ReferenceSolveError(
            f"solver returned a Sigma that is not positive definite (min eigenvalue {vals[0]:.3e})"
        )
    Omega = (vecs / vals) @ vecs.T
    return ReferenceSolution(
        W=_frozen(W_val),
        Sigma=_frozen(S_val),
        objective=_objective(Xs_v, ys_v, W_val, b, Omega, lam, loss, gamma, scaling, ridge),
        solver_objective=solver_obj,
        solver=solver,
        status=status,
        solve_time=elapsed,
        solver_options=used,
        intercept=_frozen(b),
    )
