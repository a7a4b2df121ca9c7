"""Applying an operator to image files: the output layout, the checks before any work, the staged writing.

One α writes ``OUT/<stem>.png``; several write ``OUT/alpha_<A>/<stem>.png`` (:func:`alpha_dirname`).
One image at one α into ``-o NAME.png`` (an image extension, :func:`output_is_file`) writes that
file, through the same checks and staging in its folder. Every output keeps what its input had:
grey stays grey, an alpha channel is copied, 16-bit grey stays 16-bit (:mod:`.io.image_formats`).
:func:`plan_outputs` checks everything about the outputs before the slow work starts (no two
inputs share a stem, no output is an input whatever path leads there, nothing is replaced
without ``overwrite``, the folder is writable); :func:`write_outputs` streams the inputs through
the pipeline, transports them one α at a time and writes PNGs into a staging folder that is
moved into place only when every image (on every torchrun process) succeeded. ``dotrestore
apply`` and the Batch tab of ``dotrestore serve`` both run through here, so they write the same
files with the same bits.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ImageTooSmallError, InputError, OperatorFileError
from ..io import image_formats
from ..io.alpha_maps import AlphaMaps
from ..io.images import ImageFile, check_images
from ..io.outputs.folder import FileId, file_id, file_ids
from ..io.outputs.guard import check_apart, check_not_input, check_output_folder
from ..io.outputs.staged import STAGING_PREFIX, StagedFiles
from ..runtime import parallel, pipeline


def alpha_dirname(alpha: float) -> str:
    """Folder name of the outputs at one α: ``alpha_-0.7``, ``alpha_0``, ``alpha_1``, ``alpha_1.3``.

    The shortest repr that round-trips the float, with a trailing ``.0`` dropped and −0 written
    as 0, so every α has exactly one name.
    """
    value = float(alpha)
    if value == 0.0:
        value = 0.0  # -0.0 → 0
    text = repr(value)
    if text.endswith(".0"):
        text = text[:-2]
    return f"alpha_{text}"


@dataclass
class OutputPlan:
    """Where every output goes: ``targets[α][i]`` is the PNG of ``inputs[i]`` at α.

    ``folder`` is ``out`` resolved when it was checked and ``folder_id`` its (device, inode)
    then (None: it did not exist); ``protected`` the identities of every file the run reads.
    Writing holds the folder by these, not by its path (see :mod:`dotrestore.io.outputs.folder`).
    """

    inputs: list[Path]
    out: Path
    alphas: list[float]
    targets: dict[float, list[Path]]
    folder: Path | None = None
    folder_id: FileId | None = None
    protected: frozenset = field(default_factory=frozenset)
    overwrite: bool = False
    file: Path | None = None  # ``-o NAME.png``: the one output file (``out`` is then its folder)
    #: the inputs' :class:`~dotrestore.io.images.ImageFile` records when they came checked (the
    #: explorer checks what it collects): their sizes are used and the files are not opened again
    checked: list[ImageFile] | None = None

    @property
    def count(self) -> int:
        return len(self.inputs) * len(self.alphas)


def output_is_file(out: str | Path) -> bool:
    """True when ``-o out`` names one output image (``out.png``, ``out.jpg``, ...: an extension of
    :data:`~dotrestore.io.image_formats.OUTPUT_FORMATS`) rather than a folder; an existing folder
    of that name stays a folder."""
    return image_formats.is_output_image_name(out) and not Path(out).is_dir()


def plan_outputs(inputs: Sequence[Path], out: str | Path, alphas: Sequence[float], *, protected: Sequence = (),
                 overwrite: bool = False, exists: str = "already exists (use --overwrite to replace it)",
                 file_ok: bool = False) -> OutputPlan:
    """Check the outputs of applying to ``inputs`` at ``alphas`` into ``out``; InputError naming the path.

    ``protected`` are further files the run reads (the operator, the codec's weights): no output
    may be one of them or an input, even with ``overwrite``. ``exists`` is the problem reported
    for an output that exists already (without ``overwrite``). With ``file_ok``, an ``out`` with
    an image extension (:func:`output_is_file`) is the one output file of one image at one α.
    ``inputs`` may be paths or checked :class:`~dotrestore.io.images.ImageFile` records (kept in the plan).
    """
    if all(isinstance(p, ImageFile) for p in inputs) and inputs:
        plan = plan_outputs([r.path for r in inputs], out, alphas, protected=protected, overwrite=overwrite,
                            exists=exists, file_ok=file_ok)
        plan.checked = list(inputs)
        return plan
    if file_ok and not Path(out).is_dir() and Path(out).suffix.lower() in image_formats.image_extensions():
        if not output_is_file(out):
            raise InputError(out, f"is not a format apply writes: name a {', '.join(image_formats.OUTPUT_FORMATS)} "
                             "file, or an output folder")
        return _plan_file(inputs, Path(out), alphas, protected=protected, overwrite=overwrite, exists=exists)
    inputs = [Path(p) for p in inputs]
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise InputError(path, f"has the same stem as {stems[path.stem]}: outputs would collide")
        stems[path.stem] = path
    protected = inputs + [Path(p) for p in protected]
    check_apart([("-o", out)], [(None, p) for p in protected])  # never into (or above) what the run reads
    out = check_output_folder(out, protected)
    folder = Path(os.path.realpath(out))  # x/../out is out: nothing creates an x
    alphas = list(dict.fromkeys(float(a) for a in alphas))
    targets = {a: [(out if len(alphas) == 1 else out / alpha_dirname(a)) / f"{p.stem}.png" for p in inputs]
               for a in alphas}
    for paths in targets.values():
        for target in paths:
            check_not_input(target, protected)
            if target.is_dir():
                raise InputError(target, "is a folder; it would be replaced by an output image")
            if target.exists() and not overwrite:
                raise InputError(target, exists)
    return OutputPlan(inputs, out, alphas, targets, folder, file_id(folder), file_ids(protected), overwrite)


def _plan_file(inputs: Sequence[Path], out: Path, alphas: Sequence[float], *, protected: Sequence,
               overwrite: bool, exists: str) -> OutputPlan:
    """The plan of ``apply IMG -o out.png``: one input, one α, that file (checked like any output)."""
    inputs = [Path(p) for p in inputs]
    alphas = list(dict.fromkeys(float(a) for a in alphas))
    if len(inputs) != 1 or len(alphas) != 1:
        what = f"{len(inputs)} images" if len(inputs) != 1 else f"{len(alphas)} alphas"
        raise InputError(out, f"is one image file, but this run writes {what}: give one image and one --alpha, "
                         "or an output folder (-o DIR)")
    protected = inputs + [Path(p) for p in protected]
    check_not_input(out, protected)
    folder = check_output_folder(out.parent, protected)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise InputError(out, "exists and is not a regular file")
    if out.exists() and not overwrite:
        raise InputError(out, exists)
    resolved = Path(os.path.realpath(folder))
    return OutputPlan(inputs, folder, alphas, {alphas[0]: [out]}, resolved, file_id(resolved), file_ids(protected),
                      overwrite, file=out)


def write_outputs(dot, plan: OutputPlan, *, interpolation: str = "pixel", operator: str | Path = "operator",
                  progress: Callable[[int], None] | None = None, alpha_maps: AlphaMaps | None = None,
                  restorer: Callable | None = None) -> int:
    """Transport every input of ``plan`` with the fitted ``dot`` and write its PNGs; returns how many.

    With ``restorer`` the inputs are degraded images y and x* = restorer(y) is what is transported
    (a batch at a time, in the main process, on the restorer's device); α = 1 writes x* itself.

    Under torchrun rank r takes inputs r, r + W, ...; every rank validates its share first, and
    the staged outputs move into place only once every rank succeeded: a failure anywhere
    leaves no partial set. ``progress(n)`` is called with the number of images done so far.
    With ``alpha_maps`` (one α in ``plan``) an input with a map is blended pixel by pixel.
    """
    runtime = dot.resolved.runtime
    mine = parallel.shard(list(range(len(plan.inputs))))
    paths = [plan.inputs[i] for i in mine]
    # a rank may have no inputs at all; the sizes batch the others
    if plan.checked is not None:  # checked when they were collected: each file is opened once more, to read it
        sizes = [plan.checked[i].size for i in mine]
    else:
        sizes = [r.size for r in parallel.run_checked(check_images, paths, runtime.max_pixels)]
    if alpha_maps is not None:
        parallel.run_checked(alpha_maps.check, paths, sizes)  # every map against its image, before any work

    def read(path):  # the RGB to transport, and what the file had beyond it (grey, alpha, 16 bits)
        return image_formats.read_kept(path, runtime.max_pixels)

    def transport_and_write(staged: StagedFiles) -> None:
        done = 0
        with pipeline.ImageWriter() as writer:
            for batch in pipeline.batches(paths, read, sizes=sizes, batch_size=runtime.batch_size,
                                          workers=runtime.workers):
                # One α at a time: a big photograph holds one output, not one per α.
                images = batch.data["image"]
                x_star = images if restorer is None else restorer(images)
                try:
                    alphas = _alphas(plan, [paths[k] for k in batch.positions], x_star.shape, alpha_maps)
                    for a, result in dot.iter_alphas(x_star, alphas, interpolation=interpolation):
                        a = plan.alphas[0] if isinstance(a, torch.Tensor) else a  # a map: the plan's one α
                        if not bool(result.isfinite().all()):
                            raise OperatorFileError(operator, f"gave non-finite values when transporting "
                                                    f"{batch.names[0]}: its statistics are unusable")
                        for j, k in enumerate(batch.positions):
                            writer.submit(result[j], plan.targets[a][mine[k]], staged.write,
                                          # with a restorer x* has the model's size: nothing of y's to keep
                                          encode=image_formats.kept_writer(
                                              None if restorer is not None else batch.data["source"][j]))
                        del result
                except ImageTooSmallError as exc:  # zero-shot statistics of this very image
                    raise ImageTooSmallError(batch.names[0], exc.problem) from None
                done += len(batch) * parallel.world_size()
                if progress is not None:
                    progress(min(done, len(plan.inputs)))

    staged = _staged_files(plan)
    try:
        # the folder held open before the slow work: rank 0 first (it makes the folder, removes it
        # again on failure, and holds the lock), then the others
        main = parallel.is_main()
        parallel.run_checked(staged.open if main else _nothing)
        parallel.run_checked(_nothing if main else staged.open)
        parallel.run_checked(transport_and_write, staged)
        parallel.run_checked(staged.check)  # every rank's targets still free (or ours to replace)
        staged.commit()
        parallel.barrier()  # rank 0 holds the folder's lock until every rank has committed
    finally:
        staged.close()
    return plan.count


def _alphas(plan: OutputPlan, paths: list[Path], shape, alpha_maps: AlphaMaps | None) -> list:
    """The α of one batch: the plan's, or a (B, 1, H, W) map when any of its images has an α map."""
    if alpha_maps is None or not any(p in alpha_maps.maps for p in paths):
        return plan.alphas
    return [torch.cat([alpha_maps.load(p, tuple(shape[-2:])) for p in paths])]


def _nothing() -> None:
    pass


def _staged_files(plan: OutputPlan) -> StagedFiles:
    """This process's staging folder in ``plan.folder``: one name per run and rank, so that a failure
    on any rank sweeps them all (a rank killed by torchrun cannot clean up after itself)."""
    run = parallel.gather_objects(secrets.token_hex(6))[0]  # rank 0's token, on every rank
    sweep = f"{STAGING_PREFIX}{run}-"
    return StagedFiles(plan.folder or os.path.realpath(plan.out), name=plan.out, expected=plan.folder_id,
                       protected=plan.protected, overwrite=plan.overwrite,
                       lock=parallel.is_main() and plan.file is None,  # a lone file: its own no-clobber move
                       staging=f"{sweep}{parallel.rank()}", sweep=sweep)


__all__ = ["alpha_dirname", "OutputPlan", "output_is_file", "plan_outputs", "write_outputs"]
