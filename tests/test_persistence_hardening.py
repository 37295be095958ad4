"""Model files: atomic writes, bounded loading and one exception for every malformed file
(issue 16, items 2-4). Every test here failed on the main before them."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import model_file_parts, write_model_file

from fmtl import LocalClassifier
from fmtl.datasets import make_multitask_classification
from fmtl.persistence import MAX_EXPANSION, ModelFileError, load_model, save_model


@pytest.fixture(scope="module")
def model():
    X, y, t = make_multitask_classification(
        n_tasks=3, n_samples=20, n_features=3, random_state=0
    ).stack()
    return LocalClassifier(alpha=0.1, random_state=0).fit(X, y, t), X, t


def _npy_header(shape, dtype="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    )
    return buf.getvalue()  # magic string included


def test_a_failed_save_leaves_the_existing_model_intact_and_no_temporary_file(
    model, tmp_path, monkeypatch
):
    est, X, t = model
    path = tmp_path / "model.npz"
    save_model(est, path)
    before = path.read_bytes()

    def disk_full(f, **arrays):
        f.write(b"PK\x03\x04 partial")  # what a full disk leaves behind
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fmtl.persistence.np.savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_model(est, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # the temporary file is gone
    monkeypatch.undo()
    np.testing.assert_array_equal(load_model(path).predict(X, t), est.predict(X, t))


def test_save_writes_through_a_temporary_file_renamed_over_the_target(
    model, tmp_path, monkeypatch
):
    est, _, _ = model
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.dirname(src), os.path.basename(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("fmtl.persistence.os.replace", spy)
    save_model(est, tmp_path / "m.npz")
    (folder, name, dst) = seen[0]
    assert folder == str(tmp_path) and name.startswith(".m.npz.") and name.endswith(".tmp")
    assert dst == str(tmp_path / "m.npz")


def test_a_decompression_bomb_is_refused_before_decompressing(model, tmp_path):
    est, _, _ = model
    good = tmp_path / "good.npz"
    save_model(est, good)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    # 256 MiB of zeros deflate to ~250 KB: a ratio of ~1000
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as dst:
        with dst.open("bomb2.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((32 << 20,)))
            chunk = bytes(1 << 20)
            for _ in range(256):
                f.write(chunk)
    size = bomb.stat().st_size
    assert size < (256 << 20) // MAX_EXPANSION
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="declares .* bytes of uncompressed data"):
            load_model(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # nothing near the declared 256 MiB was allocated


def test_a_declared_shape_larger_than_the_entry_is_refused_without_allocating(model, tmp_path):
    est, _, _ = model
    good = tmp_path / "good.npz"
    save_model(est, good)
    bad = tmp_path / "huge.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "coef_.npy":
                # the same entry, but its .npy header declares 10^12 values
                data = _npy_header((10**12,)) + bytes(64)
            dst.writestr(info.filename, data)
    with pytest.raises(ModelFileError, match="wrong shape"):
        load_model(bad)


@pytest.mark.slow  # 11 s: ~2,000 corrupted files loaded in turn
def test_every_single_byte_corruption_gives_a_model_file_error_or_the_same_model(model, tmp_path):
    # the structural bytes of the file (zip headers, .npy headers, the JSON header's
    # start, the central directory), each XOR-ed in turn: the result either loads as
    # the same model or raises ModelFileError, never another exception
    est, X, t = model
    good = tmp_path / "good.npz"
    save_model(est, good)
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        starts = [i.header_offset for i in zf.infolist()]
    positions = set(range(len(raw) - 400, len(raw)))  # central directory and its end
    for s in starts:
        positions.update(range(s, min(s + 200, len(raw))))  # local header + .npy header
    expected = est.predict(X, t)
    bad = tmp_path / "bad.npz"
    others = []
    for pos in sorted(positions):
        for flip in (0xFF, 0x01):
            data = bytearray(raw)
            data[pos] ^= flip
            bad.write_bytes(bytes(data))
            try:
                loaded = load_model(bad)
            except ModelFileError:
                continue
            except Exception as e:  # noqa: BLE001 - the property under test
                others.append((pos, flip, type(e).__name__, str(e)[:80]))
                continue
            assert np.array_equal(loaded.predict(X, t), expected), pos
    assert not others, others[:5]


def test_an_encrypted_or_truncated_file_is_a_model_file_error(model, tmp_path):
    est, _, _ = model
    good = tmp_path / "good.npz"
    save_model(est, good)
    raw = good.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in (10, len(raw) // 2, len(raw) - 30):
        cut.write_bytes(raw[:n])
        with pytest.raises(ModelFileError):
            load_model(cut)
    enc = tmp_path / "enc.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(enc, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    data = bytearray(enc.read_bytes())
    with zipfile.ZipFile(enc) as zf:
        first = zf.infolist()[0]
    data[first.header_offset + 6] |= 0x1  # the local header's "encrypted" flag
    cd = bytes(data).rfind(b"PK\x01\x02")  # and the central directory's (last entry)
    data[cd + 8] |= 0x1
    enc.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(enc)
    assert issubclass(ModelFileError, ValueError)


# ---------------------------------------------------- issue 29, item 4: unbounded reads


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_before_it_is_read():
    # zipfile used to read /dev/zero without end looking for the central directory
    with pytest.raises(ModelFileError, match="not a regular file"):
        load_model("/dev/zero")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    import threading

    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_model(fifo)
        except Exception as e:  # noqa: BLE001 - recorded for the assertion below
            outcome.append(e)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # the old behaviour: blocked until a writer came; unblock it
        with open(fifo, "wb"):
            pass
        worker.join(timeout=20)
        pytest.fail("load_model blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ModelFileError), outcome
    assert "not a regular file" in str(outcome[0])


def test_a_directory_and_a_missing_file_still_raise_oserrors(tmp_path):
    with pytest.raises(IsADirectoryError):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")


# --------------------------------------------------------- issue 29, item 9: file modes


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_new_model_file_gets_the_umask_mode_and_an_old_one_keeps_its_mode(model, tmp_path):
    # save used to write 0600 whatever the umask, and turned a 0644 file into 0600
    est, X, t = model
    old = os.umask(0o022)
    try:
        save_model(est, tmp_path / "new.npz")
        assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o644
        existing = tmp_path / "existing.npz"
        save_model(est, existing)
        os.chmod(existing, 0o640)
        save_model(est, existing)
        assert os.stat(existing).st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_saving_onto_a_symlink_replaces_its_target_and_keeps_the_link(model, tmp_path):
    est, X, t = model
    target = tmp_path / "models" / "v1.npz"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "current.npz"
    link.symlink_to(target)
    save_model(est, link)
    assert link.is_symlink() and link.resolve() == target.resolve()
    np.testing.assert_array_equal(load_model(target).predict(X, t), est.predict(X, t))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_empty_path_or_a_directory_is_refused_before_any_file_is_written(
    model, tmp_path, monkeypatch
):
    # save("") used to create its temporary file in the parent of the working directory
    est, X, t = model
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ValueError, match="empty path"):
        save_model(est, "")
    with pytest.raises(IsADirectoryError):
        save_model(est, work)
    assert list(tmp_path.iterdir()) == [work] and not list(work.iterdir())


# ---------------------------------- issue 29, item 7: crafted files with a valid checksum


def _crafted(model, tmp_path, edit):
    """A saved model, edited by ``edit(header, arrays)``, its checksum recomputed."""
    import json

    from fmtl.persistence import _checksum

    est, X, t = model
    save_model(est, tmp_path / "good.npz")
    arrays, header = model_file_parts(tmp_path / "good.npz")
    edit(header, arrays)
    header["arrays"] = {
        k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()
    }
    header = json.loads(json.dumps(header))
    header["sha256"] = _checksum(header, arrays)
    return write_model_file(tmp_path / "bad.npz", header, arrays)


def _set(name, value):
    def edit(header, arrays):
        arrays[name] = value(arrays[name])

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("coef_", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a)),
         "coef_ contains NaN or inf"),
        (_set("coef_", lambda a: np.full_like(a, np.inf)), "coef_ contains NaN or inf"),
        (_set("coef_", lambda a: a.astype(np.complex128)), "coef_ has dtype complex128"),
        (lambda h, a: h["params"].update(alpha={"t": "float", "v": -1.0}),
         r"alpha=-1.0 is not a positive finite number"),
        (lambda h, a: h.update(classes_dtype="|i1", classes=[{"t": "int", "v": 1000}] +
                               h["classes"][1:]), "malformed"),
    ],
)  # fmt: skip
def test_a_crafted_file_with_a_valid_checksum_is_a_model_file_error(
    model, tmp_path, edit, message
):
    # these loaded (NaN/inf/complex coef_, alpha=-1), or raised plain ValueError or
    # OverflowError naming no file
    bad = _crafted(model, tmp_path, edit)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(bad)
    assert "bad.npz" in str(info.value)


def _raw_header(model, tmp_path, edit_text):
    """A saved model whose JSON header text is edited by ``edit_text`` (the checksum is left
    as it was: the loader must refuse the file whatever it trips on first)."""
    import json

    est, X, t = model
    save_model(est, tmp_path / "good.npz")
    arrays, header = model_file_parts(tmp_path / "good.npz")
    return write_model_file(tmp_path / "bad.npz", edit_text(json.dumps(header)), arrays)


def test_task_labels_nested_without_end_are_a_model_file_error(model, tmp_path):
    # a label nested 600 tuples deep, with a valid checksum, raised RecursionError
    import sys

    def deep(header, arrays):
        label = {"t": "int", "v": 0}
        for _ in range(600):
            label = {"t": "tuple", "v": [label]}
        header["tasks"][0] = label

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # to write and checksum it; the loader runs at the default
    try:
        bad = _crafted(model, tmp_path, deep)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ModelFileError, match="bad.npz"):
        load_model(bad)


def test_a_number_json_cannot_hold_is_a_model_file_error(model, tmp_path):
    # "tol": 1e999 parses as inf; it raised a plain ValueError naming no file
    import re

    def edit(text):
        return re.sub(
            r'"tol": \{"t": "float", "v": [^}]*\}', '"tol": {"t": "float", "v": 1e999}', text
        )

    with pytest.raises(ModelFileError, match="bad.npz"):
        load_model(_raw_header(model, tmp_path, edit))
