"""Federated algorithms: a loop over rounds with a History of certified records."""

from .history import History
from .mocha import MochaResult, certificates, mocha

__all__ = ["History", "MochaResult", "certificates", "mocha"]
