"""Theory vs practice, sigma': MOCHA below, at and above the safe value of its subproblem
parameter. Below ``lambda_max(D^{-1/2} Sigma D^{-1/2})`` the summed local updates can
overshoot and the dual objective can decrease (divergence is expected: shown); above it
the method is safe but slower, as the rate's factor ``s`` predicts.

    python benchmarks/theory_sigma.py [--quick] [--out benchmarks/results]

Synthetic clustered tasks, lam = 1e-3, two fixed relationships: mean-regularised
(kappa = 1) and strongly coupled ``Sigma = (0.1 I + 0.9 11^T) / m``; sigma' = factor x the
spectral (smallest safe) value, and the Gershgorin value MOCHA uses by default. Writes
``theory_sigma.csv`` (one row per run), ``theory_sigma_curves.csv`` and
``theory_sigma.png``.
"""

from __future__ import annotations

import numpy as np
from theory_common import (
    LOSSES,
    REL_EPS,
    keep_round,
    parse_args,
    pyplot,
    reproduce_line,
    save,
    synthetic,
    write_csv,
)

from fmtl import theory
from fmtl.federated import mocha
from fmtl.relationships import safety_rho, spectral_rho

LAM = 1e-3
FACTORS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.5, 2.0, 4.0)


def main(argv=None) -> int:
    quick, out = parse_args(__doc__, argv)
    name, Xs, ys, S_mean = synthetic(quick)
    m = len(Xs)
    sigmas = {
        "mean-regularised": S_mean,
        "coupled": (0.1 * np.eye(m) + 0.9 * np.ones((m, m))) / m,
    }
    rounds = 300 if quick else 3000
    rows, curves = [], []
    for sname, S in sigmas.items():
        safe, gersh = spectral_rho(S), safety_rho(S)
        for loss in LOSSES:
            ref = mocha(Xs, ys, LAM, loss, relationship="fixed", sigma=S, outer_iters=1,
                        inner_iters=20000, tol=1e-9, random_state=0)  # fmt: skip
            eps = REL_EPS * float(ref.history["primal"][-1])
            settings = [(f, f * safe) for f in FACTORS] + [(gersh / safe, "gershgorin")]
            for factor, rule in settings:
                with np.errstate(all="ignore"):
                    res = mocha(
                        Xs, ys, LAM, loss, relationship="fixed", sigma=S, outer_iters=1,
                        inner_iters=rounds, random_state=0, sigma_prime=rule,
                    )  # fmt: skip
                h = res.history
                dual = np.concatenate([[0.0], h["dual"]])
                drops = np.diff(dual)
                decreased = drops < -1e-12 * np.abs(dual[1:])
                gap = h["gap"]
                diverged = bool(not np.all(np.isfinite(gap)) or np.nanmax(gap) > 10 * gap[0])
                pred = np.nan
                if factor >= 1.0 - 1e-9 and loss != "hinge":
                    c = theory.mocha_constants(Xs, ys, LAM, loss, sigma=S, sigma_prime=rule)
                    th = float(theory.sdca_theta(c, c.n_samples).max())
                    pred = theory.predicted_rounds(c, eps, th)
                rows.append(
                    {
                        "sigma": sname,
                        "loss": loss,
                        "sigma_prime_rule": rule if isinstance(rule, str) else "factor",
                        "factor_of_safe": factor,
                        "sigma_prime": factor * safe,
                        "safe_spectral": safe,
                        "gershgorin": gersh,
                        "rounds_with_dual_decrease": int(np.sum(decreased)),
                        "largest_dual_decrease": float(-np.nanmin(np.minimum(drops, 0.0))),
                        "diverged": diverged,
                        "final_gap": float(gap[-1]),
                        "rounds_to_eps": theory.measured_rounds(h, eps),
                        "rounds_pred_apriori": pred,
                    }
                )
                r = rows[-1]
                print(
                    f"{sname:16s} {loss:15s} sigma'={factor:5.2f} x safe  "
                    f"dual decreases in {r['rounds_with_dual_decrease']:4d} rounds, "
                    f"diverged={diverged!s:5s} rounds to 1e-4: {r['rounds_to_eps']}"
                )
                for k in range(len(gap)):
                    if not keep_round(int(h["round"][k])):
                        continue
                    curves.append({"sigma": sname, "loss": loss, "factor_of_safe": factor,
                                   "round": int(h["round"][k]), "gap": float(gap[k])})  # fmt: skip
    suffix = "_quick" if quick else ""
    write_csv(out / f"theory_sigma{suffix}.csv", rows)
    write_csv(out / f"theory_sigma{suffix}_curves.csv", curves)
    plt = pyplot()
    if plt is not None:
        fig, axes = plt.subplots(2, len(LOSSES) + 1, figsize=(4 * (len(LOSSES) + 1), 7))
        cmap = plt.get_cmap("coolwarm")
        for i, sname in enumerate(sigmas):
            for j, loss in enumerate(LOSSES):
                ax = axes[i, j]
                for f in FACTORS:
                    cv = [c for c in curves if c["sigma"] == sname and c["loss"] == loss
                          and c["factor_of_safe"] == f]  # fmt: skip
                    g = np.array([c["gap"] for c in cv])
                    ax.semilogy([c["round"] for c in cv], np.clip(g, 1e-14, 1e12),
                                color=cmap(np.log(f / 0.25) / np.log(16)), label=f"{f:g}× safe",
                                lw=2 if f == 1.0 else 1)  # fmt: skip
                ax.set_title(f"{loss}, {sname} Σ", fontsize=9)
                ax.set_xlabel("federated round")
                if j == 0:
                    ax.set_ylabel("duality gap")
            ax = axes[i, -1]
            for j, loss in enumerate(LOSSES):
                rs = [r for r in rows if r["sigma"] == sname and r["loss"] == loss
                      and r["sigma_prime_rule"] == "factor"]  # fmt: skip
                x = [r["factor_of_safe"] for r in rs]
                ax.loglog(x, [r["rounds_to_eps"] for r in rs], "o-", color=f"C{j}", label=loss)
                if loss != "hinge":
                    ax.loglog(x, [r["rounds_pred_apriori"] for r in rs], ":", color=f"C{j}")
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_xlabel("σ′ / safe σ′ (dotted: a priori prediction)")
            ax.set_ylabel("rounds to rel. gap 1e-4 (missing: never)")
            ax.set_title(f"{sname} Σ", fontsize=9)
            ax.legend(fontsize=7)
        axes[0, 0].legend(fontsize=6)
        save(fig, out / f"theory_sigma{suffix}.png")
    reproduce_line("benchmarks/theory_sigma.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
