"""MOCHA in exact dual-kernel form: Gram blocks only, no explicit ``w`` (small ``n``).

MOCHA's dual (DESIGN.md section 2) touches the data only through inner products. With
``beta_j = a_j / n_s`` for row ``j`` of task ``s`` (so ``b_s = X_s^T a_s / n_s = sum_j beta_j
x_j``, the rows of MOCHA's ``B``) and ``w_t(alpha) = (Sigma B)_t / lam``:

- margins: ``x_i.w_t = (1/lam) sum_s Sigma_ts sum_{j in s} beta_j K_ij = (U Sigma)_{it} / lam``
  with ``U[:, s] = K[:, s] beta_s`` (``N x m``, ``O(N^2)`` per round);
- the task Gram ``M = B B^T`` (``m x m``): ``M_ts = beta_t^T K_ts beta_s = (B_mat^T U)_ts``;
- the quadratic term ``(lam/2) tr(W Omega W^T) = tr(Sigma M) / (2 lam) = (1/2) sum_i beta_i
  x_i.w_t(i)``, the same number in the primal and the dual, as in
  :func:`fmtl.federated.mocha.certificates`;
- the Sigma-step needs ``A = W^T W`` (tasks x tasks) ``= Sigma M Sigma / lam^2``: with
  ``M = L L^T`` (eigendecomposition, ``m x m``) it is ``F F^T`` for ``F = Sigma L / lam``, and
  :func:`fmtl.relationships.omega_update` applied to ``F`` is MOCHA's step exactly;
- the joint bound uses ``tr(B B^T) = tr M`` and ``lambda_max(B B^T) = lambda_max(M)``.

Local solves are :func:`fmtl.solvers.kernel_sdca.kernel_sdca_round`: the linear solver's
iteration with the node's margins kept incrementally (``||x_i||^2 -> K_ii``). With the linear
kernel and the same ``random_state`` the iterates are the linear :func:`fmtl.federated.mocha`'s
up to rounding (same coordinate orders, work draws and drops).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from .._random import rng_from
from ..losses import Loss, get_loss
from ..relationships import omega_update
from ..solvers._packing import _stacked_csr
from ..solvers.kernel_sdca import kernel_sdca_round, task_margins, task_products
from ._loop import (
    DEBUG,
    PARALLEL_MIN_WORK,
    as_tasks,
    check_dual_feasible,
    check_lam,
    check_positive_int,
    conjugate_increase,
    local_gap_columns,
    numba_threads,
    restore_failed_blocks,
)
from .engine import DualEngine, run_engine
from .history import History
from .mocha import check_schedule, initial_sigma, symmetric_with_precision
from .systems import SystemsModel, SystemsRuntime

__all__ = [
    "KERNELS",
    "MAX_SAMPLES",
    "KernelMochaResult",
    "decision_function",
    "kernel_mocha",
    "predict",
]

KERNELS: tuple[str, ...] = ("linear", "rbf", "poly", "polynomial", "laplacian", "cosine")
"""Kernel names accepted by :func:`kernel_mocha` (positive semi-definite ones of
:func:`sklearn.metrics.pairwise.pairwise_kernels`)."""

MAX_SAMPLES: int = 10_000
"""Default cap on the total number of training rows: the dense Gram matrix takes
``8 N^2`` bytes (800 MB at 10,000 rows) and each round costs ``O(N^2)``."""

_PSD_CHECK_MAX = 2_000  # a callable kernel's Gram is checked PSD (eigvalsh) up to this N


@dataclass
class KernelMochaResult:
    """What :func:`kernel_mocha` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    dual_coef : ndarray of shape (n_samples_total,)
        Dual variables ``alpha``, stacked task after task (as :class:`MochaResult`'s).
    sigma, omega : ndarray of shape (n_tasks, n_tasks)
        Final relationship and its inverse (the dual is the W-step solution for them).
    expansion_coef : ndarray of shape (n_samples_total, n_tasks)
        ``c[j, t] = Sigma[t, s(j)] alpha_j / (n_s lam)``: task ``t``'s decision function is
        ``f_t(x) = sum_j c[j, t] k(x, x_j)``.
    task_gram : ndarray of shape (n_tasks, n_tasks)
        ``M = B B^T`` in feature space (``M_ts = b_t.b_s``).
    history : History
        One record per evaluated federated round (``primal``, ``dual``, ``gap``,
        ``rel_gap``, ``rho``, and ``joint_dual``, ``joint_gap`` for a learned Sigma).
    X_fit : ndarray or sparse matrix of shape (n_samples_total, n_features)
        Training rows, stacked task after task (needed to evaluate the kernel).
    offsets : ndarray of int
        Task ``t`` owns rows ``offsets[t]:offsets[t+1]``.
    kernel : str or callable
        The fit's kernel.
    kernel_params : dict
        The kernel's keyword arguments.
    lam : float
        The fit's regularisation strength.
    loss : Loss
        The fit's loss.
    never_reported : ndarray of int, default=empty
        Nodes that returned nothing in any round.

    Raises
    ------
    TypeError
        If a field other than ``never_reported`` is missing (dataclass constructor).

    See Also
    --------
    kernel_mocha : Produces it.
    decision_function : Evaluates its task functions.
    predict : Its labels or predictions.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import kernel_mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(10, 2)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> res = kernel_mocha(Xs, ys, lam=0.1, kernel="rbf", outer_iters=2, inner_iters=3,
    ...                    random_state=0)
    >>> res.dual_coef.shape, res.sigma.shape, res.expansion_coef.shape, res.X_fit.shape
    ((20,), (2, 2), (20, 2), (20, 2))
    >>> res.n_tasks, res.offsets.tolist(), bool(np.allclose(res.sigma @ res.omega, np.eye(2)))
    (2, [0, 10, 20], True)
    """

    dual_coef: np.ndarray
    sigma: np.ndarray
    omega: np.ndarray
    expansion_coef: np.ndarray
    task_gram: np.ndarray
    history: History
    X_fit: Any
    offsets: np.ndarray
    kernel: str | Callable
    kernel_params: dict
    lam: float
    loss: Loss
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_tasks(self) -> int:
        return self.offsets.shape[0] - 1

    def decision_function(self, X, task_index) -> np.ndarray:
        """See :func:`decision_function`."""
        return decision_function(self, X, task_index)

    def predict(self, X, task_index) -> np.ndarray:
        """See :func:`predict`."""
        return predict(self, X, task_index)

    def linear_coef(self) -> np.ndarray:
        """Task models ``W^T`` (``n_tasks x n_features``) for the linear kernel only.

        Equal to :class:`MochaResult`'s ``coef`` (``Sigma B / lam``) for the same ``alpha``.
        """
        if self.kernel != "linear":
            raise ValueError(f"linear_coef needs kernel='linear', the fit used {self.kernel!r}")
        X = self.X_fit
        out = X.T @ self.expansion_coef
        return np.ascontiguousarray(np.asarray(out).T)


def _check_kernel(kernel, kernel_params) -> tuple[str | Callable, dict]:
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(
                f"kernel={kernel!r} is unknown; expected one of {KERNELS} or a callable"
            )
    elif not callable(kernel):
        raise ValueError(
            f"kernel must be one of {KERNELS} or a callable k(X, Y) -> Gram, got {kernel!r}"
        )
    if kernel_params is None:
        kernel_params = {}
    if not isinstance(kernel_params, dict) or not all(isinstance(k, str) for k in kernel_params):
        raise ValueError(
            f"kernel_params must be None or a dict of keyword arguments, got {kernel_params!r}"
        )
    kernel_params = dict(kernel_params)
    if isinstance(kernel, str) and kernel != "linear":
        # the parameter ranges where these kernels are positive semi-definite
        g = kernel_params.get("gamma")
        if g is not None and not (_is_real(g) and np.isfinite(g) and g > 0):
            raise ValueError(f"kernel_params['gamma'] must be a positive number, got {g!r}")
        if kernel in ("poly", "polynomial"):
            deg = kernel_params.get("degree", 3)
            if isinstance(deg, bool) or not (
                _is_real(deg) and deg >= 1 and float(deg).is_integer()
            ):
                raise ValueError(f"kernel_params['degree'] must be an integer >= 1, got {deg!r}")
            c0 = kernel_params.get("coef0", 1)
            if not (_is_real(c0) and np.isfinite(c0) and c0 >= 0):
                raise ValueError(f"kernel_params['coef0'] must be a number >= 0, got {c0!r}")
    return kernel, kernel_params


def _is_real(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float | np.integer | np.floating)


def _canonical(X):
    """A sparse ``X`` as canonical float64 CSR (duplicate entries summed; no copy when it
    already is): scikit-learn's ``rbf_kernel`` computes row norms from the stored values,
    which a non-canonical CSR (two entries at one position) gets wrong. Dense input passes
    through."""
    return _stacked_csr([X]) if sp.issparse(X) else X


def _gram(kernel, kernel_params: dict, X, Y=None) -> np.ndarray:
    """``k(X, Y)`` as a C-contiguous float64 array (``Y=None``: ``k(X, X)``)."""
    from sklearn.metrics.pairwise import pairwise_kernels

    X = _canonical(X)
    Y = None if Y is None else _canonical(Y)

    if callable(kernel):
        G = kernel(X, X if Y is None else Y, **kernel_params)
    else:
        try:
            G = pairwise_kernels(X, Y, metric=kernel, filter_params=False, **kernel_params)
        except TypeError as e:
            raise ValueError(
                f"kernel_params {kernel_params!r} do not fit kernel={kernel!r}: {e}"
            ) from e
    try:
        G = np.asarray(G.toarray() if sp.issparse(G) else G, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"kernel returned something that is not a numeric matrix: {e}") from e
    n_y = X.shape[0] if Y is None else Y.shape[0]
    if G.shape != (X.shape[0], n_y):
        raise ValueError(f"kernel returned shape {G.shape}, expected {(X.shape[0], n_y)}")
    if not np.all(np.isfinite(G)):
        raise ValueError("kernel returned NaN or inf (check kernel_params)")
    return np.ascontiguousarray(G)


def _symmetrize(K: np.ndarray, block: int = 1024) -> float:
    """Replace ``K`` by ``(K + K^T) / 2`` in place, block by block (no ``N x N``
    temporaries); returns the largest ``|K_ij - K_ji|`` seen."""
    N = K.shape[0]
    worst = 0.0
    for i in range(0, N, block):
        for j in range(i, N, block):
            a = K[i : i + block, j : j + block]
            b = K[j : j + block, i : i + block].T
            if a.size:
                worst = max(worst, float(np.max(np.abs(a - b))))
            avg = (a + b) / 2.0
            K[i : i + block, j : j + block] = avg
            K[j : j + block, i : i + block] = avg.T
    return worst


def _train_gram(kernel, kernel_params: dict, X) -> np.ndarray:
    K = _gram(kernel, kernel_params, X)
    if callable(kernel) or not K.flags.writeable:
        K = K.copy()  # symmetrised in place below: never touch the caller's array
    scale = float(np.max(np.abs(np.diag(K)), initial=0.0))
    asym = _symmetrize(K)
    if asym > 1e-8 * max(scale, np.finfo(float).tiny):
        raise ValueError(
            f"kernel must be symmetric: k(X, X) differs from its transpose by {asym:.3g}"
        )
    if np.any(np.diag(K) < -1e-12 * max(scale, 1.0)):
        raise ValueError("kernel is not positive semi-definite: k(x, x) < 0 for some row")
    # a callable built from a named kernel (the estimators' k + s^2 intercept) is PSD already
    checked = callable(kernel) and not getattr(kernel, "_psd_by_construction", False)
    if checked and 0 < K.shape[0] <= _PSD_CHECK_MAX:
        ev = np.linalg.eigvalsh(K)[0]
        if ev < -1e-8 * max(scale, 1.0):
            raise ValueError(
                f"kernel is not positive semi-definite on the training rows (eigenvalue {ev:.3g})"
            )
    return K


def _stacked_rows(tasks):
    # the training rows as one matrix (dense, or CSR when the tasks are sparse)
    if tasks.sparse:
        N = tasks.offsets[-1]
        return sp.csr_matrix(
            (tasks.data, tasks.indices, tasks.indptr), shape=(N, tasks.n_features)
        )
    return tasks.Xd


class _KernelState:
    """Dual variables, the margins at ``W(alpha)`` and one round of local solves."""

    def __init__(self, K, tasks, loss: Loss, lam: float, record: bool) -> None:
        m = tasks.n_tasks
        self.K, self.tasks, self.loss, self.lam, self.record = K, tasks, loss, lam, record
        self.y = tasks.y
        self.offsets = np.ascontiguousarray(tasks.offsets, dtype=np.int64)
        n = tasks.n_samples
        self.inv_n = np.repeat(1.0 / np.maximum(n, 1), n)
        self.owner = np.repeat(np.arange(m), n)
        self.alpha = np.zeros(self.y.shape[0])
        self.steps_done = np.zeros(m, dtype=np.int64)
        self.gap0 = np.empty(m)
        self.gap1 = np.empty(m)
        self.progress = np.full(m, np.nan)
        self.failed = np.zeros(m, dtype=np.bool_)
        self.parallel = (
            m >= 2 and numba.get_num_threads() >= 2 and float(np.sum(n * n)) >= PARALLEL_MIN_WORK
        )
        self.U = np.zeros((self.y.shape[0], m))

    @property
    def beta(self) -> np.ndarray:
        return self.alpha * self.inv_n

    def refresh(self) -> None:
        """``U = K B_mat`` after alpha changed (``O(N^2)``)."""
        self.U = task_products(self.K, self.beta, self.offsets)

    def margins(self, Sigma: np.ndarray) -> np.ndarray:
        return task_margins(self.U, Sigma, self.offsets, self.lam)

    def task_gram(self) -> np.ndarray:
        """``M = B B^T``: ``M_ts = sum_{i in t} beta_i U[i, s]``."""
        m = self.tasks.n_tasks
        P = self.beta[:, None] * self.U
        M = np.zeros((m, m))
        np.add.at(M, self.owner, P)
        return (M + M.T) / 2.0

    def run(self, margins, sigma_diag, rho, steps, seeds, active, theta, *_) -> None:
        """One round of the nodes' local solves in kernel form (the engine's client-pool
        call; CoCoA's check interval and the feedback switch do not apply here)."""
        alpha_before = self.alpha.copy()
        kernel_sdca_round(
            self.K,
            self.y,
            self.offsets,
            self.alpha,
            margins,
            np.array(sigma_diag, dtype=np.float64),
            float(rho),
            self.lam,
            self.loss.code,
            self.loss.param,
            steps,
            seeds,
            active,
            float(theta),
            self.record,
            self.steps_done,
            self.gap0,
            self.gap1,
            parallel=self.parallel,
        )
        # as DualRound: a node whose update is not finite failed; undo it (the engine
        # reports it dropped)
        self.failed[:] = False
        restore_failed_blocks(self.alpha, alpha_before, self.offsets, self.failed)
        self.steps_done[self.failed] = 0
        if self.record:
            self._local_progress(alpha_before, margins, sigma_diag, rho, active & ~self.failed)
        if DEBUG:
            check_dual_feasible(self.alpha, self.y, self.loss)

    def evaluate(self, margins) -> tuple[np.ndarray, np.ndarray]:
        """Per-task mean loss at the margins and mean ``-l*(-alpha)``."""
        m, n = self.tasks.n_tasks, self.tasks.n_samples
        denom = np.maximum(n, 1)
        loss_mean = (
            np.bincount(self.owner, weights=self.loss.value(self.y, margins), minlength=m) / denom
        )
        conj_mean = (
            np.bincount(
                self.owner, weights=self.loss.neg_conjugate(self.y, self.alpha), minlength=m
            )
            / denom
        )
        return loss_mean, conj_mean

    def arrays(self) -> dict:
        return {"alpha": self.alpha}

    def load_arrays(self, arrays: dict) -> None:
        self.alpha[:] = arrays["alpha"]
        self.refresh()

    def _local_progress(self, alpha_before, margins, sigma_diag, rho, active) -> None:
        # G_t(da_t) - G_t(0) in kernel form: w_t.db_t = sum_i z_i d_beta_i and
        # ||db_t||^2 = d_beta_t^T K_tt d_beta_t
        m = self.tasks.n_tasks
        conj = conjugate_increase(self.loss, self.tasks, self.alpha, alpha_before)
        dbeta = (self.alpha - alpha_before) * self.inv_n
        lin = np.bincount(self.owner, weights=margins * dbeta, minlength=m)
        sq = np.zeros(m)
        off = self.offsets
        for t in range(m):
            db = dbeta[off[t] : off[t + 1]]
            if db.size and np.any(db):
                sq[t] = db @ self.K[off[t] : off[t + 1], off[t] : off[t + 1]] @ db
        quad = rho * np.asarray(sigma_diag) / (2.0 * self.lam) * sq
        self.progress[:] = conj - lin - quad
        self.progress[~np.asarray(active, dtype=bool)] = np.nan

    def gap_columns(self) -> dict:
        return local_gap_columns(self) if self.record else {}


def _sigma_step(M: np.ndarray, Sigma: np.ndarray, lam: float, sigma_floor: float) -> np.ndarray:
    # omega_update(W^T) needs only A = W^T W = Sigma M Sigma / lam^2 = F F^T, F = Sigma L / lam
    e, V = np.linalg.eigh(M)
    L = V * np.sqrt(np.clip(e, 0.0, None))
    Sigma_new, _ = omega_update(Sigma @ L / lam, sigma_floor)
    return Sigma_new


class _KernelEngine(DualEngine):
    """MOCHA's engine in kernel form: the model is the margins ``z`` of every training row
    under its own task, ``B`` exists only through ``U = K B_mat`` (held by the pool)."""

    def __init__(self, state: _KernelState, Sigma, lam, runtime, rng, **kw) -> None:
        super().__init__(np.zeros((0, 0)), Sigma, lam, runtime, rng, **kw)
        self.state = state

    def _update_model(self) -> None:
        self.model = self.state.margins(self.Sigma)

    def _aggregate(self, dB, scale) -> None:
        self.state.refresh()  # the duals changed in place: U = K B_mat

    def _sigma_step(self):
        return _sigma_step(self.state.task_gram(), self.Sigma, self.lam, self.sigma_floor)

    def _wb(self) -> float:
        return float(self.state.beta @ self.model)

    def _gram_terms(self) -> tuple[float, float]:
        M = self.state.task_gram()
        return float(np.trace(M)), float(np.linalg.eigvalsh(M)[-1])

    def arrays(self) -> dict:
        return {"Sigma": self.Sigma}

    def load_arrays(self, arrays: dict) -> None:
        self.Sigma = np.array(arrays["Sigma"])


def kernel_mocha(
    Xs: Sequence[Any],
    ys: Sequence[Any],
    lam: float,
    loss: str | Loss = "hinge",
    *,
    kernel: str | Callable = "linear",
    kernel_params: dict | None = None,
    gamma: float = 1.0,
    relationship: str = "learned",
    sigma: np.ndarray | None = None,
    outer_iters: int = 10,
    inner_iters: int = 50,
    local_frac: float = 1.0,
    local_theta: float = 0.0,
    tol: float = 0.0,
    outer_tol: float = 0.0,
    sigma_floor: float = 1e-6,
    sigma_prime: str | float = "gershgorin",
    random_state: int | np.random.Generator | None = None,
    n_threads: int | None = None,
    systems: SystemsModel | None = None,
    record_local_gaps: bool | None = None,
    eval_every: int = 1,
    callback: Callable[[dict], Any] | None = None,
    max_samples: int = MAX_SAMPLES,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
) -> KernelMochaResult:
    """Fit MOCHA with a kernel, exactly, in the dual (Gram blocks only, no explicit ``w``).

    Minimises ``sum_t (1/n_t) sum_i l(y_ti, f_t(x_ti)) + (lam/2) tr(W Omega W^T)`` over task
    functions ``f_t = <w_t, phi(.)>`` in the kernel's feature space (and over ``Sigma =
    Omega^{-1}``, ``Sigma >= sigma_floor I``, ``tr Sigma = 1`` when
    ``relationship="learned"``). The iteration is :func:`fmtl.federated.mocha`'s, argument for
    argument: the same local subproblems, ``sigma'``, closed-form Sigma-step, systems model
    (work draws, drops, estimated time) and certificates, with every inner product
    ``x_i.x_j`` replaced by ``k(x_i, x_j)``; for ``kernel="linear"`` and the same
    ``random_state`` it reproduces :func:`~fmtl.federated.mocha` to rounding. The dense
    ``N x N`` Gram matrix of all ``N`` training rows is formed once (memory ``8 N^2``
    bytes) and each federated round costs ``O(N^2)``: this is for small ``N``.

    Parameters
    ----------
    Xs, ys : sequence of arrays
        Per-task design matrices (dense or scipy sparse, ``n_t x d``) and targets
        (``{-1, +1}`` for classification losses).
    lam : float
        Regularisation strength ``lambda > 0``.
    loss : {"hinge", "smoothed_hinge", "squared", "logistic"} or Loss, default="hinge"
    kernel : {"linear", "rbf", "poly", "polynomial", "laplacian", "cosine"} or callable
        A name understood by :func:`sklearn.metrics.pairwise.pairwise_kernels`, or a
        callable ``k(X, Y, **kernel_params)`` returning the ``(len(X), len(Y))`` Gram
        matrix (as scikit-learn's ``SVC(kernel=callable)``). It must be positive
        semi-definite (a callable's training Gram is checked for ``N <= 2000``).
    kernel_params : dict, optional
        Keyword arguments of the kernel, e.g. ``{"gamma": 0.5}`` for ``"rbf"`` or
        ``{"degree": 3, "coef0": 1}`` for ``"poly"``.
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"`` (not a kernel parameter).
    relationship : {"learned", "fixed"}, default="learned"
        ``"fixed"`` uses ``sigma`` (default ``I / m``) and never updates it.
    sigma : ndarray of shape (m, m), optional
        Fixed relationship (symmetric positive definite).
    outer_iters, inner_iters : int, default=10, 50
        Outer rounds (each after the first starts with the Sigma-step) and federated rounds
        per W-step.
    local_frac : float, default=1.0
        Local SDCA steps per node and round: ``floor(local_frac * n_t)`` (at least 1),
        unless ``systems`` draws them.
    local_theta : float, default=0.0
        If > 0, a node also stops at the end of a pass once its local gap is
        ``<= local_theta`` times its starting gap.
    tol : float, default=0.0
        Stop a W-step once the relative duality gap for the current Sigma is ``<= tol``.
    outer_tol : float, default=0.0
        Stop once an outer round decreases the primal by ``<= outer_tol`` relative.
    sigma_floor : float, default=1e-6
        ``eps`` of ``Sigma >= eps I`` (learned relationship), ``0 <= eps < 1/m``.
    sigma_prime : {"gershgorin", "spectral"} or float, default="gershgorin"
        The subproblems' safety parameter, as in :func:`~fmtl.federated.mocha`.
    random_state : int, Generator or None
        Seeds the work draws, drops and coordinate orders (the same streams as
        :func:`~fmtl.federated.mocha`).
    n_threads : int, optional
        Numba threads for the local solves (results do not depend on it).
    systems : SystemsModel, optional
        Systems heterogeneity, drops and the cost model (flops factor 8, as MOCHA).
    record_local_gaps : bool, optional
        Record each node's local gap before/after its round and its subproblem progress;
        default: on when ``systems`` is given.
    eval_every : int, default=1
        Evaluate certificates every this many rounds (and at the end of each W-step).
    callback : callable, optional
        Called with each History record.
    max_samples : int, default=10_000
        Refuse more than this many training rows in total (the Gram matrix is dense); raise
        it deliberately for larger problems if memory allows.
    checkpoint_dir, checkpoint_every, resume
        Checkpoint / resume, as :func:`~fmtl.federated.mocha` (the checkpoint holds the
        dual variables, Sigma, the RNG, the systems counters and History; the Gram matrix
        is recomputed). A callable kernel is identified by its name only.

    Returns
    -------
    KernelMochaResult
        ``dual_coef``, ``sigma``, ``omega``, ``history`` and ``expansion_coef``; evaluate
        the task functions with :func:`decision_function` / :func:`predict`.

    Raises
    ------
    ValueError
        On invalid input; the message names the argument: an unknown ``loss`` or bad
        ``gamma``; ``lam`` not positive and finite; an unknown ``kernel``, or
        ``kernel_params`` that are not a dict, do not fit the kernel or leave its positive
        semi-definite range; a kernel whose Gram matrix is not finite, of the wrong shape,
        not symmetric or not positive semi-definite; ``max_samples``, ``outer_iters``,
        ``inner_iters`` or ``eval_every`` not an integer >= 1; ``local_frac`` not positive
        and finite; ``local_theta`` not in [0, 1); ``relationship`` not ``"learned"`` or
        ``"fixed"``; ``tol`` or ``outer_tol`` negative; ``sigma_floor`` not in
        ``[0, 1/n_tasks)`` (learned relationship); a ``sigma`` of the wrong shape, not
        finite, not symmetric or not positive definite; an unknown ``sigma_prime`` string
        or a non-positive number; ``Xs`` a PackedTasks or ``ys`` None; invalid data (no
        tasks, mismatched lengths, non-2-D or non-finite arrays, labels not in {-1, +1}
        for a classification loss); more than ``max_samples`` rows in total; or a
        ``systems`` model that does not fit the tasks (``drop_prob`` length,
        ``dead_nodes``).
    TypeError
        If ``sigma_floor`` is not a number, ``record_local_gaps`` not a bool or None,
        ``sigma`` not numeric, ``sigma_prime`` neither a string nor a number, ``systems``
        not a :class:`SystemsModel`, or the data not numeric.
    RuntimeError
        If a node fails its local solve more than ``systems.max_failures`` times.

    See Also
    --------
    KernelMochaResult : The result.
    decision_function : Evaluates the fitted task functions.
    predict : Labels (classification) or predictions (squared loss).
    fmtl.federated.mocha : The linear (primal-model) MOCHA it reproduces.

    Notes
    -----
    With ``beta_j = alpha_j / n_s`` for row ``j`` of task ``s`` and the Gram matrix ``K``,
    row ``i`` of task ``t`` has margin ``f_t(x_i) = (1/lam) sum_s Sigma_ts sum_{j in s}
    beta_j K_ij``, the regulariser is ``(lam/2) tr(W Omega W^T) = tr(Sigma M) / (2 lam)``
    with ``M_ts = beta_t^T K_ts beta_s`` (``M = B B^T``), and the Sigma-step's ``W^T W`` is
    ``Sigma M Sigma / lam^2``. A local step on ``alpha_i`` moves node ``t``'s local margins by
    ``sigma' Sigma_tt delta K[t-rows, i] / (lam n_t)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.kernel_mocha import decision_function, kernel_mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.uniform(-1, 1, size=(40, 2)) for _ in range(3)]
    >>> ys = [np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0) for X in Xs]  # XOR per task
    >>> res = kernel_mocha(Xs, ys, lam=1e-3, loss="squared", kernel="rbf",
    ...                    kernel_params={"gamma": 2.0}, outer_iters=3, inner_iters=200,
    ...                    tol=1e-8, random_state=0)
    >>> bool(res.history["rel_gap"][-1] <= 1e-8)
    True
    >>> scores = [decision_function(res, X, t) for t, X in enumerate(Xs)]
    >>> acc = np.mean([np.mean(np.sign(s) == y) for s, y in zip(scores, ys)])
    >>> bool(acc > 0.9)
    True
    """
    loss = get_loss(loss, gamma)
    lam = check_lam(lam)
    kernel, kernel_params = _check_kernel(kernel, kernel_params)
    max_samples = check_positive_int("max_samples", max_samples)
    outer_iters, inner_iters, eval_every, local_frac, tol, outer_tol, record_local_gaps = (
        check_schedule(
            outer_iters, inner_iters, eval_every, local_frac, local_theta, relationship, tol,
            outer_tol, record_local_gaps, sigma_floor, sigma_prime, systems,
        )
    )  # fmt: skip
    if hasattr(Xs, "offsets") or ys is None:
        raise ValueError("Xs must be a sequence of per-task arrays and ys their targets")
    tasks = as_tasks(Xs, ys, loss)
    m = tasks.n_tasks
    N = int(tasks.offsets[-1])
    if N > max_samples:
        raise ValueError(
            f"{N} training rows in total exceed max_samples={max_samples}: the dense Gram "
            f"matrix would take {8 * N * N / 1e9:.1f} GB; raise max_samples if that is "
            "intended, or use an explicit feature map (sklearn.kernel_approximation) with mocha"
        )
    learned = relationship == "learned"
    Sigma = initial_sigma(relationship, sigma, sigma_floor, m, accept_lowrank=False)
    X_fit = _stacked_rows(tasks)
    K = _train_gram(kernel, kernel_params, X_fit)
    runtime = SystemsRuntime(systems, tasks.n_samples, local_frac, flops_factor=8.0)
    state = _KernelState(K, tasks, loss, lam, record_local_gaps)
    engine = _KernelEngine(
        state,
        Sigma,
        lam,
        runtime,
        rng_from(random_state),
        learned=learned,
        sigma_floor=sigma_floor,
        sigma_prime=sigma_prime,
        outer_iters=outer_iters,
        inner_iters=inner_iters,
        eval_every=eval_every,
        tol=tol,
        outer_tol=outer_tol,
        theta=local_theta,
        callback=callback,
    )
    ckpt = engine.checkpointer(
        checkpoint_dir,
        checkpoint_every,
        tasks,
        "kernel_mocha",
        random_state,
        lam=lam,
        loss=[loss.name, loss.param],
        kernel=kernel if isinstance(kernel, str) else getattr(kernel, "__qualname__", "?"),
        kernel_params=kernel_params,
        # a callable's name does not say what it computes (two lambdas, the estimators'
        # intercept offset): its Gram matrix does; named kernels keep their old fingerprint
        **({"gram": K} if callable(kernel) else {}),
        relationship=relationship,
        sigma=sigma,
        sigma_floor=sigma_floor,
        sigma_prime=sigma_prime,
        local_frac=local_frac,
        local_theta=local_theta,
        outer_iters=outer_iters,
        inner_iters=inner_iters,
        eval_every=eval_every,
        tol=tol,
        outer_tol=outer_tol,
        systems=systems,
        record_local_gaps=record_local_gaps,
    )
    engine.resume(ckpt, resume, state)
    with numba_threads(n_threads):
        run_engine(engine, state, ckpt)
    Sigma = engine.Sigma
    silent = engine.rec.warn_silent_nodes()
    Sigma, Omega = symmetric_with_precision(Sigma)
    beta = state.beta
    expansion = beta[:, None] * Sigma[state.owner, :] / lam
    return KernelMochaResult(
        dual_coef=state.alpha,
        sigma=Sigma,
        omega=Omega,
        expansion_coef=np.ascontiguousarray(expansion),
        task_gram=state.task_gram(),
        history=engine.rec.history,
        X_fit=X_fit,
        offsets=state.offsets,
        kernel=kernel,
        kernel_params=kernel_params,
        lam=lam,
        loss=loss,
        never_reported=silent,
    )


def _task_rows(task_index, n_rows: int, m: int) -> np.ndarray:
    if isinstance(task_index, bool):
        raise ValueError(
            f"task_index must be an integer or an array of integers, got {task_index!r}"
        )
    if np.ndim(task_index) == 0:
        try:
            t = int(task_index)
        except (TypeError, ValueError) as e:
            raise ValueError(f"task_index must be an integer, got {task_index!r}") from e
        if t != task_index:
            raise ValueError(f"task_index must be an integer, got {task_index!r}")
        idx = np.full(n_rows, t, dtype=np.int64)
    else:
        idx = np.asarray(task_index)
        if idx.shape != (n_rows,) or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"task_index must be an integer or {n_rows} integers (one per row of X)"
            )
        idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= m):
        raise ValueError(
            f"task_index must be in [0, {m}), got values in [{idx.min()}, {idx.max()}]"
        )
    return idx


def decision_function(result: KernelMochaResult, X, task_index) -> np.ndarray:
    """Task functions ``f_t(x) = sum_j expansion_coef[j, t] k(x, x_j)`` at the rows of ``X``.

    The kernel between ``X`` and the training rows is formed (``n x N``) and combined with
    the fit's expansion coefficients.

    Parameters
    ----------
    result : KernelMochaResult
        A fit of :func:`kernel_mocha`.
    X : array_like or sparse matrix of shape (n, n_features)
        Rows to score (a 1-D array is one row).
    task_index : int or array_like of int of shape (n,)
        The task whose function scores each row (one for all rows, or one per row).

    Returns
    -------
    ndarray of shape (n,)
        Margins (classification losses) or predictions (squared loss).

    Raises
    ------
    ValueError
        If ``result`` is not a :class:`KernelMochaResult`; ``X`` is not numeric, not 2-D
        with the fit's number of features, or contains NaN or inf; ``task_index`` is not an
        integer (or ``n`` integers) in ``[0, n_tasks)``; or the kernel returns something
        that is not a finite matrix of shape ``(n, N)`` (or rejects ``kernel_params``).

    See Also
    --------
    predict : Thresholded for classification losses.
    kernel_mocha : The fit.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.kernel_mocha import decision_function, kernel_mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(10, 2)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> res = kernel_mocha(Xs, ys, lam=0.1, kernel="rbf", outer_iters=2, inner_iters=5,
    ...                    random_state=0)
    >>> decision_function(res, Xs[0], 0).shape, decision_function(res, [0.5, 0.0], 1).shape
    ((10,), (1,))
    >>> decision_function(res, Xs[0], 2)
    Traceback (most recent call last):
    ...
    ValueError: task_index must be in [0, 2), got values in [2, 2]
    """
    if not isinstance(result, KernelMochaResult):
        raise ValueError(f"result must be a KernelMochaResult, got {type(result).__name__}")
    if sp.issparse(X):
        X = _canonical(X)
        values = X.data
    else:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"X must be a numeric 2-D array: {e}") from e
        if X.ndim == 1:
            X = X[None, :]
        values = X
    d = result.X_fit.shape[1]
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must be 2-D with {d} features, got shape {X.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("X contains NaN or inf")
    idx = _task_rows(task_index, X.shape[0], result.n_tasks)
    Kx = _gram(result.kernel, result.kernel_params, X, result.X_fit)
    scores = Kx @ result.expansion_coef
    return scores[np.arange(X.shape[0]), idx]


def predict(result: KernelMochaResult, X, task_index) -> np.ndarray:
    """Predict labels or values of the fitted task functions at the rows of ``X``.

    Labels in {-1, +1} (``+1`` where the margin is > 0) for classification losses,
    :func:`decision_function` itself for the squared loss.

    Parameters
    ----------
    result : KernelMochaResult
        A fit of :func:`kernel_mocha`.
    X : array_like or sparse matrix of shape (n, n_features)
        Rows to predict (a 1-D array is one row).
    task_index : int or array_like of int of shape (n,)
        The task whose function predicts each row (one for all rows, or one per row).

    Returns
    -------
    ndarray of shape (n,)
        Labels in {-1.0, +1.0}, or real predictions for the squared loss.

    Raises
    ------
    ValueError
        As :func:`decision_function`: ``result`` not a :class:`KernelMochaResult`; ``X``
        not numeric, not 2-D with the fit's number of features, or not finite;
        ``task_index`` not an integer (or ``n`` integers) in ``[0, n_tasks)``; or a
        kernel result that is not a finite ``(n, N)`` matrix.

    See Also
    --------
    decision_function : The margins before thresholding.
    kernel_mocha : The fit.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated.kernel_mocha import kernel_mocha, predict
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(10, 2)) for _ in range(2)]
    >>> ys = [np.sign(X[:, 0]) for X in Xs]
    >>> res = kernel_mocha(Xs, ys, lam=0.1, kernel="rbf", outer_iters=2, inner_iters=5,
    ...                    random_state=0)
    >>> labels = predict(res, Xs[1], [1] * 10)
    >>> labels.shape, set(labels.tolist()) <= {-1.0, 1.0}
    ((10,), True)
    """
    s = decision_function(result, X, task_index)
    if result.loss.classification:
        return np.where(s > 0, 1.0, -1.0)
    return s
