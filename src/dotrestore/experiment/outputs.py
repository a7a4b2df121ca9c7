"""The experiment's output folder: checked before the work, held open and locked during it, replaced at the end.

Everything is written into a hidden staging folder beside ``--out`` (``.OUT.partial``) and moved
into place only when the whole run succeeded. ``--out`` itself is opened once and locked
(:class:`~dotrestore.io.outputs.folder.OutputFolder`): a second run into the same folder is refused at
once, a folder swapped for a symlink after the checks is refused or not followed, a previous
run's outputs are removed only with ``--overwrite`` (also those that appeared while this run
worked), and a file that is an input is never removed or replaced. A failed or interrupted run
(an error, Ctrl-C, SIGTERM, SIGHUP) removes the staging folder and the folders it created.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePath

from ..errors import InputError
from ..io.files import shortened
from ..io.outputs.folder import FileId, OutputFolder, file_id, file_ids, lstat_at, open_folder
from ..io.outputs.guard import check_apart, check_not_input, check_not_inside, check_output_folder, check_writable_folder
from .config import ExperimentConfig

#: Everything a run writes at the top of --out; --overwrite removes these (and only these).
OUTPUT_NAMES = ("results.csv", "results.json", "pd_curve.png", "pd_curve.svg", "collages", "outputs", "before_after.png",
                "operator.safetensors", "config.yaml", "report.md")


def is_output_name(name: str) -> bool:
    """One of the entries a run writes (the variants' operators included)."""
    return name in OUTPUT_NAMES or (name.startswith("operator-") and name.endswith(".safetensors"))


def check_out(out: Path, overwrite: bool, reserved) -> None:
    """InputError unless ``out`` is a folder, empty (but for ``reserved``) or given ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out exists and is not a folder")
    if out.is_dir() and not overwrite:
        existing = sorted(p.name for p in out.iterdir() if p.name not in set(reserved))
        if existing:
            shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
            raise InputError(out, f"--out folder is not empty ({shown}); pass --overwrite or choose another --out")


def given_inputs(config: ExperimentConfig, inputs=()) -> list[tuple[str, Path]]:
    """(option, path) of every input location an experiment reads, as given."""
    given = [("--clean", config.clean), ("--test-clean", config.test_clean), ("--restored", config.restored),
             *(("--config", p) for p in inputs)]
    if Path(config.vae).expanduser().exists():
        given.append(("--vae", config.vae))
    return [(flag, Path(p).expanduser()) for flag, p in given if p]


def check_inputs_kept(out: Path, config: ExperimentConfig, inputs, reserved=()) -> frozenset[FileId]:
    """The shared output guard: --out (and the staging folder beside it) must be writable, apart
    from every input location (not one, not holding one but for the ``reserved`` entries) and no
    input may be one of the entries a run replaces in --out (whatever path leads there).
    Returns the identities of the input files (never replaced, see :class:`OutputFolder`)."""
    given_flags = given_inputs(config, inputs)
    for flag, path in given_flags:
        if flag == "--config" and path.name == "config.yaml" and _inside(path, out):
            raise InputError(path, f"is a previous run's configuration inside --out {out}, which this run replaces: "
                             "rerun it into another folder (--out NEW) or copy it out of --out first")
    check_apart([("--out", Path(config.out).expanduser())], given_flags, reserved)  # named as given
    check_apart([("--out", staging_folder(out))], given_flags)
    check_output_folder(out)
    check_writable_folder(out.parent, out)  # the staging folder lives beside --out
    given = [path for _, path in given_flags]
    replaced = [out / name for name in OUTPUT_NAMES]
    read: list[Path] = []
    for path in given:
        files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
        read += files
        for entry in replaced:
            check_not_inside(entry, [path])  # an input folder inside outputs/, collages/ ...
            check_not_input(entry, files)    # an input file that a run's output would replace
    return file_ids(read)


def staging_folder(out: Path) -> Path:
    """The hidden staging folder beside ``out``: ``.OUT.partial`` (OUT shortened to fit one file name)."""
    return out.parent / f".{shortened(out.name, 9)}.partial"


def _inside(path: Path, folder: Path) -> bool:
    return os.path.realpath(folder) in map(str, Path(os.path.realpath(path)).parents)


class ExperimentOutput:
    """``--out`` held open and locked by the process that writes (rank 0), and its staging folder."""

    def __init__(self, out: Path, protected: frozenset[FileId], overwrite: bool):
        self.folder = OutputFolder(out, protected=protected, overwrite=overwrite, lock=True, expected=file_id(out))
        self.staging = staging_folder(out)
        self._staging_id: FileId | None = None

    def open(self) -> None:
        """Open and lock --out (made when missing), then make a fresh staging folder beside it."""
        self.folder.open()
        if os.path.islink(self.staging) or os.path.isfile(self.staging):
            os.unlink(self.staging)
        elif os.path.lexists(self.staging):
            shutil.rmtree(self.staging)  # left by an interrupted run of ours (we hold the lock on --out)
        os.mkdir(self.staging)
        st = os.lstat(self.staging)
        self._staging_id = (st.st_dev, st.st_ino)

    def commit(self) -> None:
        """Replace the previous run's outputs (only the names a run writes) with the staged ones."""
        folder = self.folder
        staged = open_folder(self.staging, shown=self.staging, expected=self._staging_id)
        try:
            for name in sorted(n for n in os.listdir(folder.fd) if is_output_name(n)):
                if not folder.overwrite:
                    raise InputError(folder.shown(name), "appeared while this run was working; a previous run's "
                                     "outputs are replaced only with --overwrite")
                folder.remove(PurePath(name))  # refuses an input
            for name in sorted(os.listdir(staged)):
                if lstat_at(folder.fd, name) is not None:
                    raise InputError(folder.shown(name), "appeared while this run was working; choose another --out")
                os.rename(name, name, src_dir_fd=staged, dst_dir_fd=folder.fd)
        finally:
            os.close(staged)
        os.rmdir(self.staging)
        self.folder.close(keep=True)

    def renamed(self, exc: BaseException) -> BaseException:
        """``exc``, or for an OSError about a staged file (a full disk) the same error naming the
        file it stands for in --out."""
        if isinstance(exc, OSError) and exc.filename and exc.errno:
            try:
                rel = Path(str(exc.filename)).relative_to(self.staging)
            except ValueError:
                return exc
            return type(exc)(exc.errno, exc.strerror, str(self.folder.name / rel))
        return exc

    def discard(self) -> None:
        """Remove the staging folder and the folders this run made (if empty); release --out."""
        try:
            st = os.lstat(self.staging)
        except OSError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == self._staging_id:
            shutil.rmtree(self.staging, ignore_errors=True)
        self.folder.close(keep=False)


__all__ = ["OUTPUT_NAMES", "ExperimentOutput", "check_out", "check_inputs_kept", "given_inputs", "is_output_name"]
