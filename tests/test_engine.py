"""The dual engine's shared pieces for every algorithm on it: checkpoint/resume (kernel MOCHA
included), warm starts (CoCoA, mini-batch SDCA), the seed in the checkpoint fingerprint, and
the one certificates function."""

import numpy as np
import pytest
from conftest import random_tasks

from fmtl.federated import SystemsModel, certificates, cocoa, kernel_mocha, mbsdca, mocha
from fmtl.federated.engine import certificates_from_terms
from fmtl.losses import get_loss
from fmtl.solvers import pack_tasks


class Stop(Exception):
    pass


def _stop_at(rnd):
    def cb(rec):
        if rec["round"] == rnd:
            raise Stop

    return cb


def _same(a, b, fields):
    for f in fields:
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.history.columns == b.history.columns
    for c in a.history.columns:
        if c != "wall_time":
            x, y = a.history[c], b.history[c]
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), c


def test_kernel_mocha_resumes_bit_identically(tmp_path):
    Xs, ys = random_tasks(m=3, n=12, d=4, seed=1)
    kw = dict(
        kernel="rbf",
        outer_iters=3,
        inner_iters=4,
        random_state=2,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.2),
    )
    ref = kernel_mocha(Xs, ys, 0.05, **kw)
    with pytest.raises(Stop):
        kernel_mocha(
            Xs, ys, 0.05, **kw, checkpoint_dir=tmp_path, checkpoint_every=2, callback=_stop_at(7)
        )
    res = kernel_mocha(Xs, ys, 0.05, **kw, checkpoint_dir=tmp_path, checkpoint_every=2)
    _same(ref, res, ("dual_coef", "sigma", "expansion_coef"))


@pytest.mark.parametrize("fn", [cocoa, mbsdca])
def test_fixed_sigma_methods_warm_start(fn):
    Xs, ys = random_tasks(m=4, n=20, d=5, seed=3)
    first = fn(Xs, ys, 0.2, rounds=15, random_state=0)
    cold = fn(Xs, ys, 0.1, rounds=3, random_state=1)
    warm = fn(Xs, ys, 0.1, rounds=3, random_state=1, warm_start=first)
    assert warm.history["gap"][0] < cold.history["gap"][0]
    # the warm start's B is B(alpha): its certificates are valid
    assert np.all(warm.history["gap"] >= -1e-12)
    with pytest.raises(ValueError, match="dual_coef"):
        bad = type(first)(**{**first.__dict__, "dual_coef": first.dual_coef[:-1]})
        fn(Xs, ys, 0.1, rounds=2, warm_start=bad)
    with pytest.raises(TypeError, match="warm_start"):
        fn(Xs, ys, 0.1, rounds=2, warm_start=object())


def test_checkpoint_of_another_seed_is_refused(tmp_path):
    Xs, ys = random_tasks(m=3, n=15, d=4, seed=4)
    kw = dict(outer_iters=1, inner_iters=3, checkpoint_dir=tmp_path)
    mocha(Xs, ys, 0.1, random_state=1, **kw)
    with pytest.raises(ValueError, match="random_state"):
        mocha(Xs, ys, 0.1, random_state=2, **kw)
    mocha(Xs, ys, 0.1, random_state=1, **kw)  # the same seed resumes (finished: no-op)


def test_certificates_is_certificates_from_terms():
    Xs, ys = random_tasks(m=3, n=15, d=4, seed=5)
    res = mocha(Xs, ys, 0.1, outer_iters=2, inner_iters=5, random_state=0)
    tasks, loss = pack_tasks(Xs, ys), get_loss("hinge")
    got = certificates(tasks, res.dual_coef, res.B, res.sigma, 0.1, loss, sigma_floor=1e-6)
    assert got["gap"] == res.history["gap"][-1]
    assert got["joint_gap"] == res.history["joint_gap"][-1]
    nan = certificates_from_terms(np.array([1.0, np.nan]), np.zeros(2), 0.0, 0.1)
    assert np.isnan(nan["gap"])
