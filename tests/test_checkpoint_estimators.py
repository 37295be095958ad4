"""checkpoint_dir on every estimator (issue 16, item 5): an interrupted fit started again
ends with the uninterrupted fit's model, bit for bit; a checkpoint of another seed or
other parameters is refused; one-vs-rest and cross-validation fits get a subdirectory
each."""

import warnings

import numpy as np
import pytest
from sklearn.base import is_classifier

import fmtl
from fmtl.datasets import make_multitask_classification, make_multitask_regression
from fmtl.federated._loop import Recorder
from fmtl.persistence import load_model, save_model

X, y, TASKS = make_multitask_classification(
    n_tasks=3, n_samples=30, n_features=4, random_state=0
).stack()
XR, YR, TASKS_R = make_multitask_regression(
    n_tasks=3, n_samples=30, n_features=4, random_state=0
).stack()
Y3 = np.where(X[:, 0] > 0.5, 2, np.where(X[:, 0] < -0.5, 0, 1))

# budgets of at least 6 recorded rounds per fit, so that round 4 interrupts it
DUAL = dict(outer_iters=2, inner_iters=5, tol=0.0)
# checkpoints are the alternation's (the joint solver runs without them): the reference fit too
MOCHA = dict(DUAL, sigma_solver="alternation")
BASELINE = dict(max_rounds=6, tol=0.0, local_work="fixed")
ROUNDS = dict(rounds=6)
ESTIMATORS = {
    fmtl.MochaClassifier: MOCHA,
    fmtl.MochaRegressor: MOCHA,
    fmtl.LocalClassifier: BASELINE,
    fmtl.LocalRegressor: BASELINE,
    fmtl.GlobalClassifier: BASELINE,
    fmtl.GlobalRegressor: BASELINE,
    fmtl.KernelMochaClassifier: DUAL,
    fmtl.KernelMochaRegressor: DUAL,
    fmtl.FedAvgClassifier: ROUNDS,
    fmtl.FedAvgRegressor: ROUNDS,
    fmtl.DittoClassifier: ROUNDS,
    fmtl.DittoRegressor: ROUNDS,
    fmtl.PFedMeClassifier: dict(ROUNDS, grad_tol=0.0),
    fmtl.PFedMeRegressor: dict(ROUNDS, grad_tol=0.0),
    fmtl.PerFedAvgClassifier: ROUNDS,
    fmtl.PerFedAvgRegressor: ROUNDS,
    fmtl.PFedHNClassifier: ROUNDS,
    fmtl.PFedHNRegressor: ROUNDS,
    fmtl.FedRepClassifier: ROUNDS,
    fmtl.FedRepRegressor: ROUNDS,
}


def _data(cls):
    return (X, y, TASKS) if is_classifier(cls()) else (XR, YR, TASKS_R)


def _model(est):
    # the kernel estimators' model is their expansion over the training rows
    return est.dual_coef_ if hasattr(est, "expansion_coef_") else est.coef_


class Interrupted(Exception):
    pass


@pytest.fixture
def interrupt_at(monkeypatch):
    """Raise from the History recorder at its ``n``-th record of the fit (all sub-fits
    counted): what a killed fit leaves behind is its last checkpoint."""

    def arm(n):
        calls = [0]
        original = Recorder.add

        def add(self, *args, **kwargs):
            rec = original(self, *args, **kwargs)
            calls[0] += 1
            if calls[0] == n:
                raise Interrupted
            return rec

        monkeypatch.setattr(Recorder, "add", add)
        return lambda: monkeypatch.setattr(Recorder, "add", original)

    return arm


def _fit(cls, data, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the short budgets are deliberate
        return cls(random_state=0, **params).fit(*data)


@pytest.mark.parametrize("cls", list(ESTIMATORS), ids=lambda c: c.__name__)
def test_an_interrupted_fit_resumes_bit_identically(cls, tmp_path, interrupt_at):
    data, kw = _data(cls), ESTIMATORS[cls]
    ref = _fit(cls, data, **kw)
    disarm = interrupt_at(4)
    with pytest.raises(Interrupted):
        _fit(cls, data, **kw, checkpoint_dir=tmp_path, checkpoint_every=2)
    disarm()
    resumed = _fit(cls, data, **kw, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert np.array_equal(_model(ref), _model(resumed))
    assert np.array_equal(ref.intercept_, resumed.intercept_)
    assert len(resumed.history_) == len(ref.history_)
    # the finished fit's checkpoint: a refit returns it
    assert np.array_equal(_model(ref), _model(_fit(cls, data, **kw, checkpoint_dir=tmp_path)))
    # another seed is refused, not handed the seed-0 model
    with pytest.raises(ValueError, match=r"another problem.*random_state"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(random_state=1, **kw, checkpoint_dir=tmp_path).fit(*data)


@pytest.mark.parametrize("cls", [fmtl.MochaClassifier, fmtl.FedAvgClassifier])
def test_one_vs_rest_classes_checkpoint_apart(cls, tmp_path, interrupt_at):
    kw = ESTIMATORS[cls]
    data = (X, Y3, TASKS)
    ref = _fit(cls, data, **kw)
    n = len(ref.history_.where("class_index", 0))
    disarm = interrupt_at(n + 3)  # inside the second class's fit
    with pytest.raises(Interrupted):
        _fit(cls, data, **kw, checkpoint_dir=tmp_path, checkpoint_every=1)
    disarm()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class-0", "class-1"]
    resumed = _fit(cls, data, **kw, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert np.array_equal(ref.coef_, resumed.coef_)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class-0", "class-1", "class-2"]


@pytest.mark.parametrize(
    "change",
    [
        {"alpha": 0.5},
        {"loss": "logistic"},
        {"fit_intercept": False},
        {"intercept_scaling": 2.0},
        {"relationship": "identity"},
        {"sigma_prime": "gershgorin"},
        {"outer_iters": 3},
    ],
    ids=lambda c: next(iter(c)),
)
def test_other_parameters_on_the_same_directory_are_refused(change, tmp_path):
    _fit(fmtl.MochaClassifier, (X, y, TASKS), **DUAL, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another problem"):
        _fit(fmtl.MochaClassifier, (X, y, TASKS), **{**DUAL, **change}, checkpoint_dir=tmp_path)


def test_kernel_intercept_scaling_is_in_the_fingerprint(tmp_path):
    # the intercept enters kernel MOCHA as a callable offset kernel: its Gram matrix tells
    kw = dict(DUAL, checkpoint_dir=tmp_path)
    _fit(fmtl.KernelMochaClassifier, (X, y, TASKS), **kw)
    with pytest.raises(ValueError, match="another problem"):
        _fit(fmtl.KernelMochaClassifier, (X, y, TASKS), **kw, intercept_scaling=3.0)


def test_cross_validation_checkpoints_every_fit_apart(tmp_path, interrupt_at):
    kw = dict(alphas=[0.1, 0.01], cv=2, **MOCHA)
    ref = _fit(fmtl.MochaClassifierCV, (X, y, TASKS), **kw)
    disarm = interrupt_at(25)  # inside fold 1 (each fit records 10 rounds)
    with pytest.raises(Interrupted):
        _fit(fmtl.MochaClassifierCV, (X, y, TASKS), **kw, checkpoint_dir=tmp_path)
    disarm()
    cv = _fit(fmtl.MochaClassifierCV, (X, y, TASKS), **kw, checkpoint_dir=tmp_path)
    assert np.array_equal(ref.coef_, cv.coef_)
    assert np.array_equal(ref.cv_results_["mean_test_score"], cv.cv_results_["mean_test_score"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold-0", "fold-1", "refit"]
    assert sorted(p.name for p in (tmp_path / "fold-1").iterdir()) == ["alpha-0", "alpha-1"]


def test_checkpoint_parameters_round_trip_through_save_model(tmp_path):
    est = _fit(
        fmtl.LocalClassifier,
        (X, y, TASKS),
        **BASELINE,
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=3,
    )
    save_model(est, tmp_path / "model.npz")
    params = load_model(tmp_path / "model.npz").get_params()
    assert params["checkpoint_dir"] == tmp_path / "ckpt"
    assert params["checkpoint_every"] == 3
