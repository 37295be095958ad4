"""scikit-learn's estimator checks (``parametrize_with_checks``) over every public estimator.

With ``tasks`` optional (``None``: one task) every fmtl estimator is a plain scikit-learn
estimator on single-task data, so the generic checks apply as they are. Each expected
failure is listed below with the reason it is accepted; the small ``rounds`` /
``outer_iters`` only shorten the fits (the defaults are not changed).
"""

from __future__ import annotations

import pytest
import sklearn
from sklearn.utils.estimator_checks import parametrize_with_checks

import fmtl
from fmtl.experiments.error_protocol import ConstantBaseline

if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):
    pytest.skip("expected_failed_checks needs scikit-learn >= 1.6", allow_module_level=True)

# ~1,150 checks: about 50 s of CPU, 1.5-2 min of wall time on a busy 2-core machine
# (deselect with -m "not slow")
pytestmark = pytest.mark.slow

_FAST = dict(random_state=0)
# PFedMe: the checks' data (e.g. 100 rows at loc=100, badly conditioned) make the exact
# personal solves slow; a few warm-started SDCA passes per round keep the checks quick
ESTIMATORS = [
    fmtl.MochaClassifier(alpha=0.1, outer_iters=2, **_FAST),
    fmtl.MochaRegressor(alpha=0.1, outer_iters=2, **_FAST),
    fmtl.MochaClassifierCV(alphas=[0.1, 1.0], cv=2, outer_iters=2, **_FAST),
    fmtl.MochaRegressorCV(alphas=[0.1, 1.0], cv=2, outer_iters=2, **_FAST),
    fmtl.LocalClassifier(alpha=0.1, **_FAST),
    fmtl.LocalRegressor(alpha=0.1, **_FAST),
    fmtl.GlobalClassifier(alpha=0.1, **_FAST),
    fmtl.GlobalRegressor(alpha=0.1, **_FAST),
    fmtl.FedAvgClassifier(rounds=10, **_FAST),
    # 10 rounds of decaying-step SGD do not reach check_regressors_train's R^2 > 0.5
    fmtl.FedAvgRegressor(rounds=50, **_FAST),
    fmtl.DittoClassifier(rounds=10, **_FAST),
    fmtl.DittoRegressor(rounds=10, **_FAST),
    fmtl.PFedMeClassifier(rounds=10, local_passes=5, **_FAST),
    fmtl.PFedMeRegressor(rounds=10, local_passes=5, **_FAST),
    fmtl.PerFedAvgClassifier(rounds=10, **_FAST),
    fmtl.PerFedAvgRegressor(rounds=10, **_FAST),
    # pFedHN takes fixed gradient steps: the default lr=0.5 diverges (a ValueError) on the
    # checks' unscaled data (X around 100 in check_fit_idempotent, |y| up to 140)
    # no intercept: the checks' unscaled data need this small step, and 10 rounds of it
    # do not reach the training-accuracy threshold with the extra constant feature
    fmtl.PFedHNClassifier(rounds=10, lr=1e-3, fit_intercept=False, **_FAST),
    fmtl.PFedHNRegressor(rounds=10, lr=1e-3, **_FAST),
    fmtl.FedRepClassifier(rounds=10, **_FAST),
    fmtl.FedRepRegressor(rounds=10, **_FAST),
    fmtl.KernelMochaClassifier(alpha=0.1, outer_iters=2, **_FAST),
    fmtl.KernelMochaRegressor(alpha=0.1, outer_iters=2, **_FAST),
    ConstantBaseline("classification"),
    ConstantBaseline("regression"),
]

# estimator class name -> {check name: why its failure is accepted}. The other failures the
# checks found (the sparse-input tag, the one-class message, ConstantBaseline's string
# labels and non-finite targets, pFedHN's silent NaN models) were fixed instead.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "PFedHNRegressor": {
        "check_regressors_train": "fixed-step GD: a step stable on the checks' unscaled "
        "data (lr=1e-3) is too small to reach R^2 > 0.5; one that does diverges there",
    },
    # one row cannot be split into cv folds: the ValueError says so (folds, rows per
    # task), not in the "1 sample" wording the check looks for
    **{
        name: {"check_fit2d_1sample": "a ValueError about too few rows for the folds"}
        for name in ("MochaClassifierCV", "MochaRegressorCV")
    },
}


def _expected_failed_checks(estimator) -> dict[str, str]:
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


def test_every_public_estimator_is_checked():
    # a new estimator exported by fmtl must be added to ESTIMATORS (TaskColumn is a
    # meta-estimator whose X must hold a task column: the generic data has none)
    exported = {
        name
        for name in fmtl.__all__
        if isinstance(getattr(fmtl, name), type) and hasattr(getattr(fmtl, name), "fit")
    }
    checked = {type(e).__name__ for e in ESTIMATORS}
    assert exported - {"TaskColumn"} <= checked
    assert set(EXPECTED_FAILED_CHECKS) <= checked


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
