"""
MOCHA convergence: sub-optimality, duality gap and estimated time
=================================================================

Every federated round of :func:`fmtl.federated.mocha.mocha` records the primal objective,
the dual objective and their difference, the duality gap — a *certificate*: the primal
sub-optimality ``P(W) − P*`` is never larger. The W-problem for a fixed Σ is solved
exactly by cvxpy (:func:`fmtl.reference.solve_fixed_sigma`), so the true sub-optimality can
be drawn beside the certificate.

Three federations run on the same data: every node doing one pass over its data per round,
high systems heterogeneity (each node does a fraction ``U(0.1, 1)`` of a pass), and each
node dropping out of a round with probability 0.5. The second panel puts the same curves
on the systems model's *estimated time* (``8 · work + 100`` per round on LTE,
:class:`fmtl.federated.SystemsModel`).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from fmtl.datasets import find_mocha, load_mocha, make_multitask_classification
from fmtl.federated import SystemsModel, mocha
from fmtl.reference import solve_fixed_sigma
from fmtl.relationships import mean_regularized_sigma

path = find_mocha("small")
if path is not None:
    data = load_mocha(path)
    print(f"small: {path}")
else:
    print("small.mat not found (set FMTL_DATA): using a synthetic set of the same shape")
    data = make_multitask_classification(
        n_tasks=29, n_samples=50, n_features=9, n_clusters=3, noise=0.5, random_state=0
    )
lam = 1e-3
m = data.n_tasks
Sigma = mean_regularized_sigma(m, 1.0)  # a fixed Σ that couples the tasks (κ = 1)

ref = solve_fixed_sigma(data.X, data.y, Sigma, lam, loss="hinge")
print(f"P* = {ref.objective:.6f} (cvxpy, {ref.solver}, {ref.solve_time:.1f} s)")

# %%
settings = {
    "one pass per round": None,
    "high heterogeneity, U(0.1, 1)": SystemsModel(heterogeneity="high"),
    "drop probability 0.5": SystemsModel(drop_prob=0.5),
}
runs = {}
for name, systems in settings.items():
    res = mocha(
        data.X,
        data.y,
        lam,
        "hinge",
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=400,
        systems=systems or SystemsModel(),
        random_state=0,
    )
    runs[name] = res.history
    h = res.history
    print(
        f"{name:32s} rounds {len(h):4d}  final gap {h['gap'][-1]:.2e}  "
        f"P - P* {h['primal'][-1] - ref.objective:.2e}"
    )

# %%
# Sub-optimality (solid) and duality gap (dashed). The gap is above the sub-optimality in
# every round: it certifies it without knowing ``P*``.
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for i, (name, h) in enumerate(runs.items()):
    subopt = np.maximum(h["primal"] - ref.objective, 1e-12)
    for ax, x in zip(axes, (h["round"], h["est_time"]), strict=True):
        ax.semilogy(x, subopt, color=f"C{i}", label=f"{name}: P − P*")
        ax.semilogy(x, h["gap"], color=f"C{i}", ls="--", lw=1, label=f"{name}: gap")
axes[0].set_xlabel("federated round")
axes[1].set_xlabel("estimated time (systems model, LTE)")
axes[0].set_ylabel("primal sub-optimality / duality gap")
axes[1].legend(fontsize=7)
fig.suptitle(f"MOCHA W-step, fixed mean-regularised Σ, hinge loss, λ = {lam:g}")
fig.tight_layout()
plt.show()

# %%
# With a learned Σ
# ----------------
# Outer rounds alternate a W-step with the closed-form Σ-step. History then also carries
# ``joint_gap``, a certificate for the joint problem over (W, Σ); it is valid in every
# round and tight only near the optimum. Vertical lines: Σ-steps.
res = mocha(data.X, data.y, lam, "hinge", outer_iters=6, inner_iters=25, random_state=0)
h = res.history
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogy(h["round"], h["gap"], label="gap for the current Σ")
ax.semilogy(h["round"], h["joint_gap"], label="joint gap over (W, Σ)")
for r in h["round"][np.flatnonzero(np.diff(h["outer"])) + 1]:
    ax.axvline(r - 0.5, color="0.8", lw=0.8, zorder=0)
ax.set_xlabel("federated round")
ax.set_ylabel("duality gap")
ax.legend()
fig.tight_layout()
plt.show()
