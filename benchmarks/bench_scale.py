"""Scale: MOCHA with 10,000 tasks on one machine, the Sigma-step's cost (dense O(m^3) vs
identity-plus-low-rank O(m d^2)), and how the time of a federated round grows with the
number of tasks m, samples per task n and features d (log-log, fitted slopes).

    python benchmarks/bench_scale.py [--quick] [--out benchmarks/results]

* 10,000 tasks x 100 samples x 50 features (hinge, learned Sigma, ``sigma_step="lowrank"``):
  two outer rounds (the second starts with a Sigma-step) run in a child process whose peak
  resident memory is read from the kernel (``os.wait4`` rusage, like ``/usr/bin/time -v``).
* Sigma-step: ``omega_update`` (dense eigendecomposition) vs ``omega_update_lowrank``
  (thin SVD) on the same ``W``, time and peak traced allocation (``tracemalloc``).
* Round time: the marginal time of a federated round, ``(t(H2) - t(H1)) / (H2 - H1)`` for two
  fits that differ only in the number of rounds (data packing and the final certificate
  cancel), identity Sigma, one numba thread (fmtl switches to threads from 2M stored
  entries, which would mix two regimes in one curve), median of 3.

Writes ``bench_scale.csv`` and ``bench_scale.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from fmtl.datasets import make_multitask_classification
from fmtl.federated import mocha
from fmtl.relationships import omega_update, omega_update_lowrank

LAM = 1e-3


def _data(m: int, n: int, d: int):
    ds = make_multitask_classification(
        n_tasks=m, n_samples=n, n_features=d, structure="clustered", noise=0.3, random_state=0
    )
    return ds.X, ds.y


def child(m: int, n: int, d: int) -> None:
    """Run in a fresh process: two outer rounds of learned-Sigma MOCHA, print JSON."""
    t0 = time.perf_counter()
    Xs, ys = _data(m, n, d)
    t_data = time.perf_counter() - t0
    mocha(Xs[:20], ys[:20], LAM, "hinge", sigma_step="lowrank", outer_iters=2, inner_iters=1)
    out = {"m": m, "n": n, "d": d, "data_seconds": t_data}
    for rule in ("spectral", "gershgorin"):
        t0 = time.perf_counter()
        res = mocha(
            Xs,
            ys,
            LAM,
            "hinge",
            sigma_step="lowrank",
            sigma_prime=rule,
            outer_iters=2,
            inner_iters=5,
            sigma_floor=1e-9,
            eval_every=5,
            random_state=0,
        )
        out[f"fit_seconds_{rule}"] = time.perf_counter() - t0
        out[f"sigma_prime_{rule}"] = float(res.history["rho"][-1])
        out["rank"] = res.sigma.rank
        out["final_gap"] = float(res.history["gap"][-1])
    t0 = time.perf_counter()
    S = omega_update_lowrank(res.coef, 1e-9)
    out["sigma_step_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    S @ res.B
    out["aggregation_seconds"] = time.perf_counter() - t0
    print(json.dumps(out))


def run_child(m: int, n: int, d: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(m), str(n), str(d)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child {cmd} failed with {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_gib"] = usage.ru_maxrss / 2**20  # kilobytes on Linux
    return res


def sigma_step_costs(ms, d: int, dense_max: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for m in ms:
        Wt = rng.normal(size=(m, d))
        for kind, f in (("dense", omega_update), ("lowrank", omega_update_lowrank)):
            if kind == "dense" and m > dense_max:
                continue
            f(Wt[:8], 1e-3 / 8)  # warm
            times = []
            for _ in range(3):
                tracemalloc.start()
                t0 = time.perf_counter()
                f(Wt, 1e-6 / m)
                times.append(time.perf_counter() - t0)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            rows.append(
                {
                    "kind": f"sigma_step_{kind}",
                    "m": m,
                    "n": 0,
                    "d": d,
                    "seconds": float(np.median(times)),
                    "peak_mib": peak / 2**20,
                }
            )
            print(
                f"Sigma-step {kind:8s} m={m:6d} d={d}: {rows[-1]['seconds']:.4f} s, "
                f"peak {rows[-1]['peak_mib']:.1f} MiB"
            )
    return rows


def round_time(m: int, n: int, d: int, h1: int, h2: int) -> float:
    Xs, ys = _data(m, n, d)
    kw = dict(
        relationship="fixed", sigma_step="lowrank", outer_iters=1, random_state=0, n_threads=1
    )
    mocha(Xs[:2], ys[:2], LAM, "hinge", inner_iters=1, **kw)  # warm (compiled or cached)
    diffs = []
    for _ in range(3):
        ts = []
        for h in (h1, h2):
            t0 = time.perf_counter()
            mocha(Xs, ys, LAM, "hinge", inner_iters=h, eval_every=h, **kw)
            ts.append(time.perf_counter() - t0)
        diffs.append((ts[1] - ts[0]) / (h2 - h1))
    return float(np.median(diffs))


def slope(x, y) -> float:
    # a differenced round time can come out <= 0 on a busy machine: no log-log slope then
    if np.any(np.asarray(y, dtype=float) <= 0):
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    q = args.quick
    rows = []
    # (1) the 10,000-task run
    big = (1000, 100, 50) if q else (10000, 100, 50)
    r = run_child(*big)
    rows.append(
        {
            "kind": "outer_round_lowrank",
            "m": big[0],
            "n": big[1],
            "d": big[2],
            "seconds": r["fit_seconds_spectral"],
            "peak_mib": r["peak_rss_gib"] * 1024,
            "details": json.dumps(r),
        }
    )
    print(
        f"{big[0]} tasks x {big[1]} x {big[2]}: peak RSS {r['peak_rss_gib']:.2f} GiB "
        f"(target < 4), 2 outer rounds x 5 rounds in {r['fit_seconds_spectral']:.1f} s "
        f"(spectral sigma'), {r['fit_seconds_gershgorin']:.1f} s (Gershgorin); "
        f"Sigma-step {r['sigma_step_seconds']:.2f} s, Sigma B {r['aggregation_seconds']:.4f} s"
    )
    # (2) the Sigma-step, dense vs low rank
    ms = (100, 200, 400, 800) if q else (250, 500, 1000, 2000, 4000, 10000, 30000)
    rows += sigma_step_costs(ms, 50, dense_max=400 if q else 2000)
    # (3) round time vs m, n, d
    base = {"m": 100, "n": 100, "d": 50}
    grids = {
        "m": (30, 100, 300) if q else (100, 300, 1000, 3000, 10000),
        "n": (50, 100, 200) if q else (50, 100, 200, 400, 800),
        "d": (25, 50, 100) if q else (25, 50, 100, 200, 400),
    }
    h1, h2 = (1, 3) if q else (2, 12)
    for var, values in grids.items():
        for v in values:
            p = {**base, var: v}
            t = round_time(p["m"], p["n"], p["d"], h1, h2)
            rows.append({"kind": f"round_vs_{var}", **p, "seconds": t, "peak_mib": np.nan})
            print(f"round time, {var}={v:6d} ({p}): {t * 1e3:.3f} ms")
    fits = {}
    for var in grids:
        rs = [r for r in rows if r["kind"] == f"round_vs_{var}"]
        fits[f"round_vs_{var}"] = slope([r[var] for r in rs], [r["seconds"] for r in rs])
    for kind in ("sigma_step_dense", "sigma_step_lowrank"):
        rs = [r for r in rows if r["kind"] == kind]
        fits[kind] = slope([r["m"] for r in rs], [r["seconds"] for r in rs])
    print("fitted log-log slopes:", {k: round(v, 2) for k, v in fits.items()})
    for r in rows:
        r["slope_of_kind"] = fits.get(r["kind"], np.nan)
        r.setdefault("details", "")
    suffix = "_quick" if q else ""
    path = out / f"bench_scale{suffix}.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote {path}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: skipped the PNG (pip install fmtl[plot])")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        ax = axes[0]
        for var, mk in zip(grids, "osd", strict=True):
            rs = [r for r in rows if r["kind"] == f"round_vs_{var}"]
            x = np.array([r[var] for r in rs], float) / base[var]
            ax.loglog(
                x,
                [r["seconds"] for r in rs],
                marker=mk,
                label=f"vs {var} (slope {fits['round_vs_' + var]:.2f})",
            )
        ax.set_xlabel("size / base size (base m=100, n=100, d=50)")
        ax.set_ylabel("seconds per federated round")
        ax.legend()
        ax.set_title("federated round time")
        ax = axes[1]
        for kind, mk in (("sigma_step_dense", "o"), ("sigma_step_lowrank", "s")):
            rs = [r for r in rows if r["kind"] == kind]
            ax.loglog(
                [r["m"] for r in rs],
                [r["seconds"] for r in rs],
                marker=mk,
                label=f"{kind[11:]} (slope {fits[kind]:.2f})",
            )
        ax.set_xlabel("tasks m (d = 50)")
        ax.set_ylabel("seconds per Sigma-step")
        ax.set_title("Sigma-step: eigh O(m^3) vs thin SVD O(m d^2)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"bench_scale{suffix}.png", dpi=150, bbox_inches="tight")
        print(f"wrote {out / f'bench_scale{suffix}.png'}")
    print("reproduce with: python benchmarks/bench_scale.py" + (" --quick" if q else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
