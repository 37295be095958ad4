"""Deprecated alias: the prediction-error protocol is :mod:`fmtl.experiments.error_protocol`."""

from ._moved import alias

__getattr__, __all__ = alias(__name__, "fmtl.experiments.error_protocol")
