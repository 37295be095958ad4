"""Local solvers: numba SDCA on MOCHA's per-task dual subproblems (dense and CSR)."""

from ._jit import warmup
from ._packing import PackedTasks, pack_tasks

__all__ = ["PackedTasks", "pack_tasks", "warmup"]
