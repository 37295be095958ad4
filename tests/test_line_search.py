"""The server's line search: its bound on the dual increase holds for every loss (equality
for the hinge loss), and the adaptive sigma' stays within [low, safe]."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmtl.federated._loop import DualRound, as_tasks, conjugate_increase, draw_seeds
from fmtl.federated.line_search import AdaptiveSigmaPrime, round_line_search
from fmtl.federated.mocha import certificates
from fmtl.losses import get_loss
from fmtl.relationships import spectral_rho


def _coupled_sigma(m, c=0.9):
    S = (1 - c) * np.eye(m) + c * np.ones((m, m))
    return S / np.trace(S)


@pytest.mark.parametrize("loss", ["hinge", "smoothed_hinge", "logistic", "squared"])
def test_bound_on_dual_increase_holds_and_is_exact_for_hinge(loss):
    rng = np.random.default_rng(0)
    m, d, lam = 5, 4, 1e-2
    Xs = [rng.normal(size=(20 + t, d)) for t in range(m)]
    ys = [np.sign(X @ np.ones(d) + 0.1) for X in Xs]
    lo = get_loss(loss)
    tasks = as_tasks(Xs, ys, lo)
    Sigma = _coupled_sigma(m)
    dual = DualRound(tasks, lo, lam, record_gaps=False)
    B = np.zeros((m, d))
    gammas = []
    for _ in range(6):
        Wt = Sigma @ B / lam
        d0 = certificates(tasks, dual.alpha, B, Sigma, lam, lo, Wt=Wt)["dual"]
        a0 = dual.alpha.copy()
        steps = np.full(m, 30, dtype=np.int64)
        # sigma' = 1, far below the safe value (~4.6): the unscaled round may lose dual value
        dB = dual.run(
            Wt, np.diag(Sigma).copy(), 1.0, steps, draw_seeds(rng, m), np.ones(m, bool)
        ).copy()
        c = conjugate_increase(lo, tasks, dual.alpha, a0).sum()
        Q = float(np.sum(dB * (Sigma @ dB))) / lam
        gamma, gain = round_line_search(c, float(np.sum(Wt * dB)), Q)
        assert 0.0 <= gamma <= 1.0 and gain >= 0.0
        gammas.append(gamma)
        dual.alpha[:] = a0 + gamma * (dual.alpha - a0)
        B = B + gamma * dB
        d1 = certificates(tasks, dual.alpha, B, Sigma, lam, lo)["dual"]
        # the increase is at least the certified bound (1e-12 relative: rounding only)
        assert d1 - d0 >= gain - 1e-12 * max(1.0, abs(d0))
        if loss == "hinge":
            assert d1 - d0 == pytest.approx(gain, rel=1e-9, abs=1e-13)
    # the test exercises cut steps: sigma' = 1 overshoots on this coupled Sigma
    assert min(gammas) < 0.9


def test_line_search_edge_cases_and_validation():
    assert round_line_search(1.0, 1.0, 0.0) == (0.0, 0.0)  # no progress: rejected
    assert round_line_search(2.0, 0.0, 0.0) == (1.0, 2.0)  # Q = 0: the full step
    for bad in [(np.nan, 0, 1), (0, np.inf, 1), (1, 0, -1)]:
        with pytest.raises(ValueError, match="line search"):
            round_line_search(*bad)


@settings(max_examples=60, deadline=None)
@given(
    safe=st.floats(1.0, 50.0),
    gammas=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
)
def test_adaptive_sigma_prime_stays_in_range(safe, gammas):
    s = AdaptiveSigmaPrime(safe=safe)
    for g in gammas:
        v = s.update(g)
        assert 1.0 - 1e-12 <= v <= safe + 1e-12


def test_adaptive_sigma_prime_validation():
    with pytest.raises(ValueError, match="safe"):
        AdaptiveSigmaPrime(safe=0.0)
    with pytest.raises(ValueError, match="shrink"):
        AdaptiveSigmaPrime(safe=2.0, shrink=1.5)
    assert AdaptiveSigmaPrime(safe=0.5).value == 0.5  # low is capped at the safe value
    assert spectral_rho(_coupled_sigma(5)) > 4.0


def _coupled_problem(seed=0, m=6, d=5):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(30 + 3 * t, d)) for t in range(m)]
    w = rng.normal(size=d)
    ys = [np.where(X @ w + 0.5 * rng.normal(size=len(X)) > 0, 1.0, -1.0) for X in Xs]
    return Xs, ys, _coupled_sigma(m)


@pytest.mark.parametrize("loss", ["hinge", "logistic"])
def test_adaptive_mocha_monotone_dual_and_cvxpy_optimum(loss):
    from fmtl.federated import mocha
    from fmtl.reference import solve_fixed_sigma

    Xs, ys, Sigma = _coupled_problem()
    lam = 1e-2
    kw = dict(relationship="fixed", sigma=Sigma, outer_iters=1, inner_iters=3000, tol=1e-8,
              random_state=0)  # fmt: skip
    res = mocha(Xs, ys, lam, loss, sigma_prime="adaptive", **kw)
    h = res.history
    assert h["rel_gap"][-1] <= 1e-8
    # the line search never lets the dual decrease (1e-13: rounding of the certificate)
    assert np.all(np.diff(h["dual"]) >= -1e-13 * np.abs(h["dual"][1:]))
    assert np.all((h["step"] >= 0) & (h["step"] <= 1))
    safe = spectral_rho(Sigma)
    assert np.all((h["rho"] >= 1.0) & (h["rho"] <= safe + 1e-12))
    ref = solve_fixed_sigma(Xs, ys, Sigma, lam, loss=loss).objective
    # certified: P - P* <= gap <= 1e-8 P; cvxpy (Clarabel) is accurate to ~1e-7 relative
    assert abs(h["primal"][-1] - ref) <= 1e-6 * abs(ref)
    # and faster than the safe sigma' on this coupled Sigma (rounds to the same tolerance)
    safe_run = mocha(Xs, ys, lam, loss, sigma_prime="spectral", **kw)
    assert len(h) < len(safe_run.history)


def test_adaptive_learned_sigma_checkpoint_resume_is_bit_identical(tmp_path):
    from fmtl.federated import mocha

    Xs, ys, _ = _coupled_problem(1)
    kw = dict(outer_iters=3, inner_iters=15, sigma_prime="adaptive", random_state=3)
    full = mocha(Xs, ys, 1e-2, **kw)

    class Stop(Exception):
        pass

    def boom(rec):  # interrupt mid-W-step, after a checkpoint at round 21
        if rec["round"] == 23:
            raise Stop

    with pytest.raises(Stop):
        mocha(Xs, ys, 1e-2, checkpoint_dir=tmp_path, checkpoint_every=7, callback=boom, **kw)
    again = mocha(Xs, ys, 1e-2, checkpoint_dir=tmp_path, checkpoint_every=7, **kw)
    np.testing.assert_array_equal(again.coef, full.coef)
    for col in ("primal", "rho", "step"):
        np.testing.assert_array_equal(again.history[col], full.history[col])


def test_adaptive_refused_where_not_supported():
    from fmtl.federated.kernel_mocha import kernel_mocha

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="adaptive"):
        kernel_mocha([X], [np.sign(X[:, 0])], 0.1, sigma_prime="adaptive")
