"""Systems model (heterogeneity, drops, cost) and the CoCoA / mini-batch baselines."""

import numpy as np
import pytest
from conftest import random_tasks

from fmtl.federated import SystemsModel, cocoa, mbsdca, mbsgd, mocha
from fmtl.federated.systems import SystemsRuntime
from fmtl.reference import solve_fixed_sigma
from fmtl.relationships import mean_regularized_sigma

LAM = 0.05


@pytest.fixture(scope="module")
def problem():
    Xs, ys = random_tasks(m=5, n=30, d=6, seed=21)
    Sigma = mean_regularized_sigma(5, 2.0)
    ref = solve_fixed_sigma(Xs, ys, Sigma, LAM, loss="hinge")
    return Xs, ys, Sigma, ref


@pytest.mark.parametrize(
    "systems",
    [
        SystemsModel(heterogeneity="high"),
        SystemsModel(heterogeneity="high", drop_prob=0.5),
        SystemsModel(heterogeneity=(0.2, 0.6), drop_prob=[0.1, 0.5, 0.9, 0.0, 0.3]),
    ],
)
def test_mocha_reaches_optimum_under_heterogeneity_and_drops(problem, systems):
    Xs, ys, Sigma, ref = problem
    res = mocha(
        Xs,
        ys,
        LAM,
        "hinge",
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=20000,
        tol=1e-7,
        systems=systems,
        random_state=0,
    )
    last = res.history.last
    assert last["gap"] <= 1e-6 * last["primal"]
    assert (last["primal"] - ref.objective) / ref.objective <= 1e-6
    assert res.never_reported.size == 0
    h = res.history
    if np.any(np.asarray(systems.drop_prob) > 0):
        assert h["dropped"].any()
        # a dropped node did no work and its local gap columns are NaN that round
        assert np.all(h["local_steps"][h["dropped"]] == 0)
    # heterogeneous budgets: floor(n_t * U(lo, hi)), within the range
    lo, hi = systems.work_range
    n = np.array([len(y) for y in ys])
    budget = h["local_steps"][~h["dropped"]]
    nn = np.broadcast_to(n, h["local_steps"].shape)[~h["dropped"]]
    assert np.all(budget >= np.maximum(1, np.floor(lo * nn))) and np.all(budget <= hi * nn)
    assert len(np.unique(h["local_steps"][:, 0])) > 1
    # realised theta recorded by default under a systems model
    assert "local_gap_ratio" in h.columns


def test_dead_node_is_reported_and_the_fit_finishes(problem):
    Xs, ys, Sigma, _ = problem
    with pytest.warns(RuntimeWarning, match=r"nodes \[3\] never reported"):
        res = mocha(
            Xs,
            ys,
            LAM,
            "hinge",
            outer_iters=2,
            inner_iters=20,
            systems=SystemsModel(dead_nodes=(3,), drop_prob=0.2),
            random_state=0,
        )
    assert res.never_reported.tolist() == [3]
    assert res.history["dropped"][:, 3].all()
    # its dual block never moved; the certificate stays valid (gap >= 0)
    offs = np.cumsum([0] + [len(y) for y in ys])
    assert np.all(res.dual_coef[offs[3] : offs[4]] == 0)
    assert np.all(res.history["gap"] >= -1e-12)


def test_estimated_time_matches_hand_computation():
    n = np.array([10, 20, 30])
    # homogeneous: 8 * frac * n_total + comm per round, as the reference
    rt = SystemsRuntime(SystemsModel(network="wifi"), n, 0.5, flops_factor=8.0)
    assert rt.round_time(np.array([5, 10, 15])) == 8 * 0.5 * 60 + 10
    # heterogeneous: the budget of the slowest possible node, top = 1.0
    rt = SystemsRuntime(SystemsModel(heterogeneity="high", network="3g"), n, 0.5, 6.0)
    assert rt.round_time(np.array([1, 2, 3])) == 6 * 1.0 * 60 + 1000
    # CoCoA: m * slowest node's steps
    rt = SystemsRuntime(
        SystemsModel(network=42.0, flops_factor=2.0), n, 20, 8.0, slowest_node_time=True
    )
    assert rt.round_time(np.array([7, 40, 12])) == 2.0 * 3 * 40 + 42.0
    # and the History accumulates exactly these values
    Xs = [np.ones((k, 2)) * np.arange(1, k + 1)[:, None] for k in n]
    ys = [np.where(np.arange(k) % 2, 1.0, -1.0) for k in n]
    res = mocha(
        Xs,
        ys,
        0.1,
        "hinge",
        outer_iters=1,
        inner_iters=4,
        local_frac=0.5,
        systems=SystemsModel(network="lte"),
        random_state=0,
    )
    np.testing.assert_allclose(res.history["est_time"], np.arange(1, 5) * (8 * 0.5 * 60 + 100))
    co = cocoa(
        Xs, ys, 0.1, theta=0.5, rounds=3, systems=SystemsModel(network="lte"), random_state=0
    )
    steps = co.history["local_steps"]
    np.testing.assert_allclose(co.history["est_time"], np.cumsum(8 * 3 * steps.max(axis=1) + 100))


def test_cocoa_rounds_each_reach_theta(problem):
    Xs, ys, Sigma, ref = problem
    theta = 0.3
    res = cocoa(
        Xs, ys, LAM, "hinge", sigma=Sigma, theta=theta, rounds=200, tol=1e-6, random_state=0
    )
    h = res.history
    cap = 20 * np.array([len(y) for y in ys])
    reached = h["local_gap_ratio"] <= theta
    # every node reached theta in every round, unless it hit the work cap
    assert np.all(reached | (h["local_steps"] >= cap))
    assert reached.mean() > 0.95
    assert h.last["rel_gap"] <= 1e-6
    assert (h.last["primal"] - ref.objective) / ref.objective <= 1e-6


def test_mbsdca_stays_feasible_and_converges(problem):
    Xs, ys, Sigma, ref = problem
    res = mbsdca(
        Xs,
        ys,
        LAM,
        "hinge",
        sigma=Sigma,
        rounds=3000,
        scaling=10.0,
        eval_every=100,
        random_state=0,
    )
    h = res.history
    assert np.all(np.isfinite(h["dual"]))  # duals stay in the box
    assert np.all(h["gap"] >= -1e-12)
    assert np.all(np.diff(h["dual"]) >= -1e-9)  # averaged SDCA steps never decrease D
    assert h["gap"][-1] < 0.05 * h["gap"][0]
    assert h.last["dual"] <= ref.objective + 1e-9


def test_mbsgd_approaches_the_optimum(problem):
    Xs, ys, Sigma, ref = problem
    res = mbsgd(
        Xs,
        ys,
        LAM,
        "hinge",
        sigma=Sigma,
        rounds=4000,
        scaling=1.0,
        local_frac=1.0,
        eval_every=200,
        random_state=0,
    )
    h = res.history
    assert h.last["primal"] >= ref.objective - 1e-9  # primal values are upper bounds
    assert (h.last["primal"] - ref.objective) / ref.objective < 0.05
    assert h["primal"][-1] < h["primal"][0]


def test_systems_draws_are_deterministic(problem):
    Xs, ys, _, _ = problem
    sm = SystemsModel(heterogeneity="low", drop_prob=0.3)
    a = mocha(Xs, ys, LAM, outer_iters=2, inner_iters=5, systems=sm, random_state=9)
    b = mocha(Xs, ys, LAM, outer_iters=2, inner_iters=5, systems=sm, random_state=9, n_threads=1)
    assert np.array_equal(a.coef, b.coef)
    assert np.array_equal(a.history["dropped"], b.history["dropped"])


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(heterogeneity="medium"), "heterogeneity"),
        (dict(heterogeneity=(0.5, 0.1)), "heterogeneity"),
        (dict(drop_prob=1.0), "drop_prob"),
        (dict(drop_prob=-0.1), "drop_prob"),
        (dict(network="5g"), "network"),
        (dict(network=-1.0), "network"),
        (dict(flops_factor=float("nan")), "flops_factor"),
    ],
)
def test_systems_model_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        SystemsModel(**kw)


def test_systems_runtime_validation():
    with pytest.raises(ValueError, match="dead_nodes"):
        SystemsRuntime(SystemsModel(dead_nodes=(5,)), np.array([3, 3]), 1.0, 8.0)
    with pytest.raises(ValueError, match="drop_prob"):
        SystemsRuntime(SystemsModel(drop_prob=(0.1, 0.2, 0.3)), np.array([3, 3]), 1.0, 8.0)


def _faulty_kernel(monkeypatch, node, bad_rounds):
    """Make ``node``'s local solve blow up (NaN update) in the given rounds."""
    import sys

    loop = sys.modules["fmtl.federated._loop"]
    real = loop.sdca_round
    calls = {"n": 0}

    def kernel(*args, parallel):
        real(*args, parallel=parallel)
        calls["n"] += 1
        if calls["n"] in bad_rounds:
            args[-4][node] = np.nan  # its db_t row

    monkeypatch.setattr(loop, "sdca_round", kernel)


def test_failed_local_solve_counts_as_a_drop(problem, monkeypatch):
    Xs, ys, Sigma, ref = problem
    _faulty_kernel(monkeypatch, node=1, bad_rounds={3, 5})
    res = mocha(
        Xs,
        ys,
        LAM,
        "hinge",
        relationship="fixed",
        sigma=Sigma,
        outer_iters=1,
        inner_iters=3000,
        tol=1e-7,
        systems=SystemsModel(max_failures=5),
        random_state=0,
    )
    h = res.history
    assert h["failed"][:, 1].tolist()[:6] == [False, False, True, False, True, False]
    assert h["dropped"][2, 1] and h["local_steps"][2, 1] == 0
    assert h["failed"].sum() == 2
    # the node's block was restored, so the certificate holds and the optimum is reached
    assert np.all(np.isfinite(res.coef))
    assert (h.last["primal"] - ref.objective) / ref.objective <= 1e-6


def test_max_failures_stops_the_fit_naming_the_node(problem, monkeypatch):
    Xs, ys, Sigma, _ = problem
    _faulty_kernel(monkeypatch, node=2, bad_rounds={2, 4})
    with pytest.raises(RuntimeError, match=r"nodes \[2\] failed .* max_failures=1"):
        mocha(
            Xs,
            ys,
            LAM,
            "hinge",
            outer_iters=1,
            inner_iters=10,
            systems=SystemsModel(max_failures=1),
            random_state=0,
        )
    with pytest.raises(ValueError, match="max_failures"):
        SystemsModel(max_failures=-1)
