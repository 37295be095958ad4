"""The federated systems model shared by every algorithm: local work, drops, cost.

Per round and per node ``t`` (DESIGN.md section 3, the reference code's model):

- **local work**: ``floor(n_t * f)`` local steps (at least 1), with ``f = local_frac``, or
  ``f ~ U(bottom, top)`` drawn per node and round under systems heterogeneity
  (presets ``"low"`` = U(0.9, 1.0), ``"high"`` = U(0.1, 1.0), as in the paper's
  low/high-variability environments);
- **drops**: node ``t`` returns nothing with probability ``drop_prob[t]``; nodes in
  ``dead_nodes`` never return;
- **estimated time** of a round: ``flops_factor * work + comm_cost``, where ``work`` is
  ``f_max * n_total`` (the work budget of a synchronous round, ``f_max = top`` under
  heterogeneity, else ``local_frac``) or, for methods that run each node to an accuracy
  (CoCoA), ``m * max_t steps_t`` (the slowest node). ``comm_cost``: ``"wifi"`` 10,
  ``"lte"`` 100, ``"3g"`` 1000, or any number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HETEROGENEITY = {"low": (0.9, 1.0), "high": (0.1, 1.0)}
NETWORKS = {"wifi": 10.0, "lte": 100.0, "3g": 1000.0}


@dataclass(frozen=True)
class SystemsModel:
    """How nodes behave in each federated round (work, failures) and what a round costs.

    Parameters
    ----------
    heterogeneity : {None, "low", "high"} or (bottom, top)
        Local work fraction per node and round: fixed (None) or ``U(bottom, top)``.
    drop_prob : float or sequence of float, default=0.0
        Probability that a node returns nothing in a round (per node if a sequence);
        each must be in ``[0, 1)``.
    dead_nodes : sequence of int, default=()
        Nodes that never return anything (reported after the fit).
    network : {"wifi", "lte", "3g"} or float, default="lte"
        Communication cost per round.
    flops_factor : float, optional
        Cost per unit of local work; ``None`` uses the algorithm's own (MOCHA/CoCoA 8,
        mini-batch SDCA 6, mini-batch SGD 4).
    max_failures : int, optional
        A node whose local solve fails (non-finite update) is treated as dropped for that
        round, its dual block left as it was; after more than ``max_failures`` failures of
        one node the fit stops with an error naming it (None: never stop).

    Attributes
    ----------
    work_range : (float, float) or None
        ``(bottom, top)`` of the per-round work fraction, None without heterogeneity.
    comm_cost : float
        The network's cost per round.

    Raises
    ------
    ValueError
        From the constructor, for an unknown ``heterogeneity`` preset or network, a
        ``(bottom, top)`` without ``0 < bottom <= top < inf``, a ``drop_prob`` outside
        ``[0, 1)`` or not 1-D, a negative or non-finite ``flops_factor`` or network cost,
        or a ``max_failures`` that is not None or an integer >= 0. A fit raises
        ``ValueError`` if ``drop_prob`` has the wrong length or ``dead_nodes`` holds a bad
        index, and ``RuntimeError`` once a node fails more than ``max_failures`` times.

    Examples
    --------
    >>> from fmtl.federated import SystemsModel
    >>> SystemsModel(heterogeneity="high", network="3g").comm_cost
    1000.0
    >>> SystemsModel(heterogeneity="low").work_range
    (0.9, 1.0)
    >>> SystemsModel(drop_prob=1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: drop_prob must be a number or a 1-D sequence of numbers in [0, 1) ...
    """

    heterogeneity: str | tuple[float, float] | None = None
    drop_prob: float | tuple = 0.0
    dead_nodes: tuple = field(default_factory=tuple)
    network: str | float = "lte"
    flops_factor: float | None = None
    max_failures: int | None = None

    def __post_init__(self) -> None:
        mf = self.max_failures
        if mf is not None and (isinstance(mf, bool) or not isinstance(mf, int) or mf < 0):
            raise ValueError(f"max_failures must be None or an integer >= 0, got {mf!r}")
        self.work_range  # noqa: B018  (validates)
        self.comm_cost  # noqa: B018
        if self.flops_factor is not None and not (
            np.isfinite(self.flops_factor) and self.flops_factor >= 0
        ):
            raise ValueError(
                f"flops_factor must be a finite number >= 0, got {self.flops_factor!r}"
            )
        p = np.asarray(self.drop_prob, dtype=float)
        if p.ndim > 1 or not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p >= 1):
            raise ValueError(
                "drop_prob must be a number or a 1-D sequence of numbers in [0, 1) "
                f"(use dead_nodes for nodes that never return), got {self.drop_prob!r}"
            )

    @property
    def work_range(self) -> tuple[float, float] | None:
        h = self.heterogeneity
        if h is None:
            return None
        if isinstance(h, str):
            if h not in HETEROGENEITY:
                raise ValueError(
                    f"heterogeneity must be None, one of {tuple(HETEROGENEITY)} or "
                    f"(bottom, top), got {h!r}"
                )
            return HETEROGENEITY[h]
        lo, hi = (float(v) for v in h)
        if not (0 < lo <= hi) or not np.isfinite(hi):
            raise ValueError(f"heterogeneity (bottom, top) needs 0 < bottom <= top, got {h!r}")
        return lo, hi

    @property
    def comm_cost(self) -> float:
        c = self.network
        if isinstance(c, str):
            if c.lower() not in NETWORKS:
                raise ValueError(
                    f"network must be one of {tuple(NETWORKS)} or a number, got {c!r}"
                )
            return NETWORKS[c.lower()]
        c = float(c)
        if not (np.isfinite(c) and c >= 0):
            raise ValueError(f"network cost must be a finite number >= 0, got {c!r}")
        return c


def local_phase_time(steps, flops_factor: float, systems: SystemsModel | None = None) -> float:
    """Estimated time of a purely local phase after the last round (personalisation:
    fine-tuning, Ditto's personal solve, Per-FedAvg's adaptation, FedRep's final heads).

    Every node works at once and nothing is sent, so it costs the slowest node's work in the
    slowest-node accounting of a round, ``flops * m * max_t steps_t``, with no
    communication term (``flops`` is the systems model's ``flops_factor`` if set).

    Parameters
    ----------
    steps : array-like of int, shape (n_tasks,)
        Sample visits (or coordinate steps) each node makes in the phase.
    flops_factor : float
        The method's cost per step (4 for SGD-type passes, 8 for SDCA).
    systems : SystemsModel, optional
        Its ``flops_factor``, when set, replaces the method's.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``steps`` holds a negative or non-finite value.

    Examples
    --------
    >>> from fmtl.federated.systems import local_phase_time
    >>> local_phase_time([30, 50, 40], 4.0)
    600.0
    """
    steps = np.asarray(steps, dtype=np.float64).ravel()
    if steps.size and (not np.all(np.isfinite(steps)) or np.any(steps < 0)):
        raise ValueError(f"steps must be finite and >= 0, got {steps!r}")
    flops = float(flops_factor)
    if systems is not None and systems.flops_factor is not None:
        flops = float(systems.flops_factor)
    return flops * steps.size * float(steps.max(initial=0.0))


class SystemsRuntime:
    """Per-round draws and cost accounting of a :class:`SystemsModel` for one run."""

    def __init__(
        self,
        model: SystemsModel | None,
        n: np.ndarray,
        local_frac: float,
        flops_factor: float,
        slowest_node_time: bool = False,
    ) -> None:
        if model is not None and not isinstance(model, SystemsModel):
            raise TypeError(f"systems must be a SystemsModel or None, got {model!r}")
        self.model = model if model is not None else SystemsModel()
        m = n.shape[0]
        self.n = n
        self.local_frac = float(local_frac)
        self.range = self.model.work_range
        if np.ndim(self.model.drop_prob) == 1 and len(self.model.drop_prob) != m:
            raise ValueError(f"drop_prob has {len(self.model.drop_prob)} entries for {m} nodes")
        p = np.broadcast_to(np.asarray(self.model.drop_prob, dtype=float), (m,))
        self.drop_prob = np.array(p, dtype=float)
        self.alive = np.ones(m, dtype=np.bool_)
        for t in self.model.dead_nodes:
            if not (0 <= int(t) < m):
                raise ValueError(f"dead_nodes contains {t!r}, not a node index in [0, {m})")
            self.alive[int(t)] = False
        self.flops = flops_factor if self.model.flops_factor is None else self.model.flops_factor
        self.comm = self.model.comm_cost
        self.slowest = slowest_node_time
        self.reported = np.zeros(m, dtype=np.int64)
        self.failures = np.zeros(m, dtype=np.int64)
        self.last_failed = np.zeros(m, dtype=np.bool_)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Local step budgets and the mask of nodes that will report this round."""
        if self.range is None:
            frac = np.full(self.n.shape[0], self.local_frac)
        else:
            lo, hi = self.range
            frac = lo + (hi - lo) * rng.random(self.n.shape[0])
        steps = np.where(self.n > 0, np.maximum(1, np.floor(frac * self.n)), 0).astype(np.int64)
        active = self.alive.copy()
        if np.any(self.drop_prob > 0):
            active &= rng.random(self.n.shape[0]) >= self.drop_prob
        self.reported += active
        return steps, active

    def fail(self, failed: np.ndarray, active: np.ndarray) -> None:
        """Nodes whose local solve failed this round: count them, mark them dropped, and
        stop the fit once one has failed more than ``max_failures`` times."""
        self.last_failed = failed.copy()
        if not failed.any():
            return
        active &= ~failed
        self.reported -= failed
        self.failures += failed
        limit = self.model.max_failures
        if limit is not None and np.any(self.failures > limit):
            nodes = np.flatnonzero(self.failures > limit).tolist()
            raise RuntimeError(
                f"nodes {nodes} failed their local solve more than "
                f"max_failures={limit} times; stopping the fit"
            )

    def round_time(self, steps_done: np.ndarray) -> float:
        """Estimated time of one round (see the module docstring)."""
        if self.slowest:
            work = self.n.shape[0] * float(np.max(steps_done, initial=0))
        else:
            f_max = self.local_frac if self.range is None else self.range[1]
            work = f_max * float(self.n.sum())
        return self.flops * work + self.comm

    @property
    def never_reported(self) -> np.ndarray:
        return np.flatnonzero(self.reported == 0)
