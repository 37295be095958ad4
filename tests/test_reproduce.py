"""The convergence reproduction pipeline on a tiny problem (files, certified sub-optimality)."""

import csv
import io
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fmtl.cli import main
from fmtl.datasets import make_multitask_classification
from fmtl.experiments.convergence import (
    METHODS,
    RUNS_PER_SIGMA,
    TARGET,
    _horizon,
    fastest_lines,
    run_convergence,
)


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws its bars into it."""

    def isatty(self) -> bool:
        return True


def _dpi(path) -> float:
    return min(Image.open(path).info["dpi"])


@pytest.fixture(scope="module")
def tiny():
    return make_multitask_classification(
        n_tasks=3, n_samples=25, n_features=4, n_clusters=2, noise=0.3, random_state=0
    )


def test_run_convergence_writes_certified_curves(tiny, tmp_path, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    summary = run_convergence(
        tmp_path, quick=True, lam=1e-2, datasets={"tiny": tiny}, log=lambda s: None
    )
    # the bar counts every run: a learned-Sigma fit, then per Sigma cvxpy, the scaling
    # grids and each method run
    total = 1 + 2 * RUNS_PER_SIGMA
    assert f"{total}/{total}" in term.getvalue() and "convergence" in term.getvalue()
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
    for exp in ("statistical", "systems", "network", "faults"):
        assert _dpi(tmp_path / f"convergence_{exp}.png") >= 150
    # every panel's time axis reaches where the fastest method and the runner-up the summary
    # names first reach 1e-3 (the panel of experiment (d) holds all drop probabilities)
    for (exp, setting, sigma), rows_ in _summary_panels(summary).items():
        times = sorted(r["time_to_1e-3"] for r in rows_)[:2]
        sel = [
            r
            for r in _curves(tmp_path)
            if r["experiment"] == exp
            and r["sigma"] == sigma
            and (exp == "faults" or r["setting"] == setting)
        ]
        keys = list(dict.fromkeys((r["setting"], r["method"]) for r in sel))
        right = _horizon(sel, keys)
        for t in times:
            if np.isfinite(t):
                assert right >= t, (exp, setting, sigma, right, times)


def _summary_panels(summary):
    panels = {}
    for r in summary:
        if r["experiment"] != "network":  # not in the CSV (derived when plotting)
            panels.setdefault((r["experiment"], r["setting"], r["sigma"]), []).append(r)
    return panels


def _curves(out):
    rows = list(csv.DictReader(open(out / "convergence.csv")))
    for r in rows:
        r["est_time"] = float(r["est_time"])
        r["suboptimality"] = float(r["suboptimality"])
    return rows


def test_horizon_covers_the_fastest_method_past_a_short_run():
    # A reaches the target at t = 50 (its run ends at 100); B's run ends at t = 20 without
    # reaching it: the axis must not stop where B ends
    def curve(method, t_end, t_hit):
        ts = np.linspace(0, t_end, 21)
        sub = np.where(ts >= t_hit, TARGET / 2, 1.0)
        return [
            {"setting": "none", "method": method, "est_time": t, "suboptimality": s}
            for t, s in zip(ts, sub, strict=True)
        ]

    sel = curve("A", 100.0, 50.0) + curve("B", 20.0, np.inf)
    right = _horizon(sel, [("none", "A"), ("none", "B")])
    assert 50.0 <= right <= 100.0
    # and the runner-up too when both reach it (C at 80)
    sel += curve("C", 90.0, 80.0)
    assert _horizon(sel, [("none", "A"), ("none", "B"), ("none", "C")]) >= 80.0


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


def test_cli_reproduce_errors_on_a_mat_file(tiny, tmp_path, monkeypatch):
    cells_X = np.empty((1, tiny.n_tasks), dtype=object)
    cells_Y = np.empty((1, tiny.n_tasks), dtype=object)
    for t, (X, y) in enumerate(tiny):
        cells_X[0, t], cells_Y[0, t] = X, y.reshape(-1, 1)
    path = tmp_path / "tiny.mat"
    scipy.io.savemat(path, {"X": cells_X, "Y": cells_Y})
    out = tmp_path / "out"
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["reproduce", "errors", "--quick", "--dataset", str(path), "--out", str(out)]) == 0
    # one bar step per (data set, seed, method): 1 x 2 x 5
    assert "errors" in term.getvalue() and "10/10" in term.getvalue()
    assert _dpi(out / "errors_quick.png") >= 150
    rows = list(csv.DictReader(open(out / "errors_quick_summary.csv")))
    assert {r["method"] for r in rows} >= {"Global", "Local", "MOCHA"}
    assert all(0.0 <= float(r["mean"]) <= 1.0 for r in rows)
