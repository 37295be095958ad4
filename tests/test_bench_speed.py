"""The speed benchmark runs in --quick mode and writes finite ratios.

Wall times and targets are machine-dependent: they are never asserted here.
"""

import csv
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


def test_bench_speed_quick(tmp_path):
    import bench_speed

    assert bench_speed.main(["--quick", "--out", str(tmp_path)]) == 0
    path = tmp_path / "bench_speed_quick.csv"
    assert path.exists()
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert set(bench_speed.COLUMNS) <= set(rows[0])
    names = {r["name"] for r in rows}
    assert names == {
        "SDCA epoch vs liblinear",
        "SDCA epoch vs numpy matvec floor",
        "MOCHA vs cvxpy",
        "Parallel local solves: 2 threads vs 1",
    }
    for r in rows:
        ratio = float(r["ratio"])
        # finite only: some times are differences of two timings (liblinear's per-pass
        # time), whose sign is noise on a busy machine
        assert math.isfinite(ratio), r
        for col in ("fmtl_seconds", "reference_seconds"):
            assert math.isfinite(float(r[col])), (col, r)
    # correctness checks that do not depend on timing
    for r in rows:
        if r["name"] in ("MOCHA vs cvxpy", "Parallel local solves: 2 threads vs 1"):
            assert r["check_ok"] == "True", r["check"]
    if _has_matplotlib():
        assert (tmp_path / "bench_speed_quick.png").stat().st_size > 0


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def teardown_module(module):
    sys.modules.pop("bench_speed", None)
