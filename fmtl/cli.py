"""The ``fmtl`` command: ``demo``, ``warmup`` and ``reproduce {convergence,errors}``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__
from ._progress import bar, write
from .datasets import (
    MultiTaskDataset,
    _not_found_note,
    find_mocha,
    load_mocha,
    make_multitask_classification,
    train_test_split_per_task,
)

DESCRIPTION = """\
fmtl: convex federated multi-task learning (MOCHA, Smith et al. 2017) with certified
duality gaps, and personalised federated learning baselines.


Run "fmtl COMMAND --help" (or "fmtl reproduce convergence --help") for details."""

EPILOG = """\
examples:
  fmtl demo --quick
  fmtl warmup
  fmtl reproduce convergence --quick --out fmtl_out
  fmtl reproduce errors --quick --out fmtl_out --data-home ~/mocha-data

data: MOCHA .mat files (small.mat, landmine.mat) are looked for in --data-home, then in
the directories of $FMTL_DATA, then in shared/data/mocha next to the checkout and in
../shared/data/mocha. small.mat ships with the MOCHA reference code
(https://github.com/gingsmith/fmtl, data/small.mat).

Progress bars go to stderr and are drawn only on a terminal. The first run compiles
numba kernels (a note says so); "fmtl warmup" does it ahead of time."""

DEMO_DESCRIPTION = """\
Fit three models with the hinge loss and print the mean per-task test error (75/25 split
per task), the final certified relative duality gap and the wall time of each:
  MOCHA   one model per task, coupled through a learned task relationship (Sigma)
  Local   one independent model per task
  Global  one model for all tasks (the pooled data)
on a clustered synthetic problem (20 tasks x 15 features) and, when found, on the MOCHA
reference data set small.mat (29 tasks x 9 features). MOCHA prints its certificates every
25 rounds. About 10 s once the kernels are compiled (see "fmtl warmup")."""

WARMUP_DESCRIPTION = """\
Compile every numba kernel of fmtl (dense and CSR variants: MOCHA's SDCA kernels,
certified and plain, objective and gradients, local SGD, kernel MOCHA) by running tiny
fits, and report how long it took. Compiled code is cached on disk (numba's cache, next
to the installed sources or in $NUMBA_CACHE_DIR), so later processes load it instead of
compiling: do this once after installing, e.g. before timing anything. With a warm cache
it only loads the kernels (seconds)."""

CONVERGENCE_DESCRIPTION = """\
Reproduce the MOCHA paper's convergence experiments (Smith et al. 2017, Figures 2-4):
primal sub-optimality P(W) - P* (P* the cvxpy optimum of the same problem) against the
systems model's estimated time, for MOCHA, CoCoA, mini-batch SDCA and mini-batch SGD,
under (a) statistical heterogeneity, (b) systems heterogeneity, (c) WiFi / LTE / 3G
communication costs and (d) nodes dropping out; each with Sigma = I/m and with a learned
Sigma. Data: the full Land Mine set (landmine.mat) or the reference subset small.mat when
found, and synthetic sets shaped like Human Activity, Google Glass and Vehicle Sensor.

Writes convergence.csv, convergence_summary.csv, convergence_summary.md and
convergence_{statistical,systems,network,faults}.png into --out, and prints the fastest
method to sub-optimality 1e-3 per panel. Full run: about 35 min on 2 cores; --quick
(shorter budgets, the real set and one synthetic set): about 7 min."""

ERRORS_DESCRIPTION = """\
Reproduce the MOCHA paper's prediction-error table (Smith et al. 2017, Table 1 protocol):
Constant, Global, Local, MTL (fixed mean-regularised Omega) and MOCHA (learned Sigma);
every task split 75/25 at random per seed, lambda chosen by 5-fold per-task
cross-validation, error = mean over tasks of the per-task test error (RMSE for
regression), mean +- standard error over the splits, with the mean per-task AUC
(classification) or the explained variance (regression) and a paired comparison of every
two methods on the same splits (corrected resampled t-test, Holm). Data: the paper's full
Land Mine (landmine.mat) and small.mat when found, synthetic sets shaped like Human
Activity, Google Glass and Vehicle Sensor, MathAchieve and Chem97 (extra "datasets"),
federated digits, and School (school.mat, regression at 75, 30 and 10 percent training,
features standardised per split unless --raw-features).

Writes errors.csv, errors_summary.csv, errors_paired.csv, errors_summary.md and errors.png
(errors_quick* with --quick; --prefix to rename) into --out. Full run (10 splits):
27-47 min on 2 cores without landmine and school, which add about 26 and 32 min;
--quick (2 splits, 3 lambdas, small + one synthetic set + digits): 1-5 min, depending
on the machine's load."""

CONVERGENCE_DATASETS = (
    "small, landmine (or another MOCHA .mat name found in the data directories), "
    "human-activity, google-glass, vehicle-sensor, or a path to a MOCHA-layout .mat file"
)


def _per_task_error(clf, test: MultiTaskDataset, global_model: bool = False) -> float:
    errs = []
    for label, (X, y) in zip(test.task_labels, test, strict=True):
        if X.shape[0] == 0:
            continue
        tasks = np.full(X.shape[0], 0 if global_model else label, dtype=object)
        errs.append(np.mean(clf.predict(X, tasks) != y))
    return float(np.mean(errs))


def _run_dataset(
    name: str,
    data: MultiTaskDataset,
    alpha: float,
    joint_tol: float | str,
    seed: int,
    out=sys.stdout,
    progress=None,
) -> dict:
    from .estimators import MochaClassifier

    train, test = train_test_split_per_task(data, test_size=0.25, random_state=seed)
    X, y, tasks = train.stack()
    write(
        f"\n== {name}: {data.n_tasks} tasks, {data.n_features} features, "
        f"{data.n_total} samples (75/25 split per task), lambda = {alpha:g}",
        out,
    )
    # MOCHA's joint solver, certified to joint_tol on the joint problem ("auto": 1e-4)
    mtl = dict(inner_iters=200, verbose=25, tol=joint_tol)
    independent = dict(relationship="identity", outer_iters=1, inner_iters=500)
    # Global: one model on the pooled data, i.e. every row in one task
    pooled = np.zeros(len(y), dtype=int)
    runs = [
        ("MOCHA", mtl, tasks, False),
        ("Local", independent, tasks, False),
        ("Global", independent, pooled, True),
    ]
    results = {}
    for method, params, fit_tasks, is_global in runs:
        if progress is not None:
            progress.set_postfix_str(f"{name.split(' ')[0]}: {method}")
        t0 = time.perf_counter()
        clf = MochaClassifier(alpha=alpha, random_state=seed, **params)
        clf.fit(X, y, fit_tasks)
        results[method] = (
            _per_task_error(clf, test, is_global),
            time.perf_counter() - t0,
            clf.history_.last["rel_gap"],
        )
        if progress is not None:
            progress.update(1)
    return results


def demo(
    quick: bool = False, data_home: str | None = None, out=sys.stdout, progress: bool = True
) -> dict:
    """Fit MOCHA, Local and Global on the synthetic default and on ``small`` if found.

    ``progress``: a bar over the fits on stderr (drawn only on a terminal).
    """
    seed = 0
    joint_tol = 1e-3 if quick else "auto"
    datasets = [
        (
            "synthetic (clustered, embedded default)",
            make_multitask_classification(
                n_tasks=20,
                n_samples=80,
                n_features=15,
                structure="clustered",
                n_clusters=3,
                noise=0.3,
                task_size_imbalance=0.3,
                random_state=seed,
            ),
            1e-3,
        )
    ]
    path = find_mocha("small", data_home)
    if path is not None:
        datasets.append((f"small ({path})", load_mocha(path), 1e-2))
    else:
        write(f"note: skipping the real data set: {_not_found_note('small', data_home)}", out)
    table = {}
    with bar(3 * len(datasets), "demo", unit="fit", enabled=progress) as pbar:
        for name, data, alpha in datasets:
            table[name] = _run_dataset(name, data, alpha, joint_tol, seed, out, pbar)
    write(
        "\nPrediction error (mean over tasks of the per-task test error), "
        "certified relative duality gap at the end (MOCHA: of the joint problem, W and "
        "Sigma), wall time",
        out,
    )
    write(f"{'data set':44s} {'method':7s} {'error':>7s} {'rel gap':>9s} {'time':>7s}", out)
    for name, res in table.items():
        for method, (err, secs, gap) in res.items():
            write(f"{name[:44]:44s} {method:7s} {err:7.4f} {gap:9.1e} {secs:6.2f}s", out)
    return table


def warmup_command(out=sys.stdout) -> dict[str, float]:
    """``fmtl warmup``: compile (or load) every kernel, report the seconds per stage."""
    from .solvers._jit import cache_dir, warmup

    write("compiling fmtl's numba kernels (or loading them from numba's cache) ...", out)
    times = warmup(log=lambda line: write(f"  {line}", out))
    where = cache_dir()
    write(
        f"done in {times['total']:.1f} s"
        + (f"; cached in {where}" if where else "")
        + ": later runs load the compiled kernels instead of compiling them.",
        out,
    )
    return times


def _build_parser() -> argparse.ArgumentParser:
    def raw(prog: str) -> argparse.HelpFormatter:
        # descriptions keep their line breaks; command names and their help on one line
        return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)

    parser = argparse.ArgumentParser(
        prog="fmtl", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    parser.add_argument("--version", action="version", version=f"fmtl {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    p_demo = sub.add_parser(
        "demo",
        help="fit MOCHA, Local and Global on a synthetic problem (and on small.mat when "
        "found) and print their test errors",
        description=DEMO_DESCRIPTION,
        formatter_class=raw,
    )
    p_demo.add_argument(
        "--quick",
        action="store_true",
        help="MOCHA certified to 1e-3 instead of 1e-4 on the joint problem",
    )
    p_demo.add_argument(
        "--data-home",
        default=None,
        metavar="DIR",
        help="directory holding small.mat (searched before $FMTL_DATA and ../shared/data)",
    )

    sub.add_parser(
        "warmup",
        help="compile the numba kernels ahead of time and report how long it took",
        description=WARMUP_DESCRIPTION,
        formatter_class=raw,
    )

    p_rep = sub.add_parser(
        "reproduce",
        help="re-run the MOCHA paper's experiments: convergence figures or error table",
        description="Re-run the MOCHA paper's experiments (Smith et al. 2017). "
        "'fmtl reproduce convergence --help' and 'fmtl reproduce errors --help' describe "
        "each.",
        formatter_class=raw,
    )
    rep = p_rep.add_subparsers(
        title="experiments", dest="what", required=True, metavar="EXPERIMENT"
    )
    p_conv = rep.add_parser(
        "convergence",
        help="sub-optimality vs estimated time of MOCHA, CoCoA, mini-batch SDCA and SGD "
        "(Figures 2-4)",
        description=CONVERGENCE_DESCRIPTION,
        formatter_class=raw,
    )
    p_err = rep.add_parser(
        "errors",
        help="prediction error of Constant, Global, Local, MTL and MOCHA with "
        "cross-validated lambda (Table 1)",
        description=ERRORS_DESCRIPTION,
        formatter_class=raw,
    )
    p_conv.add_argument(
        "--dataset",
        default=None,
        metavar="NAME|PATH",
        help=f"one data set: {CONVERGENCE_DATASETS}",
    )
    p_conv.add_argument(
        "--network",
        default="lte",
        choices=("wifi", "lte", "3g"),
        help="communication cost of experiments (a), (b) and (d) (default: lte)",
    )
    p_err.add_argument(
        "--dataset",
        default=None,
        metavar="NAMES|PATH",
        help="comma-separated data sets: small, human-activity, google-glass, "
        "vehicle-sensor, math-achieve, chem97, digits, another MOCHA .mat name found in "
        "the data directories (e.g. landmine), or a path to a MOCHA-layout .mat file",
    )
    p_err.add_argument(
        "--seeds", type=int, default=None, help="number of random splits (default 10; quick 2)"
    )
    p_err.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p_err.add_argument(
        "--train-fractions",
        default=None,
        metavar="F,F,...",
        help="training fractions for every data set, e.g. 0.1,0.3 (default: the paper's "
        "0.75; School also 0.3 and 0.1)",
    )
    p_err.add_argument(
        "--raw-features", action="store_true", help="do not standardise School's features"
    )
    p_err.add_argument("--prefix", default=None, help="output file name prefix")
    for p in (p_conv, p_err):
        p.add_argument("--quick", action="store_true", help="smaller budgets (minutes)")
        p.add_argument(
            "--out",
            default="fmtl_out",
            metavar="DIR",
            help="output directory for the CSV, Markdown and PNG files (default: fmtl_out)",
        )
        p.add_argument(
            "--data-home",
            default=None,
            metavar="DIR",
            help="directory holding the MOCHA .mat files (searched before $FMTL_DATA)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fmtl`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        return _run(args)
    except FileNotFoundError as exc:  # data not found: the message says where and how
        print(f"fmtl: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        demo(quick=args.quick, data_home=args.data_home)
        return 0
    if args.command == "warmup":
        warmup_command()
        return 0
    if args.what == "convergence":
        from .experiments.convergence import convergence_datasets, fastest_lines, run_convergence

        data = convergence_datasets(args.quick, args.data_home, args.dataset)
        summary = run_convergence(args.out, quick=args.quick, network=args.network, datasets=data)
        write("\n".join(fastest_lines(summary)))
        write(f"wrote {args.out}/convergence*.csv and convergence_*.png")
        return 0
    from .experiments.errors import main as errors_main

    argv = ["--out", args.out, "--jobs", str(args.jobs)] + (["--quick"] if args.quick else [])
    argv += ["--only", args.dataset] if args.dataset else []
    argv += ["--data-home", args.data_home] if args.data_home else []
    argv += ["--seeds", str(args.seeds)] if args.seeds is not None else []
    argv += ["--train-fractions", args.train_fractions] if args.train_fractions else []
    argv += ["--raw-features"] if args.raw_features else []
    argv += ["--prefix", args.prefix] if args.prefix else []
    return errors_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
