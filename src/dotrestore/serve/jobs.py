"""The explorer's longer jobs: fitting an operator (Fit tab) and applying it to a folder (Batch tab).

Both validate every input before any work, like the command line does, and never overwrite:
a fit writes a new operator file in the scratch folder, a batch refuses an output folder
that already holds any of the files it would write.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import data
from ..errors import InputError
from ..experiment.report import alpha_dirname
from .session import Explorer, check_image_file

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    pass


def parse_alphas(text: str) -> list[float]:
    """``"0, 0.5 1"`` → [0.0, 0.5, 1.0] (commas or spaces; duplicates dropped, order kept)."""
    values = []
    for token in text.replace(",", " ").split():
        try:
            values.append(float(token))
        except ValueError:
            raise InputError(None, f"α list: {token!r} is not a number") from None
    if not values:
        raise InputError(None, "α list is empty: give one or more values such as 0, 0.5, 1")
    return list(dict.fromkeys(values))


def collect_images(uploads: Sequence[str | Path] | None, folders: str | None, what: str,
                   max_pixels: int) -> list[Path]:
    """Uploaded files plus the images of the folders/files listed (one per line or ';'-separated)."""
    paths = [Path(p) for p in uploads or []]
    listed = [s.strip() for s in (folders or "").replace(";", "\n").splitlines() if s.strip()]
    if listed:
        paths += data.list_images(listed)
    if not paths:
        raise InputError(None, f"{what}: upload images or give a folder")
    for path in paths:
        check_image_file(path, max_pixels)
    data.validate_images(paths)
    return paths


def fit_operator(explorer: Explorer, source: list[Path], target: list[Path], *, codec: str, patch_size: int,
                 paired: bool, lowpass_sigma: float, progress: Progress = _no_progress) -> Path:
    """Fit DOT on ``source`` (restored) and ``target`` (clean) images, save it, make it current.

    ``paired`` asks that the two lists hold the same scenes (same file stems): the statistics
    are the same either way, the check only catches mismatched folders early.
    """
    from ..estimator import DOT

    if paired:
        pairs = data.pair_by_stem(source, target)
        source, target = [s for s, _ in pairs], [t for _, t in pairs]
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(None, f"patch size must be an odd positive integer, got {patch_size}")
    dot = DOT(codec=codec, patch_size=int(patch_size), lowpass_sigma=lowpass_sigma or None, device=explorer.device)
    total = len(source) + len(target)
    for role, paths, offset in (("source", source, 0), ("target", target, len(source))):
        for i, path in enumerate(paths):
            progress((offset + i) / total, f"encoding {role} image {i + 1}/{len(paths)}: {path.name}")
            dot.partial_fit([path], role=role)  # streams: moments accumulate, the map is re-solved
    progress(1.0, "writing the operator")
    out = explorer.scratch("operator.safetensors")
    dot.save(out)
    explorer.set_operator(dot, out)
    return out


def batch_apply(explorer: Explorer, images: list[Path], alphas: list[float], *, out_dir: str | None,
                as_zip: bool, progress: Progress = _no_progress) -> tuple[Path, int]:
    """Apply the current operator at every α; returns (folder or zip, files written).

    Layout as ``dotrestore apply``: one α → ``OUT/<stem>.png``, several → ``OUT/alpha_<A>/<stem>.png``.
    """
    if explorer.dot is None:
        raise InputError(None, "no operator loaded: fit one in the Fit tab or upload an operator file")
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise InputError(path, f"has the same stem as {stems[path.stem]}: outputs would collide")
        stems[path.stem] = path
    if out_dir:
        out = Path(out_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise InputError(out, "exists and is not a folder")
    elif as_zip:
        out = explorer.scratch("dotrestore-batch")
    else:
        raise InputError(None, "name an output folder or ask for a zip")
    targets = {a: [(out if len(alphas) == 1 else out / alpha_dirname(a)) / f"{p.stem}.png" for p in images]
               for a in alphas}
    inputs = {p.resolve() for p in images}
    for paths in targets.values():
        for t in paths:
            if t.exists() or t.resolve() in inputs:
                raise InputError(t, "already exists: the batch never overwrites; choose another output folder")
    written = 0
    for i, path in enumerate(images):
        progress(i / len(images), f"{path.name} ({i + 1}/{len(images)})")
        entry = explorer.prepare(path)
        for a in alphas:
            data.save_image(entry.at(a), targets[a][i])
            written += 1
    progress(1.0, "done")
    if not as_zip:
        return out, written
    archive = explorer.scratch("dotrestore-batch.zip")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for paths in targets.values():
            for t in paths:
                zf.write(t, t.relative_to(out).as_posix())
    return archive, written
