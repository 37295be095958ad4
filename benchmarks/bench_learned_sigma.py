"""A learned Sigma to its joint optimum: fmtl's certified time against cvxpy's joint SDP.

    python benchmarks/bench_learned_sigma.py [--quick] [--only NAMES] [--cvxpy-limit S]

For every data set (standardised, liblinear's constant column appended as the estimators'
default intercept, ``alpha="auto"``, ``sigma_floor = 1e-6``) and loss:

* **cvxpy**: :func:`fmtl.reference.solve_joint` (Clarabel) solves the joint SDP, timed;
  ``J*`` its objective (a run past ``--cvxpy-limit`` seconds is stopped and reported so);
* **fmtl (joint L-BFGS)**: ``mocha(..., sigma_solver="lbfgs", tol=1e-4)``, what
  ``MochaClassifier()`` / ``MochaRegressor()`` run by default: the time and communication
  rounds until the certified joint relative gap ``(P(W) - D(alpha)) / |P(W)|`` is
  ``<= 1e-4``, then its true sub-optimality ``(P(W) - J*) / |J*|``;
* **alternation**: the paper's outer loop as the estimators ran it before (W-steps of up
  to 100 rounds certified to 1e-6, then the closed-form Sigma-step), 30 outer rounds:
  the first round at which ``P(W, Sigma_k) - J*`` (an upper bound on its sub-optimality)
  is ``<= 1e-4 |J*|``, or its last.

Ratios are measured in one process, one after the other. Writes
``bench_learned_sigma.csv`` (one row per method and problem), ``bench_learned_sigma_curves.csv``
(sub-optimality and certificate per W-step), ``bench_learned_sigma_summary.md`` and
``bench_learned_sigma.png`` (``*_quick*`` with ``--quick``), and prints the command that
reproduces them.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).parent))
from learned_sigma_study import EPS, standardised  # noqa: E402

from fmtl.datasets import (  # noqa: E402
    load_mocha,
    make_multitask_classification,
    make_multitask_regression,
)
from fmtl.estimators import AUTO_JOINT_TOL, _auto_alpha  # noqa: E402
from fmtl.experiments.errors import write_csv  # noqa: E402
from fmtl.federated import mocha  # noqa: E402
from fmtl.reference import (  # noqa: E402
    CLARABEL_SETTINGS_JOINT,
    ReferenceSolveError,
    solve_joint,
)

TOL = AUTO_JOINT_TOL
ALT_OUTER = 30  # the alternation's outer rounds (the estimators' old default: 10)
DPI = 150
FIELDS = ["dataset", "loss", "method", "time", "rounds", "steps", "subopt", "certificate"]
CURVE_FIELDS = ["dataset", "loss", "method", "step", "time", "rounds", "subopt", "certificate"]


def problems(quick: bool) -> list:
    """``(name, dataset, losses, synthetic)``; the real sets when their files are found."""
    out = [
        (
            "synthetic clusters (classification, 30 x 5)",
            make_multitask_classification(
                n_tasks=30, n_samples=60, n_features=5, structure="clustered", random_state=0
            ),
            ("hinge", "logistic"),
        ),
        (
            "synthetic low rank (regression, 40 x 8)",
            make_multitask_regression(
                n_tasks=40, n_samples=50, n_features=8, structure="low_rank", random_state=0
            ),
            ("squared",),
        ),
    ]
    real = (("small", ("hinge",)),) if quick else (
        ("landmine", ("hinge", "logistic")), ("school", ("squared",)),
    )  # fmt: skip
    for name, losses in real:
        try:
            out.append((name, load_mocha(name), losses))
        except (FileNotFoundError, OSError) as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
    return out


def reference(aug, ys, lam, loss, limit):
    """``(J*, seconds)`` from Clarabel, or ``(nan, seconds)`` once ``limit`` is spent:
    solve_joint's settings ladder, one step per call (every setting given) with the time
    that is left, then one level looser."""
    t0 = time.perf_counter()
    loose = dict(tol_gap_abs=1e-7, tol_gap_rel=1e-7, tol_feas=1e-7, max_iter=1000)
    for step in (*CLARABEL_SETTINGS_JOINT, loose):
        left = limit - (time.perf_counter() - t0)
        if left <= 0:
            break
        opts = {"equilibrate_enable": True, "max_iter": 500, **step}
        opts["time_limit"] = left
        try:
            objective = solve_joint(aug, ys, lam, loss=loss, eps=EPS, **opts).objective
            return objective, time.perf_counter() - t0
        except ReferenceSolveError:
            continue
    return float("nan"), time.perf_counter() - t0


def run_joint(aug, ys, lam, loss, J):
    t0 = time.perf_counter()
    res = mocha(aug, ys, lam, loss, sigma_solver="lbfgs", tol=TOL, outer_iters=500,
                inner_iters=100, random_state=0)  # fmt: skip
    elapsed = time.perf_counter() - t0
    h = res.history
    curve = [
        dict(step=r["outer"], time=r["wall_time"], rounds=r["round"],
             subopt=(r["primal"] - J) / abs(J), certificate=r["rel_gap"])
        for r in h
    ]  # fmt: skip
    last = h.last
    row = dict(time=elapsed, rounds=int(last["round"]), steps=len(h))
    row.update(subopt=(last["primal"] - J) / abs(J), certificate=float(last["rel_gap"]))
    return row, curve


def run_alternation_estimator_like(aug, ys, lam, loss, J, outer=ALT_OUTER):
    """MOCHA's alternation as the estimators ran it before the joint solver (certified
    W-steps of up to 100 rounds to 1e-6, adaptive sigma', auto local work), ``outer`` outer
    rounds. Sub-optimality per evaluated round from History's primal ``P(W, Sigma_k) >=
    P(W)``: an upper bound on the true one (conservative for "reached 1e-4")."""
    res = mocha(aug, ys, lam, loss, sigma_solver="alternation", outer_iters=outer,
                inner_iters=100, tol=1e-6, sigma_prime="adaptive", local_work="auto",
                random_state=0)  # fmt: skip
    h = res.history
    return [
        dict(step=int(r["outer"]) + 1, time=float(r["wall_time"]), rounds=i + 1,
             subopt=(r["primal"] - J) / abs(J),
             certificate=(r["primal"] - r["joint_dual"]) / abs(r["primal"]))
        for i, r in enumerate(h)
    ]  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="synthetic sets and small")
    ap.add_argument("--only", help="comma-separated problem names (substrings)")
    ap.add_argument("--cvxpy-limit", type=float, help="seconds for cvxpy per problem")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    limit = args.cvxpy_limit or (120.0 if args.quick else 1800.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench_learned_sigma_quick" if args.quick else "bench_learned_sigma"
    rows, curves = [], []
    for name, ds, losses in problems(args.quick):
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        _, aug, ys0 = standardised(ds)
        lam = _auto_alpha(aug, constant=1.0)
        for loss in losses:
            ys = ys0
            if loss != "squared":
                ys = [np.where(y > 0, 1.0, -1.0) for y in ys0]
            J, t_ref = reference(aug, ys, lam, loss, limit)
            base = dict(dataset=name, loss=loss)
            rows.append(dict(base, method="cvxpy (Clarabel)", time=t_ref, subopt=0.0))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                row, curve = run_joint(aug, ys, lam, loss, J)
                rows.append(dict(base, method="fmtl joint L-BFGS", **row))
                curves += [dict(base, method="fmtl joint L-BFGS", **c) for c in curve]
                if np.isfinite(J):
                    alt = run_alternation_estimator_like(aug, ys, lam, loss, J)
                    hit = next((r for r in alt if r["subopt"] <= TOL), alt[-1])
                    keep = ("time", "rounds", "subopt", "certificate")
                    found = {k: hit[k] for k in keep}
                    rows.append(dict(base, method="alternation", steps=hit["step"], **found))
                    curves += [dict(base, method="alternation", **r) for r in alt]
            print(f"{name} / {loss}: J* = {J:.8f} in {t_ref:.1f} s; fmtl {row['time']:.2f} s, "
                  f"certificate {row['certificate']:.1e}, sub-opt. {row['subopt']:.1e}",
                  flush=True)  # fmt: skip
            write_csv(out / f"{stem}.csv", rows, FIELDS)
            write_csv(out / f"{stem}_curves.csv", curves, CURVE_FIELDS)
            (out / f"{stem}_summary.md").write_text("\n".join(summary(rows, limit)) + "\n")
    plot(curves, rows, out / f"{stem}.png")
    print((out / f"{stem}_summary.md").read_text())
    given = sys.argv[1:] if argv is None else [a for a in argv if a != "--out" and a != args.out]
    cmd = "python " + " ".join(["benchmarks/bench_learned_sigma.py", *given])
    print(f"wrote {out / stem}.csv, _curves.csv, _summary.md, .png; reproduce: {cmd}")
    return 0


def summary(rows: list, limit: float) -> list[str]:
    lines = [
        "# A learned Sigma to its joint optimum: fmtl against cvxpy",
        "",
        f"Time to a certified joint relative gap of {TOL:g} (fmtl), to the SDP's optimum "
        "(cvxpy/Clarabel), and to a true sub-optimality of 1e-4 or the budget (alternation);",
        'standardised features with a constant column, `alpha="auto"`, `sigma_floor = 1e-6`,',
        "one process, one method after the other. Sub-optimality `(P(W) - J*) / |J*|`;",
        "certificate `(P(W) - D(alpha)) / |P(W)|` (the exact joint dual, a bound on it).",
        "",
        "| data set | loss | cvxpy s | fmtl s | fmtl / cvxpy | fmtl rounds | fmtl certificate "
        "| fmtl sub-opt. | alternation: s / rounds / sub-opt. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = dict.fromkeys((r["dataset"], r["loss"]) for r in rows)
    for name, loss in keys:
        by = {r["method"]: r for r in rows if (r["dataset"], r["loss"]) == (name, loss)}
        ref, fm, alt = (
            by.get("cvxpy (Clarabel)"),
            by.get("fmtl joint L-BFGS"),
            by.get("alternation"),
        )
        if ref is None or fm is None:
            continue
        solved = np.isfinite(fm["subopt"])
        t_ref = f"{ref['time']:.1f}" if solved else f"> {limit:.0f} (stopped)"
        ratio = fm["time"] / ref["time"]
        ratio = f"{ratio:.3f}" if solved else f"< {ratio:.4f}"
        sub = f"{fm['subopt']:.1e}" if solved else "(no J*)"
        alt_cell = f"{alt['time']:.1f} / {alt['rounds']} / {alt['subopt']:.1e}" if alt else "-"
        lines.append(
            f"| {name} | {loss} | {t_ref} | {fm['time']:.2f} | {ratio} | {fm['rounds']} | "
            f"{fm['certificate']:.1e} | {sub} | {alt_cell} |"
        )
    return lines


def plot(curves: list, rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys((c["dataset"], c["loss"]) for c in curves))
    if not keys:
        return
    cols = min(2, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(7.0 * cols, 4.6 * nrows), squeeze=False)
    for ax in axes.ravel()[len(keys) :]:
        ax.set_visible(False)
    for ax, (name, loss) in zip(axes.ravel(), keys, strict=False):
        for method in ("fmtl joint L-BFGS", "alternation"):
            cs = [
                c for c in curves if (c["dataset"], c["loss"], c["method"]) == (name, loss, method)
            ]
            if not cs:
                continue
            t = [c["time"] for c in cs]
            line = ax.plot(t, [max(c["subopt"], 1e-12) for c in cs], marker="o", ms=3,
                           label=f"{method}: sub-optimality")[0]  # fmt: skip
            ax.plot(t, [max(c["certificate"], 1e-12) for c in cs], ls=":",
                    color=line.get_color(), label=f"{method}: certificate")  # fmt: skip
        ref = next(r for r in rows if (r["dataset"], r["loss"]) == (name, loss))
        ax.axvline(ref["time"], color="k", lw=0.8, ls="--", label="cvxpy's time to J*")
        ax.axhline(TOL, color="grey", lw=0.6)
        ax.set_yscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("relative to |J*|")
        ax.set_title(f"{name}, {loss}", fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


if __name__ == "__main__":
    raise SystemExit(main())
