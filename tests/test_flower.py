"""MOCHA on Flower: the engine-agnostic protocol, the wire, and a real loopback federation.

(a) protocol level: MochaServerState + MochaClientState give mocha()'s model bit for bit
    (synthetic and `small`), also when a client's reply is lost after it did the work;
(b) the wire: the strategy and the ClientApp exchange real Flower Messages (in-process
    grid); clients send only d-vectors and scalars, their duals stay in context.state;
(c) a real federation on 127.0.0.1: SuperLink + 3 SuperNodes + `flwr run`, as processes.
"""

import itertools
import math

import numpy as np
import pytest

flwr = pytest.importorskip("flwr")

from conftest import load_script, random_tasks  # noqa: E402

import fmtl.federated._loop as loop_mod  # noqa: E402
from fmtl.datasets import find_mocha, load_mocha  # noqa: E402
from fmtl.distributed.protocol import (  # noqa: E402
    FedAvgClientState,
    MochaClientState,
    make_server,
    run_local,
)
from fmtl.federated import SystemsModel, mocha  # noqa: E402
from fmtl.federated.cocoa import cocoa  # noqa: E402
from fmtl.federated.fedavg import fedavg  # noqa: E402

LAM = 0.05


def mocha_with_failures(Xs, ys, lam, failures, **kw):
    """In-process mocha() where node t's update of round r is lost, for (r, t) in
    ``failures``: the kernel's output row is made non-finite, which mocha() treats as a
    failed node (its duals restored, nothing aggregated) — MOCHA's drop model."""
    orig = loop_mod.sdca_round
    calls = itertools.count(1)

    def kernel(*args, parallel=True):
        orig(*args, parallel=parallel)
        r = next(calls)
        dB = args[-4]
        for rr, t in failures:
            if rr == r:
                dB[t, 0] = np.nan

    loop_mod.sdca_round = kernel
    try:
        return mocha(Xs, ys, lam, **kw)
    finally:
        loop_mod.sdca_round = orig


def clients_for(Xs, ys, lam=LAM, cls=MochaClientState, **kw):
    return [cls(X, y, lam, **kw) for X, y in zip(Xs, ys, strict=True)]


def check_bounded_certificates(hist, ref, rows, unanswered=()):
    """History ``hist`` equals ``ref`` bit for bit except in ``rows``, where the nodes
    that did not answer had their terms bounded: an upper bound on the primal, the dual
    (a lower bound, exact up to rounding: the conjugate gains are summed) and a gap that
    over-estimates the true one, never under; and in ``unanswered`` rows (a node without
    terms to bound: NaN)."""
    others = np.setdiff1d(np.arange(len(ref["gap"])), np.r_[rows, unanswered])
    assert np.all(np.isnan(hist["gap"][list(unanswered)]))
    for col in ("primal", "dual", "gap"):
        np.testing.assert_array_equal(hist[col][others], ref[col][others])
    assert np.all(hist["primal"][rows] >= ref["primal"][rows])
    np.testing.assert_allclose(hist["dual"][rows], ref["dual"][rows], rtol=1e-12)
    assert np.all(hist["gap"][rows] >= ref["gap"][rows] - 1e-12 * np.abs(ref["dual"][rows]))
    assert np.all(hist["eval_bounded"][rows] >= 1)
    recovered = np.setdiff1d(np.arange(len(ref["gap"])), unanswered)
    assert np.array_equal(hist["eval_bounded"][recovered], hist["eval_missing"][recovered])


def check_dual_consistency(B, clients):
    for t, c in enumerate(clients):
        X = c.tasks.Xd
        np.testing.assert_allclose(B[t], X.T @ c.alpha / c.n, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- (a) protocol


@pytest.mark.parametrize(
    "kw",
    [
        dict(outer_iters=3, inner_iters=4, random_state=3),
        dict(
            outer_iters=2,
            inner_iters=5,
            random_state=7,
            local_theta=0.3,
            eval_every=2,
            systems=SystemsModel(heterogeneity="high", drop_prob=0.2),
        ),
    ],
)
def test_protocol_equals_mocha_synthetic(kw):
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=1)
    ref = mocha(Xs, ys, LAM, **kw)
    clients = clients_for(Xs, ys)
    res = run_local(make_server("mocha", [len(y) for y in ys], 6, LAM, **kw), clients)
    assert np.array_equal(res.coef, ref.coef)  # bit-identical (target was 1e-10)
    np.testing.assert_array_equal(res.sigma, ref.sigma)
    for col in ("primal", "dual", "gap", "joint_gap", "rho", "est_time", "local_steps"):
        np.testing.assert_array_equal(res.history[col], ref.history[col])
    # the duals never left the clients, yet they are mocha()'s
    np.testing.assert_array_equal(np.concatenate([c.alpha for c in clients]), ref.dual_coef)


def test_protocol_failed_replies_roll_back_and_match_mocha():
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=2)
    fails = {(2, 0), (4, 2), (7, 0), (7, 3)}
    kw = dict(outer_iters=3, inner_iters=4, random_state=5)
    ref = mocha_with_failures(Xs, ys, LAM, fails, **kw)
    assert ref.history["failed"].sum() == len(fails)
    clients = clients_for(Xs, ys)
    server = make_server("mocha", [len(y) for y in ys], 6, LAM, **kw)
    res = run_local(server, clients, fail=lambda r, t, ph: ph == "train" and (r, t) in fails)
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(res.history["failed"], ref.history["failed"])
    np.testing.assert_array_equal(res.history["gap"], ref.history["gap"])
    check_dual_consistency(res.B, clients)  # B = B(alpha) over committed duals
    assert [c.n_rollbacks for c in clients] == [2, 0, 1, 1, 0]
    assert server.client_rollbacks.tolist() == [2, 0, 1, 1, 0]


def test_protocol_lost_evaluate_replies_leave_the_model_unchanged():
    Xs, ys = random_tasks(m=4, n=25, d=5, seed=3)
    kw = dict(outer_iters=2, inner_iters=3, random_state=1)
    ref = mocha(Xs, ys, LAM, **kw)
    clients = clients_for(Xs, ys)
    server = make_server("mocha", [len(y) for y in ys], 5, LAM, **kw)
    lost = {(2, 1), (3, 0)}
    res = run_local(server, clients, fail=lambda r, t, ph: ph == "evaluate" and (r, t) in lost)
    assert np.array_equal(res.coef, ref.coef)  # the ack in the next message commits
    # the missing nodes' terms are bounded (issue 16, item 6: they used to be NaN)
    check_bounded_certificates(res.history, ref.history, [1, 2])
    assert res.history["eval_missing"].tolist() == [0, 1, 1, 0, 0, 0]


def test_protocol_client_that_lost_its_state_is_reset():
    Xs, ys = random_tasks(m=3, n=20, d=4, seed=4)
    clients = clients_for(Xs, ys)
    server = make_server("mocha", [len(y) for y in ys], 4, LAM, outer_iters=1, inner_iters=6)

    def fail(r, t, ph):
        if r == 3 and t == 1 and ph == "evaluate":
            clients[1] = MochaClientState(Xs[1], ys[1], LAM)  # the node restarted
        return False

    with pytest.warns(RuntimeWarning, match="lost its dual state"):
        res = run_local(server, clients, fail=fail)
    assert server.state_resets.tolist() == [0, 1, 0]
    check_dual_consistency(res.B, clients)
    assert res.history["gap"][-1] >= -1e-12


def test_protocol_on_small(small):
    m = 6
    Xs, ys = small.X[:m], small.y[:m]
    fails = {(3, 1), (5, 4)}
    kw = dict(outer_iters=3, inner_iters=3, random_state=11)
    ref = mocha_with_failures(Xs, ys, 0.01, fails, **kw)
    clients = clients_for(Xs, ys, lam=0.01)
    server = make_server("mocha", [len(y) for y in ys], small.n_features, 0.01, **kw)
    res = run_local(server, clients, fail=lambda r, t, ph: ph == "train" and (r, t) in fails)
    assert np.abs(res.coef - ref.coef).max() <= 1e-10
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(res.history["joint_gap"], ref.history["joint_gap"])


def test_protocol_other_methods_equal_their_in_process_functions():
    Xs, ys = random_tasks(m=4, n=25, d=5, seed=5)
    n = [len(y) for y in ys]
    ref = mocha(Xs, ys, LAM, relationship="fixed", outer_iters=1, inner_iters=5, random_state=2)
    res = run_local(
        make_server("local", n, 5, LAM, outer_iters=1, inner_iters=5, random_state=2),
        clients_for(Xs, ys),
    )
    assert np.array_equal(res.coef, ref.coef)
    sysm = SystemsModel(drop_prob=0.1)
    ref = cocoa(Xs, ys, LAM, rounds=5, random_state=3, systems=sysm)
    res = run_local(
        make_server("cocoa", n, 5, LAM, rounds=5, random_state=3, systems=sysm),
        clients_for(Xs, ys),
    )
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(res.history["local_gap_ratio"], ref.history["local_gap_ratio"])
    ref = fedavg(Xs, ys, 0.01, rounds=4, random_state=4)
    res = run_local(
        make_server("fedavg", n, 5, 0.01, rounds=4, random_state=4),
        clients_for(Xs, ys, 0.01, FedAvgClientState),
    )
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(res.history["primal"], ref.history["primal"])


# --------------------------------------------------------------------------------- (b) wire


class LocalGrid(flwr.serverapp.Grid):
    """An in-process Grid: every message goes through the real ClientApp with one
    Context (node_config, state) per node; ``lose(message)`` drops a reply."""

    def __init__(self, client_app, node_configs, run_config=None, lose=None):
        from flwr.app import Context, RecordDict
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
        self.client_app = client_app
        self.contexts = {
            101 + i: Context(
                run_id=1,
                node_id=101 + i,
                node_config=dict(nc),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for i, nc in enumerate(node_configs)
        }
        self.ids = itertools.count(1)
        self.replies = {}
        self.lose = lose
        self.log = []

    def set_run(self, run):
        pass

    @property
    def run(self):
        return None

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        from flwr.app import Message

        return Message(content, dst_node_id, message_type, group_id=group_id)

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            mid = f"m{next(self.ids)}"
            msg.metadata.__dict__["_message_id"] = mid
            reply = self.client_app(msg, self.contexts[msg.metadata.dst_node_id])
            self.log.append((msg, reply))
            if self.lose is None or not self.lose(msg):
                self.replies[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))


def flower_run(Xs, ys, lam, tmp_path, run_config=None, method="mocha", **kw):
    from fmtl.distributed.flower import FmtlStrategy, client_app

    files = []
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        files.append(str(tmp_path / f"client{t}.npz"))
        np.savez(files[-1], X=X, y=y)
    configs = [
        {"partition-id": t, "num-partitions": len(Xs), "data": f} for t, f in enumerate(files)
    ]
    grid = LocalGrid(client_app, configs, run_config)
    strategy = FmtlStrategy(method, lam, round_timeout=5.0, **kw)
    result = strategy.start(grid)
    return strategy, result, grid


def test_wire_only_d_vectors_and_scalars_travel(tmp_path):
    from fmtl.distributed.flower import from_recorddict

    Xs, ys = random_tasks(m=4, n=40, d=6, seed=6)
    n = [len(y) for y in ys]
    assert len(set(n) | {6}) == len(n) + 1  # every n_t differs from d
    kw = dict(outer_iters=2, inner_iters=3, random_state=8)
    fails = {(4, 2)}
    ref = mocha_with_failures(Xs, ys, LAM, fails, **kw)
    strategy, result, grid = flower_run(Xs, ys, LAM, tmp_path, {"debug-fail": "4:2"}, **kw)
    assert np.array_equal(result.arrays["W"].numpy(), ref.coef)
    np.testing.assert_array_equal(strategy.history["failed"], ref.history["failed"])
    # round 3's certificate rode on round 4's train messages (fold_eval): task 2's lost
    # reply took its terms along, which the server bounds; every other certificate is
    # mocha()'s, bit for bit
    check_bounded_certificates(strategy.history, ref.history, [2])
    assert strategy.history["eval_missing"].tolist() == [0, 0, 1, 0, 0, 0]
    kinds = set()
    for msg, reply in grid.log:
        kinds.add(msg.metadata.message_type)
        for m in (msg, reply):
            if m.has_error():
                assert "debug-fail" in m.error.reason
                continue
            rd = m.content
            assert set(rd.keys()) <= {"arrays", "config"}
            arrays, config = from_recorddict(rd)
            for a in arrays.values():
                assert a.shape == (6,) and a.dtype == np.float64  # never samples or labels
            for v in config.values():
                assert isinstance(v, bool | int | float | str)  # scalars only
    assert kinds == {"query", "train", "evaluate"}
    # the duals (size n_t) stay in each node's context.state
    for t, ctx in enumerate(grid.contexts.values()):
        alpha = ctx.state.array_records["fmtl.state.arrays"]["alpha"].numpy()
        assert alpha.shape == (n[t],)
    ups = [w for w in strategy.wire if w["direction"] == "up"]
    assert ups and all(shape == [6] for w in ups for shape in w["arrays"].values())
    assert max(w["bytes"] for w in strategy.wire) < 2000


class CountingGrid(LocalGrid):
    """A LocalGrid that counts exchanges (calls of push_messages) and message kinds."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.exchanges = []

    def push_messages(self, messages):
        messages = list(messages)
        self.exchanges.append(
            sorted((m.metadata.message_type, int(m.metadata.group_id)) for m in messages)
        )
        return super().push_messages(messages)


@pytest.mark.parametrize("fold", [True, False])
def test_strategy_folds_the_evaluation_into_the_next_train_message(tmp_path, fold):
    # issue 16: one round trip per round. Round r's certificates ride on round r+1's
    # train messages (w_eval when a Sigma-step moved w_t; nodes dropped that round get
    # an evaluate message in the same exchange); only the last round's take an exchange
    # of their own. The History and the model are mocha()'s, bit for bit, either way.
    from fmtl.distributed.flower import FmtlStrategy, client_app, from_recorddict

    Xs, ys = random_tasks(m=4, n=30, d=5, seed=11)
    kw = dict(outer_iters=2, inner_iters=3, random_state=4, systems=SystemsModel(drop_prob=0.3))
    ref = mocha(Xs, ys, LAM, **kw)
    assert ref.history["dropped"].any()  # some rounds leave nodes out
    files = []
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        files.append(str(tmp_path / f"client{t}.npz"))
        np.savez(files[-1], X=X, y=y)
    configs = [{"partition-id": t, "num-partitions": 4, "data": f} for t, f in enumerate(files)]
    grid = CountingGrid(client_app, configs)
    strategy = FmtlStrategy("mocha", LAM, round_timeout=5.0, fold_eval=fold, **kw)
    result = strategy.start(grid)
    assert np.array_equal(result.arrays["W"].numpy(), ref.coef)
    for col in ("primal", "dual", "gap", "joint_gap", "rho", "est_time", "dropped", "round"):
        np.testing.assert_array_equal(strategy.history[col], ref.history[col])
    rounds = len(ref.history)
    assert len(grid.exchanges) == 1 + rounds + (1 if fold else rounds)  # query, rounds, evals
    if not fold:
        return
    for r, exchange in enumerate(grid.exchanges[1 : 1 + rounds], start=1):
        dropped = np.flatnonzero(ref.history["dropped"][r - 1]).tolist()
        evals = [g for kind, g in exchange if kind == "evaluate"]
        trains = [g for kind, g in exchange if kind == "train"]
        assert trains == [r] * (4 - len(dropped))
        assert evals == ([r - 1] * len(dropped) if r > 1 else [])  # round r-1's certificates
    assert grid.exchanges[-1] == [("evaluate", rounds)] * 4
    carried = {}
    for msg, _ in grid.log:
        arrays, config = from_recorddict(msg.content)
        if msg.metadata.message_type == "train" and "eval_round" in config:
            assert config["eval_round"] == config["round"] - 1
            carried.setdefault(config["round"], set()).add("w_eval" in arrays)
    assert sorted(carried) == list(range(2, rounds + 1))
    # w_eval travels only after the Sigma-step (round 4 starts W-step 2)
    assert {r for r, has in carried.items() if True in has} == {4}


def test_strategy_on_small_matches_mocha(small, tmp_path):
    m = 4
    kw = dict(outer_iters=2, inner_iters=2, random_state=0)
    ref = mocha(small.X[:m], small.y[:m], 0.01, **kw)
    strategy, result, _ = flower_run(small.X[:m], small.y[:m], 0.01, tmp_path, **kw)
    assert np.abs(result.arrays["W"].numpy() - ref.coef).max() <= 1e-10
    np.testing.assert_array_equal(result.arrays["Sigma"].numpy(), ref.sigma)


def test_strategy_runs_fedavg_and_cocoa_through_the_same_adapter(tmp_path):
    Xs, ys = random_tasks(m=3, n=30, d=4, seed=9)
    ref = fedavg(Xs, ys, 0.01, rounds=3, random_state=1, loss="logistic")
    strategy, result, _ = flower_run(
        Xs, ys, 0.01, tmp_path, method="fedavg", rounds=3, random_state=1, loss="logistic"
    )
    assert np.array_equal(result.arrays["W"].numpy(), ref.coef)
    np.testing.assert_array_equal(strategy.history["primal"], ref.history["primal"])
    ref = cocoa(Xs, ys, LAM, rounds=3, random_state=2)
    _, result, _ = flower_run(Xs, ys, LAM, tmp_path, method="cocoa", rounds=3, random_state=2)
    assert np.array_equal(result.arrays["W"].numpy(), ref.coef)


# ----------------------------------------------------------------------- (c) real processes


@pytest.mark.slow
def test_loopback_three_supernodes_equal_in_process_mocha(tmp_path):
    """SuperLink + 3 SuperNodes + `flwr run` as real processes on 127.0.0.1; client 1's
    round-3 reply is lost after it did the work (the rollback path)."""
    import shutil

    from fmtl.distributed.flower import _alive, run_loopback

    if shutil.which("flower-superlink") is None or shutil.which("flwr") is None:
        pytest.skip("Flower's command line tools are not on PATH")
    path = find_mocha("small")
    if path is None:
        pytest.skip("small.mat not found (set FMTL_DATA)")
    ds = load_mocha(path)
    cfg = {"outer-iters": 2, "inner-iters": 2, "eval-every": 2, "random-state": 3}
    cfg["debug-fail"] = "3:1"
    # the timeout only guards against a hang (a run takes ~60 s here); no time is asserted
    lines = []
    out = run_loopback(
        3, cfg, data=str(path), timeout=600.0, workdir=tmp_path / "run", progress=lines.append
    )
    # one progress line per round while it ran, and one for the last certificates
    assert [ln.split(":")[0] for ln in lines] == [f"fmtl round {r}" for r in (1, 2, 3, 4)] + [
        "fmtl final certificates"
    ]
    assert "certified round 4: primal=" in lines[-1]
    ref = mocha_with_failures(
        ds.X[:3],
        ds.y[:3],
        0.01,
        {(3, 1)},
        outer_iters=2,
        inner_iters=2,
        eval_every=2,
        random_state=3,
    )
    assert np.abs(out["coef"] - ref.coef).max() <= 1e-10
    np.testing.assert_array_equal(out["history"]["failed"], ref.history["failed"])
    # round 2's certificate rode on round 3's train messages (fold_eval): lost with
    # client 1's reply; round 4's is mocha()'s
    assert np.isnan(out["history"]["gap"][0]) and out["history"]["eval_missing"][0] == 1
    np.testing.assert_allclose(out["history"]["gap"][1], ref.history["gap"][1], rtol=0, atol=1e-12)
    assert {w["phase"] for w in out["wire"] if w["round"] == 3} == {"train"}  # one exchange
    d = ds.n_features
    for w in out["wire"]:
        assert all(shape == [d] for shape in w["arrays"].values())
    assert out["run"]["client_rollbacks"] == [0, 1, 0]  # client 1 rolled round 3 back
    assert not [pid for pid in out["pids"] if _alive(pid)]  # nothing left behind
    assert math.isfinite(out["history"]["gap"][-1])


@pytest.mark.slow
def test_ray_simulation_engine_equals_in_process_mocha(tmp_path):
    """Flower's simulation engine (Ray, 3 virtual SuperNodes) runs the same ServerApp /
    ClientApp; the model equals in-process mocha() (1e-10). The data set is a copy of small
    with its tasks reversed, named only in make_server_app's overrides: the clients must
    get it from the server (the engine gives them the run's default config, i.e. small)."""
    pytest.importorskip("ray")
    import warnings

    from flwr.simulation import run_simulation

    from fmtl.distributed.flower import client_app, make_server_app
    from fmtl.federated import mocha

    path = find_mocha("small")
    if path is None:
        pytest.skip("small.mat not found (set FMTL_DATA)")
    import scipy.io

    raw = scipy.io.loadmat(path)
    reversed_path = tmp_path / "small_reversed.mat"
    scipy.io.savemat(reversed_path, {"X": raw["X"][:, ::-1], "Y": raw["Y"][:, ::-1]})
    cfg = {"outer-iters": 2, "inner-iters": 3, "random-state": 5, "data": str(reversed_path)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # run_simulation's deprecation notice, Ray's tips
        run_simulation(
            make_server_app({**cfg, "output-dir": str(tmp_path)}),
            client_app,
            num_supernodes=3,
            backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}},
        )
    got = np.load(tmp_path / "model.npz")["coef"]
    ds = load_mocha(reversed_path)
    ref = mocha(ds.X[:3], ds.y[:3], 0.01, outer_iters=2, inner_iters=3, random_state=5)
    small = load_mocha(path)
    assert not np.array_equal(ds.X[0], small.X[0])  # the reversal changed tasks 0-2
    assert np.abs(got - ref.coef).max() <= 1e-10


def test_protocol_adaptive_sigma_prime_equals_mocha_with_failures():
    # the server's line search travels as one scalar per node each way: the clients'
    # conjugate gains up, the step with the next acknowledgement down; lost replies roll
    # back as before. Bit-identical to the in-process fit.
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=3)
    fails = {(2, 1), (5, 3)}
    kw = dict(outer_iters=3, inner_iters=4, random_state=2, sigma_prime="adaptive")
    ref = mocha_with_failures(Xs, ys, LAM, fails, **kw)
    assert np.any(ref.history["step"] < 1.0)  # the line search did cut steps here
    clients = clients_for(Xs, ys)
    server = make_server("mocha", [len(y) for y in ys], 6, LAM, **kw)
    res = run_local(server, clients, fail=lambda r, t, ph: ph == "train" and (r, t) in fails)
    assert np.array_equal(res.coef, ref.coef)
    for col in ("primal", "dual", "gap", "rho", "step", "failed"):
        np.testing.assert_array_equal(res.history[col], ref.history[col])
    check_dual_consistency(res.B, clients)
    np.testing.assert_array_equal(np.concatenate([c.alpha for c in clients]), ref.dual_coef)


class _Raising:
    """A client that raises ``exc`` on the train message of the given rounds, before any
    work, and behaves like ``inner`` otherwise."""

    def __init__(self, inner, rounds, exc):
        self.inner, self.rounds, self.exc = inner, rounds, exc

    def handle(self, kind, arrays, config):
        if kind == "train" and int(config["round"]) in self.rounds:
            raise self.exc("client crashed")
        return self.inner.handle(kind, arrays, config)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("exc", [RuntimeError, ZeroDivisionError, KeyError])
def test_protocol_a_client_raising_any_exception_is_a_failed_node(exc):
    # issue 16: RuntimeError or ZeroDivisionError from a client used to abort the fit
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=2)
    fails = {(2, 0), (4, 2)}
    kw = dict(outer_iters=3, inner_iters=4, random_state=5)
    ref = mocha_with_failures(Xs, ys, LAM, fails, **kw)
    clients = clients_for(Xs, ys)
    wrapped = [_Raising(c, {r for r, tt in fails if tt == t}, exc) for t, c in enumerate(clients)]
    res = run_local(make_server("mocha", [len(y) for y in ys], 6, LAM, **kw), wrapped)
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(res.history["failed"], ref.history["failed"])
    check_dual_consistency(res.B, clients)
    # a node that keeps failing stops the fit once it exceeds max_failures
    always = [_Raising(c, set(range(100)), exc) if t == 1 else c for t, c in enumerate(
        clients_for(Xs, ys))]  # fmt: skip
    kw_strict = dict(kw, systems=SystemsModel(max_failures=2))
    with pytest.raises(RuntimeError, match="fail"):
        run_local(make_server("mocha", [len(y) for y in ys], 6, LAM, **kw_strict), always)


class _Inflating:
    """A client whose train reply of the given rounds carries its update times ``factor``
    (a finite but faulty update; the client itself holds the true one pending)."""

    def __init__(self, inner, rounds, factor=1e150):
        self.inner, self.rounds, self.factor = inner, rounds, factor

    def handle(self, kind, arrays, config):
        arrays, reply = self.inner.handle(kind, arrays, config)
        if kind == "train" and int(config["round"]) in self.rounds:
            arrays = {**arrays, "db": arrays["db"] * self.factor}
        return arrays, reply

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("loss", ["hinge", "logistic", "smoothed_hinge"])
def test_protocol_a_huge_finite_update_is_refused_and_recorded(loss):
    # issue 16, item 6: an update of 1e150 was aggregated and corrupted the model
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=2)
    fails = {(2, 0), (4, 2), (5, 0)}
    kw = dict(loss=loss, outer_iters=3, inner_iters=4, random_state=5)
    ref = mocha_with_failures(Xs, ys, LAM, fails, **kw)
    clients = clients_for(Xs, ys, loss=loss)
    wrapped = [_Inflating(c, {r for r, tt in fails if tt == t}) for t, c in enumerate(clients)]
    server = make_server("mocha", [len(y) for y in ys], 6, LAM, **kw)
    res = run_local(server, wrapped)
    assert np.array_equal(res.coef, ref.coef)  # as if those replies were lost
    np.testing.assert_array_equal(res.history["failed"], ref.history["failed"])
    assert res.history["screened"][-1].tolist() == [2, 0, 1, 0, 0]
    assert not ref.history["screened"].any()  # lost replies are not screened ones
    check_dual_consistency(res.B, clients)  # the clients rolled the refused updates back


def test_in_process_mocha_refuses_a_huge_update_like_a_lost_one():
    Xs, ys = random_tasks(m=4, n=25, d=5, seed=3)
    kw = dict(outer_iters=2, inner_iters=3, random_state=1)
    ref = mocha_with_failures(Xs, ys, LAM, {(2, 1)}, **kw)
    orig, calls = loop_mod.sdca_round, itertools.count(1)

    def faulty(*args, parallel=True):
        orig(*args, parallel=parallel)
        if next(calls) == 2:
            args[-4][1] *= 1e150  # node 1's dB row, finite

    loop_mod.sdca_round = faulty
    try:
        res = mocha(Xs, ys, LAM, **kw)
    finally:
        loop_mod.sdca_round = orig
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(res.dual_coef, ref.dual_coef)  # its block put back
    assert res.history["screened"][-1].tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize("loss", ["hinge", "logistic", "smoothed_hinge", "squared"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_correct_updates_are_never_screened(loss, scale):
    # the bound is the dual constraint itself: a correct solve, however long, stays inside
    Xs, ys = random_tasks(m=4, n=20, d=5, seed=4, regression=loss == "squared")
    Xs = [X * scale for X in Xs]
    for kw in (dict(local_frac=20.0), dict(local_work="auto"), dict(sigma_prime="adaptive")):
        res = mocha(Xs, ys, LAM, loss=loss, outer_iters=2, inner_iters=5, random_state=0, **kw)
        assert not res.history["screened"].any()
        assert not res.history["failed"].any()


def test_handshake_reports_the_mean_row_norm_and_sets_the_bounds():
    import scipy.sparse as sp

    from fmtl.distributed.protocol import client_handle

    X = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    y = np.array([1.0, -1.0, 1.0])
    for data in (X, sp.csr_matrix(X)):
        (_, info), _ = client_handle("query", {}, {"method": "mocha"}, lambda d=data: (d, y), None)
        assert info["row_norm"] == 2.0  # (5 + 1 + 0) / 3
    assert MochaClientState(X, y, LAM).handle("query", {}, {})[1]["row_norm"] == 2.0
    server = make_server("mocha", [3, 3], 2, LAM, loss="hinge")
    server.handshake({0: {"row_norm": 2.0}, 1: {"row_norm": float("nan")}})
    assert server.engine.update_bound[0] == pytest.approx(2.0, rel=1e-8)
    assert server.engine.update_bound[1] == np.inf  # unusable: no bound, not a wrong one
    server = make_server("mocha", [3], 2, LAM, loss="squared")
    server.handshake({0: {"row_norm": 2.0}})
    assert server.engine.update_bound[0] == np.inf  # the squared loss's dual is unbounded


@pytest.mark.parametrize("sigma_prime", ["gershgorin", "adaptive"])
def test_protocol_folded_evaluation_equals_mocha_with_drops_and_failures(sigma_prime):
    # fold_eval: round r's certificate terms come with round r+1's train replies. The
    # model, the duals and every certificate whose carrier arrived are mocha()'s bit for
    # bit; a lost train reply of round r+1 loses round r's certificate (NaN).
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=12)
    fails = {(3, 0), (7, 4)}  # nodes that take part in those rounds
    kw = dict(outer_iters=2, inner_iters=4, random_state=6, sigma_prime=sigma_prime)
    kw["systems"] = SystemsModel(drop_prob=0.2)
    ref = mocha_with_failures(Xs, ys, LAM, fails, **kw)
    clients = clients_for(Xs, ys)
    kinds = []
    server = make_server("mocha", [len(y) for y in ys], 6, LAM, fold_eval=True, **kw)
    res = run_local(
        server,
        clients,
        fail=lambda r, t, ph: ph == "train" and (r, t) in fails,
        on_message=lambda kind, t, req, rep: kinds.append((kind, int(req[1]["round"]))),
    )
    assert ref.history["failed"].sum() == len(fails)
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(np.concatenate([c.alpha for c in clients]), ref.dual_coef)
    check_dual_consistency(res.B, clients)
    lost = [r - 2 for r, _ in fails]  # History rows of the rounds before the failures
    for col in ("failed", "dropped", "est_time"):
        np.testing.assert_array_equal(res.history[col], ref.history[col])
    check_bounded_certificates(res.history, ref.history, lost)  # the lost terms bounded
    assert res.history["eval_missing"][lost].tolist() == [1, 1]
    # evaluate messages: the dropped nodes' during the run, every node's after round 8
    n_evals = sum(kind == "evaluate" for kind, _ in kinds)
    not_sent = ref.history["dropped"] & ~ref.history["failed"]  # no train message
    assert n_evals == 5 + int(not_sent[1:].sum())
    assert [r for kind, r in kinds if kind == "evaluate"][-5:] == [8] * 5


def test_loopback_example_prints_one_line_per_round(tmp_path, monkeypatch, capsys):
    # issue 16: examples/flower_loopback.py shows per-round progress while it runs. The
    # processes are replaced by the in-process grid (the real ones: the slow test above);
    # the ServerApp's per-round log lines reach run_loopback's progress callback.
    import logging

    import fmtl.distributed.flower as fl

    def fake_run_loopback(n, cfg, *, data, progress=None, **kw):
        configs = [{"partition-id": t, "num-partitions": n, "data": data} for t in range(n)]
        grid = LocalGrid(fl.client_app, configs)
        strategy = fl.FmtlStrategy.from_run_config({**cfg, "data": data, "num-clients": n})

        class Relay(logging.Handler):
            def emit(self, record):
                line = record.getMessage()
                if line.startswith(("fmtl round ", "fmtl final ")):
                    progress(line)

        handler = Relay()
        logging.getLogger("flwr").addHandler(handler)
        try:
            strategy.start(grid)
        finally:
            logging.getLogger("flwr").removeHandler(handler)
        final = strategy.final
        return {
            "coef": final.coef, "history": final.history, "wire": strategy.wire,
            "run": {"round_times": strategy.round_times}, "elapsed": 1.0, "run_time": 1.0,
            "workdir": None, "pids": [],
        }  # fmt: skip

    monkeypatch.setattr(fl, "run_loopback", fake_run_loopback)
    example = load_script("examples/flower_loopback.py")
    example.main(["--clients", "3", "--outer", "2", "--inner", "2", "--data", "no-such-set"])
    out = capsys.readouterr().out
    progress = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("fmtl ")]
    assert [ln.split(":")[0] for ln in progress] == [f"fmtl round {r}" for r in range(1, 5)] + [
        "fmtl final certificates"
    ]
    assert "certified round 1: primal=" in progress[1]  # round 1's, with round 2's work
    assert "synthetic stand-in" in out and "bit-identical: True" in out


@pytest.mark.parametrize("loss", ["hinge", "logistic", "squared"])
def test_certificates_survive_a_lost_node(loss):
    # issue 16, item 6: after a node was lost, no later round had a certificate (gap NaN).
    # Node 3 dies in round 5 (no reply to anything after); every later round is certified
    # with its terms bounded, and the bounds hold against the exact in-process History.
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=9, regression=loss == "squared")
    kw = dict(loss=loss, outer_iters=3, inner_iters=4, random_state=2)
    dead = {(r, 3) for r in range(5, 13)}
    ref = mocha_with_failures(Xs, ys, LAM, dead, **kw)
    clients = clients_for(Xs, ys, loss=loss)
    server = make_server("mocha", [len(y) for y in ys], 6, LAM, **kw)
    res = run_local(server, clients, fail=lambda r, t, ph: (r, t) in dead)
    assert np.array_equal(res.coef, ref.coef)
    rows = np.arange(4, 12)  # History rows of rounds 5..12
    assert np.all(np.isfinite(res.history["gap"]))
    assert res.history["eval_bounded"][rows].tolist() == [1] * 8
    check_bounded_certificates(res.history, ref.history, rows)
    # a bound, loose (the lost node's w_t moves with Sigma; measured 0.54-0.62 against
    # the exact 0.04-0.11), but one that says something
    assert res.history["rel_gap"][-1] < 1.0


def test_flower_strategy_certifies_after_a_node_stops_answering(tmp_path):
    Xs, ys = random_tasks(m=4, n=40, d=6, seed=6)
    kw = dict(outer_iters=2, inner_iters=3, random_state=8)
    dead = {(r, 1) for r in range(3, 7)}
    ref = mocha_with_failures(Xs, ys, LAM, dead, **kw)
    spec = ",".join(f"{r}:{t}" for r, t in sorted(dead))
    strategy, result, _ = flower_run(Xs, ys, LAM, tmp_path, {"debug-fail": spec}, **kw)
    assert np.array_equal(result.arrays["W"].numpy(), ref.coef)
    hist = strategy.history
    assert np.all(np.isfinite(hist["gap"]))  # was NaN from round 2's certificate on
    check_bounded_certificates(hist, ref.history, np.flatnonzero(hist["eval_bounded"]))


# ------------------------------------------- (d) Flower's gRPC bidi runtime (issue 16, item 8)


from flwr.server.client_proxy import ClientProxy  # noqa: E402


class DirectProxy(ClientProxy):
    """A legacy ClientProxy calling a FmtlBidiClient in this process (what the gRPC
    bridge does across the stream), with a hook to lose replies."""

    def __init__(self, cid, client, lose=None):
        super().__init__(cid)
        self.client, self.lose, self.calls = client, lose, []

    def get_properties(self, ins, timeout, group_id):
        return self.client.get_properties(ins)

    def get_parameters(self, ins, timeout, group_id):  # pragma: no cover - never asked
        raise NotImplementedError

    def _call(self, method, ins):
        from fmtl.distributed.flower_bidi import decode_message

        _, config, kind = decode_message(ins.parameters, ins.config)
        self.calls.append((method, kind, int(config["round"])))
        res = getattr(self.client, method)(ins)
        if self.lose is not None and self.lose(int(config["round"]), kind):
            raise TimeoutError("reply lost")  # as the bridge does on a timeout
        return res

    def fit(self, ins, timeout, group_id):
        return self._call("fit", ins)

    def evaluate(self, ins, timeout, group_id):
        return self._call("evaluate", ins)

    def reconnect(self, ins, timeout, group_id):
        from flwr.common import DisconnectRes

        return DisconnectRes(reason="")


def bidi_run(Xs, ys, lam, lose=None, method="mocha", **kw):
    """FmtlBidiStrategy under Flower's own legacy Server loop (Server.fit), clients in
    this process; ``lose(round, task, kind)`` drops a reply after the client did the
    work."""
    from flwr.server import Server, SimpleClientManager

    from fmtl.distributed.flower_bidi import FmtlBidiClient, FmtlBidiStrategy

    cm = SimpleClientManager()
    proxies = []
    for t in reversed(range(len(Xs))):  # the cids do not follow the tasks
        hook = None if lose is None else (lambda r, k, t=t: lose(r, t, k))
        proxies.append(DirectProxy(f"c{7 * t % 5}{t}", FmtlBidiClient(Xs[t], ys[t], t), hook))
        cm.register(proxies[-1])
    lines = []
    strategy = FmtlBidiStrategy(
        method, lam, num_clients=len(Xs), connect_timeout=5.0, progress=lines.append, **kw
    )
    server = Server(client_manager=cm, strategy=strategy)
    server.fit(num_rounds=strategy.num_rounds(), timeout=5.0)
    return strategy, strategy.result(), proxies[::-1], lines


@pytest.mark.parametrize("fold", [True, False])
def test_bidi_strategy_under_flowers_server_loop_equals_mocha(fold):
    # drops by the systems model (nodes without a train message get the folded evaluate
    # message in the fit exchange), bit for bit with mocha(): model and History
    Xs, ys = random_tasks(m=4, n=30, d=5, seed=11)
    kw = dict(outer_iters=2, inner_iters=3, random_state=4, systems=SystemsModel(drop_prob=0.3))
    ref = mocha(Xs, ys, LAM, **kw)
    assert ref.history["dropped"].any()
    strategy, res, proxies, lines = bidi_run(Xs, ys, LAM, fold_eval=fold, **kw)
    assert np.array_equal(res.coef, ref.coef) and np.array_equal(res.sigma, ref.sigma)
    for col in ("primal", "dual", "gap", "joint_gap", "rho", "dropped", "round"):
        np.testing.assert_array_equal(strategy.history[col], ref.history[col])
    rounds = len(ref.history)
    assert [ln.split(":")[0] for ln in lines] == [f"fmtl round {r}" for r in range(1, 7)] + (
        ["fmtl final certificates"] if fold else []
    )
    calls = [c for p in proxies for c in p.calls]
    if fold:  # evaluate messages: only to dropped nodes (in the fit exchange) and at the end
        n_dropped = int(ref.history["dropped"][1:].sum())
        assert sum(1 for m, k, _ in calls if k == "evaluate" and m == "fit") == n_dropped
        assert sum(1 for m, k, _ in calls if m == "evaluate") == 4
    else:
        assert sum(1 for m, _, _ in calls if m == "evaluate") == 4 * rounds
    # the duals stay in the clients' memory; only d-vectors travel
    for w in strategy.wire:
        assert all(shape == [5] for shape in w["arrays"].values())
    for p, X in zip(proxies, Xs, strict=True):
        assert p.client.state.alpha.shape == (X.shape[0],)


def test_bidi_strategy_lost_replies_are_dropped_nodes():
    # a reply lost after the work (the bridge's timeout) rolls back, as in run_local:
    # the model is run_local's with the same failures, bit for bit; also FedAvg and CoCoA
    Xs, ys = random_tasks(m=3, n=30, d=4, seed=9)
    kw = dict(outer_iters=2, inner_iters=3, random_state=1, sigma_prime="adaptive")

    def lose(rnd, t, kind):
        return (rnd, t) in {(2, 1), (4, 0), (4, 2)} or (t == 2 and rnd >= 5)

    strategy, res, _, _ = bidi_run(Xs, ys, LAM, lose=lose, **kw)
    n = [len(y) for y in ys]
    ref = run_local(make_server("mocha", n, 4, LAM, fold_eval=True, **kw),
                    clients_for(Xs, ys), fail=lose)  # fmt: skip
    assert np.array_equal(res.coef, ref.coef)
    np.testing.assert_array_equal(strategy.history["failed"], ref.history["failed"])
    np.testing.assert_array_equal(strategy.history["gap"], ref.history["gap"])
    assert strategy.history["failed"][:, 2].tolist() == [False] * 3 + [True] * 3
    _, res, _, _ = bidi_run(Xs, ys, 0.01, method="fedavg", rounds=3, random_state=1)
    assert np.array_equal(res.coef, fedavg(Xs, ys, 0.01, rounds=3, random_state=1).coef)
    _, res, _, _ = bidi_run(Xs, ys, LAM, method="cocoa", rounds=3, random_state=2)
    assert np.array_equal(res.coef, cocoa(Xs, ys, LAM, rounds=3, random_state=2).coef)


def test_bidi_loopback_three_client_processes_equal_in_process_mocha(tmp_path):
    """A server process and 3 long-running client processes on Flower's gRPC bidi
    runtime (127.0.0.1): mocha()'s model and History, bit for bit. No time asserted."""
    from fmtl.distributed.flower import _alive, run_loopback

    path = find_mocha("small")
    if path is None:
        pytest.skip("small.mat not found (set FMTL_DATA)")
    ds = load_mocha(path)
    cfg = {"outer-iters": 2, "inner-iters": 3, "random-state": 3}
    lines = []
    out = run_loopback(
        3, cfg, data=str(path), timeout=300.0, progress=lines.append, runtime="grpc-bidi"
    )
    ref = mocha(ds.X[:3], ds.y[:3], 0.01, outer_iters=2, inner_iters=3, random_state=3)
    assert np.array_equal(out["coef"], ref.coef) and np.array_equal(out["sigma"], ref.sigma)
    for col in ("primal", "dual", "gap"):
        np.testing.assert_array_equal(out["history"][col], ref.history[col])
    assert [ln.split(":")[0] for ln in lines] == [f"fmtl round {r}" for r in range(1, 7)] + [
        "fmtl final certificates"
    ]
    assert len(out["run"]["round_times"]) == 6
    assert {w["phase"] for w in out["wire"]} == {"query", "train", "evaluate"}
    for w in out["wire"]:
        assert all(shape == [ds.n_features] for shape in w["arrays"].values())
    assert not [pid for pid in out["pids"] if _alive(pid)]  # nothing left behind


def test_bidi_loopback_failing_and_killed_clients_are_dropped_nodes(tmp_path):
    """Client 1's round-2 reply is an error after the work (rolled back); client 2's
    process dies on round 4's train message (a failed node from then on). The model is
    mocha()'s with those nodes failed in those rounds, bit for bit."""
    from fmtl.distributed.flower import _alive, run_loopback

    path = find_mocha("small")
    if path is None:
        pytest.skip("small.mat not found (set FMTL_DATA)")
    ds = load_mocha(path)
    cfg = {"outer-iters": 2, "inner-iters": 3, "random-state": 3}
    cfg.update({"debug-fail": "2:1", "debug-exit": "4:2"})
    out = run_loopback(
        3, cfg, data=str(path), timeout=300.0, workdir=tmp_path / "run", runtime="grpc-bidi"
    )
    kw = dict(outer_iters=2, inner_iters=3, random_state=3)
    failures = {(2, 1), (4, 2), (5, 2), (6, 2)}
    ref = mocha_with_failures(ds.X[:3], ds.y[:3], 0.01, failures, **kw)
    assert np.array_equal(out["coef"], ref.coef)
    np.testing.assert_array_equal(out["history"]["failed"], ref.history["failed"])
    # round r's certificate rides on round r+1's train messages: round 1's was lost with
    # client 1's round-2 reply (NaN: client 1 had not reported terms yet); rounds 3-6 miss
    # the dead client's, which the server bounds from its last ones
    hist = out["history"]
    assert np.isnan(hist["gap"][0]) and hist["gap"][1] == ref.history["gap"][1]
    assert hist["eval_bounded"].tolist() == [0, 0, 1, 1, 1, 1]
    check_bounded_certificates(hist, ref.history, [2, 3, 4, 5], unanswered=[0])
    assert out["run"]["client_rollbacks"][1] == 1
    assert not [pid for pid in out["pids"] if _alive(pid)]


def test_a_bounded_primal_does_not_count_for_outer_tol():
    # outer_tol compares exact primals only: a round whose certificate holds a node's
    # bounded terms (an upper bound on the primal) must not become its reference
    Xs, ys = random_tasks(m=4, n=25, d=5, seed=3)
    seen = []  # the outer_tol reference as each round is recorded
    kw = dict(outer_iters=2, inner_iters=2, outer_tol=1e-9, random_state=1)
    kw["callback"] = lambda rec: seen.append(server.engine.pos["prev_outer_primal"])
    server = make_server("mocha", [len(y) for y in ys], 5, LAM, **kw)
    res = run_local(
        server, clients_for(Xs, ys), fail=lambda r, t, ph: ph == "evaluate" and (r, t) == (2, 1)
    )
    primal = res.history["primal"]
    assert res.history["eval_bounded"].tolist() == [0, 1, 0, 0]
    # round 2 ends the first W-step with a bounded primal: the reference is round 1's
    assert seen[2] == primal[0] != primal[1]
