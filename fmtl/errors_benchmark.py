"""Deprecated: the paper's error-table run moved to :mod:`fmtl.experiments.errors`."""

from ._moved import alias

__getattr__, __all__ = alias(__name__, "fmtl.experiments.errors")
