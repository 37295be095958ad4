"""The first hour: the ``fmtl`` command's version and help texts, data-not-found messages,
the first-compile note and ``fmtl warmup``, and progress bars (on a terminal only)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fmtl
import fmtl.datasets as fd
from fmtl import _progress
from fmtl.cli import demo, main
from fmtl.datasets import make_multitask_classification
from fmtl.experiments.errors import DATASET_NAMES, build_datasets, resolve_only
from fmtl.solvers._jit import COLD_NOTE

ROOT = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws its bars into it."""

    def isatty(self) -> bool:
        return True


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # --help and --version exit through argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
    )


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """No MOCHA data anywhere: no FMTL_DATA, no shared/data/mocha near the checkout or cwd."""
    monkeypatch.delenv("FMTL_DATA", raising=False)
    monkeypatch.setattr(fd.mat, "_repo_data_dir", lambda: tmp_path / "no_repo_data")
    cwd = tmp_path / "parent" / "cwd"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return tmp_path


# -- version and help --------------------------------------------------------------------------


def test_version(capsys):
    code, out, _ = _run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"fmtl {fmtl.__version__}"


HELP_ARGVS = [
    [],
    ["demo"],
    ["warmup"],
    ["reproduce"],
    ["reproduce", "convergence"],
    ["reproduce", "errors"],
]


@pytest.mark.parametrize("argv", HELP_ARGVS, ids=lambda a: " ".join(a) or "fmtl")
def test_help_is_plain_text(argv, capsys):
    code, out, _ = _run([*argv, "--help"], capsys)
    assert code == 0
    assert out.startswith("usage: fmtl")
    # no reST markup leaking from docstrings
    for markup in ("``", ":func:", ":class:", ":mod:", "`"):
        assert markup not in out, (markup, out)


def test_main_help_lists_every_command_with_what_it_does(capsys):
    _, out, _ = _run(["--help"], capsys)
    # the "commands:" section, unwrapped (argparse wraps it at the terminal width)
    section = " ".join(out.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0].split())
    for command, what in (
        ("demo", "fit MOCHA, Local and Global on a synthetic problem"),
        ("warmup", "compile the numba kernels ahead of time"),
        ("reproduce", "re-run the MOCHA paper's experiments: convergence figures or error"),
    ):
        assert f"{command} {what}" in section, (command, section)
    assert "--version" in out and "FMTL_DATA" in out and "--data-home" in out


def test_reproduce_help_differs_per_experiment(capsys):
    _, conv, _ = _run(["reproduce", "convergence", "--help"], capsys)
    _, err, _ = _run(["reproduce", "errors", "--help"], capsys)
    assert conv != err
    assert "Figures 2-4" in conv and "--network" in conv and "convergence_summary" in conv
    assert "Table 1" in err and "cross-validation" in err and "errors_summary" in err
    assert "--network" not in err and "--jobs" in err
    _, rep, _ = _run(["reproduce", "--help"], capsys)
    assert "Figures 2-4" in rep and "Table 1" in rep


# -- data not found -----------------------------------------------------------------------------


def test_load_mocha_message_says_how_to_point_at_data(no_data, monkeypatch):
    monkeypatch.setenv("FMTL_DATA", str(no_data / "env"))
    with pytest.raises(FileNotFoundError) as info:
        fd.load_mocha("small", data_home=no_data / "home")
    msg = str(info.value)
    for where in fd.mocha_data_paths(no_data / "home"):
        assert str(where / "small.mat") in msg
    assert "FMTL_DATA" in msg and "--data-home" in msg and "data_home" in msg
    assert "gingsmith/fmtl" in msg  # where small.mat comes from


@pytest.mark.parametrize("what", ["convergence", "errors"])
def test_cli_unknown_dataset_is_an_error_with_the_fix(what, no_data, capsys):
    home = no_data / "home"
    code, _, err = _run(
        ["reproduce", what, "--dataset", "no_such_set", "--data-home", str(home)], capsys
    )
    assert code == 1
    assert err.startswith("fmtl: error:")
    assert str(home) in err and "FMTL_DATA" in err and "--data-home" in err
    assert "human-activity" in err  # the names it does know


def test_cli_errors_missing_small_is_an_error_not_a_skip(no_data, capsys, tmp_path):
    code, _, err = _run(
        ["reproduce", "errors", "--quick", "--dataset", "small", "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 1
    assert "small.mat" in err and "FMTL_DATA" in err and "--data-home" in err


def test_cli_errors_forwards_every_option(monkeypatch):
    import fmtl.experiments.errors as errors

    seen = []
    monkeypatch.setattr(errors, "main", lambda argv: seen.append(argv) or 0)
    argv = ["reproduce", "errors", "--dataset", "school", "--seeds", "3"]
    argv += ["--train-fractions", "0.1,0.3", "--raw-features", "--prefix", "s", "--jobs", "1"]
    assert main(argv) == 0
    (got,) = seen

    def value(flag):
        return got[got.index(flag) + 1]

    assert value("--only") == "school" and value("--seeds") == "3" and value("--jobs") == "1"
    assert value("--train-fractions") == "0.1,0.3" and value("--prefix") == "s"
    assert "--raw-features" in got and "--quick" not in got
    seen.clear()
    assert main(["reproduce", "errors", "--quick"]) == 0
    assert "--raw-features" not in seen[0] and "--train-fractions" not in seen[0]


def test_errors_dataset_names_map_to_keys(no_data):
    assert resolve_only("human-activity,math-achieve") == ["har", "mathach-clf", "mathach-reg"]
    assert resolve_only("vehicle, digits,vehicle-sensor") == ["vehicle", "digits"]
    assert set(DATASET_NAMES) >= {"small", "google-glass", "chem97"}
    assert resolve_only("landmine,school") == ["landmine", "school"]  # the paper's MOCHA sets
    with pytest.raises(FileNotFoundError, match="FMTL_DATA"):
        resolve_only("mnist")  # neither a name nor a .mat file found anywhere here
    with pytest.raises(FileNotFoundError, match="FMTL_DATA"):
        build_datasets(quick=True, only="landmine")  # named, but its file is not here


def test_demo_without_small_says_where_it_looked(no_data):
    out = io.StringIO()
    table = demo(quick=True, data_home=no_data / "home", out=out, progress=False)
    text = out.getvalue()
    assert "small.mat not found" in text and str(no_data / "home") in text
    assert "FMTL_DATA" in text and "--data-home" in text
    (name,) = table  # the synthetic set only
    assert set(table[name]) == {"MOCHA", "Local", "Global"}
    # MOCHA shares across the clustered tasks: better than one global model
    assert table[name]["MOCHA"][0] < table[name]["Global"][0]


# -- progress bars -------------------------------------------------------------------------------


def _tasks():
    data = make_multitask_classification(n_tasks=4, n_samples=30, n_features=5, random_state=0)
    return data.stack()


def test_fit_verbose_draws_a_bar_with_the_round_budget_on_a_terminal(monkeypatch, capsys):
    X, y, tasks = _tasks()
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    clf = fmtl.MochaClassifier(
        alpha=1e-3, outer_iters=3, inner_iters=10, tol=0.0, verbose=5, sigma_solver="alternation"
    )
    clf.fit(X, y, tasks)
    bar = term.getvalue()
    assert "MochaClassifier" in bar and "/30" in bar and "30/30" in bar  # total: 3 x 10
    assert "<" in bar  # tqdm's elapsed<remaining
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert [int(ln.split()[1]) for ln in lines] == [5, 10, 15, 20, 25, 30]
    term2 = _Terminal()
    monkeypatch.setattr(sys, "stderr", term2)
    fmtl.FedAvgClassifier(rounds=12, verbose=4).fit(X, y, tasks)
    assert "FedAvgClassifier" in term2.getvalue() and "12/12" in term2.getvalue()


def test_fit_verbose_off_a_terminal_prints_lines_only(capsys):
    X, y, tasks = _tasks()
    fmtl.LocalClassifier(verbose=1).fit(X, y, tasks)
    out = capsys.readouterr()
    assert out.err == ""  # capsys' stderr is no terminal: no bar
    assert "round" in out.out and "primal" in out.out


def test_fit_quiet_by_default(monkeypatch, capsys):
    X, y, tasks = _tasks()
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    fmtl.MochaClassifier(outer_iters=2, inner_iters=5).fit(X, y, tasks)
    assert term.getvalue() == "" and capsys.readouterr().out == ""


@pytest.mark.parametrize("verbose", [-1, 1.5, True, "2"])
def test_bad_verbose_is_rejected(verbose):
    X, y, tasks = _tasks()
    with pytest.raises(ValueError, match="verbose"):
        fmtl.MochaClassifier(outer_iters=1, inner_iters=2, verbose=verbose).fit(X, y, tasks)


def test_round_budget_per_estimator():
    assert _progress.round_budget(fmtl.MochaClassifier(outer_iters=4, inner_iters=7)) == 28
    assert _progress.round_budget(fmtl.LocalRegressor(max_rounds=9)) == 9
    assert _progress.round_budget(fmtl.DittoClassifier(rounds=11)) == 11


def test_demo_bar_counts_fits(no_data, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    demo(quick=True, data_home=no_data / "home", out=io.StringIO())
    assert "demo" in term.getvalue() and "3/3" in term.getvalue()


# -- first compile and warmup --------------------------------------------------------------------

_PACK = (
    "import numpy as np\n"
    "from fmtl.solvers import pack_tasks\n"
    "pack_tasks([np.ones((3, 2))], [np.ones(3)])\n"
    "pack_tasks([np.ones((4, 2))], [np.ones(4)])\n"
    "print('ok')\n"
)


def test_first_compile_note_once_then_silent_with_a_warm_cache(tmp_path):
    cache = str(tmp_path / "numba_cache")
    cold = _python(_PACK, NUMBA_CACHE_DIR=cache)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count(COLD_NOTE) == 1  # one line, once per process
    warm = _python(_PACK, NUMBA_CACHE_DIR=cache)
    assert warm.returncode == 0, warm.stderr
    assert COLD_NOTE not in warm.stderr


def test_importing_fmtl_and_its_cli_compiles_nothing_and_notes_nothing(tmp_path):
    run = _python(
        "import sys, fmtl, fmtl.cli, fmtl.estimators, fmtl.solvers\n"
        "from numba.core.registry import CPUDispatcher\n"
        "bad = [f'{m}.{k}' for m, mod in list(sys.modules.items()) if m.startswith('fmtl')\n"
        "       for k, v in vars(mod).items() if isinstance(v, CPUDispatcher) and v.signatures]\n"
        "assert not bad, bad\n",
        NUMBA_CACHE_DIR=str(tmp_path / "empty_cache"),
    )
    assert run.returncode == 0, run.stderr
    assert COLD_NOTE not in run.stderr


def test_warmup_reaches_every_launched_kernel():
    from numba.core.registry import CPUDispatcher

    from fmtl.solvers import kernel_sdca, sdca, sdca_shrink, sgd, warmup

    times = warmup()
    assert set(times) == {"dense", "csr", "kernel", "total"}
    assert all(np.isfinite(v) and v >= 0 for v in times.values())
    launched = [
        f
        for mod in (sdca, sdca_shrink, sgd, kernel_sdca)
        for name, f in vars(mod).items()
        if isinstance(f, CPUDispatcher) and name.endswith("_parallel")
    ]
    assert len(launched) >= 6
    missing = [f.__name__ for f in launched + [sdca.row_sqnorms] if not f.signatures]
    assert not missing


@pytest.mark.slow
def test_fmtl_warmup_on_a_cold_cache_then_a_fit_compiles_nothing(tmp_path):
    cache = str(tmp_path / "numba_cache")
    run = _python(
        "from fmtl.cli import main; raise SystemExit(main(['warmup']))", NUMBA_CACHE_DIR=cache
    )
    assert run.returncode == 0, run.stderr
    assert "done in" in run.stdout and "dense data" in run.stdout
    fit = _python(
        "import fmtl, scipy.sparse as sp\n"
        "from fmtl.datasets import make_multitask_classification\n"
        "X, y, t = make_multitask_classification(n_tasks=5, n_samples=20, n_features=6,"
        " random_state=1).stack()\n"
        "fmtl.MochaClassifier(outer_iters=2, inner_iters=3).fit(X, y, t)\n"
        "fmtl.MochaClassifier(outer_iters=2, inner_iters=3).fit(sp.csr_matrix(X), y, t)\n"
        "fmtl.FedAvgClassifier(rounds=3).fit(X, y, t)\n",
        NUMBA_CACHE_DIR=cache,
    )
    assert fit.returncode == 0, fit.stderr
    assert COLD_NOTE not in fit.stderr
