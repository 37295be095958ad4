"""Files written atomically: model files and checkpoints share this one writer."""

from __future__ import annotations

import errno
import os
import stat
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
    removed if anything fails before the rename. The file gets the mode a plain ``open``
    would give it (``0o666`` less the umask), or keeps the mode of the file it replaces;
    a symbolic link at ``path`` stays, and the file it points to is replaced.

    Raises
    ------
    ValueError
        If ``path`` is empty.
    IsADirectoryError
        If ``path`` is a directory.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError("path must name a file, got an empty path")
    path = os.path.realpath(path)  # through a symlink to its target (the link stays)
    try:
        existing = os.stat(path).st_mode
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    else:
        if stat.S_ISDIR(existing):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        mode = stat.S_IMODE(existing)
    folder = os.path.dirname(path)
    if prefix is None:
        prefix = f".{os.path.basename(path)}."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)  # mkstemp's 0600 would make every saved file private
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


def _umask() -> int:
    """The process's umask, read without changing it where the platform allows (setting
    it to read it back would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current
