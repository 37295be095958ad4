"""Progress output: tqdm bars on stderr (terminals only) and log lines that do not break them.

Bars show a total and an ETA; they are drawn only when stderr is a terminal, so logs, CI
and pipes get the plain lines and no carriage-return noise. Lines go through
:func:`write`, which clears and redraws any open bar around them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm


def write(line: str, file: TextIO | None = None) -> None:
    """Print ``line`` (default: to stdout) above any open progress bar, flushed."""
    out = sys.stdout if file is None else file
    tqdm.write(line, file=out)
    with contextlib.suppress(AttributeError, ValueError):  # closed or odd streams
        out.flush()


def bar(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True) -> tqdm:
    """A tqdm bar on stderr with ``total`` and ETA; disabled when ``enabled`` is False or
    stderr is not a terminal (``disable=None``). Nested bars clear themselves on close."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=None if enabled else True,
        leave=None,  # kept at the top level, cleared when nested (e.g. a fit inside demo)
        dynamic_ncols=True,
    )


# -- estimator fits --------------------------------------------------------------------------

# the bar of the fit in progress: set by fit_progress around a solve, advanced by the round
# printer the solve creates (so the solvers' callback signature stays ``callback(record)``)
_FIT_BAR: ContextVar[_RoundBar | None] = ContextVar("fmtl_fit_bar", default=None)


class _RoundBar:
    """A bar over a fit's federated rounds, created at the first record."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc = total, desc
        self.bar: tqdm | None = None
        self.done = 0

    def advance(self, rec: dict) -> None:
        if self.bar is None:
            self.bar = bar(self.total, self.desc, unit="round")
        rnd = int(rec["round"])
        self.bar.update(max(rnd - self.done, 0))
        self.done = max(rnd, self.done)
        key = "rel_gap" if "rel_gap" in rec else "primal"
        self.bar.set_postfix_str(f"{key.replace('_', ' ')} {rec[key]:.2e}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def round_budget(estimator: Any) -> int | None:
    """The most federated rounds one solve of ``estimator`` can take (a bar's total):
    ``outer_iters * inner_iters`` (MOCHA), ``max_rounds`` (Local, Global) or ``rounds``."""
    params = vars(estimator)
    try:
        if "outer_iters" in params and "inner_iters" in params:
            return int(params["outer_iters"]) * int(params["inner_iters"])
        for name in ("max_rounds", "rounds"):
            if name in params:
                return int(params[name])
    except (TypeError, ValueError):  # an invalid value: fit reports it, the bar has no total
        return None
    return None


@contextlib.contextmanager
def fit_progress(estimator: Any) -> Iterator[None]:
    """While an estimator solves with ``verbose > 0``: a bar over its round budget."""
    every = getattr(estimator, "verbose", 0)
    if isinstance(every, bool) or not isinstance(every, int | np.integer) or every <= 0:
        yield
        return
    state = _RoundBar(round_budget(estimator), type(estimator).__name__)
    token = _FIT_BAR.set(state)
    try:
        yield
    finally:
        _FIT_BAR.reset(token)
        state.close()


def round_printer(every: int) -> Callable[[dict], None] | None:
    """A History callback for ``verbose=every``: prints every ``every``-th round's
    certificates (primal, gap, joint gap or gradient norm) to stdout and, inside
    :func:`fit_progress`, advances the fit's bar (0: silent, returns None)."""
    if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 0:
        raise ValueError(f"verbose must be an integer >= 0, got {every!r}")
    if not every:
        return None
    state = _FIT_BAR.get()

    def show(rec: dict) -> None:
        if state is not None:
            state.advance(rec)
        if rec["round"] % every == 0:
            # certificates where the method has them (the dual methods), else the objective
            extra = "".join(
                f"  {key.replace('_', ' ')} {rec[key]:.3e}"
                for key in ("gap", "joint_gap", "grad_norm")
                if key in rec
            )
            write(
                f"  round {rec['round']:5d}  outer {rec['outer']:3d}  primal "
                f"{rec['primal']:.8f}{extra}"
            )

    return show
