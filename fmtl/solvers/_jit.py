"""First use of the numba kernels: a one-line note when they must be compiled, and warmup.

The kernels are compiled on first call (``cache=True``: once per installation, then loaded
from numba's cache in ``__pycache__`` or ``NUMBA_CACHE_DIR``). Compiling takes from seconds
to minutes on a busy machine, so the first call of a kernel with a cold cache prints one
line on stderr. Checking costs a set lookup per launch after the first (a few stat calls
and a small index read once per kernel and process); importing fmtl compiles nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

_CHECKED: set[int] = set()  # id() of the dispatchers already looked at in this process
_NOTED = False

COLD_NOTE = (
    "fmtl: compiling numba kernels for first use (once; cached afterwards). "
    "`fmtl warmup` compiles them all ahead of time."
)


def cache_is_cold(kernel) -> bool:
    """Whether calling ``kernel`` (a numba dispatcher) now would compile it: no signature
    compiled or loaded in this process and no entry in its on-disk cache index for this
    source and numba version. False when that cannot be told (jit disabled, no cache)."""
    if getattr(kernel, "signatures", None) is None:  # NUMBA_DISABLE_JIT: plain Python
        return False
    if kernel.signatures:
        return False
    try:
        # numba's own index check: missing file, changed source stamp or numba version
        # all read as empty
        return not kernel._cache._cache_file._load_index()
    except Exception:  # a numba without this (private) layout: say nothing
        return False


def cache_dir() -> str | None:
    """Directory of numba's on-disk cache for the SDCA kernels (None if unknown)."""
    from .sdca import _objective_parallel

    try:
        return str(_objective_parallel._cache._cache_path)
    except Exception:  # jit disabled or a numba without this (private) layout
        return None


def note_if_cold(kernel) -> None:
    """Print :data:`COLD_NOTE` on stderr, once per process, before the first kernel that
    will compile."""
    global _NOTED
    key = id(kernel)
    if _NOTED or key in _CHECKED:
        return
    _CHECKED.add(key)
    if cache_is_cold(kernel):
        _NOTED = True
        from .._progress import write

        write(COLD_NOTE, file=sys.stderr)


def warmup(log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Compile (or load from numba's cache) every numba kernel of fmtl ahead of time.

    Runs tiny fits that reach each kernel, dense and CSR: MOCHA (learned, fixed, low-rank
    Sigma; the certified shrinking kernel and the plain one), CoCoA, mini-batch SDCA and
    SGD, FedAvg (local SGD) and kernel MOCHA, with a classification and a regression loss.
    The compiled code is cached on disk, so later processes load it instead of compiling.

    Parameters
    ----------
    log : callable, optional
        Called with one line per stage (e.g. ``print``).

    Returns
    -------
    dict of str -> float
        Seconds per stage (``"dense"``, ``"csr"``, ``"kernel"``) and ``"total"``.

    Raises
    ------
    numba.core.errors.NumbaError
        If a kernel fails to compile (a numba or LLVM installation that does not work).

    Examples
    --------
    >>> from fmtl.solvers import warmup
    >>> seconds = warmup()  # seconds on a warm cache, about a minute on a cold one
    >>> sorted(seconds)
    ['csr', 'dense', 'kernel', 'total']
    """
    global _NOTED
    import numpy as np
    import scipy.sparse as sp

    from ..datasets import make_multitask_classification

    _NOTED = True  # compiling is what was asked for: no note
    from ..federated import cocoa, fedavg, kernel_mocha, mbsdca, mbsgd, mocha

    data = make_multitask_classification(n_tasks=3, n_samples=12, n_features=4, random_state=0)
    y_reg = [np.asarray(y, float) * 0.5 + 0.1 for y in data.y]
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    for name, Xs in (("dense", data.X), ("csr", [sp.csr_matrix(X) for X in data.X])):
        t0 = time.perf_counter()
        for loss, ys in (("hinge", data.y), ("squared", y_reg)):
            # the certified shrinking kernel (the estimators' default), then the plain one
            mocha(Xs, ys, 0.1, loss, outer_iters=2, inner_iters=2, local_work="auto")
            mocha(
                Xs,
                ys,
                0.1,
                loss,
                outer_iters=2,
                inner_iters=2,
                sigma_prime="gershgorin",
                local_work="fixed",
                record_local_gaps=True,
                local_theta=0.5,
            )
            mocha(Xs, ys, 0.1, loss, outer_iters=1, inner_iters=2, sigma_step="lowrank")
            cocoa(Xs, ys, 0.1, loss, rounds=2)
            mbsdca(Xs, ys, 0.1, loss, rounds=2)
            mbsgd(Xs, ys, 0.1, loss, rounds=2)
            fedavg(Xs, ys, 0.1, loss, rounds=2, finetune_epochs=1)
        times[name] = time.perf_counter() - t0
        if log is not None:
            what = "dense data" if name == "dense" else "CSR data (the same kernels)"
            log(f"MOCHA, CoCoA, mini-batch SDCA/SGD, FedAvg on {what}: {times[name]:.1f} s")
    t0 = time.perf_counter()
    kernel_mocha(data.X, data.y, 0.1, "hinge", kernel="rbf", outer_iters=2, inner_iters=2)
    times["kernel"] = time.perf_counter() - t0
    if log is not None:
        log(f"kernel MOCHA: {times['kernel']:.1f} s")
    times["total"] = time.perf_counter() - t_all
    return times
