"""The convergence reproduction pipeline on a tiny problem (files, certified sub-optimality)."""

import csv

import numpy as np
import pytest
import scipy.io

from fmtl.cli import main
from fmtl.datasets import make_multitask_classification
from fmtl.reproduce import METHODS, fastest_lines, run_convergence


@pytest.fixture(scope="module")
def tiny():
    return make_multitask_classification(
        n_tasks=3, n_samples=25, n_features=4, n_clusters=2, noise=0.3, random_state=0
    )


def test_run_convergence_writes_certified_curves(tiny, tmp_path):
    summary = run_convergence(
        tmp_path, quick=True, lam=1e-2, datasets={"tiny": tiny}, progress=False, log=lambda s: None
    )
    for name in (
        "convergence.csv",
        "convergence_summary.csv",
        "convergence_statistical.png",
        "convergence_systems.png",
        "convergence_network.png",
        "convergence_faults.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "convergence.csv")))
    sub = np.array([float(r["suboptimality"]) for r in rows])
    # P* is the cvxpy optimum: no primal value may fall below it (beyond solver accuracy)
    assert sub.min() >= -1e-6
    methods = {r["method"] for r in rows if r["experiment"] == "statistical"}
    assert methods == set(METHODS)
    # MOCHA reaches the target on this easy problem, for both Sigmas
    mocha_rows = [
        r for r in summary if r["method"] == "MOCHA" and r["experiment"] == "statistical"
    ]
    assert len(mocha_rows) == 2 and all(np.isfinite(r["time_to_1e-3"]) for r in mocha_rows)
    # network curves: the same run, est_time shifted by (c - 100) per round
    net = {
        r["setting"]: r
        for r in summary
        if r["experiment"] == "network" and r["method"] == "MOCHA" and r["sigma"] == "Sigma = I/m"
    }
    assert net["wifi"]["time_to_1e-3"] < net["lte"]["time_to_1e-3"] < net["3g"]["time_to_1e-3"]
    assert any("fastest to 1e-3" in line for line in fastest_lines(summary))


def test_cli_reproduce_convergence_on_a_mat_file(tiny, tmp_path, capsys):
    cells_X = np.empty((1, tiny.n_tasks), dtype=object)
    cells_Y = np.empty((1, tiny.n_tasks), dtype=object)
    for t, (X, y) in enumerate(tiny):
        cells_X[0, t], cells_Y[0, t] = X, y.reshape(-1, 1)
    path = tmp_path / "tiny.mat"
    scipy.io.savemat(path, {"X": cells_X, "Y": cells_Y})
    out = tmp_path / "out"
    assert (
        main(
            [
                "reproduce",
                "convergence",
                "--quick",
                "--dataset",
                str(path),
                "--network",
                "3g",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "fastest to 1e-3" in printed or "no method reached" in printed
    assert (out / "convergence_summary.csv").exists()


def test_bad_network_is_rejected(tiny, tmp_path):
    with pytest.raises(ValueError, match="network"):
        run_convergence(tmp_path, quick=True, network="5g", datasets={"tiny": tiny})


def test_cli_reproduce_errors_on_a_mat_file(tiny, tmp_path):
    cells_X = np.empty((1, tiny.n_tasks), dtype=object)
    cells_Y = np.empty((1, tiny.n_tasks), dtype=object)
    for t, (X, y) in enumerate(tiny):
        cells_X[0, t], cells_Y[0, t] = X, y.reshape(-1, 1)
    path = tmp_path / "tiny.mat"
    scipy.io.savemat(path, {"X": cells_X, "Y": cells_Y})
    out = tmp_path / "out"
    assert main(["reproduce", "errors", "--quick", "--dataset", str(path), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "errors_quick_summary.csv")))
    assert {r["method"] for r in rows} >= {"Global", "Local", "MOCHA"}
    assert all(0.0 <= float(r["mean"]) <= 1.0 for r in rows)
