"""Several output files that appear together or not at all, written through one folder handle.

Files are written into a private hidden folder inside the output folder (same filesystem, so
moving is a rename) and moved into place by :meth:`StagedFiles.commit`. Everything goes
through the handles of :class:`~dotrestore.io.outputs.folder.OutputFolder` (``dir_fd=``), so a folder
swapped for a symlink after the checks is refused or not followed, an input is never replaced,
and an existing file only with ``overwrite``. Leaving without committing (an error, Ctrl-C,
SIGTERM) removes the staging folder, those of the other processes of the same run (``sweep``),
and the folders this run created.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import BinaryIO

from ..files import named, write_content
from .folder import O_NEW_FILE, FileId, OutputFolder, open_folder, remove_tree, subfolder

STAGING_PREFIX = ".dotrestore-staging-"


class StagedFiles:
    """Output files under ``root`` staged in a hidden folder; see the module docstring.

    ``root`` is the folder's resolved path, ``name`` the path that targets are given under (and
    messages show); ``expected``, ``protected``, ``overwrite`` and ``lock`` are those of
    :class:`~dotrestore.io.outputs.folder.OutputFolder`. ``staging`` names this process's staging
    folder; on failure every entry of ``root`` starting with ``sweep`` is removed too (the
    staging folders of the other processes of one torchrun run).
    """

    def __init__(self, root: str | os.PathLike, *, name: str | os.PathLike | None = None,
                 expected: FileId | None = None, protected: Iterable[FileId] = (), overwrite: bool = False,
                 lock: bool = False, staging: str | None = None, sweep: str | None = None):
        self.name = Path(name if name is not None else root)
        self.folder = OutputFolder(root, name=self.name, expected=expected, protected=protected,
                                   overwrite=overwrite, lock=lock)
        self.staging = staging or f"{STAGING_PREFIX}{secrets.token_hex(6)}"
        self.sweep = sweep
        self.committed = False
        self._staged: list[PurePath] = []
        self._dirs: dict[PurePath, int] = {}
        self._mutex = threading.Lock()  # the PNG writer's threads stage files concurrently

    def open(self) -> StagedFiles:
        self.folder.open()
        os.mkdir(self.staging, 0o700, dir_fd=self.folder.fd)
        self._dirs[PurePath()] = open_folder(self.staging, dir_fd=self.folder.fd, shown=self.name / self.staging)
        return self

    def relative(self, final: str | os.PathLike) -> PurePath:
        return PurePath(Path(final).relative_to(self.name))

    def _staging_dir(self, rel: PurePath) -> int:
        with self._mutex:
            return self._staging_dir_locked(rel)

    def _staging_dir_locked(self, rel: PurePath) -> int:
        if rel not in self._dirs:
            parent = self._staging_dir_locked(rel.parent)
            self._dirs[rel] = subfolder(parent, rel.name, self.name / self.staging / rel)[0]
        return self._dirs[rel]

    def write(self, final: str | os.PathLike, write: Callable[[BinaryIO], object] | bytes | str) -> Path:
        """Stage the content of ``final`` (a path under ``name``); an ``OSError`` names ``final``."""
        rel = self.relative(final)
        try:
            fd = os.open(rel.name, O_NEW_FILE, 0o666, dir_fd=self._staging_dir(rel.parent))  # umask applies
            with os.fdopen(fd, "wb") as handle:
                write_content(handle, write)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise named(exc, final) from None
        with self._mutex:
            self._staged.append(rel)
        return Path(final)

    def check(self) -> None:
        """InputError naming the first staged file that may not be moved into place (now)."""
        for rel in self._staged:
            self.folder.check(rel)

    def commit(self) -> None:
        """Move every staged file into place; on a refusal, the files already moved are taken back."""
        self.check()
        installed: list[PurePath] = []
        try:
            for rel in self._staged:
                if not self.folder.install(self._staging_dir(rel.parent), rel.name, rel):
                    installed.append(rel)
        except BaseException:
            for rel in installed:  # new files of ours only: nothing that was there is lost
                self.folder.remove(rel)
            raise
        self._staged.clear()
        self.committed = True

    def close(self) -> None:
        """Remove the staging folder (and on failure the run's others and the folders made); release."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        if self.folder.fd is not None:
            doomed = [self.staging]
            if self.sweep and not self.committed:
                doomed += [e for e in os.listdir(self.folder.fd) if e.startswith(self.sweep)]
            for entry in doomed:
                try:
                    remove_tree(self.folder.fd, entry)
                except OSError:
                    pass  # another process of this run removing it too
        self.folder.close(keep=self.committed)

    def __enter__(self) -> StagedFiles:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


__all__ = ["StagedFiles", "STAGING_PREFIX"]
