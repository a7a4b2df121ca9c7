"""Fitting, written once: the command line, the explorer and the experiment all fit through here.

Inputs come checked: :meth:`TrainingInputs.checked <dotrestore.runtime.frames.TrainingInputs.checked>`
opens this process's share of the images once each into an
:class:`~dotrestore.io.images.ImageFile` (under torchrun each rank checks its own share and the
verdicts are gathered, so every rank stops on the same line for a bad file anywhere).
:func:`fit` accumulates each role's latent patch
statistics with the one engine, :meth:`DOT.partial_fit <dotrestore.DOT.partial_fit>`, and
solves the map; :func:`save` writes the operator file from the main process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..operator_file import save_operator
from ..runtime import parallel
from ..runtime.frames import TrainingInputs

#: ``progress(fraction, message)``, called as the images of each role are encoded.
Progress = Callable[[float, str], None]


def fit(dot, source, target, *, frame_step: int | None = None, progress: Progress | None = None):
    """Fit ``dot`` (a :class:`~dotrestore.DOT`; returned) from restorations ``source`` (None:
    zero-shot) and clean images ``target``.

    Each side is what :meth:`DOT.partial_fit` takes (tensors, checked images, a stream of
    batches) or :class:`~dotrestore.runtime.frames.TrainingInputs` (its share of images and
    frames). With ``progress`` (one process: the explorer) the images go one at a time, so the
    progress can name each; the statistics are the same either way.
    """
    if progress is None:
        return dot.fit(None if source is None else _as_images(source, dot, "source", frame_step),
                       _as_images(target, dot, "target", frame_step))
    roles = [(role, side) for role, side in (("source", source), ("target", target)) if side is not None]
    total = sum(len(side) for _, side in roles)
    done = 0
    for role, side in roles:
        for i, item in enumerate(side):
            name = getattr(getattr(item, "path", None), "name", f"{role} [{i}]")
            progress(done / total, f"encoding {role} image {i + 1}/{len(side)}: {name}")
            dot.partial_fit([item], role=role)  # streams: moments accumulate, the map is re-solved
            done += 1
    return dot


def _as_images(side, dot, role: str, frame_step: int | None):
    if isinstance(side, TrainingInputs):
        return side.source(dot.runtime, f"{role} images", frame_step)
    return side


def save(dot, output: Path, *, protected=(), overwrite: bool = False) -> Path:
    """Write the operator file from the main process (never over a file in ``protected``); every
    process returns once it exists."""
    if parallel.is_main():
        save_operator(dot, output, protected=protected, overwrite=overwrite)
    parallel.barrier()
    return Path(output)


__all__ = ["Progress", "fit", "save"]
