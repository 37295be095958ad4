"""Threads and fork (issue 29, item 3): concurrent fits under numba's workqueue layer,
which aborted the process ("Concurrent access has been detected", rc -6), and a fit in a
child forked after a fit on the omp layer, which numba terminated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"


def _run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_concurrent_fits_under_the_workqueue_layer_run_and_equal_serial_fits():
    names = "MochaClassifier,FedAvgClassifier,DittoClassifier,FedRepClassifier"
    run = _run("concurrent_fits.py", names, NUMBA_THREADING_LAYER="workqueue")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "layer workqueue errors []" in run.stdout
    assert "identical True" in run.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fit_in_a_child_forked_after_an_omp_fit_is_a_clear_error():
    run = _run("fork_after_fit.py", NUMBA_THREADING_LAYER="omp")
    if "parent layer omp" not in run.stdout:
        pytest.skip(f"numba's omp layer is not available here: {run.stderr[-500:]}")
    assert "child error: RuntimeError fmtl's numba kernels cannot run in this process" in (
        run.stdout
    )
    assert "child status" in run.stdout and "Terminating" not in run.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_under_the_workqueue_layer_fits():
    run = _run("fork_after_fit.py", NUMBA_THREADING_LAYER="workqueue")
    assert "child ok" in run.stdout, run.stdout + run.stderr[-2000:]
