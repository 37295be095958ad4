"""Speed and scale: fmtl's kernels and solver as ratios against references, each row
measured in one process (medians of repeats, after an untimed warm-up call that absorbs
numba's JIT compilation / cache load and the references' lazy imports).

    python benchmarks/bench_speed.py [--quick] [--out benchmarks/results]

Rows (ratio, target):

1. *SDCA epoch vs liblinear*: one full pass of hinge SDCA on a single task (m = 1,
   ``sigma_diag = [1]``, ``rho = 1``, ``W = 0``, so the local subproblem is the exact SVM
   dual), timing only the ``fmtl.solvers.sdca.sdca_round`` call (serial, ``alpha``/``dB``
   reset and the data packed outside the timer), against scikit-learn's ``LinearSVC``
   (liblinear dual coordinate descent, ``loss="hinge"``, no intercept) on the same problem:
   ``C = 1 / (n lam)``. liblinear refuses ``tol = 0``, so ``tol = 1e-300`` (it never stops
   early), and its time *per pass* is ``(t(max_iter=6) - t(max_iter=1)) / 5``, which
   excludes its data conversion and setup (the raw ``max_iter=1`` time is in the details).
   Each quantity is timed in its own block after an untimed warm-up call (steady state on
   warm data, as liblinear's passes 2-6 are); fmtl's 6-pass time and its time through the
   ``parallel=True`` kernel on one thread are in the details.
   Dense 10,000 x 500 (rows of norm 1) and CSR 100,000 x 10,000 at 1 % density.
   fmtl / liblinear <= 1.
2. *SDCA epoch vs numpy matvec floor*: the same epoch time over the time of ``X @ w`` plus
   ``X.T @ a`` (numpy / scipy, BLAS limited to one thread, as the epoch is serial).
   <= 2.5.
3. *MOCHA vs cvxpy*: ``mocha`` (fixed mean-regularised Sigma, kappa = 1, hinge, stop at a
   certified relative duality gap of 1e-6) against cvxpy's default solver on the same
   problem (a fresh ``cvxpy.Problem`` per repeat, so no warm start or cached
   canonicalisation; cvxpy's 3 repeats also in full mode, it is slow). 30 tasks x 300 x
   100, lam = 1e-4 (20 % of the duals strictly inside their box) and lam = 1e-3 (98 % at
   the bound: an easy regime). cvxpy / fmtl >= 100 ("x faster"); MOCHA's primal must be
   within 1e-5 relative of cvxpy's optimum.
4. *Parallel local solves*: one ``sdca_round`` over 200 tasks with ``parallel=True`` on
   2 numba threads vs 1 (interleaved repeats; serial time in the details; results must be
   bit-identical). speed-up >= 1.7.

Writes ``bench_speed.csv`` and ``bench_speed.png`` (``bench_speed_quick.*`` with
``--quick``, which uses smaller problems: dense 2,000 x 200, CSR 20,000 x 2,000, MOCHA
10 x 100 x 30, 200 tasks x 150 x 50). Repeats: 5 (cvxpy 3, threads 11; 7 in --quick).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import cvxpy as cp
import numba
import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from fmtl.datasets import make_multitask_classification
from fmtl.federated import mocha
from fmtl.federated._loop import numba_threads
from fmtl.losses import get_loss
from fmtl.reference import cvxpy_loss, primal_objective
from fmtl.relationships import mean_regularized_sigma, resolve_sigma_prime
from fmtl.solvers._packing import pack_tasks
from fmtl.solvers.sdca import sdca_round

HINGE = get_loss("hinge")
LIBLINEAR_TOL = 1e-300  # LinearSVC requires tol > 0; this never triggers its stopping rule
LIBLINEAR_ITERS = (1, 6)  # per pass = (t(6) - t(1)) / 5
MOCHA_TOL = 1e-6
PRIMAL_RTOL = 1e-5

COLUMNS = [
    "name",
    "case",
    "fmtl_seconds",
    "reference_seconds",
    "ratio",
    "ratio_definition",
    "target",
    "target_rule",
    "meets_target",
    "repeats",
    "reference_repeats",
    "check",
    "check_ok",
    "details",
]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _labels(X, rng: np.random.Generator, noise: float = 0.3) -> np.ndarray:
    """+-1 labels from a random linear model, margins standardised, Gaussian noise."""
    z = np.asarray(X @ rng.standard_normal(X.shape[1])).ravel()
    z /= max(float(z.std()), np.finfo(float).tiny)
    return np.where(z + noise * rng.standard_normal(z.shape[0]) >= 0.0, 1.0, -1.0)


def dense_problem(n: int, d: int, seed: int = 0):
    """Dense C-contiguous float64 ``X`` (rows of norm 1) and labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(X), _labels(X, rng)


def csr_problem(n: int, d: int, density: float, seed: int = 0):
    """CSR ``X`` with ~``density * d`` entries per row (rows of norm 1) and labels."""
    rng = np.random.default_rng(seed)
    k = max(1, round(density * d))
    cols = rng.integers(0, d, size=n * k)
    indptr = np.arange(0, n * k + 1, k)
    X = sp.csr_matrix((rng.standard_normal(n * k), cols, indptr), shape=(n, d))
    X.sum_duplicates()  # the rare repeated column in a row
    X.sort_indices()
    norms = np.sqrt(np.add.reduceat(X.data**2, X.indptr[:-1]))
    X.data /= np.repeat(norms, np.diff(X.indptr))
    return X, _labels(X, rng)


# --------------------------------------------------------------------------------------------
# timing helpers
# --------------------------------------------------------------------------------------------


class KernelRound:
    """One ``sdca_round`` call on pre-packed tasks (buffers reset outside the timer)."""

    def __init__(self, tasks, lam: float, sigma_diag, rho: float = 1.0, seed: int = 0):
        m, d = tasks.n_tasks, tasks.n_features
        self.tasks, self.lam, self.rho = tasks, float(lam), float(rho)
        self.sigma_diag = np.ascontiguousarray(sigma_diag, dtype=np.float64)
        self.Wt = np.zeros((m, d))
        self.alpha = np.zeros(tasks.y.shape[0])
        self.dB = np.zeros((m, d))
        self.steps_done = np.zeros(m, dtype=np.int64)
        self.gap0, self.gap1 = np.empty(m), np.empty(m)
        self.seeds = np.random.default_rng(seed).integers(
            0, np.iinfo(np.uint64).max, size=m, dtype=np.uint64, endpoint=True
        )
        self.active = np.ones(m, dtype=np.bool_)
        self.check_every = np.zeros(m, dtype=np.int64)
        self._steps: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.alpha[:] = 0.0
        self.dB[:] = 0.0

    def steps(self, passes: int) -> np.ndarray:
        """Per-task step counts for ``passes`` full passes (built once, outside timers)."""
        if passes not in self._steps:
            self._steps[passes] = np.ascontiguousarray(
                passes * self.tasks.n_samples, dtype=np.int64
            )
        return self._steps[passes]

    def run(self, passes: int = 1, parallel: bool = False) -> None:
        """One kernel call: ``passes`` full passes over every task (no early stop)."""
        sdca_round(
            *self.tasks.kernel_args,
            self.alpha,
            self.Wt,
            self.sigma_diag,
            self.rho,
            self.lam,
            HINGE.code,
            HINGE.param,
            self.steps(passes),
            self.seeds,
            self.active,
            0.0,  # theta: no early stop
            self.check_every,
            True,  # feedback
            False,  # record_gaps
            self.dB,
            self.steps_done,
            self.gap0,
            self.gap1,
            parallel=parallel,
        )

    def timed(self, passes: int = 1, parallel: bool = False) -> float:
        """Reset alpha and dB, then time one kernel call of ``passes`` full passes."""
        self.reset()
        self.steps(passes)
        t0 = time.perf_counter()
        self.run(passes, parallel)
        return time.perf_counter() - t0


def liblinear_fit(X, y, C: float, max_iter: int):
    """Wall time of ``LinearSVC.fit`` (dual CD, hinge) with ``max_iter`` passes."""
    clf = LinearSVC(
        C=C,
        loss="hinge",
        dual=True,
        fit_intercept=False,
        tol=LIBLINEAR_TOL,
        max_iter=max_iter,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(X, y)
        el = time.perf_counter() - t0
    return el, clf


def matvec_floor(X, w: np.ndarray, a: np.ndarray) -> float:
    """Time of ``X @ w`` plus ``X.T @ a`` with BLAS on one thread."""
    with threadpool_limits(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        X @ w
        X.T @ a
        return time.perf_counter() - t0


def hinge_primal(X, y, w: np.ndarray, lam: float) -> float:
    z = np.asarray(X @ w).ravel()
    return float(np.mean(np.maximum(0.0, 1.0 - y * z)) + 0.5 * lam * w @ w)


def _med(v) -> float:
    return float(np.median(np.asarray(v, dtype=float)))


def _fmt_s(t: float) -> str:
    if not np.isfinite(t):
        return "nan"
    return f"{t * 1e3:.2f} ms" if t < 1.0 else f"{t:.2f} s"


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _row(name, case, fmtl_s, ref_s, ratio, definition, target, rule, repeats, ref_repeats,
         check, check_ok, details):  # fmt: skip
    meets = bool(ratio <= target) if rule == "<=" else bool(ratio >= target)
    return {
        "name": name,
        "case": case,
        "fmtl_seconds": fmtl_s,
        "reference_seconds": ref_s,
        "ratio": ratio,
        "ratio_definition": definition,
        "target": target,
        "target_rule": f"ratio {rule} {target:g}",
        "meets_target": meets and bool(np.isfinite(ratio)),
        "repeats": repeats,
        "reference_repeats": ref_repeats,
        "check": check,
        "check_ok": bool(check_ok),
        "details": details,
    }


# --------------------------------------------------------------------------------------------
# rows 1 and 2: one SDCA epoch vs liblinear and vs the matvec floor
# --------------------------------------------------------------------------------------------


def epoch_rows(case: str, X, y, C: float, repeats: int) -> list[dict]:
    n, d = X.shape
    lam = 1.0 / (n * C)  # (1/n) sum hinge + lam/2 |w|^2  <=>  C sum hinge + 1/2 |w|^2
    tasks = pack_tasks([X], [y])
    kr = KernelRound(tasks, lam, [1.0], rho=1.0, seed=0)
    rng = np.random.default_rng(1)
    w_vec, a_vec = rng.standard_normal(d), rng.standard_normal(n)
    lo, hi = LIBLINEAR_ITERS
    # Blocks, each with an untimed warm-up call (JIT / cache load, warm data): interleaving
    # with liblinear was tried, but right after its 100+ MB of allocations the next two
    # passes over X ran up to 1.7x slower whatever code ran them.
    t_f, t_fp, t_f6, t_floor, t_l1, t_l6 = [], [], [], [], [], []
    for r in range(repeats + 1):
        el = kr.timed(1)
        if r:
            t_f.append(el)
    with numba_threads(1):  # details only: the same pass through the parallel kernel
        for r in range(repeats + 1):
            el = kr.timed(1, parallel=True)
            if r:
                t_fp.append(el)
    for _ in range(repeats):
        t_f6.append(kr.timed(hi))
    w6_fmtl = kr.dB[0] / lam  # W = Sigma B / lam with Sigma = 1, B = dB
    for r in range(repeats + 1):
        el = matvec_floor(X, w_vec, a_vec)
        if r:
            t_floor.append(el)
    clf6 = None
    for r in range(repeats + 1):
        l1, _ = liblinear_fit(X, y, C, lo)
        l6, clf6 = liblinear_fit(X, y, C, hi)
        if r:
            t_l1.append(l1)
            t_l6.append(l6)
    per_pass_lib = _med((np.array(t_l6) - np.array(t_l1)) / (hi - lo))
    if not per_pass_lib > 0:  # noise swamped the difference: report it, do not invent one
        per_pass_lib = float("nan")
    per_pass_fmtl_rule = _med((np.array(t_f6) - np.array(t_f)) / (hi - lo))
    fmtl_epoch = _med(t_f)
    floor = _med(t_floor)
    p_fmtl = hinge_primal(X, y, w6_fmtl, lam)
    p_lib = hinge_primal(X, y, clf6.coef_.ravel(), lam)
    rel = abs(p_fmtl - p_lib) / abs(p_lib)
    same = f"primal after {hi} passes: fmtl {p_fmtl:.6g}, liblinear {p_lib:.6g} (rel {rel:.1e})"
    nnz = X.nnz if sp.issparse(X) else X.size
    common = f"C={C:g} <-> lam=1/(n C)={lam:.3g}; nnz={nnz:,}; load avg {_load()}"
    par_note = (
        f"the same pass through the parallel=True kernel on 1 numba thread: {_fmt_s(_med(t_fp))}"
    )
    lib_details = (
        f"liblinear per pass = median over repeats of (t(max_iter={hi}) - t(max_iter={lo}))"
        f"/{hi - lo}, excluding its data conversion/setup; raw t(max_iter={lo}) = "
        f"{_fmt_s(_med(t_l1))}, t(max_iter={hi}) = {_fmt_s(_med(t_l6))}. liblinear shrinks "
        f"inactive coordinates after pass 1, while the fmtl time is a first pass from "
        f"alpha = 0 (every step updates); fmtl by the same (t({hi}) - t({lo}))/{hi - lo} "
        f"rule: {_fmt_s(per_pass_fmtl_rule)} (ratio {per_pass_fmtl_rule / per_pass_lib:.2f});"
        f" {par_note}. {common}"
    )
    floor_details = (
        f"floor = X @ w + X.T @ a ({'scipy CSR' if sp.issparse(X) else 'numpy'}, BLAS on "
        f"1 thread), {_fmt_s(floor)}; fmtl epoch = one serial sdca_round pass from alpha=0 "
        f"({par_note}). {common}"
    )
    return [
        _row(
            "SDCA epoch vs liblinear",
            case,
            fmtl_epoch,
            per_pass_lib,
            fmtl_epoch / per_pass_lib,
            "fmtl epoch / liblinear pass (lower is better)",
            1.0,
            "<=",
            repeats,
            repeats,
            same,
            rel <= 0.05,
            lib_details,
        ),
        _row(
            "SDCA epoch vs numpy matvec floor",
            case,
            fmtl_epoch,
            floor,
            fmtl_epoch / floor,
            "fmtl epoch / (X @ w + X.T @ a) (lower is better)",
            2.5,
            "<=",
            repeats,
            repeats,
            "",
            True,
            floor_details,
        ),
    ]


# --------------------------------------------------------------------------------------------
# row 3: MOCHA to a certified gap of 1e-6 vs cvxpy's default solver
# --------------------------------------------------------------------------------------------


def cvxpy_problem(Xs, ys, Sigma: np.ndarray, lam: float):
    """The fixed-Sigma W-problem as ``fmtl.reference.solve_fixed_sigma`` writes it."""
    vals, vecs = np.linalg.eigh(Sigma)
    L = vecs / np.sqrt(vals)  # Omega = L L^T
    d, m = Xs[0].shape[1], len(Xs)
    W = cp.Variable((d, m))
    loss = cp.sum(
        cp.hstack(
            [
                cvxpy_loss("hinge", cp.Constant(X) @ W[:, t], y) / y.shape[0]
                for t, (X, y) in enumerate(zip(Xs, ys, strict=True))
            ]
        )
    )
    return cp.Problem(cp.Minimize(loss + (lam / 2) * cp.sum_squares(W @ L))), W


def cvxpy_solve(Xs, ys, Sigma, lam):
    """Build a fresh problem and solve it with cvxpy's default solver (timed together)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        t0 = time.perf_counter()
        prob, W = cvxpy_problem(Xs, ys, Sigma, lam)
        prob.solve()
        el = time.perf_counter() - t0
    return el, prob, np.asarray(W.value, dtype=np.float64)


def _mocha_fit(Xs, ys, Sigma, lam):
    t0 = time.perf_counter()
    res = mocha(
        Xs,
        ys,
        lam,
        "hinge",
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=100_000,
        tol=MOCHA_TOL,
        random_state=0,
        # 2 local passes per round and certificates every 5 rounds: the fastest of
        # local_frac in {1, 2, 4, 8} x eval_every in {1, 5, 10} at lam = 1e-4 (0.25 s vs
        # 0.41 s for the defaults); every setting needs ~180 passes over the data
        local_frac=2.0,
        eval_every=5,
    )
    return time.perf_counter() - t0, res


def mocha_rows(m: int, n: int, d: int, lams, repeats: int, cvx_repeats: int) -> list[dict]:
    data = make_multitask_classification(
        n_tasks=m, n_samples=n, n_features=d, structure="clustered", noise=0.3, random_state=0
    )
    Xs, ys = data.X, data.y
    Sigma = mean_regularized_sigma(m, 1.0)
    vals, vecs = np.linalg.eigh(Sigma)
    Omega = (vecs / vals) @ vecs.T
    # warm-up: load MOCHA's kernels and cvxpy's solver modules on a tiny problem
    warm = make_multitask_classification(n_tasks=3, n_samples=20, n_features=4, random_state=0)
    S3 = mean_regularized_sigma(3, 1.0)
    _mocha_fit(warm.X, warm.y, S3, 1e-2)
    cvxpy_solve(warm.X, warm.y, S3, 1e-2)
    rows = []
    for lam in lams:
        _mocha_fit(Xs, ys, Sigma, lam)  # warm-up on this problem (numba dispatch, caches)
        t_m, t_c = [], []
        res = prob = Wc = None
        for r in range(max(repeats, cvx_repeats)):
            if r < repeats:
                el, res = _mocha_fit(Xs, ys, Sigma, lam)
                t_m.append(el)
            if r < cvx_repeats:
                el, prob, Wc = cvxpy_solve(Xs, ys, Sigma, lam)
                t_c.append(el)
        h = res.history
        p_m = primal_objective(Xs, ys, res.coef.T, Omega, lam)
        p_c = primal_objective(Xs, ys, Wc, Omega, lam)
        rel = (p_m - p_c) / abs(p_c)
        lower = float(h["dual"][-1])  # certified lower bound on the optimum
        b = res.dual_coef * np.concatenate(ys)
        inside = float(np.mean((b > 1e-12) & (b < 1 - 1e-12)))
        stats = prob.solver_stats
        solver = stats.solver_name
        ratio = _med(t_c) / _med(t_m)
        check = (
            f"(P_mocha - P_cvxpy)/P_cvxpy = {rel:.1e} (|.| <= {PRIMAL_RTOL:g}); cvxpy optimum "
            f"{'>=' if p_c >= lower - 1e-12 * abs(lower) else '<'} MOCHA's certified dual "
            f"bound"
        )
        details = (
            f"cvxpy default solver: {solver} (status {prob.status}, {stats.num_iters} iters, "
            f"solver-only {_fmt_s(stats.solve_time or float('nan'))}; fmtl.reference defaults "
            f"to CLARABEL instead); cvxpy time = build + canonicalise + solve a fresh Problem, "
            f"{cvx_repeats} repeats (slow); MOCHA: whole mocha() call, fixed mean-regularised "
            f"Sigma (kappa=1), hinge, tol={MOCHA_TOL:g}, {int(h['round'][-1])} rounds to rel "
            f"gap {float(h['rel_gap'][-1]):.1e}, 2 local passes per round, certificates every 5 "
            f"rounds; {inside:.0%} of "
            f"duals strictly inside (0, 1); load avg {_load()}"
        )
        rows.append(
            _row(
                "MOCHA vs cvxpy",
                f"{m} x {n} x {d}, lam={lam:g}",
                _med(t_m),
                _med(t_c),
                ratio,
                "cvxpy / fmtl (x faster, higher is better)",
                100.0,
                ">=",
                repeats,
                cvx_repeats,
                check,
                abs(rel) <= PRIMAL_RTOL and p_c >= lower - 1e-12 * abs(lower),
                details,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# row 4: parallel local solves, 2 numba threads vs 1
# --------------------------------------------------------------------------------------------


def parallel_row(m: int, n: int, d: int, repeats: int) -> dict:
    data = make_multitask_classification(
        n_tasks=m, n_samples=n, n_features=d, structure="clustered", noise=0.3, random_state=1
    )
    tasks = pack_tasks(data.X, data.y)
    Sigma = mean_regularized_sigma(m, 1.0)
    rho = resolve_sigma_prime("gershgorin", Sigma)
    kr = KernelRound(tasks, 1e-3, np.diag(Sigma), rho=rho, seed=0)
    top = int(numba.config.NUMBA_NUM_THREADS)
    many = min(2, top)
    t1, t2, ts = [], [], []
    results = {}
    for r in range(repeats + 1):  # repeat 0 warms both thread counts and the serial path
        order = (1, many) if r % 2 == 0 else (many, 1)  # interleaved, alternating order
        for k in order:
            with numba_threads(k):
                el = kr.timed(1, parallel=True)
            if r > 0:
                (t1 if k == 1 else t2).append(el)
            results.setdefault(k, (kr.alpha.copy(), kr.dB.copy()))
        el = kr.timed(1, parallel=False)
        if r > 0:
            ts.append(el)
        results.setdefault("serial", (kr.alpha.copy(), kr.dB.copy()))
    a1, b1 = results[1]
    same = all(
        np.array_equal(a1, a) and np.array_equal(b1, b)
        for key, (a, b) in results.items()
        if key != 1
    )
    speedup = _med(t1) / _med(t2)
    note = "" if many == 2 else f" (only {top} numba thread available: 1 vs 1)"
    details = (
        f"one sdca_round, {m} tasks x {n} x {d} dense ({tasks.Xd.size:,} entries), one pass "
        f"per task, parallel=True under numba.set_num_threads(k); {repeats} interleaved "
        f"repeats (order alternates); parallel=False serial: {_fmt_s(_med(ts))}; "
        f"2 threads: {_fmt_s(_med(t2))}{note}; {os.cpu_count()} CPUs, load avg {_load()} "
        "(on a shared 2-core machine a busy neighbour on the other core caps this ratio)"
    )
    return _row(
        "Parallel local solves: 2 threads vs 1",
        f"{m} tasks x {n} x {d}",
        _med(t2),
        _med(t1),
        speedup,
        "t(1 thread) / t(2 threads) (speed-up, higher is better)",
        1.7,
        ">=",
        repeats,
        repeats,
        f"alpha, dB bit-identical for 1 thread, {many} threads and serial: {same}",
        same,
        details,
    )


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def _ratio_text(row: dict) -> str:
    r = row["ratio"]
    if row["name"].startswith("MOCHA"):
        return f"{r:.1f}x faster"
    if row["name"].startswith("Parallel"):
        return f"{r:.2f}x speed-up"
    return f"{r:.2f}"


def print_table(rows: list[dict]) -> None:
    head = ["name", "fmtl", "reference", "ratio", "target", "meets"]
    body = [
        [
            f"{r['name']} [{r['case']}]",
            _fmt_s(r["fmtl_seconds"]),
            _fmt_s(r["reference_seconds"]),
            _ratio_text(r),
            r["target_rule"],
            "yes" if r["meets_target"] else "NO",
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for b in body:
        print(" | ".join(str(x).ljust(w) for x, w in zip(b, widths, strict=True)))


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{r['name']}\n[{r['case']}]" for r in rows]
    ratios = [r["ratio"] if np.isfinite(r["ratio"]) and r["ratio"] > 0 else np.nan for r in rows]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.75 * len(rows) + 1.5))
    colors = ["tab:green" if r["meets_target"] else "tab:red" for r in rows]
    ax.barh(y, ratios, color=colors, alpha=0.8)
    ax.scatter(
        [r["target"] for r in rows], y, marker="|", s=500, color="black", zorder=3, label="target"
    )
    for yi, r in zip(y, rows, strict=True):
        ax.annotate(
            f" {_ratio_text(r)} ({r['target_rule']})",
            (r["ratio"] if np.isfinite(r["ratio"]) else 1.0, yi),
            va="center",
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("ratio (see target rule; green: target met)")
    ax.set_title("fmtl speed ratios vs targets")
    ax.legend(loc="lower right", fontsize=7)
    lo = np.nanmin(ratios + [r["target"] for r in rows])
    hi = np.nanmax(ratios + [r["target"] for r in rows])
    ax.set_xlim(lo / 3, hi * 30)
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    q = args.quick
    repeats = 5  # >= 5 everywhere (cheap in --quick); cvxpy: 3
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__},"
        f" scikit-learn {sklearn.__version__}, numba {numba.__version__}, cvxpy {cp.__version__};"
        f" {os.cpu_count()} CPUs, load avg {_load()}",
        flush=True,
    )
    t_start = time.perf_counter()
    rows: list[dict] = []
    # rows 1-2: one SDCA epoch (C = 1 <-> lam = 1/n)
    dn, dd = (2_000, 200) if q else (10_000, 500)
    X, y = dense_problem(dn, dd, seed=0)
    rows += epoch_rows(f"dense {dn:,} x {dd}", X, y, 1.0, repeats)
    print(f"  epoch rows, dense: {time.perf_counter() - t_start:.1f}s", flush=True)
    sn, sd = (20_000, 2_000) if q else (100_000, 10_000)
    X, y = csr_problem(sn, sd, 0.01, seed=0)
    rows += epoch_rows(f"CSR {sn:,} x {sd:,}, 1%", X, y, 1.0, repeats)
    del X, y
    print(f"  epoch rows, CSR: {time.perf_counter() - t_start:.1f}s", flush=True)
    # row 3: MOCHA vs cvxpy
    m, n, d = (10, 100, 30) if q else (30, 300, 100)
    rows += mocha_rows(m, n, d, (1e-4, 1e-3), repeats, 3)
    print(f"  MOCHA vs cvxpy: {time.perf_counter() - t_start:.1f}s", flush=True)
    # row 4: 200 tasks, one round >= ~50 ms on one thread in full mode
    pm, pn, pd = (200, 150, 50) if q else (200, 1000, 100)
    rows.append(parallel_row(pm, pn, pd, 7 if q else 11))
    print(f"  parallel: {time.perf_counter() - t_start:.1f}s\n", flush=True)

    print_table(rows)
    print()
    for r in rows:
        if r["check"]:
            print(f"check [{r['name']}, {r['case']}]: {r['check']} -> ok={r['check_ok']}")
    stem = "bench_speed_quick" if q else "bench_speed"
    write_results(out, stem, rows, COLUMNS, plot, "bench_speed.py", q, args.out, t_start)
    return 0


def write_results(out, stem, rows, columns, plot_fn, script, quick, out_arg, t_start) -> None:
    """CSV and PNG of a benchmark's rows, the total time and the command that reproduces
    them (shared by the benchmark scripts)."""
    csv_path = out / f"{stem}.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {csv_path}")
    if plot_fn(rows, out / f"{stem}.png"):
        print(f"wrote {out / f'{stem}.png'}")
    else:
        print("matplotlib not installed: skipped the PNG (pip install fmtl[plot])")
    print(f"total {time.perf_counter() - t_start:.1f}s")
    print(
        f"reproduce: python benchmarks/{script}"
        + (" --quick" if quick else "")
        + f" --out {out_arg}"
    )


if __name__ == "__main__":
    sys.exit(main())
