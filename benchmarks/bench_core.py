"""Core MOCHA speed, measured in one run: rounds/second, and time to a certified relative
duality gap of 1e-6 against cvxpy's solve time on the same fixed-Sigma problem (ratio).

    python benchmarks/bench_core.py [--quick] [--out benchmarks/results]

Writes ``bench_core.csv`` and ``bench_core.png`` (relative gap vs wall time).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from fmtl.datasets import find_mocha, load_mocha, make_multitask_classification
from fmtl.federated import mocha
from fmtl.reference import solve_fixed_sigma
from fmtl.relationships import mean_regularized_sigma


def _problems(quick: bool):
    out = []
    path = find_mocha("small")
    if path is not None:
        d = load_mocha(path)
        out.append(("small (29 x ~50 x 9)", d.X, d.y, 0.01))
    m, n, d = (10, 200, 100) if quick else (30, 500, 500)
    syn = make_multitask_classification(
        n_tasks=m, n_samples=n, n_features=d, structure="clustered", noise=0.3, random_state=0
    )
    # lam = 1e-4: a non-trivial regime (65 % of duals at the bound; 1e-3 puts all there)
    out.append((f"synthetic ({m} x {n} x {d})", syn.X, syn.y, 1e-4))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    # warm-up: compile (or load) every kernel outside the timings
    warm = make_multitask_classification(
        n_tasks=3, n_samples=10, n_features=3, n_clusters=2, random_state=0
    )
    mocha(warm.X, warm.y, 0.1, "hinge", outer_iters=2, inner_iters=2)
    for name, Xs, ys, lam in _problems(args.quick):
        m = len(Xs)
        # (1) learned Sigma, hinge: federated rounds per second (the estimator default work)
        rounds = 50 if args.quick else 200
        t0 = time.perf_counter()
        res = mocha(Xs, ys, lam, "hinge", outer_iters=5, inner_iters=rounds // 5, random_state=0)
        el = time.perf_counter() - t0
        rps = res.history["round"][-1] / el
        # (2) fixed Sigma (mean-regularised, kappa=1): time to relative gap 1e-6
        Sigma = mean_regularized_sigma(m, 1.0)
        t0 = time.perf_counter()
        fx = mocha(
            Xs,
            ys,
            lam,
            "hinge",
            relationship="fixed",
            sigma=Sigma,
            outer_iters=1,
            inner_iters=100000,
            local_frac=1.0,
            tol=1e-6,
            random_state=0,
        )
        t_mocha = time.perf_counter() - t0
        h = fx.history
        curves[name] = (h["wall_time"], np.maximum(h["rel_gap"], 1e-16))
        ref = solve_fixed_sigma(Xs, ys, Sigma, lam, loss="hinge")
        subopt = (h.last["primal"] - ref.objective) / ref.objective
        rows.append(
            {
                "problem": name,
                "rounds_per_second": rps,
                "mocha_rounds_to_gap_1e-6": int(h["round"][-1]),
                "mocha_seconds_to_gap_1e-6": t_mocha,
                "cvxpy_seconds": ref.solve_time,
                "cvxpy_over_mocha": ref.solve_time / t_mocha,
                "mocha_rel_suboptimality_vs_cvxpy": subopt,
            }
        )
        print(
            f"{name}: {rps:.0f} rounds/s (learned Sigma, hinge); fixed Sigma: gap 1e-6 in "
            f"{h['round'][-1]} rounds, {t_mocha:.3f}s; cvxpy (Clarabel) {ref.solve_time:.3f}s"
            f" -> cvxpy/mocha = {ref.solve_time / t_mocha:.1f}x; "
            f"(P - P*)/P* = {subopt:.1e}",
            flush=True,
        )
    csv_path = out / "bench_core.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (t, g) in curves.items():
            ax.semilogy(t, g, label=name)
        ax.axhline(1e-6, color="grey", ls=":")
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("relative duality gap (certified)")
        ax.set_title("MOCHA W-step, fixed mean-regularised Σ, hinge")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "bench_core.png", dpi=150, bbox_inches="tight")
    except ImportError:
        print("matplotlib not installed: skipped the PNG (pip install fmtl[plot])")
    print(f"wrote {csv_path}")
    print(
        "reproduce: python benchmarks/bench_core.py"
        + (" --quick" if args.quick else "")
        + f" --out {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
