"""α painted with a brush: the explorer's strokes → the α map ``dotrestore apply --alpha-map`` reads.

The brush's colours are α values (:data:`PALETTE`: black = 0, the perceptual x̂0, … white = 1,
the restorer's x*); the eraser clears paint. The page sends each stroke's geometry only
(:class:`Stroke`: points, radius in image pixels, α or the eraser) and the strokes are rasterised
here, exactly and the same way every time: a pixel belongs to a stroke when its centre lies within
the radius of the stroke's polyline (round ends and joins); later strokes cover earlier ones. A
painted pixel of colour v gets α = v, the others the slider's α. The map is then stored as 16-bit
grey levels over a range (LO, HI) that holds every α, and the explorer blends with exactly what the
file holds, feathered as ``apply`` does: the downloaded image equals
``dotrestore apply OP IMG --alpha-map MAP --alpha-map-range=LO,HI`` pixel for pixel. No Gradio here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import settings
from ..errors import InputError
from ..io.alpha_maps import alpha_from_grey, sixteen_bit_levels
from ..ot.tradeoff import feather

#: α of the brush's colours (grey levels 255·α)
PALETTE = (0.0, 0.25, 0.5, 0.75, 1.0)
FEATHER = settings.default("alpha_map_feather")
#: what one page may send: enough for any hand-painted map, small enough to refuse a flood
MAX_STROKES, MAX_POINTS = 5_000, 500_000
STROKES = "brush strokes"  # the subject of their errors


def brush_colours() -> list[str]:
    return [f"rgb({round(255 * a)}, {round(255 * a)}, {round(255 * a)})" for a in PALETTE]


@dataclass(frozen=True)
class Stroke:
    """One stroke: its polyline in image pixel coordinates (x right, y down; (0, 0) is the image's
    top-left corner, pixel (row i, column j) has its centre at (j + ½, i + ½)), its radius in image
    pixels, and its α (one of :data:`PALETTE`), or None for the eraser."""

    points: tuple[tuple[float, float], ...]
    radius: float
    alpha: float | None

    def cover(self, size: tuple[int, int]):
        """Yield (rows, cols, mask) pieces: the pixels of an (H, W) image the stroke covers."""
        height, width = size
        pts = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        # a single point is a zero-length segment: a disc
        ends = np.concatenate([pts[:1], pts]) if len(pts) == 1 else pts
        r = self.radius
        for a, b in zip(ends[:-1], ends[1:]):
            x0, x1 = max(0, math.floor(min(a[0], b[0]) - r)), min(width, math.ceil(max(a[0], b[0]) + r) + 1)
            y0, y1 = max(0, math.floor(min(a[1], b[1]) - r)), min(height, math.ceil(max(a[1], b[1]) + r) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - a[0]
            py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - a[1]
            d = b - a
            length2 = float(d @ d)
            t = np.zeros((1, 1)) if length2 == 0 else np.clip((px * d[0] + py * d[1]) / length2, 0, 1)
            yield slice(y0, y1), slice(x0, x1), (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 <= r * r


def parse_strokes(data, size: tuple[int, int]) -> list[Stroke]:
    """The page's strokes → :class:`Stroke` in image pixels.

    ``data``: ``{"frame": [fw, fh], "strokes": [{"points": [[x, y], ...], "radius": r, "alpha": a or
    None}, ...]}``; points are in the frame's pixels (the picture the page painted on, which may be
    smaller than the image), the radius in image pixels. Anything else is refused (:class:`~dotrestore.errors.InputError`).
    """
    try:
        frame_w, frame_h = (float(v) for v in data["frame"])
        items = [dict(item) for item in data["strokes"]]
        if len(items) > MAX_STROKES or sum(len(item["points"]) for item in items) > MAX_POINTS:
            raise InputError(STROKES, f"too many: at most {MAX_STROKES} strokes of {MAX_POINTS} points in all")
        return [_stroke(item, size, width=frame_w, height=frame_h) for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(STROKES, "they must come as {'frame': [w, h], 'strokes': [{'points': [[x, y], ...], "
                                  "'radius': r, 'alpha': a}, ...]}") from None


def _stroke(item: dict, size: tuple[int, int], width: float, height: float) -> Stroke:
    """One stroke of the page's, its points scaled from a frame of width × height to the image."""
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise InputError(STROKES, f"the frame they were painted on must have a positive size, got {width} x {height}")
    alpha, radius = item.get("alpha"), float(item["radius"])
    if alpha is not None and float(alpha) not in PALETTE:
        raise InputError(STROKES, f"a stroke's α must be one of {PALETTE} (or None: the eraser), got {alpha!r}")
    if not (0 < radius <= max(size)):
        raise InputError(STROKES, f"a stroke's radius must be in (0, {max(size)}] image pixels, got {radius!r}")
    sx, sy = size[1] / width, size[0] / height
    points = tuple((float(x) * sx, float(y) * sy) for x, y in item["points"])
    if not points or not all(math.isfinite(v) for p in points for v in p):
        raise InputError(STROKES, "a stroke needs at least one point, all finite")
    return Stroke(points, radius, None if alpha is None else float(alpha))


@dataclass
class Painting:
    """What the brush left: colour value v (α of the palette) and opacity o (1 painted, 0 not) per
    pixel, (H, W) float64, and the strokes that made it."""

    value: np.ndarray
    opacity: np.ndarray
    strokes: tuple[Stroke, ...] = field(default=())

    @classmethod
    def from_strokes(cls, strokes, size: tuple[int, int], previous: Painting | None = None) -> Painting | None:
        """Rasterise ``strokes`` on an (H, W) image; None when nothing is painted.

        The page sends all its strokes each time (an undo is one fewer): when they extend
        ``previous``'s, only the new ones are drawn on a copy of it.
        """
        strokes = tuple(strokes)
        done = previous.strokes if previous is not None and previous.value.shape == tuple(size) else None
        if done is not None and strokes[:len(done)] == done:
            value, opacity, todo = previous.value.copy(), previous.opacity.copy(), strokes[len(done):]
        else:
            value, opacity, todo = np.zeros(size), np.zeros(size), strokes
        for stroke in todo:
            for rows, cols, mask in stroke.cover(tuple(size)):
                opacity[rows, cols][mask] = 0.0 if stroke.alpha is None else 1.0
                if stroke.alpha is not None:
                    value[rows, cols][mask] = stroke.alpha
        return cls(value, opacity, strokes) if opacity.any() else None

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


__all__ = ["PALETTE", "brush_colours", "Stroke", "parse_strokes", "Painting", "PaintedMap"]
