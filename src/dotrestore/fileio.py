"""Atomic file writes: the one way dotrestore creates an output file.

A file is written to a hidden temporary file in the destination folder, flushed and
fsync'ed, given the mode ``open()`` would give a new file (0o666 & ~umask; ``mkstemp``
creates 0600, which would hide outputs from a group that shares the folder), then moved over
the destination with ``os.replace``. Readers therefore see the old file or the complete new
one, never a partial file, and an error leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def default_file_mode() -> int:
    """0o666 with the process umask applied: the mode ``open(path, "w")`` gives a new file."""
    try:  # Linux: read it without touching it (os.umask is process-wide, racy with threads)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)  # elsewhere the only way to read the umask is to set it...
    os.umask(umask)          # ...and put it back at once
    return 0o666 & ~umask


def temporary_path(path: str | os.PathLike) -> Path:
    """A new, empty hidden file beside ``path`` (``.NAME.XXXX.tmp``) for staging its content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """fsync ``tmp``, give it the default mode and move it over ``path`` (atomic on one filesystem)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    For writers that insist on a file name (safetensors' ``save_file``, matplotlib).
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object] | bytes | str) -> Path:
    """Write ``path`` atomically; ``write`` is the content (bytes, or str as UTF-8) or a
    function given the open binary handle. Parent folders must exist."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            if callable(write):
                write(handle)
            else:
                handle.write(write.encode("utf-8") if isinstance(write, str) else write)
    return Path(path)


__all__ = ["atomic_write", "atomic_path", "default_file_mode", "temporary_path", "commit"]
