"""Deprecated: the paper's convergence experiments moved to :mod:`fmtl.experiments.convergence`."""

from ._moved import alias

__getattr__, __all__ = alias(__name__, "fmtl.experiments.convergence")
