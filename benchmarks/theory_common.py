"""Shared pieces of the ``theory_*.py`` benchmarks: problems, CSV output, figure saving."""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

import numpy as np

from fmtl.datasets import find_mocha, load_mocha, make_multitask_classification
from fmtl.relationships import mean_regularized_sigma

LOSSES = ("squared", "smoothed_hinge", "logistic", "hinge")
REL_EPS = 1e-4  # targets are eps = REL_EPS * (primal value at the end of a long run)


def synthetic(quick: bool):
    """Clustered synthetic tasks (rows of norm ~1) with a mean-regularised Sigma."""
    m, n, d = (6, 60, 10) if quick else (10, 100, 20)
    ds = make_multitask_classification(
        n_tasks=m, n_samples=n, n_features=d, structure="clustered", noise=0.3, random_state=0
    )
    return f"synthetic ({m} x {n} x {d})", ds.X, ds.y, mean_regularized_sigma(m, 1.0)


def problems(quick: bool, lam: float):
    """The synthetic problem, and ``small`` (MOCHA's data) when it can be found."""
    out = [(*synthetic(quick), lam)]
    path = find_mocha("small")
    if path is not None and not quick:
        d = load_mocha(path)
        m = len(d.X)
        out.append(("small (29 x ~50 x 9)", d.X, d.y, mean_regularized_sigma(m, 1.0), lam))
    return out


def parse_args(doc: str, argv=None) -> tuple[bool, Path]:
    """``--quick`` and ``--out DIR`` (created), as every benchmark script takes them."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args.quick, out


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote {path}")


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None if it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: skipped the PNG (pip install fmtl[plot])")
        return None
    return plt


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    print(f"wrote {path}")


def reproduce_line(script: str) -> None:
    print("reproduce with: python " + shlex.join([script, *sys.argv[1:]]))


def keep_round(r: int) -> bool:
    """Rounds written to the per-round CSVs: all of the first 50, then every 25th."""
    return r <= 50 or r % 25 == 0


def fmt_rounds(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:,.0f}"
