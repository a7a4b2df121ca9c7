"""Which images play which role, and how each test triple (x, y, x*) is made.

Everything here is cheap and runs before any encoding: folders are listed and every image is
fully decoded once (a corrupt file stops the run at once, named), the split is checked against
the number of images, and the degradation/restorer specs are parsed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io import images as image_files
from ..restorers import parse_restorer
from ..runtime.devices import local_device
from .config import ExperimentConfig
from .degradations import parse_degradation

logger = logging.getLogger(__name__)


@dataclass
class Item:
    """One clean image, optionally with the user's restored version; ``index`` seeds its noise."""

    clean: Path
    restored: Path | None
    index: int

    @property
    def stem(self) -> str:
        return self.clean.stem


@dataclass
class Plan:
    """The resolved inputs of an experiment (no pixels loaded yet)."""

    source: list[Item]
    target: list[Item]
    test: list[Item]
    degradation: object | None
    restorer: object | None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan_inputs(config: ExperimentConfig, validate=image_files.validate_images) -> Plan:
    """List, validate and split the images; parse the specs. Raises InputError on any problem.

    ``validate(paths, max_pixels)`` decodes the files (under torchrun: each rank its share, see the runner).
    """
    limit = config.max_pixels
    clean_paths = image_files.list_images(config.clean, limit)
    test_paths = image_files.list_images(config.test_clean, limit) if config.test_clean else []
    restored_paths = image_files.list_images(config.restored, limit) if config.restored else []
    # Decode every file once now: minutes of encoding must not end in "image 57 is corrupt".
    validate(clean_paths + test_paths + restored_paths, limit)
    degradation = parse_degradation(config.degrade) if config.degrade else None
    restorer = parse_restorer(config.restorer) if config.restorer else None
    if hasattr(restorer, "configure"):  # a model file: the codec's device, precision and memory budget
        restorer.configure(device=local_device(config.device), dtype=config.dtype, max_memory=config.max_memory)
    notes: list[str] = []

    pool = [Item(p, None, i) for i, p in enumerate(clean_paths)]
    tests = [Item(p, None, len(clean_paths) + i) for i, p in enumerate(test_paths)]
    if config.restored:
        # One pairing over both clean folders, so a stem may live in only one of them.
        restored_of = {c.resolve(): r for r, c in image_files.pair_by_stem(restored_paths, clean_paths + test_paths)}
        for items in (pool, tests):
            kept = [Item(it.clean, restored_of[it.clean.resolve()], it.index)
                    for it in items if it.clean.resolve() in restored_of]
            if len(kept) < len(items):
                notes.append(f"{len(items) - len(kept)} clean image(s) without a restored version of the same stem were not used")
            items[:] = kept

    fs, ft = config.fit_source, config.fit_target
    need = max(fs, ft) if config.paired else fs + ft
    if config.paired:
        source, target, rest = pool[:fs], pool[:ft], pool[need:]
    else:
        source, target, rest = pool[:fs], pool[fs:need], pool[need:]
    test = tests if config.test_clean else rest
    if len(pool) < need or not test:
        split = (f"{'the same' if config.paired else 'disjoint'} {fs} source + {ft} target images"
                 + ("" if config.test_clean else " plus at least 1 test image"))
        raise InputError(config.clean, f"has {len(pool)} usable image(s); the split needs {split} "
                         "(lower --fit-source/--fit-target, or give --test-clean DIR)")
    counts = {"clean_images": len(clean_paths), "test_clean_images": len(test_paths),
              "restored_images": len(restored_paths), "source": len(source), "target": len(target), "test": len(test)}
    return Plan(source, target, test, degradation, restorer, counts, notes)


def image_seed(seed: int, index: int) -> int:
    """Seed of one image's degradation: a hash of (seed, index), independent of evaluation order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@dataclass
class Triple:
    """Clean x, degraded y (None with --restored) and restored x*, all 8-bit quantized."""

    clean: torch.Tensor
    degraded: torch.Tensor | None
    restored: torch.Tensor


def load_clean(item: Item, config: ExperimentConfig) -> torch.Tensor:
    # Quantized, so the reference is exactly what an 8-bit file of it would hold (a no-op
    # unless --resize interpolated).
    return image_files.quantize(image_files.load_images([item.clean], crop=config.crop, resize=config.resize,
                                                    max_pixels=config.max_pixels)[0])


def make_triple(item: Item, plan: Plan, config: ExperimentConfig) -> Triple:
    """x from disk; y = deg(x) and x* = restorer(y) seeded per image, or x* from --restored.

    y and x* are quantized to 8 bit as soon as they exist: they are what a user's saved files
    would hold, so a run from images on disk (``--restored``) and a generated run agree.
    """
    x = load_clean(item, config)
    if item.restored is not None:
        x_star = image_files.quantize(image_files.load_images([item.restored], crop=config.crop, resize=config.resize,
                                                           max_pixels=config.max_pixels)[0])
        if x_star.shape != x.shape:
            raise InputError(item.restored, f"restored image is {tuple(x_star.shape[-2:])} but its clean image "
                             f"{item.clean.name} is {tuple(x.shape[-2:])} (after crop/resize); sizes must match")
        return Triple(x, None, x_star)
    generator = torch.Generator().manual_seed(image_seed(config.seed, item.index))
    y = image_files.quantize(plan.degradation(x, generator))
    x_star = plan.restorer(y, size=tuple(x.shape[-2:]))
    if tuple(x_star.shape) != tuple(x.shape):
        raise InputError(str(config.restorer), f"returned {tuple(x_star.shape)} for a {tuple(x.shape)} image")
    return Triple(x, y, image_files.quantize(x_star))


def degraded_for_metrics(y: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """y at the clean size: unchanged, or bicubic-upsampled (e.g. after ``down:scale``); quantized."""
    if tuple(y.shape[-2:]) == tuple(size):
        return y, False
    up = F.interpolate(y[None], size=size, mode="bicubic", align_corners=False).clamp(0, 1)[0]
    return image_files.quantize(up), True
