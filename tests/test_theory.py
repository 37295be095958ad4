"""fmtl.theory: MOCHA's rate statements checked against seeded runs.

Problem used throughout (``_problem``): 5 tasks x 40 samples x 8 features, rows of norm
about 1, labels from related task models, ``lam = 0.1``, a random dense SPD ``Sigma``
(trace 1; Gershgorin sigma' 2.28, spectral 2.02). Tolerances: bounds are compared with
no slack beyond 1e-12 relative (floating-point); History quantities against their
numpy recomputation to 1e-10.
"""

import numpy as np
import pytest

from fmtl import theory
from fmtl.federated import mocha
from fmtl.federated.systems import SystemsModel
from fmtl.relationships import safety_rho, spectral_rho

SMOOTH = ["squared", "smoothed_hinge", "logistic"]
LAM = 0.1


def _problem(seed=0, m=5, n=40, d=8):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n, d)) / np.sqrt(d) for _ in range(m)]
    w = rng.normal(size=d)
    ys = [np.sign(X @ (w + 0.5 * rng.normal(size=d)) + 0.1 * rng.normal(size=n)) for X in Xs]
    A = rng.normal(size=(m, m))
    S = A @ A.T + 0.5 * np.eye(m)
    return Xs, ys, S / np.trace(S)


# numpy versions of the losses, written from their textbook formulas
def _np_loss(name, y, z, g=1.0):
    if name == "squared":
        return 0.5 * (z - y) ** 2
    if name == "logistic":
        return np.logaddexp(0.0, -y * z)
    r = 1.0 - y * z
    if name == "hinge":
        return np.maximum(r, 0.0)
    return np.where(r <= 0, 0.0, np.where(r < g, r * r / (2 * g), r - g / 2))


def _np_neg_conj(name, y, a, g=1.0):  # -l*(-a)
    if name == "squared":
        return -0.5 * a * a + a * y
    b = np.clip(a * y, 0.0, 1.0)
    if name == "hinge":
        return b
    if name == "smoothed_hinge":
        return b - g * b * b / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = np.where(b > 0, b * np.log(b), 0.0) + np.where(b < 1, (1 - b) * np.log1p(-b), 0.0)
    return -ent


@pytest.mark.parametrize("name", ["hinge", "smoothed_hinge", "logistic", "squared"])
def test_loss_constants_match_finite_differences(name):
    c = theory.loss_constants(name)
    z = np.linspace(-6, 6, 24001)
    h = z[1] - z[0]
    for y in (-1.0, 1.0):
        v = _np_loss(name, y, z)
        d1 = np.diff(v) / h
        d2 = np.diff(v, 2) / h**2
        if np.isfinite(c.lipschitz):
            assert np.max(np.abs(d1)) <= c.lipschitz * (1 + 1e-9)
            assert np.max(np.abs(d1)) >= 0.99 * c.lipschitz  # attained
        if np.isfinite(c.smoothness):
            assert np.max(d2) <= c.smoothness * (1 + 1e-4)
            assert np.max(d2) >= 0.99 * c.smoothness
            assert c.mu == pytest.approx(1.0 / c.smoothness)
        else:
            assert np.max(d2) > 1e3  # the hinge kink: not smooth


def test_spectral_sigma_prime_is_the_smallest_safe_value():
    rng = np.random.default_rng(1)
    _, _, S = _problem()
    sp, gs = spectral_rho(S), safety_rho(S)
    assert sp <= gs
    D = np.diag(S)
    for _ in range(200):
        dB = rng.normal(size=(5, 3))
        assert np.trace(dB.T @ S @ dB) <= sp * np.sum(D * np.sum(dB**2, 1)) * (1 + 1e-12)
    # the top generalised eigenvector breaks any smaller value
    r = 1 / np.sqrt(D)
    _, V = np.linalg.eigh(S * r[:, None] * r[None, :])
    v = (r * V[:, -1])[:, None]
    assert np.trace(v.T @ S @ v) > 0.999 * sp * np.sum(D * np.sum(v**2, 1)) * (1 + 1e-4)


def _systems(kind):
    if kind == "exact-pass":
        return None, 0.0, 1.0
    if kind == "heterogeneous":
        return SystemsModel(heterogeneity="high"), 0.0, 0.1
    return SystemsModel(drop_prob=0.3), 0.3, 1.0


@pytest.mark.parametrize("kind", ["exact-pass", "heterogeneous", "drops"])
@pytest.mark.parametrize("name", SMOOTH)
def test_measured_gap_never_exceeds_the_predicted_bound(name, kind):
    """Theorem 1 with a priori constants: Theta_max from local SDCA's rate at the
    smallest local budget (floor(0.1 n) steps under high heterogeneity), p_max the drop
    probability, sigma' Gershgorin, Sigma the dense SPD of ``_problem``."""
    Xs, ys, S = _problem()
    systems, p, lo = _systems(kind)
    c = theory.mocha_constants(Xs, ys, LAM, name, sigma=S)
    steps = np.floor(lo * c.n_samples)
    tb = theory.theta_bar(float(theory.sdca_theta(c, steps).max()), p)
    H = 40
    res = mocha(
        Xs,
        ys,
        LAM,
        name,
        relationship="fixed",
        sigma=S,
        outer_iters=1,
        inner_iters=H,
        random_state=3,
        systems=systems,
        record_local_gaps=True,
    )
    gap = res.history["gap"]
    bound = theory.gap_bound(c, H, tb)[1:]
    assert np.all(gap <= bound * (1 + 1e-12))
    # dual sub-optimality too, against the best primal value seen (>= D*)
    p_best = res.history["primal"].min()
    sub = p_best - res.history["dual"]
    assert np.all(sub <= theory.dual_bound(c, H, tb)[1:] * (1 + 1e-12))
    # and the realised (certified) contraction with the measured per-round theta
    eff = theory.effective_theta(res.history, c.initial_gap)
    realised = c.initial_gap * np.cumprod(1 - c.s * (1 - eff))
    assert np.all(sub <= realised * (1 + 1e-12))


def test_hinge_best_gap_below_the_sublinear_bound():
    Xs, ys, S = _problem()
    c = theory.mocha_constants(Xs, ys, 0.01, "hinge", sigma=S)
    res = mocha(
        Xs,
        ys,
        0.01,
        "hinge",
        relationship="fixed",
        sigma=S,
        outer_iters=1,
        inner_iters=60,
        random_state=0,
        record_local_gaps=True,
    )
    tb = float(theory.effective_theta(res.history, c.initial_gap).max())
    best = np.minimum.accumulate(np.concatenate([[c.initial_gap], res.history["gap"]]))
    assert np.all(best[:-1][1:] <= theory.averaged_gap_bound(c, 60, tb)[2:] * (1 + 1e-12))
    sub = res.history["primal"].min() - res.history["dual"]
    assert np.all(sub <= theory.dual_bound(c, 60, tb)[1:] * (1 + 1e-12))


def _np_local_terms(name, Xs, ys, a0, a1, S, lam, rho):
    """Local gap at start/end and subproblem increase per task, from the definitions."""
    m = len(Xs)
    off = np.concatenate([[0], np.cumsum([len(y) for y in ys])])
    B = np.array([X.T @ a0[off[t] : off[t + 1]] / len(X) for t, X in enumerate(Xs)])
    W = S @ B / lam
    g0, g1, prog = np.zeros(m), np.zeros(m), np.zeros(m)
    for t, (X, y) in enumerate(zip(Xs, ys, strict=True)):
        n = len(y)
        b0, b1 = a0[off[t] : off[t + 1]], a1[off[t] : off[t + 1]]
        db = X.T @ (b1 - b0) / n
        v = W[t] + rho * S[t, t] / lam * db

        def fy(a, v, X=X, y=y):
            z = X @ v
            return np.mean(_np_loss(name, y, z) - _np_neg_conj(name, y, a) + a * z)

        g0[t], g1[t] = fy(b0, W[t]), fy(b1, v)
        conj = np.mean(_np_neg_conj(name, y, b1) - _np_neg_conj(name, y, b0))
        prog[t] = conj - W[t] @ db - rho * S[t, t] / (2 * lam) * db @ db
    return g0, g1, prog


@pytest.mark.filterwarnings("ignore:nodes .* never reported")
@pytest.mark.parametrize("name", ["hinge", "logistic", "squared"])
def test_theta_from_history_matches_direct_recomputation(name):
    """History's local gaps and subproblem increases equal their numpy recomputation
    from the dual iterates (1e-10), so does the theta bound built from them, and the
    exactly solved theta lies below it."""
    Xs, ys, S = _problem()
    kw = dict(
        relationship="fixed",
        sigma=S,
        outer_iters=1,
        random_state=5,
        record_local_gaps=True,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.2),
    )
    H = 4
    full = mocha(Xs, ys, LAM, name, inner_iters=H, **kw)
    upper = theory.theta_upper(full.history)
    rho = safety_rho(S)
    alphas = [np.zeros(200)] + [
        mocha(Xs, ys, LAM, name, inner_iters=h, **kw).dual_coef for h in range(1, H + 1)
    ]
    np.testing.assert_array_equal(alphas[-1], full.dual_coef)
    for h in range(H):
        g0, g1, prog = _np_local_terms(name, Xs, ys, alphas[h], alphas[h + 1], S, LAM, rho)
        act = ~np.asarray(full.history["dropped"][h], dtype=bool)
        for key, ref in (("local_gap_start", g0), ("local_gap_end", g1), ("local_progress", prog)):
            got = np.asarray(full.history[key][h])[act]
            np.testing.assert_allclose(got, ref[act], rtol=1e-10, atol=1e-12, err_msg=key)
        with np.errstate(divide="ignore", invalid="ignore"):
            theta_np = np.minimum(g1 / (g1 + prog), 1 - prog / g0)
        np.testing.assert_allclose(upper[h][act], np.clip(theta_np, 0, 1)[act], atol=1e-10)
        assert np.all(upper[h][~act] == 1.0)
        exact = theory.exact_local_theta(Xs, ys, LAM, alphas[h], alphas[h + 1], name, sigma=S)
        ok = act & np.isfinite(exact)
        assert np.all(exact[ok] <= upper[h][ok] + 1e-9)
        assert np.all(exact[ok] >= 0.0)


@pytest.mark.parametrize("rule", ["spectral", "gershgorin"])
@pytest.mark.parametrize("name", ["hinge", "smoothed_hinge", "logistic", "squared"])
def test_safe_sigma_prime_gives_monotone_dual_ascent(name, rule):
    Xs, ys, S = _problem(seed=2)
    res = mocha(
        Xs,
        ys,
        0.01,
        name,
        relationship="fixed",
        sigma=S,
        outer_iters=1,
        inner_iters=40,
        random_state=0,
        sigma_prime=rule,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.2),
    )
    dual = np.concatenate([[0.0], res.history["dual"]])
    assert np.all(np.diff(dual) >= -1e-12 * np.maximum(1.0, np.abs(dual[1:])))


def test_sigma_prime_below_the_safe_value_can_diverge():
    Xs, ys, _ = _problem()
    m = len(Xs)
    S = (0.1 * np.eye(m) + 0.9 * np.ones((m, m))) / m  # strongly coupled tasks
    safe = spectral_rho(S)
    assert safe == pytest.approx(1 + 0.9 * (m - 1))
    res = mocha(
        Xs,
        ys,
        0.01,
        "squared",
        relationship="fixed",
        sigma=S,
        outer_iters=1,
        inner_iters=30,
        random_state=0,
        sigma_prime=0.25 * safe,
    )
    assert np.diff(res.history["dual"]).min() < 0
    assert res.history["gap"][-1] > 1e6 * res.history["gap"][0]


@pytest.mark.parametrize("name", ["squared", "logistic", "hinge"])
def test_predicted_rounds_is_the_first_round_the_bound_reaches_eps(name):
    Xs, ys, S = _problem()
    c = theory.mocha_constants(Xs, ys, LAM, name, sigma=S)
    for tb in (0.0, 0.5):
        for eps in (1e-1, 1e-2):
            for target in ("gap", "dual"):
                H = theory.predicted_rounds(c, eps, tb, target)
                if c.linear:
                    curve = (theory.gap_bound if target == "gap" else theory.dual_bound)(
                        c, int(H) + 1, tb
                    )
                else:
                    f = theory.averaged_gap_bound if target == "gap" else theory.dual_bound
                    curve = f(c, int(H) + 1, tb)
                assert curve[int(H)] <= eps < curve[int(H) - 1]


def test_sublinear_closed_form_bounds_the_exact_recursion():
    Xs, ys, S = _problem()
    c = theory.mocha_constants(Xs, ys, 0.01, "hinge", sigma=S)
    q = 0.7
    b = [c.initial_gap]
    for _ in range(300):
        e = b[-1]
        b.append(e - q * (e - c.C / 2 if e >= c.C else e * e / (2 * c.C)))
    closed = theory.dual_bound(c, 300, 1 - q)
    assert np.all(np.array(b) <= closed * (1 + 1e-12))
    assert closed[-1] < 1.1 * b[-1]  # and not much looser


def test_bad_inputs_are_named():
    Xs, ys, S = _problem()
    c = theory.mocha_constants(Xs, ys, LAM, "squared", sigma=S)
    with pytest.raises(ValueError, match="theta_bar"):
        theory.gap_bound(c, 3, 1.0)
    with pytest.raises(ValueError, match="p_max"):
        theory.theta_bar(0.5, 1.0)
    with pytest.raises(ValueError, match="theta_max"):
        theory.theta_bar(1.5)
    with pytest.raises(ValueError, match="eps"):
        theory.predicted_rounds(c, 0.0)
    with pytest.raises(ValueError, match="target"):
        theory.predicted_rounds(c, 1e-3, target="primal")
    with pytest.raises(ValueError, match="hinge"):
        theory.sdca_theta(theory.mocha_constants(Xs, ys, LAM, "hinge"), 3)
    with pytest.raises(ValueError, match="linear rate"):
        theory.gap_bound(theory.mocha_constants(Xs, ys, LAM, "hinge"), 3)
    with pytest.raises(ValueError, match="not Lipschitz"):
        theory.averaged_gap_bound(c, 3)
    with pytest.raises(ValueError, match="lam"):
        theory.mocha_constants(Xs, ys, -1.0)
    with pytest.raises(ValueError, match="sigma_prime"):
        theory.mocha_constants(Xs, ys, LAM, sigma_prime="tight")
    with pytest.raises(ValueError, match="sigma_prime"):
        mocha(Xs, ys, LAM, sigma_prime=0.0)
    with pytest.raises(TypeError, match="sigma_prime"):
        mocha(Xs, ys, LAM, sigma_prime=True)
    res = mocha(Xs, ys, LAM, "squared", inner_iters=2)
    with pytest.raises(ValueError, match="record_local_gaps"):
        theory.theta_upper(res.history)
    with pytest.raises(ValueError, match="alpha_before"):
        theory.exact_local_theta(Xs, ys, LAM, np.zeros(3), np.zeros(200), "squared")
