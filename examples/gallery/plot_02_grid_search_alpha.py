"""
Choosing λ by cross-validation with ``tasks`` routed
====================================================

fmtl's estimators take the task of every row as a third argument,
``fit(X, y, tasks)`` / ``predict(X, tasks)`` / ``score(X, y, tasks)``. scikit-learn's
*metadata routing* passes that argument through :class:`~sklearn.model_selection.GridSearchCV`
(and pipelines): every fmtl estimator *requests* ``tasks`` by default for ``fit``,
``predict`` and ``score``, and the search splits it with the rows of ``X``. Here the
regularisation strength ``alpha`` (λ) of :class:`~fmtl.estimators.MochaClassifier` is
chosen by 5-fold cross-validation (shuffled folds, so every task has rows in every training
fold), then the best model is refitted on all training rows and scored on a held-out 25 %
of every task.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import sklearn
from sklearn.model_selection import GridSearchCV, KFold

from fmtl import MochaClassifier
from fmtl.datasets import make_multitask_classification, train_test_split_per_task
from fmtl.experiments.error_protocol import per_task_error

sklearn.set_config(enable_metadata_routing=True)

data = make_multitask_classification(
    n_tasks=12, n_samples=60, n_features=10, n_clusters=3, noise=0.3, random_state=0
)
train, test = train_test_split_per_task(data, test_size=0.25, random_state=0)
X, y, tasks = train.stack()

est = MochaClassifier(outer_iters=5, random_state=0)  # requests `tasks` by default
alphas = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
search = GridSearchCV(est, {"alpha": alphas}, cv=KFold(5, shuffle=True, random_state=0))
search.fit(X, y, tasks=tasks)  # `tasks` is split with the rows and routed to fit/score

print("best alpha:", search.best_params_["alpha"])
print("cv accuracy per alpha:", np.round(search.cv_results_["mean_test_score"], 3))
print(
    f"held-out mean per-task error of the refitted model: "
    f"{per_task_error(search.best_estimator_, test):.3f}"
)

# %%
mean = search.cv_results_["mean_test_score"]
std = search.cv_results_["std_test_score"]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.errorbar(alphas, mean, yerr=std, marker="o", capsize=3)
ax.axvline(search.best_params_["alpha"], color="k", ls=":", lw=1)
ax.set_xscale("log")
ax.set_xlabel(r"$\alpha = \lambda$")
ax.set_ylabel("5-fold CV accuracy")
ax.set_title("MochaClassifier, GridSearchCV with tasks routed")
fig.tight_layout()
plt.show()

sklearn.set_config(enable_metadata_routing=False)
