"""The one output guard of every command that writes (fit, apply, experiment, demo).

Checked before any slow work, so a refused output costs nothing and leaves nothing:

- an output is never one of the command's inputs, whatever path leads to it (symlinks, hard
  links, ``..``), with or without ``--overwrite``: :func:`check_not_input`;
- an output location is never an input location (a file or a folder as the user gave it, under
  any spelling: ``dir/.``, ``dir/../dir``, a symlink to it), and an output folder never holds an
  input: :func:`check_apart`;
- an output file is not an existing folder, does not exist unless ``overwrite``, and its
  folder can really be written (a probe file is created and removed there, which catches
  read-only or immutable folders, ``/proc``, a path under a regular file ...):
  :func:`check_output_file`, :func:`check_output_folder`.

Every refusal is an :class:`~dotrestore.errors.InputError` naming the path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ...errors import InputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # same inode: symlinks and hard links included
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """InputError if ``output`` is (or resolves to) any of ``inputs``: inputs are never written."""
    output = Path(output)
    for given in inputs:
        if _same_file(output, Path(given)):
            raise InputError(output, f"is one of the inputs ({given}): choose another output "
                             "(inputs are never modified, even with --overwrite)")


def _identity(path: Path) -> tuple | str:
    """(device, inode) of what ``path`` leads to, or its resolved spelling when it does not exist."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return str(Path(os.path.abspath(path)).resolve())
    return st.st_dev, st.st_ino


def _chain(path: Path) -> list[tuple | str]:
    """The identities of ``path`` and of every folder above it (symlinks resolved first)."""
    resolved = Path(os.path.realpath(path))
    return [_identity(p) for p in (resolved, *resolved.parents)]


def _label(flag: str | None, path) -> str:
    return f"{flag} {path}" if flag else str(path)


def check_apart(outputs: Iterable[tuple[str | None, str | os.PathLike]],
                inputs: Iterable[tuple[str | None, str | os.PathLike]], reserved: Iterable[str] = ()) -> None:
    """InputError unless every output location is apart from every input location.

    ``outputs`` and ``inputs`` are ``(flag, path)`` pairs as the user gave them (files or folders;
    ``flag`` names the option, or None for a positional argument). An output is refused when it
    is an input under any spelling (same device and inode, so ``dir/.``, ``dir/../dir``, symlinks
    and bind mounts are caught) or when an input lies inside it (the output folder would hold,
    list or replace what the run reads). An input inside the output's entries ``reserved`` (the
    demo's own ``data/``) is allowed. Checked before any work, with or without ``--overwrite``.
    """
    inputs = [(flag, Path(path).expanduser()) for flag, path in inputs if path is not None and str(path)]
    reserved = set(reserved)
    for out_flag, output in outputs:
        output = Path(output).expanduser()
        where = _identity(Path(os.path.realpath(output)))
        for in_flag, given in inputs:
            chain = _chain(given)
            if chain[0] == where:
                raise InputError(output, f"is one of the inputs ({_label(in_flag, given)}, the same location): "
                                 f"choose another {out_flag or 'output'} (inputs are never written, even with "
                                 "--overwrite)")
            if where in chain[1:]:
                inside = Path(os.path.realpath(given))
                depth = chain.index(where)
                first = inside.parts[len(inside.parts) - depth] if depth <= len(inside.parts) else ""
                if first in reserved:
                    continue
                raise InputError(output, f"contains the input {_label(in_flag, given)}: give "
                                 f"{out_flag or 'the output'} a location outside the inputs (outputs never land "
                                 "among inputs)")


def check_not_inside(folder: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """InputError if an input lies under ``folder``, which this run replaces as a whole."""
    folder = Path(folder).resolve()
    for given in inputs:
        path = Path(given).resolve()
        if path == folder or folder in path.parents:
            raise InputError(given, f"is an input inside {folder}, which this run would replace")


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path):
        path = path.parent
    return path


def check_writable_folder(folder: str | os.PathLike, what: str | os.PathLike | None = None) -> None:
    """InputError naming ``what`` (default ``folder``) unless files can be created in ``folder``.

    ``folder`` may not exist yet: then its nearest existing ancestor must be a folder we can
    create entries in. The check creates and removes a hidden probe file, so it reflects
    the real permissions (read-only mounts, immutable flags, ACLs), not just mode bits.
    """
    folder = Path(folder)
    name = folder if what is None else what
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise InputError(name, f"cannot be created: {base} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dotrestore-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(name, f"cannot be written: {base} does not accept new files ({exc.strerror or exc})") from None


def check_output_file(path: str | os.PathLike, inputs: Iterable = (), overwrite: bool = False) -> Path:
    """Guard for one output file (``fit -o``): not an input, not a folder, new unless
    ``overwrite``, and its folder writable. Returns the path."""
    path = Path(path)
    check_not_input(path, inputs)
    if path.is_dir():
        raise InputError(path, "is a folder; give the path of the file to write")
    if os.path.lexists(path):
        if not overwrite:
            raise InputError(path, "already exists (use --overwrite to replace it)")
        if not path.is_file():
            raise InputError(path, "exists and is not a regular file")
    check_writable_folder(path.parent, path)
    return path


def check_output_folder(folder: str | os.PathLike, inputs: Iterable = ()) -> Path:
    """Guard for an output folder (``apply -o``, ``experiment --out``): not an input file,
    a folder if it exists, and writable (or creatable). Returns the path."""
    folder = Path(folder)
    check_not_input(folder, inputs)
    if os.path.lexists(folder) and not folder.is_dir():
        raise InputError(folder, "exists and is not a folder")
    check_writable_folder(folder)
    return folder


__all__ = ["check_apart", "check_not_input", "check_not_inside", "check_writable_folder", "check_output_file",
           "check_output_folder"]
