"""Identity-plus-low-rank Sigma: the same Sigma-step and the same MOCHA iterates as the
dense path (to rounding: 1e-12 on Sigma, 1e-10 on the models), at O(m d^2) cost."""

import numpy as np
import pytest

from fmtl.datasets import make_multitask_classification
from fmtl.federated import mocha
from fmtl.relationships import (
    LowRankSigma,
    omega_update,
    omega_update_lowrank,
    resolve_sigma_prime,
    safety_rho,
    spectral_rho,
)


@pytest.mark.parametrize("shape", [(40, 5), (6, 20), (12, 12)])
@pytest.mark.parametrize("floor", [0.0, 1e-4, 1e-2])
def test_lowrank_sigma_step_equals_dense(shape, floor):
    m, d = shape
    if floor >= 1.0 / m:
        pytest.skip("floor outside its range for this m")
    Wt = np.random.default_rng(m * d).normal(size=shape)
    S = omega_update_lowrank(Wt, floor)
    Sd, Od = omega_update(Wt, floor)
    assert S.rank == min(m, d)
    np.testing.assert_allclose(S.to_dense(), Sd, atol=1e-12)
    np.testing.assert_allclose(S.inverse().to_dense(), Od, rtol=1e-9, atol=1e-9 * np.abs(Od).max())
    assert S.trace() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(S.diagonal(), np.diag(Sd), atol=1e-13)
    np.testing.assert_allclose(S.row_abs_sums(block=7), np.abs(Sd).sum(1), atol=1e-12)
    assert resolve_sigma_prime("gershgorin", S) == pytest.approx(safety_rho(Sd), rel=1e-10)
    bound = resolve_sigma_prime("spectral", S)
    assert spectral_rho(Sd) * (1 - 1e-12) <= bound <= spectral_rho(Sd) + 1.0
    B = np.random.default_rng(1).normal(size=(m, 3))
    np.testing.assert_allclose(S @ B, Sd @ B, atol=1e-12)


def test_zero_models_give_identity_over_m():
    S = omega_update_lowrank(np.zeros((5, 3)))
    np.testing.assert_allclose(S.to_dense(), np.eye(5) / 5)
    np.testing.assert_allclose(S.row_abs_sums(), np.full(5, 0.2))


@pytest.mark.parametrize("loss", ["hinge", "squared"])
def test_mocha_lowrank_matches_dense(loss):
    ds = make_multitask_classification(n_tasks=40, n_samples=30, n_features=5, random_state=0)
    kw = dict(outer_iters=5, inner_iters=15, random_state=0, sigma_floor=1e-4)
    a = mocha(ds.X, ds.y, 1e-2, loss, **kw)
    b = mocha(ds.X, ds.y, 1e-2, loss, sigma_step="lowrank", **kw)
    assert isinstance(b.sigma, LowRankSigma) and isinstance(b.omega, LowRankSigma)
    np.testing.assert_allclose(b.coef, a.coef, atol=1e-10)
    np.testing.assert_allclose(b.sigma.to_dense(), a.sigma, atol=1e-12)
    np.testing.assert_allclose(b.history["gap"], a.history["gap"], rtol=1e-8, atol=1e-12)
    fixed = mocha(ds.X, ds.y, 1e-2, loss, relationship="fixed", sigma_step="lowrank", **kw)
    ref = mocha(ds.X, ds.y, 1e-2, loss, relationship="fixed", **kw)
    np.testing.assert_array_equal(fixed.coef, ref.coef)  # I/m: the same arithmetic


def test_lowrank_checkpoint_of_other_settings_is_refused(tmp_path):
    ds = make_multitask_classification(n_tasks=30, n_samples=20, n_features=4, random_state=1)
    kw = dict(outer_iters=4, inner_iters=5, random_state=0, sigma_step="lowrank")
    mocha(ds.X, ds.y, 1e-2, **{**kw, "outer_iters": 2}, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="outer_iters"):  # other settings are refused
        mocha(ds.X, ds.y, 1e-2, **kw, checkpoint_dir=tmp_path)


def test_lowrank_resume_continues_exactly(tmp_path):
    ds = make_multitask_classification(n_tasks=30, n_samples=20, n_features=4, random_state=1)
    kw = dict(outer_iters=4, inner_iters=5, random_state=0, sigma_step="lowrank")
    full = mocha(ds.X, ds.y, 1e-2, **kw)
    seen = []

    def stop_after(rec):
        seen.append(rec["round"])
        if rec["round"] == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mocha(
            ds.X,
            ds.y,
            1e-2,
            **kw,
            checkpoint_dir=tmp_path,
            checkpoint_every=1,
            callback=stop_after,
        )
    resumed = mocha(ds.X, ds.y, 1e-2, **kw, checkpoint_dir=tmp_path, checkpoint_every=1)
    np.testing.assert_array_equal(resumed.coef, full.coef)
    np.testing.assert_array_equal(resumed.sigma.U, full.sigma.U)


def test_bad_inputs():
    U = np.eye(3)[:, :1]
    with pytest.raises(ValueError, match="c0"):
        LowRankSigma(0.0, U, np.ones(1))
    with pytest.raises(ValueError, match="eigenvalue"):
        LowRankSigma(0.1, U, np.array([-0.2]))
    with pytest.raises(ValueError, match=r"\(m, r\)"):
        LowRankSigma(0.1, U, np.ones(2))
    with pytest.raises(ValueError, match="sigma_floor"):
        omega_update_lowrank(np.ones((4, 2)), 0.3)
    with pytest.raises(ValueError, match="NaN"):
        omega_update_lowrank(np.full((4, 2), np.nan))
    ds = make_multitask_classification(n_tasks=3, n_samples=10, n_features=2, random_state=0)
    with pytest.raises(ValueError, match="sigma_step"):
        mocha(ds.X, ds.y, 0.1, sigma_step="sparse")
    with pytest.raises(ValueError, match="sigma must be"):
        mocha(ds.X, ds.y, 0.1, relationship="fixed", sigma=LowRankSigma.identity(4))
