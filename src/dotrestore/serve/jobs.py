"""The explorer's longer jobs: fitting an operator (Fit tab) and applying it to a folder (Batch tab).

Both validate every input before any work, like the command line does, and never overwrite:
a fit writes a new operator file in the scratch folder; a batch runs through
:mod:`dotrestore.tasks.apply` (the code behind ``dotrestore apply``, so the files are the same bits)
and refuses an output folder that already holds any of the files it would write.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import settings
from ..errors import InputError
from ..io import images as image_files
from ..tasks import apply as applying
from ..tasks import fit as fitting
from .session import Explorer

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    pass


def parse_alphas(text: str) -> list[float]:
    """``"0, 0.5 1"`` → [0.0, 0.5, 1.0] (commas or spaces; duplicates dropped, order kept)."""
    return settings.check("alphas", text, "α list")


def collect_images(uploads: Sequence[str | Path] | None, folders: str | None, what: str,
                   max_pixels: int | None) -> list[image_files.ImageFile]:
    """Uploaded files plus the images of the folders/files listed (one per line or ';'-separated),
    each opened and checked once."""
    listed = [s.strip() for s in (folders or "").replace(";", "\n").splitlines() if s.strip()]
    given = [Path(p) for p in uploads or []] + [Path(s) for s in listed]
    if not given:
        raise InputError(what, "upload images or give a folder")
    return image_files.check_images(image_files.list_images(given, max_pixels, headers=False), max_pixels)


def fit_operator(explorer: Explorer, source: list, target: list, *, codec: str, patch_size: int,
                 paired: bool, lowpass_sigma: float, progress: Progress = _no_progress) -> Path:
    """Fit DOT on ``source`` (restored) and ``target`` (clean) images, save it, make it current.

    ``paired`` asks that the two lists hold the same scenes (same file stems): the statistics
    are the same either way, the check only catches mismatched folders early.
    """
    from ..estimator import DOT

    if paired:
        records = {r.path: r for r in (*source, *target)}
        pairs = image_files.pair_by_stem([r.path for r in source], [r.path for r in target])
        source, target = [records[s] for s, _ in pairs], [records[t] for _, t in pairs]
    dot = DOT(codec=codec, patch_size=patch_size, lowpass_sigma=lowpass_sigma, runtime=explorer.runtime)
    fitting.fit(dot, source, target, progress=progress)  # the fitting job of `dotrestore fit`
    progress(1.0, "writing the operator")
    out = fitting.save(dot, explorer.scratch("operator.safetensors"))
    explorer.set_operator(dot, out)
    return out


def batch_apply(explorer: Explorer, images: list, alphas: list[float], *, out_dir: str | None,
                as_zip: bool, progress: Progress = _no_progress) -> tuple[Path, int]:
    """Apply the current operator at every α to ``images`` (checked records, or paths); returns
    (folder or zip, files written).

    Layout as ``dotrestore apply``: one α → ``OUT/<stem>.png``, several → ``OUT/alpha_<A>/<stem>.png``.
    """
    dot = explorer.require_operator()
    # checked records (collect_images) go into the plan as they are: write_outputs does not open them again
    if out_dir:
        out = Path(out_dir).expanduser()
    elif as_zip:
        out = explorer.scratch("dotrestore-batch")
    else:
        raise InputError("output folder", "name an output folder or ask for a zip")
    plan = applying.plan_outputs(images, out, alphas, overwrite=False,
                                 exists="already exists: the batch never overwrites; choose another output folder")
    with explorer.exclusive():
        written = applying.write_outputs(dot, plan, progress=lambda done: progress(
            done / len(images), f"{done}/{len(images)} images"), restorer=explorer.restorer)
    progress(1.0, "done")
    if not as_zip:
        return out, written
    archive = explorer.scratch("dotrestore-batch.zip")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for paths in plan.targets.values():
            for t in paths:
                zf.write(t, t.relative_to(out).as_posix())
    return archive, written
