"""
The learned task relationship Σ as a heat map
=============================================

MOCHA learns ``Σ`` (trace 1, ``Σ ⪰ εI``) alongside the task models; its closed-form step is
``Σ ∝ (WᵀW)^{1/2}``, so tasks whose models point the same way get a large positive entry.
On synthetic data with 4 clusters of tasks (``w_t = c_{g(t)} + 0.1 e_t``) the clusters show
up as blocks once the tasks are ordered by cluster. The right panel orders them instead by
a hierarchical clustering *of the learned Σ alone* — recovering the groups without knowing
them.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score

from fmtl import MochaClassifier
from fmtl.datasets import make_multitask_classification

data = make_multitask_classification(
    n_tasks=16,
    n_samples=120,
    n_features=30,
    structure="clustered",
    n_clusters=4,
    noise=0.2,
    random_state=1,
)
X, y, tasks = data.stack()
clf = MochaClassifier(alpha=1e-3, outer_iters=10, random_state=0).fit(X, y, tasks)
Sigma = clf.sigma_
print("trace", np.trace(Sigma), " smallest eigenvalue", np.linalg.eigvalsh(Sigma)[0])

# correlation form: Σ_ts / sqrt(Σ_tt Σ_ss), in [-1, 1]
d = np.sqrt(np.diag(Sigma))
corr = Sigma / np.outer(d, d)

# %%
# Cluster the tasks from Σ: average linkage on the distance 1 − correlation.
dist = squareform(1.0 - corr, checks=False)
Z = linkage(np.clip(dist, 0.0, None), method="average")
found = fcluster(Z, t=4, criterion="maxclust")
print("true clusters   ", data.task_groups)
print("found from Σ    ", found - 1)
print("adjusted Rand index:", adjusted_rand_score(data.task_groups, found))

# %%
by_truth = np.argsort(data.task_groups, kind="stable")
by_sigma = leaves_list(Z)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
for ax, order, title in zip(
    axes,
    (by_truth, by_sigma),
    ("ordered by the true cluster", "ordered by clustering Σ"),
    strict=True,
):
    im = ax.imshow(corr[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1)
    labels = [f"{t}·c{data.task_groups[t]}" for t in order]
    ax.set_xticks(range(len(order)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(order)), labels, fontsize=7)
    ax.set_title(title)
    # cluster boundaries of the true groups in this order
    g = data.task_groups[order]
    for b in np.flatnonzero(np.diff(g)) + 0.5:
        ax.axhline(b, color="k", lw=0.6)
        ax.axvline(b, color="k", lw=0.6)
fig.colorbar(im, ax=axes, shrink=0.8, label=r"$\Sigma_{ts} / \sqrt{\Sigma_{tt}\Sigma_{ss}}$")
fig.suptitle("Learned Σ (MochaClassifier, 16 tasks in 4 clusters); labels: task·cluster")
plt.show()
