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





class StagedFiles:
    """Several output files that appear together or not at all.

    Files are written under a hidden folder inside ``root`` (same filesystem, so moving is a
    rename) through :meth:`path`; :meth:`commit` moves them into place. Leaving the ``with``
    block without committing (an error, an interrupt) removes the staging folder and the
    folders this run created, so a failed run leaves nothing behind.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._staged: list[tuple[Path, Path]] = []
        self._created: list[Path] = []
        self.staging: Path | None = None

    def __enter__(self) -> "StagedFiles":
        missing, p = [], Path(os.path.abspath(self.root))
        while not os.path.lexists(p):
            missing.append(p)
            p = p.parent
        self.root.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first
        self.staging = Path(tempfile.mkdtemp(prefix=".dotrestore-staging-", dir=self.root))
        return self

    def path(self, final: str | os.PathLike) -> Path:
        """Where to write the file that will end up at ``final`` (a path under ``root``)."""
        final = Path(final)
        staged = self.staging / final.relative_to(self.root)
        staged.parent.mkdir(parents=True, exist_ok=True)
        self._staged.append((staged, final))
        return staged

    def commit(self) -> None:
        for staged, final in self._staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
        self._staged.clear()
        self._remove_staging()
        self._created = []

    def _remove_staging(self) -> None:
        import shutil

        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.staging is None:
            return
        self._remove_staging()
        for folder in self._created:  # only folders this run made, and only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
__all__ = ["atomic_write", "atomic_path", "default_file_mode", "temporary_path", "commit", "StagedFiles"]
