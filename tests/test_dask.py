"""DaskExecutor: fmtl's local solves on a dask.distributed LocalCluster (worker processes),
bit-identical to in-process fits, with the data scattered once."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

distributed = pytest.importorskip("distributed")

from conftest import random_tasks  # noqa: E402

from fmtl.distributed.dask import DaskExecutor, _partition  # noqa: E402
from fmtl.federated import SystemsModel, cocoa, mbsdca, mbsgd, mocha  # noqa: E402
from fmtl.federated._loop import as_tasks  # noqa: E402

# no bokeh dashboard; the scheduler's small HTTP server on a free port, not 8787
NO_DASHBOARD = dict(dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})


@pytest.fixture(scope="module")
def client():
    # worker processes: proves the worker functions import from fmtl on the workers
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, **NO_DASHBOARD
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _sparse(Xs, seed=0):
    rng = np.random.default_rng(seed)
    return [sp.csr_matrix(np.where(rng.random(X.shape) < 0.6, 0.0, X)) for X in Xs]


def assert_same_fit(a, b, dual=True):
    """Bit-identical results and History (wall time aside)."""
    assert np.array_equal(a.coef, b.coef)
    assert np.array_equal(a.sigma, b.sigma)
    assert np.array_equal(a.dual_coef, b.dual_coef)
    assert np.array_equal(a.B, b.B)
    assert np.array_equal(a.never_reported, b.never_reported)
    assert a.history.columns == b.history.columns
    for col in a.history.columns:
        if col != "wall_time":
            assert np.array_equal(a.history[col], b.history[col], equal_nan=True), col
    if dual:
        assert np.all(np.diff(a.history["gap"]) != 0)  # the fit did move


def test_mocha_learned_sigma_dense_is_bit_identical(client):
    Xs, ys = random_tasks(m=6, n=40, d=8, seed=1)
    kw = dict(lam=0.05, loss="hinge", outer_iters=3, inner_iters=4, random_state=3)
    ex = DaskExecutor(client)
    got = mocha(Xs, ys, executor=ex, **kw)
    assert len(ex.chunks) == 2 and len(set(ex.chunk_workers)) == 2
    assert_same_fit(got, mocha(Xs, ys, **kw))
    ex.release()


@pytest.mark.parametrize("relationship", ["learned", "fixed"])
def test_mocha_certified_kernel_and_adaptive_sigma_prime_are_bit_identical(client, relationship):
    # local_work="auto" (the shrinking kernel; with fixed Sigma = I/m the one-round
    # decoupled solve and the kernel's certificate terms) and the line search's rescaling
    Xs, ys = random_tasks(m=6, n=40, d=8, seed=4)
    kw = dict(
        lam=0.05,
        loss="hinge",
        outer_iters=2,
        inner_iters=5,
        random_state=3,
        relationship=relationship,
        local_work="auto",
        sigma_prime="adaptive",
        tol=1e-6,
    )
    ex = DaskExecutor(client)
    assert_same_fit(mocha(Xs, ys, executor=ex, **kw), mocha(Xs, ys, **kw), dual=False)
    ex.release()


def test_mocha_with_ridge_is_bit_identical(client):
    # the ridge term lives in the server's W-step matrix: the workers see only w_t,
    # Sigma_tt and sigma'
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=5)
    kw = dict(lam=0.05, loss="logistic", outer_iters=3, inner_iters=4, random_state=1, ridge=2.0)
    ex = DaskExecutor(client)
    got = mocha(Xs, ys, executor=ex, **kw)
    assert_same_fit(got, mocha(Xs, ys, **kw))
    assert not np.array_equal(got.coef, mocha(Xs, ys, **{**kw, "ridge": 0.0}).coef)
    ex.release()


def test_mocha_csr_is_bit_identical(client):
    Xs, ys = random_tasks(m=5, n=30, d=10, seed=2)
    Xs = _sparse(Xs)
    kw = dict(
        lam=0.1,
        loss="smoothed_hinge",
        outer_iters=2,
        inner_iters=4,
        local_theta=0.3,
        record_local_gaps=True,
        random_state=0,
    )
    ex = DaskExecutor(client, n_chunks=3)  # more chunks than workers: round-robin
    got = mocha(Xs, ys, executor=ex, **kw)
    assert ex.chunks[0][0] == 0 and ex.chunks[-1][1] == 5 and len(ex.chunks) == 3
    assert_same_fit(got, mocha(Xs, ys, **kw))
    ex.release()


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(
    "fit, kw",
    [
        (cocoa, dict(theta=0.5, rounds=8)),
        (mbsdca, dict(rounds=8)),
        (mbsgd, dict(rounds=8)),
    ],
    ids=["cocoa", "mbsdca", "mbsgd"],
)
def test_baselines_are_bit_identical(client, fit, kw, sparse):
    Xs, ys = random_tasks(m=5, n=25, d=6, seed=4)
    if sparse:
        Xs = _sparse(Xs, seed=1)
    ex = DaskExecutor(client)
    got = fit(Xs, ys, 0.1, random_state=7, executor=ex, **kw)
    assert_same_fit(got, fit(Xs, ys, 0.1, random_state=7, **kw), dual=fit is not mbsgd)
    ex.release()


@pytest.mark.parametrize("sparse", [False, True])
def test_fedavg_with_finetuning_is_bit_identical(client, sparse):
    from fmtl.federated import fedavg

    Xs, ys = random_tasks(m=5, n=25, d=6, seed=4)
    if sparse:
        Xs = _sparse(Xs, seed=1)
    kw = dict(rounds=6, finetune_epochs=2, random_state=7, systems=SystemsModel(drop_prob=0.3))
    ex = DaskExecutor(client)
    got = fedavg(Xs, ys, 0.1, executor=ex, **kw)
    ref = fedavg(Xs, ys, 0.1, **kw)
    np.testing.assert_array_equal(got.coef, ref.coef)
    np.testing.assert_array_equal(got.history["primal"], ref.history["primal"])
    ex.release()


def test_mocha_with_systems_heterogeneity_and_drops_is_bit_identical(client):
    Xs, ys = random_tasks(m=8, n=30, d=5, seed=5)
    systems = SystemsModel(heterogeneity="high", drop_prob=0.3)
    kw = dict(lam=0.1, outer_iters=2, inner_iters=6, random_state=11, systems=systems)
    ex = DaskExecutor(client)
    got = mocha(Xs, ys, executor=ex, **kw)
    ref = mocha(Xs, ys, **kw)
    assert got.history["dropped"].any()
    assert_same_fit(got, ref)
    ex.release()


def test_data_is_scattered_once_and_rounds_send_no_data(client, monkeypatch):
    Xs, ys = random_tasks(m=6, n=60, d=40, seed=6)
    x_bytes = sum(X.nbytes for X in Xs)
    scatters, submits = [], []
    real_scatter, real_submit = client.scatter, client.submit

    def scatter(data, *a, **k):
        scatters.append(data)
        return real_scatter(data, *a, **k)

    def submit(func, *args, **k):
        submits.append((args, k))
        return real_submit(func, *args, **k)

    monkeypatch.setattr(client, "scatter", scatter)
    monkeypatch.setattr(client, "submit", submit)
    ex = DaskExecutor(client)
    rounds = 10
    res = mocha(Xs, ys, 0.1, outer_iters=1, inner_iters=rounds, random_state=0, executor=ex)
    assert len(res.history) == rounds
    k = len(ex.chunks)
    assert len(scatters) == k  # once per chunk for the whole fit
    assert len(submits) == rounds * k
    for chunk, (t0, t1) in zip(scatters, ex.chunks, strict=True):
        assert chunk.Xd.shape == (sum(len(y) for y in ys[t0:t1]), 40)
    chunk_rows = [c.Xd.shape[0] for c in scatters]
    per_round = 0
    for i, (args, kw) in enumerate(submits):
        assert isinstance(args[0], distributed.Future)  # the resident data, by reference
        assert kw["workers"] == [ex.chunk_workers[i % k]] and kw["allow_other_workers"] is False
        arrays = [a for a in args[1:] if isinstance(a, np.ndarray)]
        # no 2-D block of rows (the only per-row argument is the 1-D dual block)
        assert not any(a.ndim == 2 and a.shape[0] == chunk_rows[i % k] for a in arrays)
        per_round += sum(a.nbytes for a in arrays)
    per_round /= rounds
    assert per_round < x_bytes / 20  # dual block (x_bytes / d) + models + a few ints
    # a second fit on the same data (new list objects) reuses the scattered chunks
    mocha([X.copy() for X in Xs], ys, 0.1, outer_iters=1, inner_iters=2, executor=ex)
    assert len(scatters) == k
    ex.release()


def test_failed_node_on_the_executor_is_handled_as_in_process(client):
    # a node whose update comes back non-finite: its block is restored, it counts as dropped
    Xs, ys = random_tasks(m=4, n=20, d=3, seed=12)
    ex = DaskExecutor(client)

    class Faulty:
        calls = 0

        def bind(self, tasks):
            ex.bind(tasks)

        def minibatch_gradients(self, *a):
            ex.minibatch_gradients(*a)

        def sdca_round(self, tasks, alpha, *rest):
            ex.sdca_round(tasks, alpha, *rest)
            Faulty.calls += 1
            if Faulty.calls == 2:
                rest[-4][1] = np.nan  # dB row of node 1
                alpha[tasks.offsets[1]] = np.inf

    kw = dict(lam=0.1, outer_iters=1, inner_iters=4, random_state=0)
    res = mocha(Xs, ys, executor=Faulty(), **kw)
    h = res.history
    assert h["failed"][:, 1].tolist() == [False, True, False, False]
    assert h["dropped"][1, 1] and h["local_steps"][1, 1] == 0
    assert np.all(np.isfinite(res.coef)) and np.all(np.isfinite(res.dual_coef))
    ex.release()


def test_chunks_are_contiguous_nonempty_and_balanced():
    rng = np.random.default_rng(0)
    sizes = [50, 0, 3, 200, 7, 0, 90, 40]
    Xs = [rng.normal(size=(n, 4)) for n in sizes]
    tasks = as_tasks(Xs, [np.ones(n) for n in sizes])
    for k in range(1, len(sizes) + 1):
        b = _partition(tasks, k)
        assert b[0] == 0 and b[-1] == len(sizes) and len(b) == k + 1
        assert all(b1 > b0 for b0, b1 in zip(b[:-1], b[1:], strict=True))
    rows = np.diff(tasks.offsets[_partition(tasks, 2)])
    assert rows.tolist() == [253, 137]  # the split nearest to half the work


def test_bad_input_fails_clearly(client):
    with pytest.raises(TypeError, match="distributed.Client"):
        DaskExecutor("tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="n_chunks"):
        DaskExecutor(client, n_chunks=0)
    empty = distributed.LocalCluster(n_workers=0, processes=False, **NO_DASHBOARD)
    with empty, distributed.Client(empty) as c0:
        with pytest.raises(ValueError, match="no workers"):
            DaskExecutor(c0)
    Xs, ys = random_tasks(m=4, n=20, d=3, seed=8)
    ex = DaskExecutor(client).bind(Xs, ys)
    other_Xs, other_ys = random_tasks(m=4, n=20, d=3, seed=9)
    with pytest.raises(ValueError, match="another data set"):
        mocha(other_Xs, other_ys, 0.1, inner_iters=2, executor=ex)
    with pytest.raises(ValueError, match="another data set"):
        mbsgd(Xs[:3], ys[:3], 0.1, rounds=2, executor=ex)
    ex.release()  # then it serves the other data
    kw = dict(outer_iters=1, inner_iters=2, random_state=0)
    res = mocha(other_Xs, other_ys, 0.1, executor=ex, **kw)
    assert np.array_equal(res.coef, mocha(other_Xs, other_ys, 0.1, **kw).coef)
    ex.release()
    with pytest.raises(TypeError, match="executor"):
        mocha(Xs, ys, 0.1, inner_iters=2, executor=client)


def test_in_process_fits_do_not_import_dask():
    code = (
        "import sys, numpy as np\n"
        "import fmtl, fmtl.distributed\n"
        "from fmtl.federated import mocha\n"
        "rng = np.random.default_rng(0)\n"
        "Xs = [rng.normal(size=(10, 3)) for _ in range(2)]\n"
        "mocha(Xs, [np.sign(X[:, 0]) for X in Xs], 0.1, outer_iters=1, inner_iters=1)\n"
        "import fmtl.distributed.dask\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
