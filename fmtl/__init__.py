"""fmtl: convex federated multi-task learning (MOCHA) and personalized federated learning.

Importing fmtl compiles nothing: numba kernels are compiled (or loaded from cache) on
first use.
"""

from .estimators import (
    GlobalClassifier,
    GlobalRegressor,
    LocalClassifier,
    LocalRegressor,
    MochaClassifier,
    MochaRegressor,
)
from .federated import History, mocha
from .losses import LOSS_NAMES, get_loss

__version__ = "0.1.0"

__all__ = [
    "GlobalClassifier",
    "GlobalRegressor",
    "LocalClassifier",
    "LocalRegressor",
    "LOSS_NAMES",
    "History",
    "MochaClassifier",
    "MochaRegressor",
    "get_loss",
    "mocha",
    "__version__",
]
