"""Why MOCHA's learned-Sigma refits on the full Land Mine data stop at their round cap at
small lambda: the W-step's duality gap falls like 1/rounds, whatever the local work.

    python benchmarks/landmine_wstep.py [--quick] [--out benchmarks/results]

Setting: the error protocol's split 0 of ``landmine.mat`` (75 % per task for training), hinge
loss, ``lam`` in {1e-3, 1e-4} (1e-4 is the lambda the protocol picks for MOCHA). For each
``lam`` and each Sigma floor (1e-6, the default, and 1e-3):

1. ``MochaClassifier(relationship="learned")`` with the protocol's settings (10 outer x 50
   inner rounds) gives the learned ``Sigma``;
2. the W-step for that *fixed* ``Sigma`` is run on its own (``mocha(relationship="fixed",
   sigma=Sigma, sigma_prime="adaptive")``) for ``ROUNDS`` rounds with 1, 8 and 64 local
   passes per round, recording the certified relative duality gap;
3. the same W-step solved centrally, as one SVM on the Kronecker features
   ``phi(x, t) = (Sigma^{1/2})_t (x) x`` (an exact reformulation: ``W = V Sigma^{1/2}``),
   by liblinear (``LinearSVC(dual=True)`` with per-sample ``C = 1 / (lam n_t)``) for a
   ladder of tolerances: iterations (passes) against relative sub-optimality.

Columns of ``landmine_wstep.csv``: ``lam, floor, solver, local_passes, rounds, rel_gap``
(MOCHA: certified relative gap after ``rounds`` rounds) or ``iters, rel_subopt`` (liblinear).
The summary fits ``log gap ~ a + b log rounds`` over the second half of each MOCHA curve and
extrapolates the rounds needed for 1e-5. ``--quick``: 200 rounds, lam = 1e-4 only, floor
1e-6 only (the full run: 2,000 rounds).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from bench_speed import write_results

from fmtl import datasets as fd
from fmtl import mocha
from fmtl.estimators import MochaClassifier

COLUMNS = ["lam", "floor", "solver", "local_passes", "rounds", "rel_gap", "iters", "rel_subopt"]


def learned_sigma(tr, lam: float, floor: float) -> np.ndarray:
    X, y, t = tr.stack()
    clf = MochaClassifier(
        alpha=lam, outer_iters=10, inner_iters=50, tol=1e-5, sigma_floor=floor, random_state=0
    )
    return clf.fit(X, y, tasks=t).sigma_


def wstep_curves(Xs, ys, lam, sigma, rounds, passes) -> list[dict]:
    rows = []
    for lp in passes:
        res = mocha(
            Xs, ys, lam, relationship="fixed", sigma=sigma, outer_iters=1, inner_iters=rounds,
            tol=1e-5, sigma_prime="adaptive", local_frac=float(lp), random_state=0,
            eval_every=max(1, rounds // 100),
        )  # fmt: skip
        h = res.history
        for r, g in zip(h["round"], h["rel_gap"], strict=True):
            rows.append({"solver": "mocha", "local_passes": lp, "rounds": int(r), "rel_gap": g})
    return rows


def central_ladder(Xs, ys, lam, sigma) -> list[dict]:
    from scipy.linalg import sqrtm
    from sklearn.svm import LinearSVC

    L = np.real(sqrtm(sigma))
    Z = np.vstack([np.kron(L[t : t + 1, :], X) for t, X in enumerate(Xs)])
    Y = np.concatenate(ys)
    sw = np.concatenate([np.full(len(y), 1.0 / (lam * len(y))) for y in ys])
    bounds = np.concatenate([[0], np.cumsum([len(y) for y in ys])])

    def primal(v):
        z = np.maximum(0.0, 1.0 - Y * (Z @ v))
        return 0.5 * lam * v @ v + sum(
            z[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )

    def fit(tol):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = LinearSVC(loss="hinge", dual=True, fit_intercept=False, C=1.0, tol=tol,
                          max_iter=10**6).fit(Z, Y, sample_weight=sw)  # fmt: skip
        return primal(m.coef_.ravel()), int(m.n_iter_)

    p_star, _ = fit(1e-9)
    rows = []
    for tol in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5):
        p, iters = fit(tol)
        rows.append({"solver": "liblinear (central)", "iters": iters,
                     "rel_subopt": max(0.0, (p - p_star) / p_star)})  # fmt: skip
    return rows


def rate_summary(rows) -> list[str]:
    lines = []

    def key(r):
        return r["lam"], r["floor"], r["local_passes"]

    mocha_rows = [r for r in rows if r["solver"] == "mocha"]
    for lam, floor, lp in sorted({key(r) for r in mocha_rows}):
        c = [r for r in mocha_rows if key(r) == (lam, floor, lp)]
        rd = np.array([r["rounds"] for r in c], float)
        g = np.array([r["rel_gap"] for r in c], float)
        half = rd >= rd.max() / 2
        b, a = np.polyfit(np.log(rd[half]), np.log(np.maximum(g[half], 1e-300)), 1)
        need = np.exp((np.log(1e-5) - a) / b) if b < 0 else np.inf
        lines.append(
            f"lam={lam:g} floor={floor:g} local passes={lp}: gap {g[-1]:.2e} after "
            f"{int(rd[-1])} rounds, slope {b:.2f} (log gap vs log rounds), "
            f"~{need:.2g} rounds to 1e-5 at that rate"
        )
    return lines


def plot(rows, path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = sorted({(r["lam"], r["floor"]) for r in rows})
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (lam, floor) in zip(axes[0], keys, strict=True):
        for lp in sorted({r["local_passes"] for r in rows if r["solver"] == "mocha"}):
            c = [r for r in rows if r["solver"] == "mocha" and r["local_passes"] == lp
                 and (r["lam"], r["floor"]) == (lam, floor)]  # fmt: skip
            ax.loglog([r["rounds"] for r in c], [r["rel_gap"] for r in c],
                      label=f"MOCHA, {lp} local pass(es)/round")  # fmt: skip
        here = [r for r in rows if (r["lam"], r["floor"]) == (lam, floor)]
        lib = [r for r in here if r["solver"] != "mocha"]
        ax.loglog([r["iters"] for r in lib], [max(r["rel_subopt"], 1e-10) for r in lib], "k--o",
                  label="liblinear, central (passes; rel. sub-opt.)")  # fmt: skip
        ax.axhline(1e-5, color="grey", lw=0.8)
        ax.set_title(f"Land Mine W-step, lam={lam:g}, Sigma floor {floor:g}")
        ax.set_xlabel("rounds (MOCHA) / passes (liblinear)")
        ax.set_ylabel("relative gap / sub-optimality")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--dataset", default="landmine")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    try:
        ds = fd.load_mocha(a.dataset)
    except FileNotFoundError as e:
        print(f"skipped: {e}")
        return 0
    tr, _ = fd.train_test_split_per_task(ds, random_state=0)
    Xs = [np.ascontiguousarray(x, dtype=np.float64) for x in tr.X]
    ys = [np.asarray(v, dtype=np.float64) for v in tr.y]
    rounds = 200 if a.quick else 2000
    lams = (1e-4,) if a.quick else (1e-3, 1e-4)
    floors = (1e-6,) if a.quick else (1e-6, 1e-3)
    rows = []
    for lam in lams:
        for floor in floors:
            sigma = learned_sigma(tr, lam, floor)
            new = wstep_curves(Xs, ys, lam, sigma, rounds, (1, 8, 64))
            new += central_ladder(Xs, ys, lam, sigma)
            for r in new:
                r.update(lam=lam, floor=floor)
            rows += new
            print(f"lam={lam:g} floor={floor:g}: done ({time.perf_counter() - t_start:.0f}s)")
    rows = [{c: r.get(c, "") for c in COLUMNS} for r in rows]
    for line in rate_summary(rows):
        print(line)
    for r in rows:
        if r["solver"] != "mocha":
            print(f"lam={r['lam']:g} floor={r['floor']:g} liblinear: {r['iters']} passes -> "
                  f"rel sub-opt {r['rel_subopt']:.1e}")  # fmt: skip
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "landmine_wstep_quick" if a.quick else "landmine_wstep"
    write_results(out, stem, rows, COLUMNS, plot, "landmine_wstep.py", a.quick, a.out, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
