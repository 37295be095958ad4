"""Property tests (hypothesis) for the personalisation estimators and the shared round loop.

For random small multi-task data (1-4 tasks, 1-12 rows each, 1-5 features, features scaled
by 10^-2 .. 10^2, string or integer task labels) and a random systems model (drops up to
0.8, heterogeneous work or not), every estimator either fits or refuses with an error that
names the argument at fault; a fitted one predicts finite values in its classes, its History
has strictly increasing estimated time and no work on dropped nodes, and the same seed gives
the same model bit for bit. Injected faults (NaN / inf, mismatched lengths, a single class,
bad parameters) are refused, naming the argument.
"""

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import ClassifierMixin

import fmtl
from fmtl.federated import SystemsModel

# small budgets: the point is the contract, not the fit
SETTINGS = {
    "FedAvgClassifier": dict(rounds=3),
    "FedAvgRegressor": dict(rounds=3, finetune_epochs=1.0),
    "DittoClassifier": dict(rounds=3),
    "DittoRegressor": dict(rounds=3),
    "PFedMeClassifier": dict(rounds=3),
    "PFedMeRegressor": dict(rounds=3, local_passes=1.0),
    "PerFedAvgClassifier": dict(rounds=3, inner_steps=2),
    "PerFedAvgRegressor": dict(rounds=3),
    "FedRepClassifier": dict(rounds=3, rank=1),
    "FedRepRegressor": dict(rounds=3, rank=1),
    "PFedHNClassifier": dict(rounds=3),
    "PFedHNRegressor": dict(rounds=3, hypernetwork="rff", n_components=8),
    "KernelMochaClassifier": dict(outer_iters=2, inner_iters=3),
    "KernelMochaRegressor": dict(outer_iters=2, inner_iters=3),
}
NAMES = sorted(SETTINGS)
PROPS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def names(msg: str, *args: str) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(a)}(?![\w])", msg) for a in args)


@st.composite
def cases(draw, faulty: bool = False):
    name = draw(st.sampled_from(NAMES))
    cls = getattr(fmtl, name)
    clf = issubclass(cls, ClassifierMixin)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    m = draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, 12)) for _ in range(m)]
    sizes[0] = max(sizes[0], 2)  # two rows at least: a classifier needs two classes
    d = draw(st.integers(1, 5))
    scale = 10.0 ** draw(st.integers(-2, 2))
    n = sum(sizes)
    X = rng.normal(size=(n, d)) * scale
    labels = draw(st.sampled_from([["a", "b", "c", "d"], [3, 1, 2, 0]]))
    tasks = np.repeat(np.array(labels[:m], dtype=object), sizes)
    if clf:
        y = np.where(rng.random(n) < 0.5, "no", "yes").astype(object)
        y[0], y[-1] = "no", "yes"  # two classes overall (a task may hold only one)
    else:
        y = X @ rng.normal(size=d) + rng.normal(size=n)
    params = dict(SETTINGS[name], random_state=seed % 1000)
    systems = draw(
        st.sampled_from(
            [
                None,
                SystemsModel(drop_prob=0.5),
                SystemsModel(heterogeneity="high", drop_prob=0.2),
                SystemsModel(drop_prob=0.8, network="3g"),
            ]
        )
    )
    params["systems"] = systems
    fault = None
    if faulty:
        fault = draw(
            st.sampled_from(
                ["X-nan", "X-inf", "y-len", "tasks-len", "alpha", "rounds", "one-class", "y-nan"]
            )
        )
        if fault == "X-nan":
            X[rng.integers(n), rng.integers(d)] = np.nan
        elif fault == "X-inf":
            X[rng.integers(n), rng.integers(d)] = np.inf
        elif fault == "y-len":
            y = y[:-1]
        elif fault == "tasks-len":
            tasks = tasks[1:] if n > 1 else np.concatenate([tasks, tasks])
        elif fault == "alpha":
            params["alpha"] = draw(st.sampled_from([0.0, -1.0, float("nan")]))
        elif fault == "rounds":
            key = "outer_iters" if "outer_iters" in params else "rounds"
            params[key] = 0
        elif fault == "one-class":
            if clf:
                y = np.full(n, "yes", dtype=object)
            else:
                fault = "y-nan"
        if fault == "y-nan":
            y = np.asarray(y, dtype=object if clf else float)
            if clf:
                y[rng.integers(n)] = None
            else:
                y[rng.integers(n)] = np.nan
    expect = {
        None: (),
        "X-nan": ("X",),
        "X-inf": ("X",),
        "y-len": ("y", "X"),
        "tasks-len": ("tasks",),
        "alpha": ("alpha",),
        "rounds": ("rounds", "outer_iters"),
        "one-class": ("y",),
        "y-nan": ("y",),
    }[fault]
    return dict(cls=cls, clf=clf, X=X, y=y, tasks=tasks, params=params, expect=expect)


def _fit(case):
    est = case["cls"](**case["params"])
    with warnings.catch_warnings():
        # dropped-every-round nodes are reported; diverging step-size methods overflow and
        # their nodes are marked failed (the property is that nothing non-finite escapes)
        warnings.simplefilter("ignore", RuntimeWarning)
        return est.fit(case["X"], case["y"], case["tasks"])


@settings(max_examples=60, **PROPS)
@given(cases())
def test_valid_inputs_fit_and_keep_the_contract(case):
    est = _fit(case)
    X, tasks = case["X"], case["tasks"]
    pred = est.predict(X, tasks)
    assert pred.shape == (X.shape[0],)
    if case["clf"]:
        assert set(pred.tolist()) <= {"no", "yes"}
        assert np.all(np.isfinite(est.decision_function(X, tasks)))
    else:
        assert np.all(np.isfinite(pred))
    for h in est.history_ if isinstance(est.history_, list) else [est.history_]:
        assert np.all(np.diff(h["est_time"]) > 0)
        assert np.all(h["local_steps"][h["dropped"]] == 0)
    again = _fit(case)
    np.testing.assert_array_equal(again.predict(X, tasks), pred)
    if not case["clf"]:
        np.testing.assert_array_equal(
            again.predict(X, tasks).view(np.uint64), pred.view(np.uint64)
        )


@settings(max_examples=60, **PROPS)
@given(cases(faulty=True))
def test_faulty_inputs_are_refused_naming_the_argument(case):
    with pytest.raises((ValueError, TypeError)) as info:
        _fit(case)
    assert names(str(info.value), *case["expect"]), (
        f"{case['cls'].__name__}: {case['expect']} not named in {info.value}"
    )
