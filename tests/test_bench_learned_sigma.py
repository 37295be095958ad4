"""benchmarks/bench_learned_sigma.py: a tiny run writes its table, curves and figure, and
every number in it is what the solvers measured (certificate >= sub-optimality)."""

import csv

import pytest
from conftest import load_script


@pytest.mark.slow
def test_quick_run_on_one_synthetic_set(tmp_path, capsys):
    bench = load_script("benchmarks/bench_learned_sigma.py")
    assert bench.main(["--quick", "--only", "synthetic clusters", "--out", str(tmp_path)]) == 0
    stem = tmp_path / "bench_learned_sigma_quick"
    rows = list(csv.DictReader(open(f"{stem}.csv")))
    assert {r["method"] for r in rows} == {"cvxpy (Clarabel)", "fmtl joint L-BFGS", "alternation"}
    assert {r["loss"] for r in rows} == {"hinge", "logistic"}
    for r in rows:
        if r["method"] == "fmtl joint L-BFGS":
            # certified to the benchmark's 1e-4, and the certificate bounds the truth
            assert float(r["certificate"]) <= 1e-4
            assert -1e-7 <= float(r["subopt"]) <= float(r["certificate"]) + 1e-7
    summary = (tmp_path / "bench_learned_sigma_quick_summary.md").read_text()
    assert "| synthetic clusters" in summary and "fmtl / cvxpy" in summary
    assert (tmp_path / "bench_learned_sigma_quick.png").stat().st_size > 10_000
    assert "reproduce: python benchmarks/bench_learned_sigma.py --quick" in capsys.readouterr().out
