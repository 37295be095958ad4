"""Running fmtl beyond one process, on engines people already operate.

* :mod:`fmtl.distributed.flower` — MOCHA (and other methods) as a Flower server strategy
  and client app (extra ``flower``).
* :mod:`fmtl.distributed.dask` — the per-task local solves of fmtl's algorithms on a
  ``dask.distributed`` cluster (extra ``dask``).

Nothing here is imported by ``import fmtl``; each submodule imports its engine lazily.
"""
