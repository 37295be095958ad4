"""Performance regression benchmarks (pytest-benchmark).

    python -m pytest benchmarks/regression --benchmark-only
    python -m pytest benchmarks/regression --benchmark-only --benchmark-autosave
    python -m pytest benchmarks/regression --benchmark-only --benchmark-compare

Each benchmark times one call (numba compilation is absorbed by warm-up rounds; SDCA state
is reset outside the timer) and checks its result, never its time: comparing against a
saved baseline is pytest-benchmark's job (docs/benchmarks_regression.md).
"""

import sys

import numba
import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from fmtl.federated import mocha  # noqa: E402
from fmtl.federated._loop import as_tasks  # noqa: E402
from fmtl.losses import get_loss  # noqa: E402

mocha_module = sys.modules["fmtl.federated.mocha"]  # the package exports the function as `mocha`


def _pedantic(benchmark, kr, passes=1, parallel=False, rounds=20):
    benchmark.pedantic(
        kr.run, args=(passes, parallel), setup=kr.reset, rounds=rounds, warmup_rounds=2
    )
    assert np.array_equal(kr.steps_done, passes * kr.tasks.n_samples)
    assert np.all(np.isfinite(kr.dB))


@pytest.mark.benchmark(group="sdca-epoch")
def test_sdca_epoch_dense(benchmark, dense_round):
    """One serial hinge SDCA pass, dense 5,000 x 200."""
    benchmark.extra_info["entries"] = int(dense_round.tasks.Xd.size)
    _pedantic(benchmark, dense_round)


@pytest.mark.benchmark(group="sdca-epoch")
def test_sdca_epoch_csr(benchmark, csr_round):
    """One serial hinge SDCA pass, CSR 50,000 x 5,000 at 1 %."""
    benchmark.extra_info["nnz"] = int(csr_round.tasks.data.size)
    _pedantic(benchmark, csr_round, rounds=10)


@pytest.mark.benchmark(group="sdca-round")
def test_sdca_round_serial(benchmark, multitask_round):
    """One round over 200 tasks x 150 x 50, serial kernel."""
    _pedantic(benchmark, multitask_round)


@pytest.mark.benchmark(group="sdca-round")
def test_sdca_round_parallel(benchmark, multitask_round):
    """The same round on every numba thread (machine-dependent: compare on one machine)."""
    benchmark.extra_info["numba_threads"] = numba.get_num_threads()
    _pedantic(benchmark, multitask_round, parallel=True)


@pytest.mark.benchmark(group="mocha")
def test_mocha_fixed_sigma_to_gap(benchmark, multitask_data):
    """MOCHA, fixed mean-regularised Sigma, hinge, lam = 1e-3, to relative gap 1e-6."""
    Xs, ys, Sigma = multitask_data

    def fit():
        return mocha(
            Xs, ys, 1e-3, "hinge", relationship="fixed", sigma=Sigma, outer_iters=1,
            inner_iters=10_000, tol=1e-6, random_state=0,
        )  # fmt: skip

    res = benchmark.pedantic(fit, rounds=5, warmup_rounds=1)
    assert res.history["rel_gap"][-1] <= 1e-6


@pytest.mark.benchmark(group="mocha")
def test_mocha_learned_20_rounds(benchmark, multitask_data):
    """MOCHA, learned Sigma, hinge, lam = 1e-4: 4 outer x 5 federated rounds."""
    Xs, ys, _ = multitask_data

    def fit():
        return mocha(Xs, ys, 1e-4, "hinge", outer_iters=4, inner_iters=5, random_state=0)

    res = benchmark.pedantic(fit, rounds=5, warmup_rounds=1)
    assert len(res.history) == 20


@pytest.mark.benchmark(group="mocha")
def test_certificates(benchmark, multitask_data):
    """Primal, dual and gap for 30 tasks x 300 x 100 (one data pass)."""
    Xs, ys, Sigma = multitask_data
    res = mocha(
        Xs, ys, 1e-3, "hinge", relationship="fixed", sigma=Sigma, outer_iters=1,
        inner_iters=3, random_state=0,
    )  # fmt: skip
    loss = get_loss("hinge")
    tasks = as_tasks(Xs, ys, loss)
    cert = benchmark(mocha_module.certificates, tasks, res.dual_coef, res.B, Sigma, 1e-3, loss)
    assert cert["gap"] >= -1e-12 * abs(cert["primal"])
