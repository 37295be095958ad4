"""Files written atomically: model files and checkpoints share this one writer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def write_atomically(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], prefix: str | None = None
) -> None:
    """Write a file through ``write(f)`` into a temporary file in the same directory,
    flush and fsync it, then rename it over ``path``: a crash, a full disk or a size limit
    leaves either the old file or the new one at ``path``, never a partial one.

    The temporary file is ``<prefix>XXXX.tmp`` (default prefix ``.<name>.``); it is
    removed if anything fails before the rename.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if prefix is None:
        prefix = f".{os.path.basename(path)}."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (not possible on every platform)
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
