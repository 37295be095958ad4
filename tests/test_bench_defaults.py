"""The defaults benchmark's machinery on a tiny problem (the --quick run takes minutes):
every estimator and setting recorded, the default is the "auto" alpha and one point of
the grid, so no default beats the best on grid; the summary and the figure are written."""

import math
from pathlib import Path

import numpy as np
import pytest

from fmtl.datasets import make_multitask_classification, make_multitask_regression

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_run_dataset_summary_and_plot(kind, tmp_path):
    import bench_defaults as bd

    make = make_multitask_classification if kind == "classification" else make_multitask_regression
    ds = make(n_tasks=4, n_samples=40, n_features=5, random_state=0)
    factors = [0.1, 1.0, 10.0]
    rows = bd.run_dataset("tiny", kind, ds, 0, factors, dict(alphas=2, cv=2), personal=True)
    assert set(rows[0]) == set(bd.COLUMNS)
    got = {(r["estimator"], r["setting"]) for r in rows}
    for family in ("Mocha", "Local", "Global"):
        assert {(family, "default"), (family, "alpha=1")} <= got
        assert {(family, f"grid {f:.3g}") for f in factors} <= got
    assert ("MochaCV", "default") in got
    assert {(p, "default") for p in bd.PERSONAL} <= got
    for r in rows:
        assert math.isfinite(r["error"]) and r["error"] >= 0, r
        if kind == "classification":
            assert r["error"] <= 1, r
    # the default is the grid's factor-1 point: the same fit, the same error
    for family in ("Mocha", "Local", "Global"):
        (default,) = [r for r in rows if (r["estimator"], r["setting"]) == (family, "default")]
        (one,) = [r for r in rows if (r["estimator"], r["setting"]) == (family, "grid 1")]
        assert default["error"] == one["error"] and default["alpha"] == one["alpha"]
    summary = bd.summarise(rows)
    for s in summary:
        if s["estimator"] in ("Mocha", "Local", "Global"):
            assert s["best_on_grid"] <= s["default"] and s["excess_pct"] >= 0, s
        if s["estimator"] in bd.PERSONAL:
            assert np.isnan(s["best_on_grid"])
    bd.write_summary(tmp_path / "s.md", summary, "header")
    assert "| tiny | Mocha |" in (tmp_path / "s.md").read_text()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert bd.plot(rows, tmp_path / "p.png") and (tmp_path / "p.png").stat().st_size > 0
