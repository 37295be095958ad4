"""Defaults that work (issue 15): every estimator at its defaults vs the best alpha on a grid.

    python benchmarks/bench_defaults.py [--quick] [--out benchmarks/results]

Per data set and seed: a per-task 75/25 split (``train_test_split_per_task``), features
standardised on the training part (``StandardScaler``), then the mean over tasks of the
per-task test error (:func:`fmtl.experiments.error_protocol.per_task_error`: error rate,
or RMSE for regression) of

* ``MochaClassifier`` / ``MochaRegressor``, ``Local*`` and ``Global*`` at their defaults
  (``alpha="auto"``: ``r^2 / N``, ``r^2`` the mean squared row norm of the ``N`` training
  rows; ``r^2 / (N / m)`` for Local), at the old default ``alpha = 1`` and at every alpha
  of the grid ``{1e-3, 10^-2.5, ..., 1e3} x`` the auto value (13 points, each a fresh fit).
  "best on grid" is the grid's least *test* error: an oracle, the bound a tuned alpha
  could reach;
* ``MochaClassifierCV`` / ``MochaRegressorCV`` at their defaults (9 alphas, 5 per-task
  folds of the training part only), which chooses alpha without the test rows;
* the personalisation estimators (Ditto, pFedMe, Per-FedAvg, pFedHN, FedRep) and FedAvg at
  their defaults, against the global models.

Data: ``make_multitask_classification`` (``flip_y = 0.05``) and
``make_multitask_regression`` (``noise = 0.5``) with structure independent / clustered (3
clusters) / low_rank (rank 2) / all_related, 15 tasks x 100 rows x 20 features; the MOCHA
reference's ``small``, ``landmine`` (classification) and ``school`` (regression) if found
(``FMTL_DATA``, ``--data-home`` or ``../shared/data/mocha``; skipped with a note
otherwise). Every estimator fits its default intercept (``fit_intercept=True``): the
Land Mine sets have no constant column, and without one every model errs 21-42 %.

Full: 3 seeds (real data: 2 seeds; school and landmine without CV, whose 45 fits of 11,000
rows dominate the run). ``--quick``: one seed, synthetic clustered and independent plus
``small``, a 7-point grid (decades) and CV with 3 folds x 5 alphas.

Writes ``bench_defaults.csv`` (one row per data set, seed, estimator and setting),
``bench_defaults_summary.md`` (mean over seeds: error at default, best on grid, alpha = 1,
CV; the default's excess over the best) and ``bench_defaults.png`` (MOCHA's test error vs
alpha per data set, the default and the CV choice marked) into ``--out``
(``bench_defaults_quick*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from bench_speed import _load, write_results  # shared with bench_speed
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

import fmtl
from fmtl import datasets as fd
from fmtl.datasets import MultiTaskDataset
from fmtl.experiments.error_protocol import per_task_error

COLUMNS = [
    "dataset",
    "kind",
    "seed",
    "estimator",
    "setting",
    "alpha",
    "error",
    "seconds",
]
STRUCTURES = ("independent", "clustered", "low_rank", "all_related")
PERSONAL = ("FedAvg", "Ditto", "PFedMe", "PerFedAvg", "PFedHN", "FedRep")


def synthetic(kind: str, structure: str, seed: int) -> MultiTaskDataset:
    common = dict(n_tasks=15, n_samples=100, n_features=20, structure=structure)
    if kind == "classification":
        return fd.make_multitask_classification(**common, flip_y=0.05, random_state=seed)
    return fd.make_multitask_regression(**common, noise=0.5, random_state=seed)


def standardised_split(ds: MultiTaskDataset, seed: int):
    train, test = fd.train_test_split_per_task(ds, 0.25, random_state=seed)
    scaler = StandardScaler().fit(train.stack()[0])

    def scaled(part):
        return MultiTaskDataset(
            [scaler.transform(X) for X in part.X], part.y, task_labels=part.task_labels
        )

    return scaled(train), scaled(test)


def run_dataset(name, kind, ds, seed, grid_factors, cv_kw, personal) -> list[dict]:
    train, test = standardised_split(ds, seed)
    X, y, tasks = train.stack()
    suffix = "Classifier" if kind == "classification" else "Regressor"
    rows: list[dict] = []

    def record(estimator, setting, est, seconds):
        err = per_task_error(est, test)
        rows.append(
            dict(dataset=name, kind=kind, seed=seed, estimator=estimator, setting=setting,
                 alpha=float(getattr(est, "alpha_", np.nan)), error=err, seconds=seconds)
        )  # fmt: skip
        return err

    def fit(est):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            est.fit(X, y, tasks)
        return est, time.perf_counter() - start

    for family in ("Mocha", "Local", "Global"):
        cls = getattr(fmtl, family + suffix)
        default, secs = fit(cls(random_state=seed))
        record(family, "default", default, secs)
        record(family, "alpha=1", *fit(cls(alpha=1.0, random_state=seed)))
        # cold fits: what a user gets with that alpha (MOCHA's learned Sigma, 10 alternating
        # steps, ends elsewhere from a warm start)
        for factor in grid_factors:
            est = cls(alpha=float(default.alpha_ * factor), random_state=seed)
            record(family, f"grid {factor:.3g}", *fit(est))
    if cv_kw is not None:
        cv_cls = getattr(fmtl, f"Mocha{suffix}CV")
        record("MochaCV", "default", *fit(cv_cls(random_state=seed, **cv_kw)))
    if personal:
        for family in PERSONAL:
            est = getattr(fmtl, family + suffix)(random_state=seed)
            record(family, "default", *fit(clone(est)))
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per data set and estimator: mean over seeds of the error at the default, the best
    grid error (per seed), alpha = 1 and the CV choice."""
    out = []
    keys = sorted({(r["dataset"], r["kind"], r["estimator"]) for r in rows}, key=str)
    for dataset, kind, est in keys:
        mine = [r for r in rows if (r["dataset"], r["estimator"]) == (dataset, est)]
        seeds = sorted({r["seed"] for r in mine})

        def mean(setting, mine=mine, seeds=seeds):
            vals = [r["error"] for r in mine if r["setting"] == setting]
            return float(np.mean(vals)) if vals else np.nan

        # MochaCV is measured against MOCHA's grid
        source = [
            r
            for r in rows
            if (r["dataset"], r["estimator"]) == (dataset, "Mocha" if est == "MochaCV" else est)
            and r["setting"].startswith("grid")
        ]
        grid = [min(r["error"] for r in source if r["seed"] == s) for s in seeds if source]
        best = float(np.mean(grid)) if grid else np.nan
        default = mean("default")
        out.append(
            dict(dataset=dataset, kind=kind, estimator=est, seeds=len(seeds), default=default,
                 best_on_grid=best, alpha1=mean("alpha=1"),
                 excess_pct=100 * (default / best - 1) if best == best else np.nan)
        )  # fmt: skip
    return out


def write_summary(path: Path, summary: list[dict], header: str) -> None:
    def f(v, pct=False):
        return "" if not np.isfinite(v) else (f"{v:+.1f} %" if pct else f"{v:.4f}")

    lines = [
        "# Defaults that work: error at the defaults vs the best alpha on a grid",
        "",
        header,
        "",
        "Mean over seeds of the mean-over-tasks test error (error rate; RMSE for regression) on "
        "standardised features. *best on grid*: the least test error over 13 alphas (an "
        "oracle); *excess*: default over best on grid; *alpha = 1*: the old default. "
        "MochaCV chooses alpha by per-task CV on the training part only (its best on grid "
        "and excess are MOCHA's). The personalisation estimators have no alpha grid: compare "
        "their default with Global's and FedAvg's.",
        "",
    ]
    for kind in ("classification", "regression"):
        part = [s for s in summary if s["kind"] == kind]
        if not part:
            continue
        lines += [
            f"## {kind}",
            "",
            "| data set | estimator | default | best on grid | excess | alpha = 1 |",
            "|---|---|---|---|---|---|",
        ]
        for s in part:
            lines.append(
                f"| {s['dataset']} | {s['estimator']} | {f(s['default'])} | "
                f"{f(s['best_on_grid'])} | {f(s['excess_pct'], True)} | {f(s['alpha1'])} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    ncol = min(4, len(names))
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        mine = [r for r in rows if r["dataset"] == name and r["seed"] == min(
            r2["seed"] for r2 in rows if r2["dataset"] == name)]  # fmt: skip
        for est, color in (("Mocha", "tab:blue"), ("Local", "tab:orange"), ("Global", "tab:gray")):
            grid = sorted(
                (r["alpha"], r["error"])
                for r in mine
                if r["estimator"] == est and r["setting"].startswith("grid")
            )
            if not grid:
                continue
            a, e = np.array(grid).T
            ax.plot(a, e, color=color, lw=1.2, label=est)
            for r in mine:
                if r["estimator"] == est and r["setting"] == "default":
                    ax.plot(r["alpha"], r["error"], "*", ms=11, color=color, mec="black")
        for r in mine:
            if r["estimator"] == "MochaCV":
                ax.plot(r["alpha"], r["error"], "v", ms=9, color="tab:green", mec="black",
                        label="MochaCV")  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(f"{name} (seed {mine[0]['seed']})", fontsize=10)
        ax.set_xlabel("alpha (star: default 'auto')", fontsize=8)
        ax.set_ylabel("mean per-task test error", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Test error vs alpha; the defaults (stars) and the CV choice (triangle)")
    fig.tight_layout()
    fig.savefig(path, dpi=160)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--data-home", default=None, help="directory holding small.mat etc.")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    q = args.quick
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}; {os.cpu_count()} CPUs, load avg {_load()}",
        flush=True,
    )
    t_start = time.perf_counter()
    grid_factors = 10.0 ** np.arange(-3, 3.01, 1.0 if q else 0.5)
    cv_kw = dict(alphas=5, cv=3) if q else {}
    seeds = [0] if q else [0, 1, 2]
    structures = ("clustered", "independent") if q else STRUCTURES
    rows: list[dict] = []
    for kind in ("classification", "regression"):
        for structure in structures:
            for seed in seeds:
                name = f"{kind[:3]} {structure}"
                rows += run_dataset(
                    name, kind, synthetic(kind, structure, seed), seed, grid_factors, cv_kw, True
                )
                print(f"  {name}, seed {seed}: {time.perf_counter() - t_start:.0f}s", flush=True)
    real = [("small", "classification")]
    if not q:
        real += [("landmine", "classification"), ("school", "regression")]
    for name, kind in real:
        try:
            ds = fd.load_mocha(name, data_home=args.data_home)
        except FileNotFoundError:
            print(f"  {name}.mat not found: skipped (set FMTL_DATA or --data-home)")
            continue
        big = ds.n_total > 5_000
        for seed in seeds[:1] if q else seeds[:2]:
            rows += run_dataset(
                name, kind, ds, seed, grid_factors, None if big else cv_kw, not big or not q
            )
            print(f"  {name}, seed {seed}: {time.perf_counter() - t_start:.0f}s", flush=True)
    stem = "bench_defaults_quick" if q else "bench_defaults"
    summary = summarise(rows)
    header = (
        f"Reproduce: `python benchmarks/bench_defaults.py{' --quick' if q else ''}`; "
        f"{len(seeds)} seed(s); {platform.machine()}, Python {platform.python_version()}."
    )
    write_summary(out / f"{stem}_summary.md", summary, header)
    for s in summary:
        print(
            f"  {s['dataset']:24s} {s['estimator']:10s} default {s['default']:.4f}  "
            f"best {s['best_on_grid']:.4f}  excess {s['excess_pct']:+6.1f} %  "
            f"alpha=1 {s['alpha1']:.4f}"
        )
    write_results(out, stem, rows, COLUMNS, plot, "bench_defaults.py", q, args.out, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
