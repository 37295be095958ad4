"""School: what standardising the features changes in Local's per-task ridge regression.

    python benchmarks/school_features.py [--quick] [--dataset school] [--out benchmarks/results]

The error table standardises School's features per split (``error_table(standardize=True)``)
because its two percentage columns (values 3-91) leave the SDCA fits at small lambda at their
round caps. Standardising changes the model, not only the solver's speed: the ridge penalty
``(lambda/2) ||w||^2`` weighs every column in its own units. This script measures by how much,
for Local (every task its own ridge regression, which has a closed form: no solver, no round
cap), and why.

For each training fraction and split (seeds 0..n-1, :func:`train_test_split_per_task`), each
task's model minimises ``(1/2n) ||y - X w||^2 + (lambda/2) w^T P w`` (fmtl's squared loss and
Local's objective), solved exactly by ``(X^T X + lambda n P) w = X^T y`` at every lambda of a
half-decade grid, on four feature variants:

* ``raw``: ``school.mat`` as it is (its column of ones is a penalised intercept);
* ``standardised``: z-scored with the training part's statistics, the ones column kept (the
  error table's setting);
* ``raw, free intercept`` / ``standardised, free intercept``: the same with the ones
  column's weight left out of the penalty (``P`` zero there).

Scores: mean over tasks of the per-task test RMSE (the table's metric) and the pooled
explained variance, at the **oracle** lambda (best test RMSE per variant and split, ties to
the larger lambda): "how good can this variant be", the same optimism for all.

Writes ``school_features.csv`` (every variant x lambda x split), ``school_features_summary.md``
and ``school_features.png`` (``school_features_quick*`` with ``--quick``) and prints the
command that reproduces them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fmtl.datasets import MultiTaskDataset, load_mocha, train_test_split_per_task
from fmtl.experiments.error_protocol import (
    DEFAULT_ALPHAS,
    _constant_columns,  # standardize_features' test
    explained_variance,
    paired_comparisons,
    per_task_error,
    standardize_features,
    summarize,
)
from fmtl.experiments.errors import write_csv

FRACTIONS = (0.75, 0.3, 0.1)
ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-5.0, 1.51, 0.5))
QUICK_ALPHAS = (1e-3, 1e-2, 0.1, 1.0)
VARIANTS = ("raw", "standardised", "raw, free intercept", "standardised, free intercept")
DPI = 150


def constant_columns(train: MultiTaskDataset) -> np.ndarray:
    """Mask of the columns constant over the pooled training rows (School: the ones)."""
    pooled = np.vstack(train.X)
    return _constant_columns(pooled.mean(axis=0), pooled.std(axis=0))


def ridge_per_task(
    train: MultiTaskDataset, alpha: float, free: np.ndarray | None = None
) -> list[np.ndarray]:
    """Each task's exact minimiser of ``(1/2n)||y - Xw||^2 + (alpha/2) w^T P w``, ``P`` the
    identity with zeros at ``free`` (unpenalised columns)."""
    penalty = np.ones(train.n_features)
    if free is not None:
        penalty[free] = 0.0
    coefs = []
    for X, y in zip(train.X, train.y, strict=True):
        A = X.T @ X + alpha * X.shape[0] * np.diag(penalty)
        coefs.append(np.linalg.solve(A, X.T @ y))
    return coefs


class PerTaskLinear:
    """Predicts ``x . w_t`` for each row's task, so the error table's metrics score it."""

    def __init__(self, coefs: list[np.ndarray], task_labels) -> None:
        self.W = np.array(coefs)
        self.index = {label: t for t, label in enumerate(task_labels)}

    def predict(self, X: np.ndarray, tasks) -> np.ndarray:
        rows = self.W[[self.index[label] for label in tasks]]
        return np.einsum("ij,ij->i", X, rows)


def scores(coefs: list[np.ndarray], test: MultiTaskDataset) -> tuple[float, float]:
    """Mean per-task RMSE and the pooled explained variance ``1 - SSE / SST`` (the error
    table's :func:`per_task_error` and :func:`explained_variance`)."""
    model = PerTaskLinear(coefs, test.task_labels)
    return per_task_error(model, test, "rmse"), explained_variance(model, test)


def run(ds: MultiTaskDataset, fractions, alphas, n_seeds: int) -> list[dict]:
    """One row per (fraction, seed, variant, alpha)."""
    rows = []
    for frac in fractions:
        for seed in range(n_seeds):
            raw_train, raw_test = train_test_split_per_task(
                ds, test_size=round(1.0 - frac, 12), random_state=seed
            )
            std_train, std_test = standardize_features(raw_train, raw_test)
            free = constant_columns(raw_train)
            parts = {
                "raw": (raw_train, raw_test, None),
                "standardised": (std_train, std_test, None),
                "raw, free intercept": (raw_train, raw_test, free),
                "standardised, free intercept": (std_train, std_test, free),
            }
            for variant, (train, test, unpenalised) in parts.items():
                for alpha in alphas:
                    rmse, ev = scores(ridge_per_task(train, alpha, unpenalised), test)
                    rows.append(
                        {
                            "fraction": frac,
                            "seed": seed,
                            "variant": variant,
                            "alpha": alpha,
                            "rmse": rmse,
                            "explained_variance": ev,
                        }
                    )
    return rows


def oracle(rows: list[dict]) -> list[dict]:
    """Per (fraction, seed, variant): the row of the smallest test RMSE (ties: larger lambda)."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["fraction"], r["seed"], r["variant"])
        b = best.get(key)
        if b is None or (r["rmse"], -r["alpha"]) < (b["rmse"], -b["alpha"]):
            best[key] = r
    return list(best.values())


def summarize_oracle(best: list[dict]) -> tuple[list[dict], list[dict]]:
    """Mean +- s.e. per (fraction, variant) (the error table's summary) and every variant
    against ``standardised`` on the same splits (corrected resampled t-test)."""
    as_table = [
        {
            "dataset": r["fraction"],
            "method": r["variant"],
            "seed": r["seed"],
            "alpha": r["alpha"],
            "error": r["rmse"],
            "explained_variance": r["explained_variance"],
            "test_size": 1.0 - r["fraction"],
        }
        for r in best
    ]
    summary = [
        {
            "fraction": s["dataset"],
            "variant": s["method"],
            "n": s["n"],
            "rmse": s["mean"],
            "rmse_sem": s["sem"],
            "explained_variance": s["explained_variance"],
            "explained_variance_sem": s["explained_variance_sem"],
            "alpha": s["alpha"],
        }
        for s in summarize(as_table)
    ]
    paired = [c for c in paired_comparisons(as_table) if "standardised" in (c["a"], c["b"])]
    return summary, paired


def write_markdown(path: Path, summary, paired, meta) -> None:
    fracs = list(dict.fromkeys(s["fraction"] for s in summary))
    by = {(s["fraction"], s["variant"]): s for s in summary}
    pby = {(c["dataset"], c["a"], c["b"]): c for c in paired}

    def table(cell) -> list[str]:
        """One row per variant, one column per training fraction."""
        out = [
            "| variant | " + " | ".join(f"train {100 * f:g} %" for f in fracs) + " |",
            "|---|" + "---|" * len(fracs),
        ]
        for name in VARIANTS:
            cells = [cell(by[(f, name)]) if (f, name) in by else "–" for f in fracs]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        return out

    def rmse_cell(s: dict) -> str:
        cell = f"{s['rmse']:.3f} ± {s['rmse_sem']:.3f} (λ={s['alpha']:.2g})"
        f, name = s["fraction"], s["variant"]
        c = pby.get((f, name, "standardised")) or pby.get((f, "standardised", name))
        if c is not None:  # d = a - b: flip when the variant is b
            sign = 1.0 if c["a"] == name else -1.0
            won = c["wins"] if sign > 0 else c["losses"]
            cell += f"; Δ {sign * c['mean_diff']:+.3f}, {won}/{c['n']}, p = {c['p_corrected']:.2g}"
        return cell

    lines = [
        "# School: standardised vs raw features for Local (per-task ridge, exact)",
        "",
        f"Reproduce: `{meta['command']}`  ",
        f"{meta['n_seeds']} splits per training fraction; λ ∈ {{"
        + ", ".join(f"{a:.3g}" for a in meta["alphas"])
        + "}, oracle (best test RMSE per split); closed-form solutions, runtime "
        f"{meta['runtime']:.0f} s.",
        "",
        "Mean per-task test RMSE, mean ± standard error over splits (most often chosen λ); "
        "Δ: paired difference against `standardised` on the same splits, wins, corrected "
        "resampled t-test p:",
        "",
        *table(rmse_cell),
        "",
        "Pooled explained variance at the same λ:",
        "",
        *table(lambda s: f"{s['explained_variance']:.3f} ± {s['explained_variance_sem']:.3f}"),
    ]
    path.write_text("\n".join(lines) + "\n")


def write_png(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fracs = list(dict.fromkeys(r["fraction"] for r in rows))
    fig, axes = plt.subplots(1, len(fracs), figsize=(4.2 * len(fracs), 3.8), layout="constrained")
    for ax, f in zip(np.atleast_1d(axes), fracs, strict=True):
        for i, name in enumerate(VARIANTS):
            sel = [r for r in rows if r["fraction"] == f and r["variant"] == name]
            alphas = sorted({r["alpha"] for r in sel})
            mean = [np.mean([r["rmse"] for r in sel if r["alpha"] == a]) for a in alphas]
            ax.plot(
                alphas,
                mean,
                marker="o",
                ms=3,
                color=f"C{i}",
                label=name,
                ls="--" if "free" in name else "-",
            )
        for a in DEFAULT_ALPHAS:  # the error table's grid
            ax.axvline(a, color="0.85", lw=0.8, zorder=0)
        low = min(r["rmse"] for r in rows if r["fraction"] == f)
        ax.set_ylim(0.98 * low, low + 2.5)  # the large-lambda blow-up would hide the minima
        ax.set_xscale("log")
        ax.set_xlabel("λ")
        ax.set_ylabel("mean per-task test RMSE")
        ax.set_title(f"train {100 * f:g} %", fontsize=10)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(
        "School, Local (exact per-task ridge): test RMSE vs λ, mean over splits "
        "(grey: the error table's λ grid)",
        fontsize=10,
    )
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 splits, 4 λ, 2 fractions")
    ap.add_argument("--dataset", default="school", help="MOCHA .mat name or path (school)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    ds = load_mocha(args.dataset)
    n_seeds = args.seeds if args.seeds is not None else (2 if args.quick else 10)
    fractions = (0.75, 0.1) if args.quick else FRACTIONS
    alphas = QUICK_ALPHAS if args.quick else ALPHAS
    prefix = "school_features_quick" if args.quick else "school_features"
    cmd = "python benchmarks/school_features.py" + (" --quick" if args.quick else "")
    for flag, value, default in (
        ("--dataset", args.dataset, "school"),
        ("--seeds", args.seeds, None),
        ("--out", args.out, "benchmarks/results"),
    ):
        if value != default:
            cmd += f" {flag} {value}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = run(ds, fractions, alphas, n_seeds)
    runtime = time.perf_counter() - t0
    summary, paired = summarize_oracle(oracle(rows))
    write_csv(out / f"{prefix}.csv", rows, list(rows[0]))
    meta = {"command": cmd, "n_seeds": n_seeds, "alphas": alphas, "runtime": runtime}
    write_markdown(out / f"{prefix}_summary.md", summary, paired, meta)
    write_png(out / f"{prefix}.png", rows)
    print((out / f"{prefix}_summary.md").read_text())
    print(f"wrote {out}/{prefix}.csv, {prefix}_summary.md, {prefix}.png")
    print(f"reproduce with: {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
