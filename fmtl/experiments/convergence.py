"""Reproduce the MOCHA paper's convergence experiments (Smith et al. 2017, Figures 2-4).

Primal sub-optimality ``P(W) - P*`` against the **cvxpy optimum** ``P*`` of the same
W-problem (not "the best value any method reached", as the MATLAB reference plots), vs
estimated time from the systems model (:mod:`fmtl.federated.systems`), for MOCHA, CoCoA,
mini-batch SDCA and mini-batch SGD:

(a) statistical heterogeneity (all nodes do the same work), (b) systems heterogeneity,
low and high variability, (c) WiFi / LTE / 3G communication costs, (d) fault tolerance:
MOCHA with every node dropping with probability 0, 0.1, 0.5, 0.9.

Every experiment runs twice: with ``Sigma = I / m`` as the reference's plots (independent
tasks), and with a **learned Sigma** (from a full MOCHA fit, then held fixed), which couples
the tasks. MOCHA runs with ``sigma_prime="adaptive"`` (the server's line search,
:mod:`fmtl.federated.line_search`), its one tuning-free rule; mini-batch SDCA and SGD get a
grid over their scaling. The real data set is the paper's full Land Mine
(``landmine.mat``) when found, else the reference code's subset ``small``. Because the
communication cost is a constant per round, one run gives the
curves of every network: ``est_time(c) = est_time(LTE) + round * (c - 100)``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._progress import bar, write
from ..datasets import (
    MultiTaskDataset,
    _not_found_note,
    find_mocha,
    load_mocha,
    make_multitask_classification,
    train_test_split_per_task,
)
from ..federated import SystemsModel, cocoa, mbsdca, mbsgd, mocha
from ..federated.systems import NETWORKS
from ..reference import solve_fixed_sigma
from ..relationships import identity_sigma

__all__ = [
    "Budget",
    "convergence_datasets",
    "DATASET_KEYS",
    "DPI",
    "DROP_PROBS",
    "fastest_lines",
    "METHODS",
    "PAPER_SHAPES",
    "replot",
    "run_convergence",
    "RUNS_PER_SIGMA",
    "SDCA_SCALINGS",
    "SGD_SCALINGS",
    "TARGET",
]

METHODS = ("MOCHA", "CoCoA", "Mb-SDCA", "Mb-SGD")
TARGET = 1e-3  # absolute primal sub-optimality used in the summaries
DPI = 150  # of the PNGs
_LTE = NETWORKS["lte"]

# The paper's data sets are not downloadable here: synthetic sets with their task counts
# and feature dimensions (clustered tasks, imbalanced sizes) stand in, labelled as such.
PAPER_SHAPES = {
    "Human Activity (synthetic)": (30, 561),
    "Google Glass (synthetic)": (38, 180),
    "Vehicle Sensor (synthetic)": (23, 100),
}


@dataclass(frozen=True)
class Budget:
    """Rounds per method and evaluation stride (the reference: 2000/500/5000/5000)."""

    mocha: int = 2000
    cocoa: int = 500
    mbsdca: int = 5000
    mbsgd: int = 5000
    eval_every: int = 10


SDCA_SCALINGS = (1.0, 10.0, 100.0, 1000.0)  # the grids mini-batch SDCA / SGD are tuned on
SGD_SCALINGS = (0.1, 1.0, 10.0, 100.0, 1000.0)
DROP_PROBS = (0.1, 0.5, 0.9)  # experiment (d), besides MOCHA without drops
# runs per (data set, Sigma), the progress bar's unit: the cvxpy optimum, the two scaling
# grids, every method under three systems settings, MOCHA under each drop probability
RUNS_PER_SIGMA = 1 + len(SDCA_SCALINGS) + len(SGD_SCALINGS) + 3 * len(METHODS) + len(DROP_PROBS)

DATASET_KEYS = {
    "human-activity": "Human Activity (synthetic)",
    "google-glass": "Google Glass (synthetic)",
    "vehicle-sensor": "Vehicle Sensor (synthetic)",
}


def convergence_datasets(
    quick: bool = False, data_home=None, only: str | None = None
) -> dict[str, MultiTaskDataset]:
    """``small`` (75 % train split, as the reference) and the paper-shaped synthetic sets.

    ``only``: ``"small"``, a path to a MOCHA-layout ``.mat`` file, or one of
    ``"human-activity"``, ``"google-glass"``, ``"vehicle-sensor"``.
    """
    out = {}
    if only is not None and only not in DATASET_KEYS:
        try:
            data = load_mocha(only, data_home)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"data set {only!r} is none of {', '.join(DATASET_KEYS)} (synthetic) and no "
                f"MOCHA .mat file of that name or path was found. {exc}"
            ) from exc
        return {data.name or str(only): train_test_split_per_task(data, 0.25, random_state=0)[0]}
    # the paper's full Land Mine data when present, else the reference code's subset
    for key, label in (("landmine", "Land Mine"), ("small", "small (Landmine subset)")):
        path = find_mocha(key, data_home)
        if path is not None and only is None:
            out[label] = train_test_split_per_task(
                load_mocha(path), test_size=0.25, random_state=0
            )[0]
            break
    else:
        if only is None:
            write(f"note: no real data set, synthetic only: {_not_found_note('small', data_home)}")
    shapes = dict(list(PAPER_SHAPES.items())[-1:]) if quick else PAPER_SHAPES
    if only is not None:
        shapes = {DATASET_KEYS[only]: PAPER_SHAPES[DATASET_KEYS[only]]}
    for name, (m, d) in shapes.items():
        i = list(PAPER_SHAPES).index(name)
        out[name] = make_multitask_classification(
            n_tasks=m,
            n_samples=40 if quick else 150,
            n_features=d,
            structure="clustered",
            n_clusters=3,
            noise=0.3,
            task_size_imbalance=0.3,
            random_state=100 + i,
        )
    return out


def _time_to(est_time: np.ndarray, subopt: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(subopt <= target)
    return float(est_time[hit[0]]) if hit.size else np.inf


def _tune_scaling(
    fn: Callable, grid, Xs, ys, lam, sigma, rounds, eval_every, tick: Callable[[], None]
) -> float:
    """The reference tunes the mini-batch scalings by hand; fmtl picks the grid value with
    the lowest final primal on the statistical-heterogeneity run (``tick`` after each)."""
    best, best_p = grid[0], np.inf
    for s in grid:
        h = fn(
            Xs,
            ys,
            lam,
            "hinge",
            sigma=sigma,
            rounds=rounds,
            scaling=s,
            eval_every=eval_every,
            random_state=0,
        ).history
        p = h["primal"][-1]
        if np.isfinite(p) and p < best_p:
            best, best_p = s, p
        tick()
    return best


def run_convergence(
    out: str | Path = "benchmarks/results",
    quick: bool = False,
    lam: float = 1e-4,
    network: str = "lte",
    data_home=None,
    datasets: dict[str, MultiTaskDataset] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = write,
) -> list[dict]:
    """Run every convergence experiment; write ``convergence.csv``,
    ``convergence_summary.csv`` and one PNG per experiment into ``out``.

    ``network`` sets the communication cost of experiments (a), (b) and (d); (c) shows
    all three. Returns the summary rows: per (dataset, Sigma, experiment, setting, method) the
    estimated time to reach sub-optimality 1e-3 (inf if never reached) and the final
    sub-optimality. ``progress``: a bar over the runs (a learned-Sigma fit per data set, then
    per Sigma the cvxpy optimum, the scaling grids and every method run) on stderr, drawn
    only on a terminal; ``log``: where the per-(data set, Sigma) lines go.
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {tuple(NETWORKS)}, got {network!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(500, 150, 1500, 1500, 10) if quick else Budget()
    datasets = convergence_datasets(quick, data_home) if datasets is None else datasets
    if not datasets:
        raise ValueError("no data set to run (small.mat not found and none given)")
    curves: list[dict] = []
    summary: list[dict] = []
    pbar = bar(
        len(datasets) * (1 + 2 * RUNS_PER_SIGMA), "convergence", unit="run", enabled=progress
    )
    for dname, data in datasets.items():
        Xs, ys = data.X, data.y
        m = data.n_tasks
        pbar.set_postfix_str(f"{dname[:24]}: learned Sigma")
        # learned Sigma, floor 1e-3 (the figures are about the W-step; a near-singular
        # Sigma makes every method crawl, see the README on the floor)
        learned = mocha(
            Xs,
            ys,
            lam,
            "hinge",
            outer_iters=5 if quick else 10,
            inner_iters=200,
            tol=1e-6,
            sigma_floor=1e-3,
            random_state=0,
        ).sigma
        pbar.update(1)
        for sname, sigma in (
            ("Sigma = I/m", identity_sigma(m)),
            ("learned Sigma (floor 1e-3)", learned),
        ):
            t0 = time.perf_counter()
            short = f"{dname[:24]}, {sname.split(' (')[0]}"

            def tick(what: str = "", _short=short) -> None:
                pbar.update(1)
                if what:
                    pbar.set_postfix_str(f"{_short}: {what}")

            pbar.set_postfix_str(f"{short}: cvxpy P*")
            ref = solve_fixed_sigma(Xs, ys, sigma, lam, loss="hinge")
            p_star = ref.objective
            tick("tuning Mb-SDCA")
            sc_sdca = _tune_scaling(
                mbsdca,
                SDCA_SCALINGS,
                Xs,
                ys,
                lam,
                sigma,
                budget.mbsdca // 5,
                budget.eval_every,
                tick,
            )
            pbar.set_postfix_str(f"{short}: tuning Mb-SGD")
            sc_sgd = _tune_scaling(
                mbsgd,
                SGD_SCALINGS,
                Xs,
                ys,
                lam,
                sigma,
                budget.mbsgd // 5,
                budget.eval_every,
                tick,
            )

            def run(method, systems, Xs=Xs, ys=ys, _sigma=sigma, _sdca=sc_sdca, _sgd=sc_sgd):
                kw = dict(systems=systems, random_state=0, eval_every=budget.eval_every)
                if method == "MOCHA":
                    return mocha(
                        Xs,
                        ys,
                        lam,
                        "hinge",
                        relationship="fixed",
                        sigma=_sigma,
                        sigma_prime="adaptive",
                        outer_iters=1,
                        inner_iters=budget.mocha,
                        local_frac=1.0,
                        record_local_gaps=False,
                        **kw,
                    )
                if method == "CoCoA":
                    return cocoa(
                        Xs, ys, lam, "hinge", sigma=_sigma, theta=0.5, rounds=budget.cocoa, **kw
                    )
                if method == "Mb-SDCA":
                    return mbsdca(
                        Xs,
                        ys,
                        lam,
                        "hinge",
                        sigma=_sigma,
                        local_frac=0.5,
                        scaling=_sdca,
                        rounds=budget.mbsdca,
                        **kw,
                    )
                return mbsgd(
                    Xs,
                    ys,
                    lam,
                    "hinge",
                    sigma=_sigma,
                    local_frac=0.5,
                    scaling=_sgd,
                    rounds=budget.mbsgd,
                    **kw,
                )

            runs = {}
            for method in METHODS:
                pbar.set_postfix_str(f"{short}: {method}")
                runs[("statistical", "none", method)] = run(method, SystemsModel())
                tick()
                for level in ("low", "high"):
                    runs[("systems", level, method)] = run(
                        method, SystemsModel(heterogeneity=level)
                    )
                    tick()
            for p in DROP_PROBS:
                pbar.set_postfix_str(f"{short}: MOCHA, drop {p}")
                runs[("faults", f"drop {p}", "MOCHA")] = run("MOCHA", SystemsModel(drop_prob=p))
                tick()
            runs[("faults", "drop 0.0", "MOCHA")] = runs[("statistical", "none", "MOCHA")]
            # networks: same runs, communication cost swapped (a constant per round)
            for net, cost in NETWORKS.items():
                for method in METHODS:
                    runs[("network", net, method)] = (runs[("statistical", "none", method)], cost)
            base = NETWORKS[network]
            for (exp, setting, method), r in runs.items():
                res, cost = r if isinstance(r, tuple) else (r, base)
                h = res.history
                est = h["est_time"] + h["round"] * (cost - _LTE)
                sub = h["primal"] - p_star
                # at most ~80 points per curve in the CSV (and the plots); the last kept
                for k in np.unique(np.r_[np.linspace(0, len(h) - 1, 80).astype(int), len(h) - 1]):
                    curves.append(
                        {
                            "dataset": dname,
                            "sigma": sname,
                            "experiment": exp,
                            "setting": setting,
                            "method": method,
                            "round": int(h["round"][k]),
                            "est_time": float(est[k]),
                            "primal": float(h["primal"][k]),
                            "suboptimality": float(sub[k]),
                        }
                    )
                summary.append(
                    {
                        "dataset": dname,
                        "sigma": sname,
                        "experiment": exp,
                        "setting": setting,
                        "method": method,
                        "time_to_1e-3": _time_to(est, sub, TARGET),
                        "final_suboptimality": float(sub[-1]),
                        "p_star": p_star,
                        "cvxpy_seconds": ref.solve_time,
                    }
                )
            log(
                f"{dname} / {sname}: P* = {p_star:.6f} (cvxpy {ref.solve_time:.1f}s), "
                f"scalings Mb-SDCA {sc_sdca:g}, Mb-SGD {sc_sgd:g}, "
                f"{time.perf_counter() - t0:.1f}s"
            )
    pbar.close()
    # network curves are the statistical ones shifted by (c - 100) per round: not repeated
    _write_csv(out / "convergence.csv", [r for r in curves if r["experiment"] != "network"])
    _write_csv(out / "convergence_summary.csv", summary)
    _plot_convergence(curves, out)
    (out / "convergence_summary.md").write_text(
        "# Fastest method to primal sub-optimality 1e-3 (estimated time)\n\n"
        + "\n".join(f"- {line}" for line in fastest_lines(summary))
        + "\n"
    )
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(
            {k: f"{v:.7g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows
        )


def fastest_lines(summary: list[dict]) -> list[str]:
    """One line per panel: the fastest method to 1e-3 and its factor over the runner-up."""
    panels: dict[tuple, list[dict]] = {}
    for r in summary:
        panels.setdefault((r["experiment"], r["setting"], r["dataset"], r["sigma"]), []).append(r)
    lines = []
    for (exp, setting, dname, sname), rows in sorted(panels.items()):
        rows = sorted(rows, key=lambda r: r["time_to_1e-3"])
        best = rows[0]
        if not np.isfinite(best["time_to_1e-3"]):
            lines.append(f"{exp} [{setting}] {dname}, {sname}: no method reached 1e-3")
            continue
        if len(rows) > 1:
            second = rows[1]
            factor = second["time_to_1e-3"] / best["time_to_1e-3"]
            what = (
                f"{factor:.1f}x less estimated time than {second['method']}"
                if np.isfinite(factor)
                else f"{second['method']} never reached it"
            )
        else:
            what = "only method"
        lines.append(
            f"{exp} [{setting}] {dname}, {sname}: {best['method']} fastest to 1e-3 "
            f"(t = {best['time_to_1e-3']:.3g}), {what}"
        )
    return lines


def _horizon(sel: list[dict], keys: list) -> float:
    """Right end of a panel's time axis.

    Twice the time the slowest method that reaches 1e-4 needs (so the interesting part is
    not squeezed against the axis), at most where the shortest run ends; then widened to
    cover what the summary reports: per setting, where the fastest method and the
    runner-up first reach ``TARGET`` (10 % margin), never past the longest run.
    """
    ends, hits = [], []
    reach: dict[str, list[float]] = {}
    for k in keys:
        pts = [r for r in sel if (r["setting"], r["method"]) == k]
        ends.append(max(r["est_time"] for r in pts))
        t = [r["est_time"] for r in pts if r["suboptimality"] <= 1e-4]
        hits.append(min(t) if t else np.inf)
        t_target = [r["est_time"] for r in pts if r["suboptimality"] <= TARGET]
        if t_target:
            reach.setdefault(k[0], []).append(min(t_target))
    finite = [h for h in hits if np.isfinite(h)]
    base = min(min(ends), 2.0 * max(finite)) if finite else min(ends)
    cover = max((sorted(times)[:2][-1] for times in reach.values()), default=0.0)
    return min(max(base, 1.1 * cover), max(ends))


def replot(out: str | Path = "benchmarks/results") -> None:
    """Redraw the PNGs from ``convergence.csv`` (network curves are derived from the
    statistical ones: ``est_time + round * (c - 100)``)."""
    out = Path(out)
    with open(out / "convergence.csv") as f:
        rows = list(csv.DictReader(f))
    curves = []
    for r in rows:
        r = {
            **r,
            "round": int(r["round"]),
            "est_time": float(r["est_time"]),
            "primal": float(r["primal"]),
            "suboptimality": float(r["suboptimality"]),
        }
        curves.append(r)
        if r["experiment"] == "statistical":
            for net, cost in NETWORKS.items():
                curves.append(
                    {
                        **r,
                        "experiment": "network",
                        "setting": net,
                        "est_time": r["est_time"] + r["round"] * (cost - _LTE),
                    }
                )
    _plot_convergence(curves, out)


def _plot_convergence(curves: list[dict], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    dsets = list(dict.fromkeys(r["dataset"] for r in curves))
    sigmas = list(dict.fromkeys(r["sigma"] for r in curves))
    for exp, settings in (
        ("statistical", ["none"]),
        ("systems", ["low", "high"]),
        ("network", list(NETWORKS)),
        ("faults", ["drop 0.0", "drop 0.1", "drop 0.5", "drop 0.9"]),
    ):
        rows_spec = [(s, sg) for sg in sigmas for s in ([None] if exp == "faults" else settings)]
        fig, axes = plt.subplots(
            len(rows_spec),
            len(dsets),
            squeeze=False,
            figsize=(4.4 * len(dsets), 3.2 * len(rows_spec) + 0.6),
            layout="constrained",
        )
        for i, (setting, sg) in enumerate(rows_spec):
            for j, dname in enumerate(dsets):
                ax = axes[i][j]
                sel = [
                    r
                    for r in curves
                    if r["experiment"] == exp
                    and r["dataset"] == dname
                    and r["sigma"] == sg
                    and (setting is None or r["setting"] == setting)
                ]
                keys = list(dict.fromkeys((r["setting"], r["method"]) for r in sel))
                if exp == "faults":  # legend in drop-probability order
                    keys.sort()
                for key in keys:
                    pts = [r for r in sel if (r["setting"], r["method"]) == key]
                    t = np.array([r["est_time"] for r in pts])
                    s = np.array([r["suboptimality"] for r in pts])
                    label = key[0] if exp == "faults" else key[1]
                    ax.semilogy(t, np.maximum(s, 1e-12), label=label, lw=1.4)
                ax.axhline(TARGET, color="grey", ls=":", lw=0.8)
                if keys:
                    ax.set_xlim(0, _horizon(sel, keys))
                ax.set_ylim(1e-6, None)
                where = sg if setting is None else f"{setting}, {sg}"
                ax.set_title(f"{dname}\n{where}", fontsize=9)
                ax.tick_params(labelsize=8)
                if i == len(rows_spec) - 1:
                    ax.set_xlabel("estimated time", fontsize=9)
                if j == 0:
                    ax.set_ylabel("primal sub-optimality", fontsize=9)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(
            f"MOCHA reproduction, {exp}: P - P* (P* from cvxpy) vs estimated time; dotted: 1e-3",
            fontsize=11,
        )
        fig.savefig(out / f"convergence_{exp}.png", dpi=DPI, bbox_inches="tight")
        plt.close(fig)
