"""An output folder held open: files are created and moved relative to one handle, never by path.

Checking paths once before the work cannot stop another process from swapping the output
folder for a symlink to the inputs' folder a moment later (``mv out moved; ln -s victim out``):
every later write by path would land on the inputs. So :class:`OutputFolder` opens the folder
once (``O_DIRECTORY | O_NOFOLLOW``), refuses it when it is no longer the folder that was checked
(device and inode), and everything after that goes through the handle (``dir_fd=``): a swap
after the open changes nothing we write. On top of that:

- a file whose device and inode belong to an input is never replaced, whatever path leads there;
- an existing file is replaced only with ``overwrite``; without it a new file is installed with
  a no-clobber ``link`` + ``unlink``, so a file that appeared while the run worked is kept and
  the run stops naming it;
- ``lock`` takes an exclusive, non-blocking ``flock`` on the folder (released when the process
  ends, however it ends): a second run into the same folder is refused at once.

Every refusal is an :class:`~dotrestore.errors.InputError` naming the path as the user gave it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import BinaryIO

from ...errors import InputError
from ..files import named, shortened, write_content

#: Opening a folder: never through a symlink at its last component, not inherited by programs we run.
O_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
#: Creating a file: exclusively (never truncating what is there), never through a symlink.
O_NEW_FILE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
              | getattr(os, "O_BINARY", 0))
_SYMLINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)  # EMLINK: BSDs' O_NOFOLLOW on a symlink

FileId = tuple[int, int]


def file_id(path: str | os.PathLike) -> FileId | None:
    """(st_dev, st_ino) of what ``path`` leads to (symlinks followed), None when it does not exist."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def file_ids(paths: Iterable[str | os.PathLike]) -> frozenset[FileId]:
    """The identities of the existing ``paths`` (the files a run must never replace)."""
    return frozenset(i for i in map(file_id, paths) if i is not None)


def make_folders(path: str | os.PathLike) -> list[Path]:
    """Create ``path`` and its missing parents one at a time; the folders this call made, deepest first.

    ``path`` should be absolute and free of ``..`` (``os.path.realpath``): ``x/../out`` would
    otherwise create an ``x`` that nothing removes.
    """
    path, missing = Path(path), []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    created = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:  # another process (another rank) made it meanwhile: not ours to remove
            continue
        created.append(folder)
    return created[::-1]


def open_folder(name: str | os.PathLike, *, dir_fd: int | None = None, shown: str | os.PathLike | None = None,
                expected: FileId | None = None) -> int:
    """A handle on the folder ``name`` (relative to ``dir_fd``); InputError when it is a symlink, not a
    folder, or (with ``expected``) not the folder that was checked."""
    shown = name if shown is None else shown
    try:
        fd = os.open(name, O_FOLDER, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _SYMLINK_ERRNOS:
            raise InputError(shown, "is a symlink or not a folder (it was replaced after the checks?): refusing "
                             "to write through it") from None
        raise InputError(shown, f"cannot be opened as a folder ({exc.strerror or exc})") from None
    if expected is not None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != expected:
            os.close(fd)
            raise InputError(shown, "is no longer the folder that was checked (moved or replaced while the run "
                             "started): refusing to write into it")
    return fd


def subfolder(dir_fd: int, name: str, shown: str | os.PathLike) -> tuple[int, bool]:
    """(handle, created) of the folder ``name`` inside ``dir_fd``, made when missing."""
    created = True
    try:
        os.mkdir(name, dir_fd=dir_fd)
    except FileExistsError:
        created = False
    return open_folder(name, dir_fd=dir_fd, shown=shown), created


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_tree(dir_fd: int, name: str) -> None:
    """Remove the entry ``name`` of folder ``dir_fd`` and all under it, never following a symlink."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, O_FOLDER, dir_fd=dir_fd)
    try:
        for entry in os.listdir(fd):
            remove_tree(fd, entry)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


class OutputFolder:
    """The folder a run writes into, opened once; see the module docstring.

    ``path`` is where it is (resolved: ``os.path.realpath``), ``name`` how messages name it (the
    path as given), ``expected`` the (device, inode) it had when it was checked (None: it did not
    exist), ``protected`` the identities of every file the run reads.
    """

    def __init__(self, path: str | os.PathLike, *, name: str | os.PathLike | None = None,
                 expected: FileId | None = None, protected: Iterable[FileId] = (), overwrite: bool = False,
                 lock: bool = False):
        self.path = Path(path)
        self.name = Path(name if name is not None else path)
        self.expected, self.protected = expected, frozenset(protected)
        self.overwrite, self.lock = overwrite, lock
        self.fd: int | None = None
        self._created: list[Path] = []
        self._subfolders: dict[PurePath, int] = {}
        self._made: list[PurePath] = []

    def shown(self, rel: PurePath | str = "") -> str:
        return str(self.name / rel) if str(rel) not in ("", ".") else str(self.name)

    def open(self) -> OutputFolder:
        """Create the folder (and missing parents), open it, check it is the one checked, lock it."""
        self._created = make_folders(self.path)
        self.fd = open_folder(self.path, shown=self.name, expected=None if self._created else self.expected)
        self._subfolders[PurePath()] = self.fd
        if self.lock:
            _lock(self.fd, self.name)
        return self

    def folder(self, rel: PurePath) -> int:
        """Handle of the subfolder ``rel`` (made, component by component, when missing)."""
        rel = PurePath(rel)
        if rel not in self._subfolders:
            parent = self.folder(rel.parent)
            fd, created = subfolder(parent, rel.name, self.shown(rel))
            self._subfolders[rel] = fd
            if created:
                self._made.append(rel)
        return self._subfolders[rel]

    def check(self, rel: PurePath) -> os.stat_result | None:
        """InputError unless ``rel`` may be written: not an input, not a folder, new unless ``overwrite``."""
        rel = PurePath(rel)
        parent = self._existing(rel.parent)
        st = None if parent is None else lstat_at(parent, rel.name)
        if st is None:
            return None
        if (st.st_dev, st.st_ino) in self.protected:
            raise InputError(self.shown(rel), "is one of the inputs (whatever path leads there): inputs are never "
                             "modified, even with --overwrite")
        if stat.S_ISDIR(st.st_mode):
            raise InputError(self.shown(rel), "is a folder; it would be replaced by an output file")
        if not self.overwrite:
            raise InputError(self.shown(rel), "already exists (it appeared while this run was working?); it is "
                             "replaced only with --overwrite")
        return st

    def _existing(self, rel: PurePath) -> int | None:
        if rel in self._subfolders:
            return self._subfolders[rel]
        parent = self._existing(rel.parent)
        if parent is None or lstat_at(parent, rel.name) is None:
            return None
        return self.folder(rel)

    def install(self, src_fd: int, src_name: str, rel: PurePath) -> bool:
        """Move ``src_name`` (in folder ``src_fd``) to ``rel``; True when it replaced a file."""
        rel = PurePath(rel)
        dst_fd = self.folder(rel.parent)
        while True:
            if self.check(rel) is not None:  # overwrite allowed: replace it (a file, never an input)
                os.replace(src_name, rel.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                return True
            try:  # no-clobber: fails if a file of that name appeared since the check
                os.link(src_name, rel.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            except FileExistsError:
                continue  # check again: refused without overwrite, replaced with it
            except (NotImplementedError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                os.replace(src_name, rel.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)  # no hard links here
                return False
            os.unlink(src_name, dir_fd=src_fd)
            return False

    def remove(self, rel: PurePath) -> None:
        """Remove the output ``rel`` (a file or a folder of ours); refuses an input."""
        rel = PurePath(rel)
        parent = self._existing(rel.parent)
        st = None if parent is None else lstat_at(parent, rel.name)
        if st is None:
            return
        if (st.st_dev, st.st_ino) in self.protected:
            raise InputError(self.shown(rel), "is one of the inputs: inputs are never modified, even with --overwrite")
        remove_tree(parent, rel.name)

    def close(self, keep: bool = True) -> None:
        """Close the handles (releasing the lock); ``keep=False`` removes the folders this run made, if empty."""
        if not keep:
            for rel in reversed(self._made):
                try:
                    os.rmdir(rel.name, dir_fd=self._subfolders[rel.parent])
                except OSError:
                    pass
        for fd in self._subfolders.values():
            os.close(fd)
        self._subfolders.clear()
        self.fd = None
        if not keep:
            for folder in self._created:  # only folders this run made, and only if still empty
                try:
                    os.rmdir(folder)
                except OSError:
                    break
        self._created, self._made = [], []


def write_file(path: str | os.PathLike, content: Callable[[BinaryIO], object] | bytes | str, *,
               protected: Iterable[FileId] = (), overwrite: bool = True) -> Path:
    """Write one file through its folder's handle (:class:`OutputFolder`): into a hidden temporary
    file first, fsync'ed, then moved into place unless it would replace an input or (without
    ``overwrite``) an existing file. Missing folders are made (and removed again on failure); an
    ``OSError`` (a full disk) names ``path``."""
    path = Path(path)
    folder = OutputFolder(os.path.realpath(path.parent), name=path.parent, protected=protected, overwrite=overwrite)
    tmp, done = f".{shortened(path.name, 14)}.{secrets.token_hex(4)}.tmp", False  # fits beside a 255-byte name
    try:
        folder.open()
        folder.check(PurePath(path.name))  # before the work of writing
        try:
            with os.fdopen(os.open(tmp, O_NEW_FILE, 0o666, dir_fd=folder.fd), "wb") as handle:  # umask applies
                write_content(handle, content)
                handle.flush()
                os.fsync(handle.fileno())
            folder.install(folder.fd, tmp, PurePath(path.name))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder.fd)
        done = True
    except OSError as exc:
        raise named(exc, path) from None
    finally:
        folder.close(keep=done)
    return path


def _lock(fd: int, name: Path) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(name, "another dotrestore run is writing into this folder: wait for it to finish or "
                         "choose another output folder") from None
    except OSError:  # a filesystem without flock (some network mounts): go on unlocked
        pass


__all__ = ["OutputFolder", "write_file", "file_id", "file_ids", "make_folders", "open_folder", "remove_tree",
           "lstat_at", "O_FOLDER", "O_NEW_FILE"]
