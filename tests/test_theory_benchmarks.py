"""The theory benchmarks run in --quick mode and write finite, consistent results."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    pytest.importorskip("matplotlib")


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_theory_rates_quick(tmp_path):
    import theory_rates

    assert theory_rates.main(["--quick", "--out", str(tmp_path)]) == 0
    summary = _rows(tmp_path / "theory_rates_quick_summary.csv")
    assert [r["loss"] for r in summary] == ["squared", "smoothed_hinge", "logistic", "hinge"]
    for r in summary:
        measured = float(r["rounds_measured"])
        assert np.isfinite(measured) and measured >= 1
        # every prediction is an upper bound on the measured rounds
        assert float(r["rounds_pred_measured_theta"]) >= measured
        if r["loss"] != "hinge":
            assert float(r["rounds_pred_apriori"]) >= measured
    assert (tmp_path / "theory_rates_quick.png").stat().st_size > 0


def test_theory_sigma_quick(tmp_path):
    import theory_sigma

    assert theory_sigma.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "theory_sigma_quick.csv")
    for r in rows:
        if float(r["factor_of_safe"]) >= 1.0:  # safe: the dual never decreases
            assert int(r["rounds_with_dual_decrease"]) == 0 and r["diverged"] == "False"
    # on the coupled Sigma, a quarter of the safe value diverges for every loss
    low = [r for r in rows if r["sigma"] == "coupled" and float(r["factor_of_safe"]) == 0.25]
    assert len(low) == 4 and all(r["diverged"] == "True" for r in low)


@pytest.mark.slow
def test_theory_systems_quick(tmp_path):
    import theory_systems

    assert theory_systems.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "theory_systems_quick.csv")
    for r in rows:
        assert int(r["n_seeds_reached"]) >= 1


def teardown_module(module):
    for name in ("theory_rates", "theory_sigma", "theory_systems", "theory_common"):
        sys.modules.pop(name, None)
