"""Checkpoints of iterative fits: ``.npz`` arrays plus a JSON header, written atomically.

A checkpoint is loaded with ``allow_pickle=False``; its header records a SHA-256 of every
array, so a torn or modified file is refused instead of being half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .._files import write_atomically
from .history import History

FORMAT = "fmtl-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.npz"
LOCKNAME = ".fit.lock"  # held (flock) by the one fit that writes the directory


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(directory: str | Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``arrays`` and the JSON-able ``meta`` to ``directory/checkpoint.npz`` atomically
    (temporary file in the same directory, fsync, then ``os.replace``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta,
        "sha256": _digest(arrays),
    }
    write_atomically(
        directory / FILENAME,
        lambda f: np.savez(f, __header__=np.array(json.dumps(header)), **arrays),
        prefix=".checkpoint-",  # what remove_orphans looks for
    )
    return directory / FILENAME


def lock_directory(directory: str | Path) -> int | None:
    """Take the exclusive lock of a checkpoint directory for one fit; returns the lock's
    file descriptor (closing it releases the lock, and so does the process's end, killed or
    not), or None where the platform has no ``flock``.

    Raises
    ------
    RuntimeError
        If another fit (another process or thread) holds it: two fits writing one
        directory would replace each other's checkpoint and delete each other's
        temporary files.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one writer per directory is the user's to keep
        return None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCKNAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RuntimeError(
            f"checkpoint_dir {str(directory)!r} is in use by another running fit (process "
            f"{owner}); give each concurrent fit its own checkpoint_dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def remove_orphans(directory: str | Path) -> int:
    """Delete the temporary files that writes killed before their rename left in
    ``directory`` (``.checkpoint-*.tmp``); returns how many. A fit holds the directory's
    lock (:func:`lock_directory`) before it calls this, so every such file is an orphan."""
    removed = 0
    for tmp in Path(directory).glob(".checkpoint-*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def load_checkpoint(directory: str | Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """``(arrays, meta)`` from ``directory/checkpoint.npz``, or None if there is none.

    Raises
    ------
    ValueError
        If the file is not a complete, unmodified fmtl checkpoint of a supported version.
    """
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zip errors, truncated members, pickled objects
        raise ValueError(f"checkpoint {path} is unreadable (torn or corrupted): {e}") from e
    try:
        header = json.loads(str(arrays.pop("__header__")))
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint {path} has no valid header") from e
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not an fmtl checkpoint")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format version {header['format_version']}; "
            f"this fmtl reads up to {FORMAT_VERSION}: upgrade fmtl"
        )
    if _digest(arrays) != header.get("sha256"):
        raise ValueError(
            f"checkpoint {path} failed its checksum: the file was modified or "
            "corrupted; refusing to resume from it"
        )
    return arrays, header["meta"]


def history_to_arrays(history: History) -> tuple[dict[str, np.ndarray], dict]:
    """Columns of a History as arrays (``hist/<column>``) plus the column list."""
    cols = history.columns
    return (
        {f"hist/{c}": history[c] for c in cols} if len(history) else {},
        {"history_columns": cols, "history_len": len(history)},
    )


def history_from_arrays(arrays: dict[str, np.ndarray], meta: dict) -> History:
    h = History()
    cols = meta["history_columns"]
    for k in range(meta["history_len"]):
        rec = {}
        for c in cols:
            v = arrays[f"hist/{c}"][k]
            rec[c] = v.copy() if np.ndim(v) else v.item()
        h.append(**rec)
    return h


def rng_state(rng: np.random.Generator) -> dict:
    return {"bit_generator": type(rng.bit_generator).__name__, "state": rng.bit_generator.state}


def restore_rng(saved: dict) -> np.random.Generator:
    name = saved["bit_generator"]
    if name not in ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"):
        raise ValueError(f"checkpoint has an unknown bit generator {name!r}")
    bg = getattr(np.random, name)()
    bg.state = saved["state"]
    return np.random.Generator(bg)


def seed_key(random_state):
    """What a fingerprint records of ``random_state``: an integer seed as is, a Generator's
    (or other seed's) initial bit-generator state, nothing for None (fresh entropy: a
    resumed fit continues the saved stream, as it always did)."""
    if random_state is None:
        return None
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return int(random_state)
    try:
        return rng_state(np.random.default_rng(random_state))
    except (TypeError, ValueError):
        return repr(random_state)


def fingerprint(tasks, algorithm: str, **settings) -> dict:
    """What a checkpoint must match to be resumed: the data (digest) and every setting."""
    h = hashlib.sha256()
    for a in (tasks.Xd, tasks.data, tasks.indices, tasks.indptr, tasks.y, tasks.offsets):
        h.update(np.ascontiguousarray(a).tobytes())
    return {
        "algorithm": algorithm,
        "data_sha256": h.hexdigest(),
        **{
            k: (
                hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
                if isinstance(v, np.ndarray)
                # np.float64(0.1) and 0.1 are the same setting (their reprs differ)
                else repr(v.item() if isinstance(v, np.generic) else v)
            )
            for k, v in settings.items()
        },
    }


class Checkpointer:
    """Saves and restores an algorithm's state (arrays, loop position, RNG, systems
    counters, History) in ``directory`` every ``every`` rounds and at the end."""

    def __init__(self, directory, every: int, fingerprint) -> None:
        if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 0:
            raise ValueError(f"checkpoint_every must be an integer >= 0, got {every!r}")
        if directory is None and every:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        # a callable fingerprint is only evaluated when checkpointing (it hashes the data)
        if callable(fingerprint):
            fingerprint = fingerprint() if directory is not None else {}
        self.directory, self.every, self.fingerprint = directory, int(every), fingerprint
        if directory is not None:
            self._lock = lock_directory(directory)
            remove_orphans(directory)

    _lock: int | None = None  # the directory lock's descriptor (a class default, so that
    # __del__ of an instance whose __init__ raised before taking it has nothing to release)

    def release(self) -> None:
        """Release the directory's lock (after the final checkpoint; also on garbage
        collection, so a fit that raised frees it too)."""
        if self._lock is not None:
            fd, self._lock = self._lock, None
            os.close(fd)

    def __del__(self) -> None:
        self.release()

    @classmethod
    def for_fit(
        cls, directory, every: int, tasks, algorithm: str, random_state, **settings
    ) -> Checkpointer:
        """The Checkpointer of one fit: its checkpoint is resumed only by a fit of the same
        data (digest), ``algorithm``, ``settings`` and seed (:func:`seed_key`)."""
        return cls(
            directory,
            every,
            lambda: fingerprint(tasks, algorithm, random_state=seed_key(random_state), **settings),
        )

    def resume(self, enabled: bool, runtime, rec, pos: dict, current: dict | None = None):
        """Restore ``runtime``, ``rec`` and ``pos`` in place; return ``(arrays, rng)`` of
        the saved state, or None when there is nothing to resume. ``current``: the fit's
        state arrays, which the saved ones must match in shape."""
        if self.directory is None or not enabled:
            return None
        state = load_checkpoint(self.directory)
        if state is None:
            return None
        arrays, meta = state
        saved = meta.get("fingerprint", {})
        if saved != self.fingerprint:
            diff = sorted(
                k
                for k in set(saved) | set(self.fingerprint)
                if saved.get(k) != self.fingerprint.get(k)
            )
            raise ValueError(
                f"the checkpoint in {self.directory} belongs to another problem "
                f"or settings (differs in {diff}); use another checkpoint_dir "
                "or resume=False"
            )
        for k, a in (current or {}).items():
            if k not in arrays or arrays[k].shape != np.shape(a):
                found = arrays[k].shape if k in arrays else "none"
                raise ValueError(
                    f"checkpoint array {k!r} has shape {found}, expected {np.shape(a)}"
                )
        try:
            runtime.reported[:] = arrays["reported"]
            if "failures" in arrays:  # checkpoints before it was saved lack it
                runtime.failures[:] = arrays["failures"]
            rec.history = history_from_arrays(arrays, meta)
            position = json.loads(meta["position"])
        except (KeyError, ValueError, IndexError) as e:
            raise ValueError(f"checkpoint in {self.directory} is incomplete: {e}") from e
        rec.est_time = float(meta["est_time"])
        rec.t0 -= meta["wall_time"]
        pos.update({k: (float(v) if isinstance(v, str) else v) for k, v in position.items()})
        return arrays, restore_rng(meta["rng"])

    def maybe_save(self, pos: dict, arrays: dict, rng, runtime, rec) -> None:
        if self.directory is not None and self.every and pos["rnd"] % self.every == 0:
            self.save(pos, arrays, rng, runtime, rec)

    def save(self, pos: dict, arrays: dict, rng, runtime, rec) -> None:
        if self.directory is None:
            return
        hist_arrays, hist_meta = history_to_arrays(rec.history)
        # floats as repr strings: exact, and inf/nan survive JSON
        position = {k: repr(v) if isinstance(v, float) else v for k, v in pos.items()}
        meta = {
            "fingerprint": self.fingerprint,
            "rng": rng_state(rng),
            "position": json.dumps(position),
            "est_time": repr(rec.est_time),
            "wall_time": rec.elapsed(),
            **hist_meta,
        }
        save_checkpoint(
            self.directory,
            # the failure counts too: max_failures counts over the whole fit, resumed or not
            {**arrays, "reported": runtime.reported, "failures": runtime.failures, **hist_arrays},
            meta,
        )
