"""The MOCHA paper's experiments (Smith et al., NeurIPS 2017), apart from the library.

* :mod:`fmtl.experiments.error_protocol`: the prediction-error protocol (per-task error,
  per-task cross-validation of lambda, error tables, the final refit's polish, the
  constant baseline and the paper's methods);
* :mod:`fmtl.experiments.errors`: the error table (Table 1) run, ``fmtl reproduce errors``
  and ``benchmarks/errors.py``;
* :mod:`fmtl.experiments.convergence`: the convergence figures (Figures 2-4),
  ``fmtl reproduce convergence`` and ``benchmarks/convergence.py``.

They were ``fmtl.protocols``, ``fmtl.errors_benchmark`` and ``fmtl.reproduce`` before;
those paths still work, with a :class:`DeprecationWarning` on use.
"""
