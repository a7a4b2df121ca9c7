"""α painted with a brush: the explorer's paint layer → the α map ``dotrestore apply --alpha-map`` reads.

The brush's colours are α values (:data:`PALETTE`: black = 0, the perceptual x̂0, … white = 1,
the restorer's x*); the eraser clears paint. A pixel of the layer with colour value v and
opacity o (antialiased stroke edges are partly opaque) gets α = base + (v − base)·o, ``base``
the slider's α. The map is then stored as 16-bit grey levels over a range (LO, HI) that holds
every α, and the explorer blends with exactly what the file holds, feathered as ``apply`` does:
the downloaded image equals ``dotrestore apply OP IMG --alpha-map MAP --alpha-map-range=LO,HI``
pixel for pixel. No Gradio here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import settings
from ..io.alpha_maps import alpha_from_grey, sixteen_bit_levels
from ..ot.tradeoff import feather

#: α of the brush's colours (grey levels 255·α)
PALETTE = (0.0, 0.25, 0.5, 0.75, 1.0)
FEATHER = settings.default("alpha_map_feather")


def brush_colours() -> list[str]:
    return [f"rgb({round(255 * a)}, {round(255 * a)}, {round(255 * a)})" for a in PALETTE]


@dataclass
class Painting:
    """What the brush left: colour value v (α of the palette) and opacity o per pixel, (H, W) float64."""

    value: np.ndarray
    opacity: np.ndarray

    @classmethod
    def from_layer(cls, layer, size: tuple[int, int]) -> Painting | None:
        """From an RGBA layer (H, W, 4) uint8; None when nothing is painted. Layers of another size are refused."""
        if layer is None:
            return None
        rgba = np.asarray(layer)
        if rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError(f"a paint layer must be RGBA (H, W, 4), got shape {rgba.shape}")
        if tuple(rgba.shape[:2]) != tuple(size):
            raise ValueError(f"the paint layer is {rgba.shape[1]}x{rgba.shape[0]} but the image is {size[1]}x{size[0]}")
        opacity = rgba[..., 3].astype(np.float64) / 255
        if not opacity.any():
            return None
        # the palette is grey (the editor's colours are fixed to it): the red channel is the level
        return cls(rgba[..., 0].astype(np.float64) / 255, opacity)

    def alphas(self, base: float) -> torch.Tensor:
        """α = base + (v − base)·o, (H, W) float64."""
        return torch.from_numpy(base + (self.value - base) * self.opacity)


@dataclass
class PaintedMap:
    """A painting at one base α: its 16-bit levels and range (what the map file holds) and the feathered map."""

    levels: np.ndarray
    value_range: tuple[float, float]
    alpha: torch.Tensor  # (1, 1, H, W) float64, feathered: what the blend uses

    @classmethod
    def make(cls, painting: Painting, base: float) -> PaintedMap:
        base = settings.check("alpha", base, "α")
        value_range = (min(0.0, base), max(1.0, base))
        levels = sixteen_bit_levels(painting.alphas(base), value_range)
        # read back exactly as `apply` reads the file: levels / 65535 → α → feather
        alpha = alpha_from_grey(levels.astype(np.float64) / 65535, value_range)
        return cls(levels, value_range, feather(alpha[None, None], FEATHER))

    def command_options(self) -> str:
        low, high = self.value_range
        default = (low, high) == settings.default("alpha_map_range")
        return "" if default else f" --alpha-map-range={low!r},{high!r}"


__all__ = ["PALETTE", "brush_colours", "Painting", "PaintedMap"]
