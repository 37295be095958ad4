"""``random_state`` to a ``numpy.random.Generator``, with an error that names it."""

from __future__ import annotations

from typing import Any

import numpy as np


def rng_from(random_state: Any) -> np.random.Generator:
    """``np.random.default_rng(random_state)``; bad values raise naming ``random_state``.

    Accepts what numpy accepts: None, a non-negative int, a ``Generator``, a
    ``BitGenerator``, a ``SeedSequence`` or a sequence of non-negative ints.
    """
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as e:
        raise type(e)(
            "random_state must be None, a non-negative int or a numpy.random.Generator, "
            f"got {random_state!r} ({e})"
        ) from e
