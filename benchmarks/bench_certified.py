"""Time to a certified solution: fmtl's shrinking SDCA vs liblinear, one task, ratios
measured in one process (medians of repeats, after an untimed warm-up call that absorbs
numba's JIT compilation / cache load and the references' lazy imports).

    python benchmarks/bench_certified.py [--quick] [--out benchmarks/results]

Problem: ``P(w) = mean_i l(y_i, w.x_i) + (lam/2)||w||^2`` (hinge or logistic, no
intercept); liblinear (``LinearSVC(loss="hinge", dual=True)`` and
``LogisticRegression(solver="liblinear", dual=True)``, ``fit_intercept=False``) solves the
same problem with ``C = 1 / (n lam)``.

Per row (data case, loss, lam):

* ``P*``: fmtl's certified tight solve (relative duality gap <= 1e-9, so ``D <= P* <= P``
  with ``P - D <= 1e-9 P``), lowered to the best primal any run below reaches.
* **fmtl**: one ``sdca_round`` call (``m = 1``, ``Sigma = [[1]]``, ``rho = 1``, ``W = 0``:
  the local subproblem is the whole dual) with ``shrink=True``, ``gap_rtol = 1e-4`` and a
  budget of 10,000 passes: it stops at the first certificate ``gap <= 1e-4 P(w)``. Timed:
  ``pack_tasks`` plus the call (from ``X, y`` to a certified ``w``), serial, numba and BLAS
  on one thread.
* **fmtl, old kernel**: the original kernel (no shrinking), stopping at the first pass
  end where its local gap is ``<= theta g0`` with ``theta = 1e-4 P* / g0`` (it checks
  the gap every pass; it has no relative target, so ``P*`` stands in for ``P(w)``).
* **liblinear**: the first of the tolerance ladder ``1, 3e-1, 1e-1, ..., 1e-6`` (``max_iter =
  100,000``) whose solution has ``(P - P*) / P* <= 1e-4``; its ``fit`` (which includes
  its data conversion) is timed. If none does, the row reports no ratio.

The three are timed in interleaved repeats (fmtl, liblinear, old kernel, fmtl, ...) so
that the shared machine's load hits them alike; ratio = median over repeats of fmtl /
liblinear (target <= 1.0; the ratio of the fastest repeats is in the details).

Cases: dense 20,000 x 300 (Gaussian rows of norm 1, labels from a noisy linear model)
and CSR "text-like" 20,000 x 20,000 at ~0.3 % density (power-law column frequencies,
tf-idf-like positive values, rows of norm 1, the same label model), each at lam in
{1e-2, 1e-3, 1e-4}. ``--quick``: 4,000 x 100 dense and 4,000 x 4,000 CSR at 1 %, lam in
{1e-2, 1e-3}, 3 repeats (5 in full mode).

Writes ``bench_certified.csv`` and ``bench_certified.png`` (``bench_certified_quick.*``
with ``--quick``) to ``--out`` and prints the command that reproduces them.
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

import numba
import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from bench_speed import (  # shared with bench_speed
    _labels,
    _load,
    _med,
    dense_problem,
    write_results,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from fmtl.federated import mocha
from fmtl.federated._loop import numba_threads
from fmtl.losses import get_loss
from fmtl.solvers._packing import pack_tasks
from fmtl.solvers.sdca import sdca_round

RTOL = 1e-4  # the target relative gap / sub-optimality
TIGHT_RTOL = 1e-9  # P* run
BUDGET_PASSES = 10_000
LADDER = (1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
LIBLINEAR_MAX_ITER = 100_000

COLUMNS = [
    "case",
    "loss",
    "lam",
    "n",
    "d",
    "nnz",
    "P_star",
    "D_lower",
    "fmtl_seconds",
    "fmtl_rel_subopt",
    "fmtl_certified_rel_gap",
    "liblinear_seconds",
    "liblinear_tol",
    "liblinear_rel_subopt",
    "liblinear_iters",
    "ratio",
    "target",
    "meets_target",
    "old_seconds",
    "old_rel_subopt",
    "old_ratio",
    "mocha_seconds",
    "mocha_ratio",
    "repeats",
    "details",
]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def text_problem(n: int, d: int, density: float, seed: int = 0):
    """Bag-of-words-like CSR: Zipf column frequencies (exponent 1.1), per-document term
    counts ``1 + Poisson(0.5)`` weighted by ``log(n / df)`` (tf-idf), rows of norm 1;
    labels from a noisy linear model on the features."""
    rng = np.random.default_rng(seed)
    k = max(1, round(density * d))
    p = 1.0 / np.arange(1, d + 1) ** 1.1
    p /= p.sum()
    perm = rng.permutation(d)  # frequent words are not the first columns
    cols = perm[rng.choice(d, size=n * k, p=p)]
    counts = 1.0 + rng.poisson(0.5, size=n * k)
    indptr = np.arange(0, n * k + 1, k)
    X = sp.csr_matrix((counts, cols, indptr), shape=(n, d))
    X.sum_duplicates()
    X.sort_indices()
    df = np.bincount(X.indices, minlength=d)
    idf = np.log(n / np.maximum(df, 1)) + 1.0
    X.data *= idf[X.indices]
    norms = np.sqrt(np.add.reduceat(X.data**2, X.indptr[:-1]))
    X.data /= np.repeat(norms, np.diff(X.indptr))
    return X, _labels(X, rng)


# --------------------------------------------------------------------------------------------
# solvers
# --------------------------------------------------------------------------------------------


def primal(X, y, w: np.ndarray, lam: float, loss) -> float:
    z = np.asarray(X @ w).ravel()
    return float(np.mean(loss.value(y, z)) + 0.5 * lam * w @ w)


def fmtl_solve(X, y, lam: float, loss, *, rtol: float, old_theta: float | None = None):
    """Pack and solve in one ``sdca_round`` call; returns (seconds, w, info)."""
    t0 = time.perf_counter()
    tasks = pack_tasks([X], [y])
    n, d = X.shape
    alpha = np.zeros(n)
    dB = np.zeros((1, d))
    steps_done = np.zeros(1, dtype=np.int64)
    g0, g1 = np.empty(1), np.empty(1)
    stats = np.zeros((1, 4), dtype=np.int64)
    terms = (np.empty(1), np.empty(1))
    args = (
        *tasks.kernel_args,
        alpha,
        np.zeros((1, d)),
        np.ones(1),
        1.0,
        lam,
        loss.code,
        loss.param,
        np.array([BUDGET_PASSES * n], dtype=np.int64),
        np.array([12345], dtype=np.uint64),
        np.ones(1, dtype=bool),
        0.0 if old_theta is None else old_theta,
        np.zeros(1, dtype=np.int64),  # old kernel: check at every pass end
        True,
        old_theta is not None,  # record_gaps (the old kernel's theta needs g0 anyway)
        dB,
        steps_done,
        g0,
        g1,
    )
    if old_theta is None:
        sdca_round(*args, parallel=False, shrink=True, gap_rtol=rtol, terms=terms, stats=stats)
    else:
        sdca_round(*args, parallel=False)
    el = time.perf_counter() - t0
    w = dB[0] / lam  # W = B Sigma / lam with Sigma = 1, B = dB (start at 0)
    info = {
        "gap": float(g1[0]),
        "passes": steps_done[0] / n,
        "steps": int(steps_done[0]),
        "certs": int(stats[0, 1]),
        "active": int(stats[0, 3]),
        "dual": float(terms[1][0] - 0.5 * lam * w @ w) if old_theta is None else np.nan,
        "primal_kernel": float(terms[0][0] + 0.5 * lam * w @ w) if old_theta is None else np.nan,
    }
    return el, w, info


def mocha_solve(Xs, ys, lam: float, loss_name: str, rtol: float):
    """The user's path: ``mocha(..., relationship="fixed", tol=rtol, local_work="auto")``
    (validation, packing, the engine and its certificate); returns (seconds, result)."""
    t0 = time.perf_counter()
    res = mocha(Xs, ys, lam, loss_name, relationship="fixed", outer_iters=1, inner_iters=100,
                tol=rtol, local_work="auto", random_state=0)  # fmt: skip
    return time.perf_counter() - t0, res


def liblinear_fit(X, y, lam: float, loss_name: str, tol: float):
    """Wall time of the liblinear fit (dual CD, no intercept) and its weights."""
    C = 1.0 / (X.shape[0] * lam)
    if loss_name == "hinge":
        clf = LinearSVC(
            C=C,
            loss="hinge",
            dual=True,
            fit_intercept=False,
            tol=tol,
            max_iter=LIBLINEAR_MAX_ITER,
            random_state=0,
        )
    else:
        clf = LogisticRegression(
            C=C,
            solver="liblinear",
            dual=True,
            fit_intercept=False,
            tol=tol,
            max_iter=LIBLINEAR_MAX_ITER,
            random_state=0,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)
        t0 = time.perf_counter()
        clf.fit(X, y)
        el = time.perf_counter() - t0
    return el, clf.coef_.ravel().copy(), int(np.max(clf.n_iter_))


def _fmt_s(t: float) -> str:
    if not np.isfinite(t):
        return "nan"
    return f"{t * 1e3:.1f} ms" if t < 1.0 else f"{t:.2f} s"


# --------------------------------------------------------------------------------------------
# one row
# --------------------------------------------------------------------------------------------


def certified_row(case: str, X, y, loss_name: str, lam: float, repeats: int) -> dict:
    loss = get_loss(loss_name)
    n, d = X.shape
    nnz = X.nnz if sp.issparse(X) else X.size
    # P*: certified tight run
    _, w_tight, tight = fmtl_solve(X, y, lam, loss, rtol=TIGHT_RTOL)
    p_tight = primal(X, y, w_tight, lam, loss)
    d_lower = tight["dual"]
    p_star = p_tight
    # warm-ups (untimed): numba cache load / compilation, liblinear's lazy imports
    fmtl_solve(X, y, lam, loss, rtol=RTOL)
    liblinear_fit(X[: min(n, 200)], y[: min(n, 200)], lam, loss_name, 1e-1)
    g0 = float(np.mean(loss.value(y, np.zeros(n))))  # gap at alpha = 0: P(0) - D(0)
    theta = RTOL * p_star / g0  # the old kernel's stop: local gap <= RTOL P*
    fmtl_solve(X, y, lam, loss, rtol=RTOL, old_theta=theta)
    # liblinear ladder: the first tolerance whose solution reaches RTOL sub-optimality
    ladder = []
    hit = None
    for tol in LADDER:
        el, w, iters = liblinear_fit(X, y, lam, loss_name, tol)
        p = primal(X, y, w, lam, loss)
        ladder.append((tol, el, p, iters))
        p_star = min(p_star, p)
        if (p - p_star) / p_star <= RTOL:
            hit = (tol, p, iters)
            break
    # timed repeats, interleaved (fmtl, liblinear, old kernel) so that the load of the
    # shared machine hits all three alike; ratios per repeat, then medians
    mocha_solve([X], [y], lam, loss_name, RTOL)  # warm-up
    t_f, t_l, t_o, t_m = [], [], [], []
    for _ in range(repeats):
        el, w_f, info_f = fmtl_solve(X, y, lam, loss, rtol=RTOL)
        t_f.append(el)
        if hit is not None:
            t_l.append(liblinear_fit(X, y, lam, loss_name, hit[0])[0])
        el, w_o, info_o = fmtl_solve(X, y, lam, loss, rtol=RTOL, old_theta=theta)
        t_o.append(el)
        el, res_m = mocha_solve([X], [y], lam, loss_name, RTOL)
        t_m.append(el)
    h_m = res_m.history
    if h_m["rel_gap"][-1] > RTOL:
        raise RuntimeError(f"mocha stopped uncertified: relative gap {h_m['rel_gap'][-1]:.2e}")
    p_f = primal(X, y, w_f, lam, loss)
    p_o = primal(X, y, w_o, lam, loss)
    p_star = min(p_star, p_f, p_o)
    lib_rel, lib_tol, lib_iters = np.nan, np.nan, -1
    ratio = old_ratio = lib_s = mocha_ratio = np.nan
    if hit is not None:
        mocha_ratio = _med(np.array(t_m) / np.array(t_l))
        lib_tol, p_l, lib_iters = hit
        lib_rel = (p_l - p_star) / p_star
        lib_s = _med(t_l)
        ratio = _med(np.array(t_f) / np.array(t_l))
        old_ratio = _med(np.array(t_o) / np.array(t_l))
    fmtl_s, old_s = _med(t_f), _med(t_o)
    best = min(t_f) / min(t_l) if hit is not None else np.nan
    ladder_txt = "; ".join(
        f"tol {tol:g}: {_fmt_s(el)}, {it} iters, rel {(p - p_star) / p_star:.1e}"
        for tol, el, p, it in ladder
    )
    details = (
        f"fmtl: {info_f['passes']:.1f} pass-equivalents of visits, {info_f['certs']} "
        f"certifications, final active set {info_f['active']:,}/{n:,}, certified gap "
        f"{info_f['gap']:.3e}; tight run: {tight['passes']:.1f} pass-equivalents, "
        f"{tight['certs']} certifications, P - D = {p_tight - d_lower:.2e}; old kernel: "
        f"{info_o['passes']:.0f} passes (theta = {theta:.3g}); liblinear ladder: {ladder_txt}; "
        f"ratio of the fastest repeats {best:.2f}; mocha(): {len(h_m)} round(s), certified "
        f"relative gap {h_m['rel_gap'][-1]:.2e}; load avg {_load()}"
    )
    return {
        "case": case,
        "loss": loss_name,
        "lam": lam,
        "n": n,
        "d": d,
        "nnz": nnz,
        "P_star": p_star,
        "D_lower": d_lower,
        "fmtl_seconds": fmtl_s,
        "fmtl_rel_subopt": (p_f - p_star) / p_star,
        "fmtl_certified_rel_gap": info_f["gap"] / p_f,
        "liblinear_seconds": lib_s,
        "liblinear_tol": lib_tol,
        "liblinear_rel_subopt": lib_rel,
        "liblinear_iters": lib_iters,
        "ratio": ratio,
        "target": 1.0,
        "meets_target": bool(np.isfinite(ratio) and ratio <= 1.0),
        "old_seconds": old_s,
        "old_rel_subopt": (p_o - p_star) / p_star,
        "old_ratio": old_ratio,
        "mocha_seconds": _med(t_m),
        "mocha_ratio": mocha_ratio,
        "repeats": repeats,
        "details": details,
    }


TASK_COLUMNS = [
    "m", "n_per_task", "d", "loss", "lam", "mocha_seconds", "sum_single_seconds", "ratio",
    "target", "meets_target", "mocha_rounds", "mocha_rel_gap", "repeats",
]  # fmt: skip


def tasks_row(m: int, n: int, d: int, loss_name: str, lam: float, repeats: int) -> dict:
    """MOCHA with ``Sigma = I / m`` (``relationship="fixed"``, ``local_work="auto"``) on
    ``m`` tasks vs the sum of ``m`` single-task ``mocha`` solves of the same problems
    (task ``t`` alone with ``lam * m``: ``Sigma = I/m`` scales each regulariser by ``m``),
    all to a certified relative gap of ``RTOL``; interleaved repeats, median ratio."""
    rng = np.random.default_rng(1)
    Xs, ys = [], []
    for _ in range(m):
        X = rng.normal(size=(n, d))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Xs.append(X)
        ys.append(_labels(X, rng))
    sigma = np.eye(m) / m

    def joint():
        t0 = time.perf_counter()
        res = mocha(Xs, ys, lam, loss_name, relationship="fixed", sigma=sigma, outer_iters=1,
                    inner_iters=100, tol=RTOL, local_work="auto", random_state=0)  # fmt: skip
        return time.perf_counter() - t0, res

    def singles():
        t0 = time.perf_counter()
        for X, y in zip(Xs, ys, strict=True):
            mocha_solve([X], [y], lam * m, loss_name, RTOL)
        return time.perf_counter() - t0

    joint(), singles()  # warm-ups
    t_j, t_s = [], []
    for _ in range(repeats):
        el, res = joint()
        t_j.append(el)
        t_s.append(singles())
    ratio = _med(np.array(t_j) / np.array(t_s))
    return {
        "m": m, "n_per_task": n, "d": d, "loss": loss_name, "lam": lam,
        "mocha_seconds": _med(t_j), "sum_single_seconds": _med(t_s), "ratio": ratio,
        "target": 1.2, "meets_target": bool(ratio <= 1.2),
        "mocha_rounds": len(res.history), "mocha_rel_gap": float(res.history["rel_gap"][-1]),
        "repeats": repeats,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def print_table(rows: list[dict]) -> None:
    head = [
        "case", "loss", "lam", "fmtl", "liblinear (tol)", "ratio", "mocha() ratio", "old kernel",
        "old ratio",
    ]  # fmt: skip
    body = [
        [
            r["case"],
            r["loss"],
            f"{r['lam']:g}",
            _fmt_s(r["fmtl_seconds"]),
            f"{_fmt_s(r['liblinear_seconds'])} ({r['liblinear_tol']:g})",
            f"{r['ratio']:.2f}" + ("" if r["meets_target"] else " (NO)"),
            f"{r['mocha_ratio']:.2f}",
            _fmt_s(r["old_seconds"]),
            f"{r['old_ratio']:.1f}",
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
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
    labels = [f"{r['case']}\n{r['loss']}, lam={r['lam']:g}" for r in rows]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.5))
    new = [r["ratio"] for r in rows]
    old = [r["old_ratio"] for r in rows]
    ax.barh(y + 0.2, new, height=0.4, color="tab:green", label="fmtl, shrinking + certified")
    ax.barh(y - 0.2, old, height=0.4, color="tab:gray", label="fmtl, old kernel")
    ax.axvline(1.0, color="black", lw=1, label="target (= liblinear)")
    for yi, r in zip(y, rows, strict=True):
        if np.isfinite(r["ratio"]):
            ax.annotate(f" {r['ratio']:.2f}", (r["ratio"], yi + 0.2), va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel(f"time to relative sub-optimality {RTOL:g} / liblinear's (fmtl: certified)")
    ax.set_title("Time to a certified gap: fmtl / liblinear (one task)")
    ax.legend(loc="lower right", fontsize=7)
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
    repeats = 3 if q else 5
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__},"
        f" scikit-learn {sklearn.__version__}, numba {numba.__version__}; {os.cpu_count()} CPUs,"
        f" load avg {_load()}",
        flush=True,
    )
    t_start = time.perf_counter()
    lams = (1e-2, 1e-3) if q else (1e-2, 1e-3, 1e-4)
    dn, dd = (4_000, 100) if q else (20_000, 300)
    sn, sd, dens = (4_000, 4_000, 0.01) if q else (20_000, 20_000, 0.003)
    cases = [
        (f"dense {dn:,} x {dd}", lambda: dense_problem(dn, dd, seed=0)),
        (f"CSR text-like {sn:,} x {sd:,}, {dens:.1%}", lambda: text_problem(sn, sd, dens, seed=0)),
    ]
    rows: list[dict] = []
    with threadpool_limits(limits=1, user_api="blas"), numba_threads(1):
        for case, make in cases:
            X, y = make()
            for loss_name in ("hinge", "logistic"):
                for lam in lams:
                    rows.append(certified_row(case, X, y, loss_name, lam, repeats))
                    r = rows[-1]
                    print(
                        f"  {case}, {loss_name}, lam={lam:g}: fmtl {_fmt_s(r['fmtl_seconds'])},"
                        f" liblinear {_fmt_s(r['liblinear_seconds'])}, ratio {r['ratio']:.2f};"
                        f" old {_fmt_s(r['old_seconds'])} [{time.perf_counter() - t_start:.0f}s]",
                        flush=True,
                    )
        task_rows = [
            tasks_row(*((10, 400, 50) if q else (50, 1_000, 100)), loss_name, 1e-3, repeats)
            for loss_name in ("hinge", "logistic")
        ]
    print()
    print_table(rows)
    print()
    print("MOCHA with Sigma = I/m vs the sum of the per-task solves (target <= 1.2):")
    for r in task_rows:
        print(
            f"  m={r['m']} x {r['n_per_task']} x {r['d']}, {r['loss']}, lam={r['lam']:g}: "
            f"mocha {_fmt_s(r['mocha_seconds'])} ({r['mocha_rounds']} round(s), gap "
            f"{r['mocha_rel_gap']:.1e}), per-task solves {_fmt_s(r['sum_single_seconds'])}, "
            f"ratio {r['ratio']:.2f}"
        )
    stem = "bench_certified_quick" if q else "bench_certified"
    with open(out / f"{stem}_tasks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TASK_COLUMNS)
        w.writeheader()
        w.writerows(task_rows)
    write_results(out, stem, rows, COLUMNS, plot, "bench_certified.py", q, args.out, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
