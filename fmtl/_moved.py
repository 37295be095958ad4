"""Old module paths kept importable after a move: a deprecated alias of the new module."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def alias(old: str, new: str) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for the shim module ``old`` of the module ``new``.

    Every attribute of ``new`` (public or not) is read through ``old``, with a
    :class:`DeprecationWarning` naming the new path; ``import old`` alone warns nothing, so
    walking the package (doctest collection, ``pkgutil``) stays silent.
    """
    target = importlib.import_module(new)

    def __getattr__(name: str) -> Any:
        try:
            value = getattr(target, name)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
        warnings.warn(
            f"{old} is deprecated: import {name} from {new} instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__, list(target.__all__)
