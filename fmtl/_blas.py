"""Single-threaded BLAS for the duration of a block, without rescanning the libraries."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_CONTROLLER = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold the loaded BLAS libraries to one thread inside the block.

    ``threadpool_limits`` finds the libraries by reading the process's memory map on every
    call (measured 3.5 ms, more than a small fit); one controller, made at first use (after
    numpy and scipy have loaded theirs), is reused instead.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield
