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

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..operator_file import save_operator
from ..runtime import parallel
from ..runtime.fitting import partial_fit_together
from ..runtime.frames import TrainingInputs

logger = logging.getLogger("dotrestore")

#: ``progress(fraction, message)``, called as the images of each role are encoded.
Progress = Callable[[float, str], None]


def fit(dot, source, target, *, frame_step: int | None = None, progress: Progress | None = None,
        restorer: Callable | None = None):
    """Fit ``dot`` (a :class:`~dotrestore.DOT`; returned) from restorations ``source`` (None:
    zero-shot) and clean images ``target``.

    Each side is what :meth:`DOT.partial_fit` takes (tensors, checked images, a stream of
    batches) or :class:`~dotrestore.runtime.frames.TrainingInputs` (its share of images and
    frames). With ``progress`` (one process: the explorer) the images go one at a time, so the
    progress can name each; the statistics are the same either way. With ``restorer`` the
    source images are degraded and x* = restorer(y) gives the source statistics; ``target``
    None takes the clean-photograph statistics bundled with the package (TAEF2, default
    settings: :mod:`dotrestore.targets`).
    """
    if restorer is not None:
        if not isinstance(source, TrainingInputs):
            raise TypeError("fit(restorer=...) takes the source as TrainingInputs")
        logger.info("source statistics from the outputs of %s", getattr(restorer, "describe", restorer.__str__)())
        source = _restored(source.batches(dot.resolved.runtime, "source images", frame_step), restorer)
    if target is None:
        return _fit_with_bundled_target(dot, _as_images(source, dot, "source", frame_step))
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


def fit_together(dots: list, images, role: str, *, total: int | None = None, desc: str | None = None) -> list:
    """Accumulate ``role`` statistics of ``images`` into several DOTs at once (the experiment's
    variants): each image is read once and encoded once per distinct codec input."""
    return partial_fit_together(dots, images, role, total=total, desc=desc)


def _restored(batches, restorer):
    """The same stream of :class:`~dotrestore.runtime.pipeline.Batch` with each batch's images restored."""
    for batch in batches:
        yield replace(batch, data=restorer(batch.images))


def _fit_with_bundled_target(dot, source):
    """Target = the clean-photograph moments shipped with dotrestore (TAEF2, default settings only)."""
    from ..targets import check_applies, read_bundled_target

    bundled = read_bundled_target()
    check_applies(dot, bundled)
    dot.set_target_moments(bundled.moments, bundled.n_images)
    check_applies(dot, bundled, dot.codec_.id)
    logger.info("target: %s (no --target given)", bundled.describe())
    dot.partial_fit(source, role="source")
    return dot


def _as_images(side, dot, role: str, frame_step: int | None):
    if isinstance(side, TrainingInputs):
        return side.source(dot.resolved.runtime, f"{role} images", frame_step)
    return side


def save(dot, output: Path, *, protected=(), overwrite: bool = False) -> Path:
    """Write the operator file from the main process (never over a file in ``protected``); every
    process returns once it exists."""
    if parallel.is_main():
        save_operator(dot, output, protected=protected, overwrite=overwrite)
    parallel.barrier()
    return Path(output)


__all__ = ["Progress", "fit", "fit_together", "save"]
