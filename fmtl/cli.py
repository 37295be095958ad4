"""Command line: ``fmtl demo`` (MOCHA vs Local vs Global, with certificates)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .datasets import (
    MultiTaskDataset,
    find_mocha,
    load_mocha,
    make_multitask_classification,
    mocha_data_paths,
    train_test_split_per_task,
)
from .estimators import MochaClassifier


def _per_task_error(clf, test: MultiTaskDataset, global_model: bool = False) -> float:
    errs = []
    for label, (X, y) in zip(test.task_labels, test, strict=True):
        if X.shape[0] == 0:
            continue
        tasks = np.full(X.shape[0], 0 if global_model else label, dtype=object)
        errs.append(np.mean(clf.predict(X, tasks) != y))
    return float(np.mean(errs))


def _run_dataset(
    name: str, data: MultiTaskDataset, alpha: float, outer: int, seed: int, out=sys.stdout
) -> dict:
    train, test = train_test_split_per_task(data, test_size=0.25, random_state=seed)
    X, y, tasks = train.stack()
    print(
        f"\n== {name}: {data.n_tasks} tasks, {data.n_features} features, "
        f"{data.n_total} samples (75/25 split per task), lambda = {alpha:g}",
        file=out,
    )
    mtl = dict(outer_iters=outer, inner_iters=200, verbose=25)
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
        t0 = time.perf_counter()
        clf = MochaClassifier(alpha=alpha, tol=1e-6, random_state=seed, **params)
        clf.fit(X, y, fit_tasks)
        results[method] = (
            _per_task_error(clf, test, is_global),
            time.perf_counter() - t0,
            clf.history_.last["rel_gap"],
        )
    return results


def demo(quick: bool = False, data_home: str | None = None, out=sys.stdout) -> dict:
    """Fit MOCHA, Local and Global on the synthetic default and on ``small`` if found."""
    seed = 0
    outer = 5 if quick else 10
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
        print(
            "small.mat not found; looked in: "
            + ", ".join(str(p) for p in mocha_data_paths(data_home)),
            file=out,
        )
    table = {}
    for name, data, alpha in datasets:
        table[name] = _run_dataset(name, data, alpha, outer, seed, out)
    print(
        "\nPrediction error (mean over tasks of the per-task test error), "
        "relative duality gap at the end, wall time",
        file=out,
    )
    print(f"{'data set':44s} {'method':7s} {'error':>7s} {'rel gap':>9s} {'time':>7s}", file=out)
    for name, res in table.items():
        for method, (err, secs, gap) in res.items():
            print(f"{name[:44]:44s} {method:7s} {err:7.4f} {gap:9.1e} {secs:6.2f}s", file=out)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fmtl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser(
        "demo", help="MOCHA vs Local vs Global on the embedded default and on `small` when found"
    )
    p_demo.add_argument("--quick", action="store_true", help="fewer outer rounds")
    p_demo.add_argument(
        "--data-home",
        default=None,
        help="directory holding small.mat (else $FMTL_DATA, ../shared)",
    )
    p_rep = sub.add_parser(
        "reproduce", help="the MOCHA paper's convergence figures or error table"
    )
    p_rep.add_argument("what", choices=("convergence", "errors"))
    p_rep.add_argument(
        "--dataset",
        default=None,
        help="one data set: a name (small, human-activity, google-glass, "
        "vehicle-sensor; errors also: math-achieve, chem97, digits) or a "
        "path to a MOCHA-layout .mat file",
    )
    p_rep.add_argument(
        "--network",
        default="lte",
        choices=("wifi", "lte", "3g"),
        help="communication cost of the convergence experiments",
    )
    p_rep.add_argument("--quick", action="store_true", help="smaller budgets (minutes)")
    p_rep.add_argument("--out", default="fmtl_out", help="output directory (CSV + PNG)")
    p_rep.add_argument("--data-home", default=None, help="directory holding small.mat")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(quick=args.quick, data_home=args.data_home)
    elif args.what == "convergence":
        from .reproduce import convergence_datasets, fastest_lines, run_convergence

        data = convergence_datasets(args.quick, args.data_home, args.dataset)
        summary = run_convergence(args.out, quick=args.quick, network=args.network, datasets=data)
        print("\n".join(fastest_lines(summary)))
        print(f"wrote {args.out}/convergence*.csv and convergence_*.png")
    else:
        from .errors_benchmark import main as errors_main

        argv = ["--out", args.out] + (["--quick"] if args.quick else [])
        argv += ["--only", args.dataset] if args.dataset else []
        argv += ["--data-home", args.data_home] if args.data_home else []
        return errors_main(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
