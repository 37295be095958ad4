"""Checkpoint / resume: a SIGKILLed fit resumes to the bit-identical result."""

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fmtl.federated import SystemsModel, mocha
from fmtl.federated.checkpoint import FILENAME, load_checkpoint

SETUP = """
import numpy as np
from fmtl.federated import SystemsModel, mocha
rng = np.random.default_rng(5)
Xs = [rng.normal(size=(20 + 3 * t, 6)) for t in range(5)]
ys = [np.where(X @ np.ones(6) + 0.5 * rng.normal(size=len(X)) > 0, 1.0, -1.0) for X in Xs]
KW = dict(lam=0.05, loss="hinge", outer_iters=3, inner_iters=10, random_state=11,
          systems=SystemsModel(heterogeneity="high", drop_prob=0.2))
"""
ns: dict = {}
exec(SETUP, ns)


def _same(a, b):
    assert np.array_equal(a.coef, b.coef)
    assert np.array_equal(a.sigma, b.sigma)
    assert np.array_equal(a.dual_coef, b.dual_coef)
    assert a.history.columns == b.history.columns
    for c in a.history.columns:
        if c != "wall_time":
            x, y = a.history[c], b.history[c]
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), c


def test_sigkill_and_resume_is_bit_identical(tmp_path):
    ref = mocha(ns["Xs"], ns["ys"], **ns["KW"])
    script = SETUP + textwrap.dedent(f"""
        import os, signal
        def die(rec):
            if rec["round"] == 17:
                os.kill(os.getpid(), signal.SIGKILL)
        mocha(Xs, ys, **KW, checkpoint_dir={str(tmp_path)!r}, checkpoint_every=3,
              callback=die)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    arrays, meta = load_checkpoint(tmp_path)
    assert json.loads(meta["position"])["rnd"] == 15  # the last checkpoint before the kill
    resumed = mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=tmp_path, checkpoint_every=3)
    _same(ref, resumed)
    # the final checkpoint is the finished fit: resuming again changes nothing
    again = mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=tmp_path)
    _same(ref, again)


def test_checkpoint_every_round_in_process(tmp_path):
    ref = mocha(ns["Xs"], ns["ys"], **ns["KW"])

    # an exception escaping the callback at round 7 interrupts the fit
    class Stop(Exception):
        pass

    def boom(rec):
        if rec["round"] == 7:
            raise Stop

    with pytest.raises(Stop):
        mocha(
            ns["Xs"],
            ns["ys"],
            **ns["KW"],
            checkpoint_dir=tmp_path,
            checkpoint_every=1,
            callback=boom,
        )
    _same(ref, mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=tmp_path, checkpoint_every=1))


def _checkpoint(tmp_path):
    mocha(
        ns["Xs"],
        ns["ys"],
        **{**ns["KW"], "outer_iters": 1, "inner_iters": 3},
        checkpoint_dir=tmp_path,
        checkpoint_every=1,
    )
    return tmp_path / FILENAME


def test_corrupted_checkpoint_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    raw = bytearray(path.read_bytes())
    # flip bits inside the stored arrays (past the zip local header)
    for k in range(len(raw) // 2, len(raw) // 2 + 8):
        raw[k] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(tmp_path)


def test_torn_checkpoint_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match="unreadable|torn"):
        mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=tmp_path)


def test_tampered_array_fails_the_checksum(tmp_path):
    path = _checkpoint(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["alpha"] = arrays["alpha"] + 1e-12
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="checksum"):
        load_checkpoint(tmp_path)


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    _checkpoint(tmp_path)
    with pytest.raises(ValueError, match="another problem"):
        mocha(ns["Xs"], ns["ys"], **{**ns["KW"], "lam": 0.1}, checkpoint_dir=tmp_path)
    # resume=False starts afresh and overwrites
    res = mocha(
        ns["Xs"], ns["ys"], **{**ns["KW"], "lam": 0.1}, checkpoint_dir=tmp_path, resume=False
    )
    assert len(res.history) == 30


def test_checkpoint_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_dir"):
        mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_every=2)
    with pytest.raises(ValueError, match="checkpoint_every"):
        mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=tmp_path, checkpoint_every=-1)


def test_systems_model_repr_is_stable():
    # the fingerprint uses repr(SystemsModel); equal models must compare equal
    assert repr(SystemsModel(drop_prob=0.2)) == repr(SystemsModel(drop_prob=0.2))


@pytest.mark.parametrize("name", ["cocoa", "mbsdca", "mbsgd"])
def test_baselines_resume_bit_identically(name, tmp_path):
    import fmtl.federated as F

    fn = getattr(F, name)
    kw = dict(
        lam=0.05,
        loss="hinge",
        rounds=12,
        random_state=3,
        systems=SystemsModel(drop_prob=0.3),
        eval_every=2,
    )
    ref = fn(ns["Xs"], ns["ys"], **kw)

    class Stop(Exception):
        pass

    def boom(rec):
        if rec["round"] == 6:
            raise Stop

    with pytest.raises(Stop):
        fn(ns["Xs"], ns["ys"], **kw, checkpoint_dir=tmp_path, checkpoint_every=5, callback=boom)
    _same(ref, fn(ns["Xs"], ns["ys"], **kw, checkpoint_dir=tmp_path, checkpoint_every=5))


def test_orphaned_temporary_files_are_removed_when_a_fit_starts(tmp_path):
    # a write killed before its rename leaves .checkpoint-*.tmp behind (issue 16: 24 files,
    # 324.5 MB after 30 kills); the next fit on the directory removes them
    _checkpoint(tmp_path)
    for k in range(3):
        (tmp_path / f".checkpoint-orphan{k}.tmp").write_bytes(b"\0" * 1000)
    (tmp_path / "notes.txt").write_text("not ours")
    res = mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=tmp_path, resume=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME, "notes.txt"]
    _same(res, mocha(ns["Xs"], ns["ys"], **ns["KW"]))


def test_a_checkpoint_of_another_seed_is_refused(tmp_path):
    _checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"another problem.*random_state"):
        mocha(ns["Xs"], ns["ys"], **{**ns["KW"], "random_state": 12}, checkpoint_dir=tmp_path)
