"""Checkpoint / resume: a SIGKILLed fit resumes to the bit-identical result."""

import json
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from fmtl.federated import SystemsModel, mocha
from fmtl.federated.checkpoint import FILENAME, LOCKNAME, load_checkpoint

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
    # flip bits inside the stored duals (not the middle of the file: that can fall on a
    # local zip header's size fields, which zipfile ignores in favour of the directory's)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("alpha.npy")
    start = info.header_offset + len(info.FileHeader()) + info.compress_size // 2
    for k in range(start, start + 8):
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
    # the lock file stays (deleting a lock file races with a fit that opens it)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCKNAME, FILENAME, "notes.txt"]
    _same(res, mocha(ns["Xs"], ns["ys"], **ns["KW"]))


def test_a_checkpoint_of_another_seed_is_refused(tmp_path):
    _checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"another problem.*random_state"):
        mocha(ns["Xs"], ns["ys"], **{**ns["KW"], "random_state": 12}, checkpoint_dir=tmp_path)


# -- every algorithm function checkpoints (issue 16, item 5) -----------------------------


def _personalized_cases():
    from fmtl.federated.ditto import ditto
    from fmtl.federated.fedavg import fedavg
    from fmtl.federated.fedrep import fedrep
    from fmtl.federated.perfedavg import perfedavg
    from fmtl.federated.pfedhn import pfedhn
    from fmtl.federated.pfedme import pfedme

    yr = [X @ np.ones(6) for X in ns["Xs"]]
    return {
        "fedavg": (fedavg, ns["ys"], dict(lam=0.05, finetune_epochs=1.0)),
        "ditto": (ditto, ns["ys"], dict(lam=0.05)),
        "pfedme": (pfedme, ns["ys"], dict(lam=0.05, local_passes=1.0)),
        "pfedme_exact": (pfedme, ns["ys"], dict(lam=0.05)),
        "perfedavg": (perfedavg, yr, dict(lam=0.05, a=0.01, beta=0.01)),
        "pfedhn_rff": (
            pfedhn,
            yr,
            dict(lam=0.05, hypernetwork="rff", n_components=20, lr=0.05),
        ),
        # the hinge heads warm-start from saved duals, the logistic ones from saved heads
        "fedrep_hinge": (fedrep, ns["ys"], dict(rank=2, lam=0.05, loss="hinge")),
        "fedrep_logistic": (fedrep, ns["ys"], dict(rank=2, lam=0.05, loss="logistic")),
    }


PERSONALIZED = list(_personalized_cases())


@pytest.mark.parametrize("name", PERSONALIZED)
def test_personalized_methods_resume_bit_identically(name, tmp_path):
    fn, ys, kw = _personalized_cases()[name]
    kw = dict(
        kw,
        rounds=12,
        eval_every=2,
        random_state=3,
        systems=SystemsModel(heterogeneity="high", drop_prob=0.2),
    )
    ref = fn(ns["Xs"], ys, **kw)

    class Stop(Exception):
        pass

    def boom(rec):
        if rec["round"] == 8:  # after the checkpoint of round 6
            raise Stop

    with pytest.raises(Stop):
        fn(ns["Xs"], ys, **kw, checkpoint_dir=tmp_path, checkpoint_every=3, callback=boom)
    assert json.loads(load_checkpoint(tmp_path)[1]["position"])["rnd"] == 6
    resumed = fn(ns["Xs"], ys, **kw, checkpoint_dir=tmp_path, checkpoint_every=3)
    again = fn(ns["Xs"], ys, **kw, checkpoint_dir=tmp_path)  # the finished fit
    for res in (resumed, again):
        assert np.array_equal(ref.coef, res.coef)
        assert ref.history.columns == res.history.columns
        for c in ref.history.columns:
            if c != "wall_time":
                assert np.array_equal(ref.history[c], res.history[c], equal_nan=True), c
    with pytest.raises(ValueError, match=r"another problem.*random_state"):
        fn(ns["Xs"], ys, **{**kw, "random_state": 4}, checkpoint_dir=tmp_path)


def test_a_fit_stopped_early_resumes_as_finished(tmp_path):
    # pFedMe's grad_tol ends the fit before `rounds`: the final checkpoint says so, and a
    # resumed fit returns it instead of running the remaining rounds
    from fmtl.federated.pfedme import pfedme

    kw = dict(lam=0.05, rounds=200, grad_tol=1e-3, random_state=0)
    ref = pfedme(ns["Xs"], ns["ys"], **kw, checkpoint_dir=tmp_path)
    assert len(ref.history) < 200
    again = pfedme(ns["Xs"], ns["ys"], **kw, checkpoint_dir=tmp_path)
    assert len(again.history) == len(ref.history)
    assert np.array_equal(again.coef, ref.coef)


def test_the_failure_counts_are_checkpointed(tmp_path):
    # max_failures counts over the whole fit: a resumed fit must not forget earlier failures
    from fmtl.federated._rounds import RoundLoop

    tasks_n = np.array([5, 5])

    def run(rounds, every):
        loop = RoundLoop(tasks_n, SystemsModel(max_failures=2), 4.0, 0)
        loop.checkpoint(tmp_path, every, True, _tiny_tasks(), "test", 0, rounds=rounds)
        w = np.zeros(1)
        loop.run(
            rounds,
            lambda t, s, h: np.array([np.nan]) if t == 0 else w,
            lambda u, ok, h: None,
            lambda: {},
            state=lambda: {"w": w},
            restore=lambda a: None,
        )

    with pytest.raises(RuntimeError, match="max_failures"):
        run(5, 1)
    assert load_checkpoint(tmp_path)[0]["failures"].tolist() == [2, 0]
    with pytest.raises(RuntimeError, match="max_failures"):
        run(5, 1)  # the third failure, in the first round after resuming
    assert json.loads(load_checkpoint(tmp_path)[1]["position"])["rnd"] == 2


def _tiny_tasks():
    from fmtl.federated._loop import as_tasks

    return as_tasks([np.ones((5, 1)), np.ones((5, 1))], [np.ones(5), np.ones(5)])


# arguments that do not change a fit's result (or, for warm_start, are documented to give
# way to a checkpoint); every other argument of an algorithm function must be in its
# checkpoint's fingerprint
NOT_IN_FINGERPRINT = {
    "Xs",
    "ys",
    "n_threads",
    "executor",
    "callback",
    "checkpoint_dir",
    "checkpoint_every",
    "resume",
    "warm_start",
    "max_samples",  # kernel MOCHA's size guard
    "sigma_solver",  # a checkpoint is always the alternation's (lbfgs refuses checkpoint_dir)
}
# arguments recorded under another name
FINGERPRINT_NAME = {"gamma": "loss", "check_every": "check"}


def _fingerprint_cases():
    import fmtl.federated as F
    from fmtl.federated.kernel_mocha import kernel_mocha

    cases = _personalized_cases()
    del cases["ditto"]  # FedAvg's checkpoint (the personal solve is redone from it)
    cases = {k: (fn, ys, dict(kw, rounds=2)) for k, (fn, ys, kw) in cases.items()}
    small = dict(lam=0.05)
    cases.update(
        # local_work and ridge are recorded only off their defaults (old checkpoints resume)
        mocha=(
            F.mocha,
            ns["ys"],
            dict(small, outer_iters=1, inner_iters=2, local_work="auto", ridge=0.5),
        ),
        kernel_mocha=(kernel_mocha, ns["ys"], dict(small, outer_iters=1, inner_iters=2)),
        cocoa=(F.cocoa, ns["ys"], dict(small, rounds=2)),
        mbsdca=(F.mbsdca, ns["ys"], dict(small, rounds=2)),
        mbsgd=(F.mbsgd, ns["ys"], dict(small, rounds=2)),
    )
    return cases


@pytest.mark.parametrize("name", list(_fingerprint_cases()))
def test_every_argument_that_changes_the_fit_is_in_the_fingerprint(name, tmp_path):
    import inspect

    fn, ys, kw = _fingerprint_cases()[name]
    fn(ns["Xs"], ys, **kw, random_state=0, checkpoint_dir=tmp_path)
    recorded = set(load_checkpoint(tmp_path)[1]["fingerprint"])
    expected = {
        FINGERPRINT_NAME.get(p, p)
        for p in inspect.signature(fn).parameters
        if p not in NOT_IN_FINGERPRINT
    }
    assert expected - recorded == set()


def test_a_callable_kernel_is_fingerprinted_by_its_gram_matrix(tmp_path):
    # two lambdas share a __qualname__; their Gram matrices differ
    from fmtl.federated.kernel_mocha import kernel_mocha

    kw = dict(lam=0.05, outer_iters=1, inner_iters=3, random_state=0, checkpoint_dir=tmp_path)
    kernel_mocha(ns["Xs"], ns["ys"], kernel=lambda X, Y: X @ Y.T, **kw)
    with pytest.raises(ValueError, match=r"another problem.*gram"):
        kernel_mocha(ns["Xs"], ns["ys"], kernel=lambda X, Y: 2.0 * X @ Y.T, **kw)


def test_a_numpy_scalar_setting_resumes_its_python_twin(tmp_path):
    # np.float64(1e-6) and 1e-6 are the same sigma_floor: the fingerprint compared reprs
    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(20, 3)) for _ in range(3)]
    ys = [np.sign(X[:, 0] + 0.1) for X in Xs]
    kw = dict(outer_iters=2, inner_iters=3, random_state=0, checkpoint_dir=tmp_path)
    first = mocha(Xs, ys, 0.1, sigma_floor=1e-6, local_theta=0.0, **kw)
    again = mocha(Xs, ys, 0.1, sigma_floor=np.float64(1e-6), local_theta=np.float64(0), **kw)
    assert np.array_equal(first.coef, again.coef)  # the finished checkpoint, as is
    with pytest.raises(ValueError, match="sigma_floor"):
        mocha(Xs, ys, 0.1, sigma_floor=np.float64(1e-5), **kw)  # another value: refused


# -- one fit per checkpoint directory (issue 29, item 1) ---------------------------------

_WRITER = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from conftest import random_tasks
from fmtl.federated import mocha
Xs, ys = random_tasks(m=4, n=200, d=6, seed=0)
print("started", flush=True)
res = mocha(Xs, ys, 0.01, outer_iters=30, inner_iters=20, random_state=0,
            checkpoint_dir={d!r}, checkpoint_every=1)
print("done", res.history["gap"].shape[0], flush=True)
"""


def test_a_second_fit_on_a_busy_directory_is_refused_and_the_first_survives(tmp_path):
    # issue 29: the second fit used to delete the running fit's temporary file, which then
    # died with FileNotFoundError on its rename
    import subprocess
    import sys
    import time
    from pathlib import Path

    d = tmp_path / "ckpt"
    code = _WRITER.format(tests=str(Path(__file__).parent), d=str(d))
    first = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (d / FILENAME).exists():  # the first fit holds the lock and has saved
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first fit wrote no checkpoint"
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match="in use by another running fit"):
            mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=d, checkpoint_every=1)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-3000:]
    assert "done 600" in out
    # once the first fit has ended, the directory is free again (its checkpoint is
    # another problem's, so a resume is refused as before, and resume=False starts over)
    res = mocha(ns["Xs"], ns["ys"], **ns["KW"], checkpoint_dir=d, resume=False)
    _same(res, mocha(ns["Xs"], ns["ys"], **ns["KW"]))


def test_two_threads_cannot_share_a_checkpoint_directory(tmp_path):
    from fmtl.federated.checkpoint import Checkpointer

    held = Checkpointer(tmp_path, 1, {})
    with pytest.raises(RuntimeError, match="in use"):
        Checkpointer(tmp_path, 1, {})
    held.release()
    Checkpointer(tmp_path, 1, {}).release()  # free again
