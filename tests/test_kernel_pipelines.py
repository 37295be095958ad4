"""Kernel variants by explicit feature maps (issue 4, item 3 for the shipped estimators):
MOCHA composes with scikit-learn's Nystroem / RBFSampler in a Pipeline, ``tasks`` routed
as metadata through fit, predict, score and GridSearchCV."""

import numpy as np
import pytest
import sklearn
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from fmtl import MochaClassifier


def _xor_tasks(m=4, n=80, seed=0):
    # each task: a rotated XOR pattern, not linearly separable
    rng = np.random.default_rng(seed)
    X, y, tasks = [], [], []
    for t in range(m):
        Z = rng.uniform(-1, 1, size=(n, 2))
        a = 0.3 * t
        R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        X.append(Z @ R.T)
        y.append(np.where(Z[:, 0] * Z[:, 1] > 0, 1, -1))
        tasks.append(np.full(n, t))
    return np.vstack(X), np.concatenate(y), np.concatenate(tasks)


@pytest.mark.parametrize(
    "feature_map",
    [
        Nystroem(gamma=2.0, n_components=60, random_state=0),
        RBFSampler(gamma=2.0, n_components=200, random_state=0),
    ],
    ids=["nystroem", "rbfsampler"],
)
def test_kernel_pipeline_with_routed_tasks(feature_map):
    X, y, tasks = _xor_tasks()
    with sklearn.config_context(enable_metadata_routing=True):

        def est():
            return (
                MochaClassifier(alpha=1e-3, outer_iters=3, random_state=0)
                .set_fit_request(tasks=True)
                .set_predict_request(tasks=True)
                .set_score_request(tasks=True)
            )

        linear = est().fit(X, y, tasks=tasks)
        kernel = make_pipeline(feature_map, est()).fit(X, y, tasks=tasks)
        acc_lin = linear.score(X, y, tasks=tasks)
        acc_ker = kernel.score(X, y, tasks=tasks)
        assert kernel.predict(X, tasks=tasks).shape == y.shape
        # XOR: a linear model is near chance, the kernelised one is not
        assert acc_lin < 0.7 and acc_ker > 0.85
        gs = GridSearchCV(
            make_pipeline(feature_map, est()),
            {"mochaclassifier__alpha": [1e-3, 1e-1]},
            cv=KFold(3, shuffle=True, random_state=0),
        ).fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
