"""fmtl: convex federated multi-task learning (MOCHA) and personalized federated learning.

Importing fmtl compiles nothing: numba kernels are compiled (or loaded from cache) on
first use.
"""

from .federated import History, mocha
from .losses import LOSS_NAMES, get_loss

# the estimators import scikit-learn (~1 s): load them on first use, so processes that
# only run a solver (Flower client apps, Dask workers) start fast
_ESTIMATORS = (
    "GlobalClassifier",
    "GlobalRegressor",
    "LocalClassifier",
    "LocalRegressor",
    "MochaClassifier",
    "MochaRegressor",
)


_PERSONALIZED = (
    "DittoClassifier",
    "DittoRegressor",
    "FedAvgClassifier",
    "FedAvgRegressor",
    "PFedMeClassifier",
    "PFedMeRegressor",
    "PerFedAvgClassifier",
    "PerFedAvgRegressor",
    "PFedHNClassifier",
    "PFedHNRegressor",
    "FedRepRegressor",
    "FedRepClassifier",
)

# MOCHA with alpha chosen by cross-validation (fmtl.cv)
_CV_ESTIMATORS = (
    "MochaClassifierCV",
    "MochaRegressorCV",
)

# kernel MOCHA's estimators (fmtl.kernel_estimators)
_KERNEL_ESTIMATORS = (
    "KernelMochaClassifier",
    "KernelMochaRegressor",
)


# scikit-learn tools that cannot pass tasks (fmtl.compose)
_COMPOSE = ("TaskColumn", "task_scorer")


def __getattr__(name: str):
    if name in _ESTIMATORS:
        from . import estimators

        return getattr(estimators, name)
    if name in _PERSONALIZED:
        from . import personalized

        return getattr(personalized, name)
    if name in _CV_ESTIMATORS:
        from . import cv

        return getattr(cv, name)
    if name in _KERNEL_ESTIMATORS:
        from . import kernel_estimators

        return getattr(kernel_estimators, name)
    if name in _COMPOSE:
        from . import compose

        return getattr(compose, name)
    raise AttributeError(f"module 'fmtl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "DittoClassifier",
    "DittoRegressor",
    "FedAvgClassifier",
    "FedAvgRegressor",
    "GlobalClassifier",
    "GlobalRegressor",
    "KernelMochaClassifier",
    "KernelMochaRegressor",
    "LocalClassifier",
    "LocalRegressor",
    "LOSS_NAMES",
    "History",
    "MochaClassifier",
    "MochaClassifierCV",
    "MochaRegressor",
    "MochaRegressorCV",
    "PFedHNClassifier",
    "PFedHNRegressor",
    "PFedMeClassifier",
    "PFedMeRegressor",
    "PerFedAvgClassifier",
    "PerFedAvgRegressor",
    "FedRepRegressor",
    "FedRepClassifier",
    "TaskColumn",
    "get_loss",
    "task_scorer",
    "mocha",
    "__version__",
]
