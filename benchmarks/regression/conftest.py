"""Fixtures of the pytest-benchmark regression suite (see docs/benchmarks_regression.md).

Not collected by the normal test run (``testpaths`` are ``tests`` and ``fmtl``); run with
``python -m pytest benchmarks/regression --benchmark-only``.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: bench_speed

from bench_speed import KernelRound, csr_problem, dense_problem  # noqa: E402

from fmtl.datasets import make_multitask_classification  # noqa: E402
from fmtl.relationships import mean_regularized_sigma, resolve_sigma_prime  # noqa: E402
from fmtl.solvers._packing import pack_tasks  # noqa: E402


def _single_task_round(X, y, C=1.0):
    n = X.shape[0]
    return KernelRound(pack_tasks([X], [y]), 1.0 / (n * C), [1.0], rho=1.0, seed=0)


@pytest.fixture(scope="session")
def dense_round():
    """One task, dense 5,000 x 200, rows of norm 1 (C = 1)."""
    return _single_task_round(*dense_problem(5_000, 200, seed=0))


@pytest.fixture(scope="session")
def csr_round():
    """One task, CSR 50,000 x 5,000 at 1 % density, rows of norm 1 (C = 1)."""
    return _single_task_round(*csr_problem(50_000, 5_000, 0.01, seed=0))


@pytest.fixture(scope="session")
def multitask_round():
    """200 tasks x 150 x 50 dense, mean-regularised Sigma, Gershgorin sigma'."""
    m = 200
    data = make_multitask_classification(
        n_tasks=m, n_samples=150, n_features=50, noise=0.3, random_state=1
    )
    Sigma = mean_regularized_sigma(m, 1.0)
    rho = resolve_sigma_prime("gershgorin", Sigma)
    return KernelRound(pack_tasks(data.X, data.y), 1e-3, np.diag(Sigma), rho=rho, seed=0)


@pytest.fixture(scope="session")
def multitask_data():
    """30 tasks x 300 x 100 (the MOCHA vs cvxpy problem of bench_speed.py)."""
    data = make_multitask_classification(
        n_tasks=30, n_samples=300, n_features=100, structure="clustered", noise=0.3,
        random_state=0,
    )  # fmt: skip
    return data.X, data.y, mean_regularized_sigma(30, 1.0)
