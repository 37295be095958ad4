"""The learning-curve benchmark behind "why MOCHA ties Local" (benchmarks/landmine_tie.py):
its oracle choice of lambda and its paired summary, and one tiny end-to-end run on ``small``."""

import math

import numpy as np
import pytest
from conftest import load_script

from fmtl.datasets import find_mocha


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/landmine_tie.py")


def _row(frac, seed, variant, alpha, auc, error=0.1):
    return {
        "fraction": frac,
        "seed": seed,
        "variant": variant,
        "alpha": alpha,
        "auc": auc,
        "error": error,
        "rel_gap": 1e-6,
    }


def test_oracle_takes_the_best_test_auc_ties_to_the_larger_lambda(bench):
    rows = [
        _row(0.1, 0, "Local", 0.01, 0.6),
        _row(0.1, 0, "Local", 0.1, 0.7),
        _row(0.1, 0, "Local", 1.0, 0.7),  # tie: the larger lambda
        _row(0.1, 0, "MOCHA", 0.01, 0.8),
        _row(0.1, 0, "MOCHA", 0.1, 0.5),
    ]
    best = {(r["variant"]): r["alpha"] for r in bench.oracle(rows)}
    assert best == {"Local": 1.0, "MOCHA": 0.01}


def test_summary_pairs_every_variant_with_local_on_the_same_splits(bench):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(6):
        base = 0.6 + 0.02 * rng.normal()
        rows += [_row(0.1, seed, "Local", 0.1, base), _row(0.1, seed, "MOCHA", 0.1, base + 0.05)]
        rows += [_row(0.1, seed, "Global", 0.1, base - 0.01 * (seed % 2))]
    summary, paired = bench.summarize_oracle(bench.oracle(rows))
    by = {s["variant"]: s for s in summary}
    assert by["MOCHA"]["auc"] == pytest.approx(by["Local"]["auc"] + 0.05, abs=1e-12)
    assert by["Local"]["n"] == 6 and math.isclose(by["Local"]["auc_sem"], by["MOCHA"]["auc_sem"])
    pm = {c["a"]: c for c in paired}
    assert set(pm) == {"MOCHA", "Global"}  # Local is the reference, not paired with itself
    # "error" = 1 - AUC, a = the variant: MOCHA better on every split by 0.05
    assert pm["MOCHA"]["b"] == "Local" and pm["MOCHA"]["wins"] == 6
    assert pm["MOCHA"]["mean_diff"] == pytest.approx(-0.05, abs=1e-12)
    assert pm["MOCHA"]["p_corrected"] == 0.0  # no spread at all
    assert pm["Global"]["losses"] == 3 and pm["Global"]["wins"] == 0


@pytest.mark.slow
def test_tiny_run_on_small_is_certified_and_writes_its_files(bench, tmp_path):
    if find_mocha("small") is None:
        pytest.skip("small.mat not found in the data directories (set FMTL_DATA)")
    rows = bench.run("small", (0.1,), (0.1,), 1, only=["Local", "MOCHA"], progress=lambda s: None)
    assert [r["variant"] for r in rows] == ["Local", "MOCHA"]
    assert all(r["rel_gap"] <= bench.TOL and 0.0 <= r["auc"] <= 1.0 for r in rows)
    mocha = rows[1]
    assert (
        1.0 <= mocha["sigma_eff_rank"] <= 29 and mocha["sigma_at_floor"] >= 19
    )  # W^T W: rank <= 9 + intercept
    assert (
        bench.main(
            [
                "--quick",
                "--fractions",
                "0.1",
                "--seeds",
                "1",
                "--variants",
                "Local;MOCHA",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    text = (tmp_path / "landmine_tie_quick_summary.md").read_text()
    assert "| MOCHA |" in text and "Δ" in text
    assert (tmp_path / "landmine_tie_quick.png").stat().st_size > 0
