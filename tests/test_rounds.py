"""The shared round loop (fmtl.federated._rounds): every model-exchanging method runs on the
same systems model as MOCHA -- drops, dead and failed nodes, heterogeneous work, estimated
time, History columns, seeds."""

import numpy as np
import pytest

from fmtl.datasets import make_multitask_classification
from fmtl.federated import SystemsModel
from fmtl.federated._rounds import RoundLoop
from fmtl.federated.perfedavg import perfedavg
from fmtl.federated.pfedme import pfedme

LAM = 0.05


@pytest.fixture(scope="module")
def data():
    ds = make_multitask_classification(
        n_tasks=5, n_samples=[30, 40, 25, 50, 35], n_features=4, random_state=3
    )
    return ds.X, ds.y


METHODS = {
    "perfedavg": lambda Xs, ys, **kw: perfedavg(Xs, ys, LAM, "logistic", rounds=12, **kw),
    "perfedavg_fo": lambda Xs, ys, **kw: perfedavg(
        Xs, ys, LAM, "logistic", rounds=12, order=1, local_steps=3, **kw
    ),
    "pfedme": lambda Xs, ys, **kw: pfedme(Xs, ys, LAM, 0.5, rounds=12, **kw),
    "pfedme_inexact": lambda Xs, ys, **kw: pfedme(
        Xs, ys, LAM, 0.5, rounds=12, local_passes=2, **kw
    ),
}


@pytest.mark.parametrize("name", METHODS)
def test_drops_are_recorded_and_seeded(data, name):
    fit = METHODS[name]
    sm = SystemsModel(heterogeneity="high", drop_prob=0.3)
    a = fit(*data, systems=sm, random_state=7)
    b = fit(*data, systems=sm, random_state=7)
    c = fit(*data, systems=sm, random_state=8)
    h = a.history
    assert {"dropped", "failed", "local_steps", "est_time", "round"} <= set(h.columns)
    assert h["dropped"].shape == (12, 5) and h["dropped"].any()
    assert np.all(np.diff(h["est_time"]) > 0)
    # a dropped node did no work that round
    assert np.all(h["local_steps"][h["dropped"]] == 0)
    np.testing.assert_array_equal(a.coef, b.coef)  # same seed: bit for bit
    assert not np.array_equal(h["dropped"], c.history["dropped"])


@pytest.mark.parametrize("name", METHODS)
def test_dead_node_has_no_influence(data, name):
    # node 0 never reports: replacing its data changes nothing in the shared model, bit for
    # bit, and the aggregation weights renormalise over the others
    Xs, ys = data
    fit = METHODS[name]
    sm = SystemsModel(dead_nodes=(0,), drop_prob=0.2)
    with pytest.warns(RuntimeWarning, match=r"nodes \[0\] never reported"):
        dead = fit(Xs, ys, systems=sm, random_state=1)
    other = np.random.default_rng(0).normal(size=Xs[0].shape)
    with pytest.warns(RuntimeWarning):
        swapped = fit([other, *Xs[1:]], [-ys[0], *ys[1:]], systems=sm, random_state=1)
    assert dead.never_reported.tolist() == [0]
    assert np.all(dead.history["dropped"][:, 0])
    np.testing.assert_array_equal(dead.global_coef, swapped.global_coef)


def test_dead_node_equals_fit_without_it(data):
    # deterministic local work: the global model is the one fitted on the other tasks
    Xs, ys = data
    with pytest.warns(RuntimeWarning):
        dead = perfedavg(Xs, ys, LAM, systems=SystemsModel(dead_nodes=(0,)), rounds=20)
    rest = perfedavg(Xs[1:], ys[1:], LAM, rounds=20)
    np.testing.assert_allclose(dead.global_coef, rest.global_coef, rtol=0, atol=1e-13)
    # exact pFedMe: equal up to the personal solves' accuracy (SDCA orders differ): a relative
    # gap of 1e-15 puts each theta_t within sqrt(2 gap / (lam + mu)) ~ 6e-8 of its optimum
    with pytest.warns(RuntimeWarning):
        dead = pfedme(Xs, ys, LAM, 0.5, systems=SystemsModel(dead_nodes=(0,)), tol=1e-15)
    rest = pfedme(Xs[1:], ys[1:], LAM, 0.5, tol=1e-15)
    np.testing.assert_allclose(dead.global_coef, rest.global_coef, rtol=0, atol=1e-7)


def test_estimated_time_follows_the_cost_model(data):
    # full-batch steps: every round costs flops * (passes) * N + comm, N = all samples
    Xs, ys = data
    N = sum(len(y) for y in ys)
    res = perfedavg(
        Xs, ys, LAM, "logistic", rounds=4, local_steps=2, systems=SystemsModel(network="3g")
    )
    per_round = 4.0 * (2 * 3) * N + 1000.0
    np.testing.assert_allclose(res.history["est_time"], per_round * np.arange(1, 5))
    # exact pFedMe: the slowest node's SDCA steps, times m (CoCoA's accounting)
    res = pfedme(Xs, ys, LAM, 0.5, rounds=3, systems=SystemsModel(network=0.0))
    steps = res.history["local_steps"]
    np.testing.assert_allclose(np.diff(res.history["est_time"]), 8.0 * 5 * steps[1:].max(1))


def test_heterogeneity_scales_local_steps(data):
    Xs, ys = data
    n = np.array([len(y) for y in ys])
    res = perfedavg(
        Xs,
        ys,
        LAM,
        "logistic",
        rounds=20,
        local_steps=10,
        order=1,
        systems=SystemsModel(heterogeneity="high"),
        random_state=0,
    )
    work = res.history["local_steps"] / n  # sample visits / n_t = fraction of a pass
    assert work.min() < 0.5 and work.max() <= 1.0


def _loop(systems=None, **kw):
    return RoundLoop(np.array([10, 10, 10]), systems, 4.0, random_state=0, **kw)


def test_failed_node_is_dropped_for_the_round():
    loop = _loop()
    seen = []

    def client(t, steps, h):
        return np.array([np.nan if (t == 1 and h == 1) else float(t)])

    def server(U, ok, h):
        seen.append(ok.copy())
        assert np.all(np.isfinite(U[ok]))

    loop.run(3, client, server, lambda: {})
    assert [s.tolist() for s in seen] == [[True] * 3, [True, False, True], [True] * 3]
    assert loop.history["failed"][1].tolist() == [False, True, False]
    assert loop.history["local_steps"][1].tolist() == [10, 0, 10]


def test_repeated_failures_stop_the_fit():
    loop = _loop(SystemsModel(max_failures=1))
    with pytest.raises(RuntimeError, match=r"nodes \[2\] failed"):
        loop.run(5, lambda t, s, h: np.array([np.inf if t == 2 else 0.0]), lambda *a: None, dict)


def test_no_reporting_node_leaves_the_model_and_warns():
    loop = _loop(SystemsModel(dead_nodes=(0, 1, 2)))
    calls = []
    loop.run(2, lambda *a: calls.append(a), lambda *a: calls.append(a), lambda: {"x": 1.0})
    assert calls == [] and len(loop.history) == 2
    with pytest.warns(RuntimeWarning):
        assert loop.finish().tolist() == [0, 1, 2]


def test_eval_every_and_early_stop():
    loop = _loop(eval_every=3)
    n_run = loop.run(10, lambda t, s, h: np.zeros(1), lambda *a: None, lambda: {"v": 0.0})
    assert n_run == 10 and loop.history["round"].tolist() == [3, 6, 9, 10]
    loop = _loop()
    n_run = loop.run(
        10, lambda t, s, h: np.zeros(1), lambda *a: None, lambda: {"v": 0.0}, lambda v: True
    )
    assert n_run == 1


def test_personalisation_phase_is_costed(data):
    # the local phase after the last round: slowest node, m * max steps * flops, no comm
    from fmtl.federated import ditto, fedavg, fedrep, pfedhn
    from fmtl.federated.systems import local_phase_time

    Xs, ys = data
    n = np.array([len(y) for y in ys])
    m = len(ys)
    ft = fedavg(Xs, ys, LAM, rounds=2, finetune_epochs=2.0)
    assert ft.personalization_time == 4.0 * m * 2 * n.max()
    assert fedavg(Xs, ys, LAM, rounds=2).personalization_time == 0.0
    pa = perfedavg(Xs, ys, LAM, "logistic", rounds=2, adapt_steps=3)
    assert pa.personalization_time == 4.0 * m * 3 * n.max()
    # exact solves: their SDCA steps, at least one pass on the largest task
    assert ditto(Xs, ys, LAM, 0.5, rounds=2).personalization_time >= 8.0 * m * n.max()
    assert pfedme(Xs, ys, LAM, 0.5, rounds=2).personalization_time >= 8.0 * m * n.max()
    assert fedrep(Xs, ys, 2, LAM, "logistic", rounds=2).personalization_time == 4.0 * m * n.max()
    assert pfedhn(Xs, ys, LAM, "logistic", rounds=2).personalization_time == 0.0
    # a systems model's flops factor replaces the method's
    sm = SystemsModel(flops_factor=1.0)
    assert fedavg(Xs, ys, LAM, rounds=2, finetune_epochs=1.0, systems=sm).personalization_time == (
        m * n.max()
    )
    with pytest.raises(ValueError, match="steps"):
        local_phase_time([1, -1], 4.0)
