"""Theory vs practice, rates: MOCHA's measured duality gap per round against the bound of
its convergence theorem, for each shipped loss, and predicted vs measured rounds to a
relative gap of 1e-4.

    python benchmarks/theory_rates.py [--quick] [--out benchmarks/results]

Fixed mean-regularised Sigma (kappa = 1), lam = 1e-3, one local SDCA pass per round,
Gershgorin sigma'. Two predictions per loss: *a priori* (Theta from local SDCA's rate,
smooth losses only) and *with the measured Theta* (the mean over rounds, before the
target is reached, of the gap-weighted theta_t^h bound of ``fmtl.theory.effective_theta``:
the constant equivalent to the realised per-round contraction). Writes
``theory_rates.csv`` (per round), ``theory_rates_summary.csv`` and ``theory_rates.png``.
"""

from __future__ import annotations

import numpy as np
from theory_common import (
    LOSSES,
    REL_EPS,
    fmt_rounds,
    keep_round,
    parse_args,
    problems,
    pyplot,
    reproduce_line,
    save,
)
from theory_common import write_csv as _write

from fmtl import theory
from fmtl.federated import mocha

LAM = 1e-3


def run_one(Xs, ys, S, loss: str, rounds: int):
    c = theory.mocha_constants(Xs, ys, LAM, loss, sigma=S)
    res = mocha(
        Xs, ys, LAM, loss, relationship="fixed", sigma=S, outer_iters=1, inner_iters=rounds,
        tol=1e-12, random_state=0, record_local_gaps=True,
    )  # fmt: skip
    h = res.history
    p_end = float(h["primal"][-1])
    eps = REL_EPS * p_end
    measured = theory.measured_rounds(h, eps)
    eff = theory.effective_theta(h, c.initial_gap)
    upto = int(measured) if np.isfinite(measured) else len(eff)
    # the constant Theta equivalent to the realised per-round contraction (its mean)
    theta_meas = float(eff[:upto].mean())
    theta_prior = float(theory.sdca_theta(c, c.n_samples).max()) if c.linear else np.nan
    pred_meas = theory.predicted_rounds(c, eps, min(theta_meas, 1 - 1e-12))
    pred_prior = theory.predicted_rounds(c, eps, theta_prior) if c.linear else np.nan
    H = len(h)
    if c.linear:
        b_prior = theory.gap_bound(c, H, theta_prior)[1:]
        b_meas = theory.gap_bound(c, H, min(theta_meas, 1 - 1e-12))[1:]
    else:
        b_prior = np.full(H, np.nan)
        b_meas = theory.averaged_gap_bound(c, H, min(theta_meas, 1 - 1e-12))[1:]
    g = h["gap"]
    k = int(measured) - 1 if np.isfinite(measured) else len(g) - 1
    # per-round contraction of the gap: measured (geometric mean up to the target) vs bound
    rate_measured = float((g[k] / g[0]) ** (1.0 / k)) if k > 0 else np.nan
    rate_bound = 1.0 - (1.0 - theta_meas) * c.s if c.linear else np.nan
    summary = {
        "loss": loss,
        "mu": c.loss.mu,
        "lipschitz": c.loss.lipschitz,
        "sigma_prime": c.sigma_prime,
        "s": c.s,
        "C": c.C,
        "initial_gap": c.initial_gap,
        "eps": eps,
        "theta_apriori": theta_prior,
        "theta_measured": theta_meas,
        "rounds_measured": measured,
        "rounds_pred_apriori": pred_prior,
        "rounds_pred_measured_theta": pred_meas,
        "ratio_apriori": pred_prior / measured,
        "ratio_measured_theta": pred_meas / measured,
        "gap_rate_measured": rate_measured,
        "gap_rate_bound_measured_theta": rate_bound,
    }
    curve = {
        "round": h["round"],
        "gap": h["gap"],
        "dual_subopt": h["primal"].min() - h["dual"],
        "bound_apriori": b_prior,
        "bound_measured_theta": b_meas,
        "theta_eff": eff,
    }
    return summary, curve


def main(argv=None) -> int:
    quick, out = parse_args(__doc__, argv)
    rounds = 300 if quick else 3000
    summaries, rows, curves = [], [], {}
    for name, Xs, ys, S, _ in problems(quick, LAM):
        for loss in LOSSES:
            summary, curve = run_one(Xs, ys, S, loss, rounds)
            summaries.append({"dataset": name, **summary})
            curves[name, loss] = curve
            for k in range(len(curve["round"])):
                if not keep_round(int(curve["round"][k])):
                    continue
                rows.append({"dataset": name, "loss": loss, **{c: curve[c][k] for c in curve}})
            print(
                f"{name:24s} {loss:15s} s={summary['s']:.3g} C={summary['C']:.3g} "
                f"theta prior={summary['theta_apriori']:.3f} meas={summary['theta_measured']:.3f}"
                f"  rounds to 1e-4: measured {fmt_rounds(summary['rounds_measured'])}, "
                f"predicted {fmt_rounds(summary['rounds_pred_apriori'])} (a priori), "
                f"{fmt_rounds(summary['rounds_pred_measured_theta'])} (measured theta)"
            )
    suffix = "_quick" if quick else ""
    _write(out / f"theory_rates{suffix}.csv", rows)
    _write(out / f"theory_rates{suffix}_summary.csv", summaries)
    plt = pyplot()
    if plt is not None:
        names = list(dict.fromkeys(k[0] for k in curves))
        fig, axes = plt.subplots(
            len(names), len(LOSSES), figsize=(4 * len(LOSSES), 3.3 * len(names)), squeeze=False
        )
        for i, name in enumerate(names):
            for j, loss in enumerate(LOSSES):
                ax, cv = axes[i, j], curves[name, loss]
                ax.semilogy(cv["round"], np.maximum(cv["gap"], 1e-16), label="measured gap")
                if loss == "hinge":
                    ax.semilogy(cv["round"], cv["bound_measured_theta"], "--",
                                label="bound on best gap (meas. Θ)")  # fmt: skip
                else:
                    ax.semilogy(cv["round"], cv["bound_apriori"], ":", label="bound (a priori Θ)")
                    ax.semilogy(cv["round"], cv["bound_measured_theta"], "--",
                                label="bound (measured Θ)")  # fmt: skip
                ax.set_ylim(1e-12, None)
                ax.set_title(f"{loss} — {name}", fontsize=9)
                ax.set_xlabel("federated round")
                if j == 0:
                    ax.set_ylabel("duality gap")
                ax.legend(fontsize=7)
        save(fig, out / f"theory_rates{suffix}.png")
    reproduce_line("benchmarks/theory_rates.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
