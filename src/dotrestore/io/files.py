"""Atomic file writes by path, and reading only regular files.

A file is written to a hidden temporary file in the destination folder, flushed and
fsync'ed, given the mode ``open()`` would give a new file (0o666 & ~umask; ``mkstemp``
creates 0600, which would hide outputs from a group that shares the folder), then moved over
the destination with ``os.replace``. Readers therefore see the old file or the complete new
one, never a partial file, and an error leaves nothing behind; an ``OSError`` (a full disk)
names the destination. The outputs a user asked for go through a folder handle instead
(:mod:`.folder`, :mod:`.staged`); these path-based writes serve staging folders and scratch files.
Where a writer outside our code writes a staging file (FFmpeg's muxer, an encoder), its errors
name that hidden file; :func:`staged_as` shows them about the output instead.
:func:`open_regular` opens an input without ever blocking on a FIFO.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for reading in binary mode; InputError naming it unless it is a regular file.

    Opened without blocking and checked on the open handle: a FIFO (which would wait forever for
    a writer), a socket or a device is refused at once, even one put in place after a check.
    """
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0))
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(path, "is not a regular file (a FIFO, socket or device is never read)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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


#: Bytes in one file name on the file systems we meet (ext4, XFS, Btrfs, APFS, NTFS in UTF-16 units).
NAME_MAX = 255


def shortened(name: str, room: int) -> str:
    """``name`` cut (at a character boundary) so that it and ``room`` more bytes fit in one file name:
    a staging file beside an output whose own name is 240-255 bytes long must still be creatable."""
    encoded = name.encode("utf-8", "surrogateescape")
    keep = max(1, NAME_MAX - room)
    return name if len(encoded) <= keep else encoded[:keep].decode("utf-8", "ignore")


def temporary_path(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A new, empty hidden file beside ``path`` (``.NAME.XXXX.tmp``, or ``suffix``) for staging its content.

    NAME is shortened when needed: the staging name fits wherever ``path``'s name fits. An
    ``OSError`` names ``path``."""
    path = Path(path)
    room = 2 + 8 + len(suffix.encode("utf-8", "surrogateescape"))  # the dots, mkstemp's 8 characters, the suffix
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{shortened(path.name, room)}.", suffix=suffix, dir=path.parent)
    except OSError as exc:  # no inode left: mkstemp's error names the hidden file it tried
        raise named(exc, path) from None
    os.close(fd)
    return Path(tmp)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """fsync ``tmp``, give it the default mode and move it over ``path`` (atomic on one filesystem).

    An ``OSError`` (a full disk at the fsync, another file system) names ``path``, not ``tmp``."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        raise named(exc, path) from None
    return Path(path)


def named(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` naming ``path`` when it names no file, or names a temporary file of ours.

    A full disk surfaces from a writer's ``write`` call without a file name; the message must
    name the file being written.
    """
    if exc.filename is None or Path(str(exc.filename)).name.startswith("."):
        return type(exc)(exc.errno, exc.strerror or str(exc), str(path)) if exc.errno else OSError(
            errno.EIO, str(exc), str(path))
    return exc


def output_error(exc: BaseException, staged: Mapping[str | os.PathLike, str | os.PathLike]) -> BaseException:
    """``exc`` as the user should read it: about the output they named, never its hidden staging file.

    ``staged`` maps staging files to the outputs they become. An error carrying a file name and
    a reason (an ``OSError``; FFmpeg's errors, which name the file its muxer writes) about a
    staging file is about its output: an ``OSError`` stays one (naming the output), any other
    becomes an :class:`InputError` ("cannot be written"). One naming no file (a full disk's
    ``write``, an encoder's failure) is about the output when every staging file is one
    output's. An :class:`InputError` that names a staging file names the output instead.
    Anything else is returned as it is.
    """
    finals = {os.fspath(k): Path(v) for k, v in staged.items()}
    if isinstance(exc, InputError):
        subject, problem = exc.subject, exc.problem
        for hidden, final in finals.items():
            subject = str(final) if subject == hidden else subject
            problem = problem.replace(hidden, str(final)).replace(Path(hidden).name, final.name)
        return exc if (subject, problem) == (exc.subject, exc.problem) else type(exc)(subject, problem)
    reason = getattr(exc, "strerror", None)
    if reason is None or not hasattr(exc, "filename"):
        return exc
    filename = exc.filename
    only = set(finals.values())
    final = finals.get(os.fspath(filename)) if filename is not None else (only.pop() if len(only) == 1 else None)
    if final is None:
        return exc
    if isinstance(exc, OSError):
        return type(exc)(exc.errno, reason, str(final))
    return InputError(final, f"cannot be written: {reason}")


@contextlib.contextmanager
def staged_as(staged: Mapping[str | os.PathLike, str | os.PathLike]) -> Iterator[None]:
    """Within the block, an error about a staging file is raised about its output (:func:`output_error`)."""
    try:
        yield
    except Exception as exc:  # Ctrl-C and SIGTERM pass as they are
        shown = output_error(exc, staged)
        if shown is exc:
            raise
        raise shown from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    For writers that insist on a file name (matplotlib). An ``OSError`` names ``path``.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path)
    except OSError as exc:
        raise named(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_content(handle: BinaryIO, write: Callable[[BinaryIO], object] | bytes | str) -> None:
    """Write ``write`` into ``handle``: bytes, str (as UTF-8) or a function given the handle."""
    if callable(write):
        write(handle)
    else:
        handle.write(write.encode("utf-8") if isinstance(write, str) else write)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object] | bytes | str) -> Path:
    """Write ``path`` atomically; ``write`` is the content (bytes, or str as UTF-8) or a
    function given the open binary handle. Parent folders must exist. An ``OSError`` (a full
    disk) names ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write_content(handle, write)
    return Path(path)


__all__ = ["atomic_write", "atomic_path", "default_file_mode", "temporary_path", "shortened", "NAME_MAX",
           "commit", "named", "output_error", "staged_as", "write_content",
           "open_regular"]
