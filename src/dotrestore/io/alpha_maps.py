"""α map files: greyscale images read as a per-pixel trade-off, matched to the images they belong to.

A map's grey level g (0 = black … 1 = white; 8-bit levels / 255, 16-bit / 65535, a float
TIFF as it is) becomes α = LO + (HI − LO)·g (``value_range`` = (LO, HI), default (0, 1)), so by
default black keeps the perceptual x̂0 and white the restorer's x*. A map has the size of its
image; with ``resize`` a map of another size is resized to it (bilinear, antialiased when
shrinking) and a log line says so. Every problem is an :class:`~dotrestore.errors.InputError`
naming the map: not an image, a colour image, NaN or infinity in a float map, a wrong size, a
map whose stem matches no input image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ImageOps

from ..errors import InputError
from ..ot.tradeoff import ALPHA_LIMIT, feather
from .images import SIXTEEN_BIT_MODES, check_size, list_images, open_image

logger = logging.getLogger(__name__)


def _grey(path: Path, image) -> np.ndarray:
    """(H, W) float64 grey levels in [0, 1] (a float map as stored); InputError for colour maps."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.float64) / 65535
    if mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        if not np.isfinite(grey).all():
            raise InputError(path, "α map has NaN or infinite values")
        return grey
    if mode in ("L", "LA", "La", "1"):
        return np.asarray(image.convert("L"), dtype=np.float64) / 255
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise InputError(path, "α map is a colour image: it must be greyscale (black = low α, white = high α)")
    return rgb[..., 0].astype(np.float64) / 255


def read_alpha_map(path: str | Path, size: tuple[int, int], value_range: Sequence[float] = (0.0, 1.0), *,
                   resize: bool = False, max_pixels: int | None = None) -> torch.Tensor:
    """The α map (H, W) float64 of the image of ``size`` = (H, W) from the greyscale file ``path``."""
    path = Path(path)
    try:
        with open_image(path) as image:
            check_size(path, image, max_pixels)
            image.load()
            grey = _grey(path, ImageOps.exif_transpose(image))
    except InputError:
        raise
    except Exception as err:  # Pillow raises many types for foreign bytes
        raise InputError(path, f"α map cannot be read as an image ({type(err).__name__}: {err})") from None
    alpha = alpha_from_grey(grey, value_range)
    if float(alpha.abs().max()) > ALPHA_LIMIT:
        raise InputError(path, f"α map gives α beyond ±{ALPHA_LIMIT:g} (values far outside 0…1 in a float map?)")
    size = (int(size[0]), int(size[1]))
    if tuple(alpha.shape) != size:
        found = f"{alpha.shape[1]}x{alpha.shape[0]}"
        if not resize:
            raise InputError(path, f"α map is {found} but its image is {size[1]}x{size[0]} "
                             "(resize it, or pass --alpha-map-resize)")
        alpha = F.interpolate(alpha[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
        logger.warning("%s: α map resized from %s to the image's %dx%d", path, found, size[1], size[0])
    return alpha


def alpha_from_grey(grey: np.ndarray, value_range: Sequence[float] = (0.0, 1.0)) -> torch.Tensor:
    """α = LO + (HI − LO)·g of grey levels g in [0, 1] (float64): the one formula of map files."""
    low, high = (float(v) for v in value_range)
    return torch.from_numpy(low + (high - low) * np.asarray(grey, dtype=np.float64))


def sixteen_bit_levels(alpha: torch.Tensor, value_range: Sequence[float]) -> np.ndarray:
    """(H, W) uint16 grey levels of an α map in ``value_range`` (α outside it is clipped)."""
    low, high = (float(v) for v in value_range)
    t = ((alpha.detach().double().cpu().numpy() - low) / (high - low)).clip(0, 1)
    return np.round(t * 65535).astype(np.uint16)


def save_alpha_map(levels: np.ndarray, path: str | Path) -> Path:
    """Write (H, W) uint16 levels as a 16-bit greyscale PNG (what ``read_alpha_map`` reads back)."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(levels, dtype=np.uint16)).save(path, format="PNG")
    return Path(path)


def match_alpha_maps(inputs: Sequence[Path], spec: str | Path, max_pixels: int | None = None) -> dict[Path, Path]:
    """input image → its map: a map file for every input, or a folder of maps matched by file stem.

    A folder's map whose stem matches no input, or two maps of one stem, is an InputError naming it.
    """
    spec = Path(spec)
    if not spec.exists():
        raise InputError(spec, "α map does not exist")
    if not spec.is_dir():
        return {Path(p): spec for p in inputs}
    by_stem: dict[str, Path] = {}
    for path in list_images([spec], max_pixels):
        if path.stem in by_stem:
            raise InputError(path, f"α map has the same stem as {by_stem[path.stem]}: which one is meant?")
        by_stem[path.stem] = path
    stems = {Path(p).stem for p in inputs}
    for stem, path in by_stem.items():
        if stem not in stems:
            raise InputError(path, "α map matches no input image (maps are matched to images by file stem)")
    return {Path(p): by_stem[Path(p).stem] for p in inputs if Path(p).stem in by_stem}


@dataclass
class AlphaMaps:
    """The α maps of one run: ``maps[input] = map file``; inputs without one get ``alpha``.

    ``feather`` (pixels) softens every map's edges (:func:`dotrestore.ot.tradeoff.feather`).
    """

    maps: dict[Path, Path] = field(default_factory=dict)
    value_range: tuple[float, float] = (0.0, 1.0)
    feather: int = 4
    resize: bool = False
    alpha: float = 0.0
    max_pixels: int | None = None

    def load(self, path: Path, size: tuple[int, int]) -> torch.Tensor:
        """The feathered α map (1, 1, H, W) float64 of the input ``path`` (constant ``alpha`` without a map)."""
        source = self.maps.get(Path(path))
        if source is None:
            return torch.full((1, 1, *size), float(self.alpha), dtype=torch.float64)
        alpha = read_alpha_map(source, size, self.value_range, resize=self.resize, max_pixels=self.max_pixels)
        return feather(alpha[None, None], self.feather)

    def check(self, inputs: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> None:
        """Read every map once against its image's size (H, W): a bad map fails before any work."""
        for path, size in zip(inputs, sizes):
            if Path(path) in self.maps:
                read_alpha_map(self.maps[Path(path)], size, self.value_range, resize=self.resize,
                               max_pixels=self.max_pixels)


__all__ = ["read_alpha_map", "alpha_from_grey", "sixteen_bit_levels", "save_alpha_map", "match_alpha_maps",
           "AlphaMaps"]
