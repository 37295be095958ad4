"""Federated algorithms: a loop over rounds with a History of certified records."""

from .cocoa import cocoa
from .ditto import DittoResult, ditto
from .fedavg import FedAvgResult, fedavg
from .fedrep import FedRepResult, fedrep, head_problem_gap
from .history import History
from .kernel_mocha import KernelMochaResult, kernel_mocha
from .mbsdca import mbsdca
from .mbsgd import mbsgd
from .mocha import MochaResult, certificates, mocha
from .perfedavg import PerFedAvgResult, perfedavg
from .pfedhn import PFedHNResult, fit_new_embedding, hypernetwork_features, pfedhn
from .pfedme import PFedMeResult, pfedme
from .systems import SystemsModel

__all__ = [
    "DittoResult",
    "FedAvgResult",
    "FedRepResult",
    "History",
    "KernelMochaResult",
    "MochaResult",
    "PFedHNResult",
    "PFedMeResult",
    "PerFedAvgResult",
    "SystemsModel",
    "certificates",
    "cocoa",
    "ditto",
    "fedavg",
    "fedrep",
    "fit_new_embedding",
    "head_problem_gap",
    "hypernetwork_features",
    "kernel_mocha",
    "mbsdca",
    "mbsgd",
    "mocha",
    "perfedavg",
    "pfedhn",
    "pfedme",
]
