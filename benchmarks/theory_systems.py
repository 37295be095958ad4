"""Theory vs practice, systems: rounds to a relative duality gap of 1e-4 as the local
accuracy theta varies (systems heterogeneity) and as the drop probability p varies,
measured against Theorem 1's prediction ``rounds ~ 1 / ((1 - Theta_bar) s)`` with
``Theta_bar = p + (1 - p) Theta``.

    python benchmarks/theory_systems.py [--quick] [--out benchmarks/results]

Synthetic clustered tasks, fixed mean-regularised Sigma, lam = 1e-3, squared and logistic
losses (smooth: a priori prediction available) and hinge (measured theta only). Each
point is the mean over seeds. Writes ``theory_systems.csv`` and ``theory_systems.png``.
"""

from __future__ import annotations

import numpy as np
from theory_common import REL_EPS, parse_args, pyplot, reproduce_line, save, synthetic, write_csv

from fmtl import theory
from fmtl.federated import mocha
from fmtl.federated.systems import SystemsModel

LAM = 1e-3
LOSSES = ("squared", "logistic", "hinge")
# local work per round: a fraction of n_t drawn from U(lo, hi)
HETEROGENEITY = {
    "1 pass": None,
    "low U(0.9,1)": "low",
    "U(0.5,1)": (0.5, 1.0),
    "high U(0.1,1)": "high",
    "U(0.05,0.1)": (0.05, 0.1),
}
DROPS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)


def _eps(Xs, ys, S, loss):
    ref = mocha(Xs, ys, LAM, loss, relationship="fixed", sigma=S, outer_iters=1,
                inner_iters=20000, tol=1e-9, random_state=0)  # fmt: skip
    return REL_EPS * float(ref.history["primal"][-1])


def _point(Xs, ys, S, loss, c, eps, het, p, seeds, max_rounds):
    lo = 1.0 if het is None else {"low": 0.9, "high": 0.1}.get(het, None)
    lo = het[0] if isinstance(het, tuple) else lo
    meas, theta = [], []
    for seed in seeds:
        res = mocha(
            Xs, ys, LAM, loss, relationship="fixed", sigma=S, outer_iters=1,
            inner_iters=max_rounds, tol=0.9 * REL_EPS, random_state=seed, record_local_gaps=True,
            systems=SystemsModel(heterogeneity=het, drop_prob=p),
        )  # fmt: skip
        r = theory.measured_rounds(res.history, eps)
        meas.append(r)
        eff = theory.effective_theta(res.history, c.initial_gap)
        theta.append(float(eff[: int(r) if np.isfinite(r) else len(eff)].mean()))
    theta_meas = float(np.mean(theta))  # already includes the dropped rounds' theta = 1
    steps = np.maximum(1, np.floor(lo * c.n_samples))
    if c.linear:
        tb = theory.theta_bar(float(theory.sdca_theta(c, steps).max()), p)
        pred_prior = theory.predicted_rounds(c, eps, tb)
    else:
        pred_prior = np.nan
    pred_meas = theory.predicted_rounds(c, eps, min(theta_meas, 1 - 1e-12))
    meas = np.array(meas)
    return {
        "rounds_measured_mean": float(np.mean(meas)),
        "rounds_measured_std": float(np.std(meas)),
        "n_seeds_reached": int(np.isfinite(meas).sum()),
        "theta_measured": theta_meas,
        "rounds_pred_apriori": pred_prior,
        "rounds_pred_measured_theta": pred_meas,
    }


def main(argv=None) -> int:
    quick, out = parse_args(__doc__, argv)
    name, Xs, ys, S = synthetic(quick)
    seeds = range(2) if quick else range(5)
    max_rounds = 3000 if quick else 20000
    rows = []
    for loss in LOSSES:
        c = theory.mocha_constants(Xs, ys, LAM, loss, sigma=S)
        eps = _eps(Xs, ys, S, loss)
        for label, het in HETEROGENEITY.items():
            r = _point(Xs, ys, S, loss, c, eps, het, 0.0, seeds, max_rounds)
            rows.append({"sweep": "heterogeneity", "loss": loss, "setting": label, "p": 0.0, **r})
            print(f"{loss:9s} {label:14s} {r}")
        for p in DROPS:
            r = _point(Xs, ys, S, loss, c, eps, None, p, seeds, max_rounds)
            rows.append({"sweep": "drop", "loss": loss, "setting": f"p={p}", "p": p, **r})
            print(f"{loss:9s} p={p:<12} {r}")
    # slow-down relative to the first setting of each sweep: the theorem's 1 / (1 - Theta_bar)
    for r in rows:
        base = next(b for b in rows if b["sweep"] == r["sweep"] and b["loss"] == r["loss"])
        for k in ("measured_mean", "pred_apriori", "pred_measured_theta"):
            r[f"slowdown_{k}"] = r[f"rounds_{k}"] / base[f"rounds_{k}"]
    suffix = "_quick" if quick else ""
    write_csv(out / f"theory_systems{suffix}.csv", rows)
    plt = pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        for k, sweep in enumerate(("heterogeneity", "drop")):
            ax = axes[k]
            for i, loss in enumerate(LOSSES):
                rs = [r for r in rows if r["sweep"] == sweep and r["loss"] == loss]
                x = np.arange(len(rs))
                col = f"C{i}"
                ax.errorbar(x, [r["rounds_measured_mean"] for r in rs],
                            yerr=[r["rounds_measured_std"] for r in rs], color=col, marker="o",
                            label=f"{loss}: measured")  # fmt: skip
                ax.plot(x, [r["rounds_pred_measured_theta"] for r in rs], "--", color=col,
                        label=f"{loss}: predicted (measured Θ)")  # fmt: skip
                if loss != "hinge":
                    ax.plot(x, [r["rounds_pred_apriori"] for r in rs], ":", color=col,
                            label=f"{loss}: predicted (a priori Θ)")  # fmt: skip
                ax.set_xticks(x, [r["setting"] for r in rs], rotation=20, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("rounds to relative gap 1e-4")
            ax.set_title(f"{name}: {'local work' if k == 0 else 'drop probability'}")
        axes[1].legend(fontsize=7, ncol=1)
        save(fig, out / f"theory_systems{suffix}.png")
    reproduce_line("benchmarks/theory_systems.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
