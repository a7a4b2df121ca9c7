"""Synthetic clips with known motion, cut from photographs, for the warp-error benchmark.

- :func:`pan`: a window panning ``step`` pixels per frame across a photograph; x* is the
  photograph blurred once (Gaussian, σ = 2) and panned the same way, so x* moves exactly.
- :func:`nonrigid`: the photograph rotating (``spin`` degrees per frame) and zooming in
  (``zoom`` per frame) about the frame's centre, with a rectangle cut from a second photograph
  sliding across it (2 px right, 1 px down per frame): two objects moving differently, with
  occlusions; x* is each clean frame blurred. The exact backward flow of every frame is known.

Both end with ``still`` copies of their last frame.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dotrestore.io.images import quantize
from dotrestore.restorers.named import parse_restorer

BLUR = "gaussian-blur:sigma=2"


def _blur(image: torch.Tensor) -> torch.Tensor:
    return quantize(parse_restorer(BLUR)(image[None])[0])


def pan(photo: torch.Tensor, frames: int, width: int = 320, height: int = 240, step: int = 3, still: int = 0):
    """(clean frames, x* frames, the scene's motion (dx, dy) per frame) of a pan across ``photo`` (3, H, W)."""
    if photo.shape[2] < width + step * (frames - 1) or photo.shape[1] < height:
        raise ValueError(f"the photograph is too small for {frames} frames of {width}x{height} panning {step} px")
    blurred = _blur(photo)
    top = (photo.shape[1] - height) // 2
    xs = [step * min(t, frames - 1) for t in range(frames + still)]
    clean = [photo[:, top:top + height, x:x + width].clone() for x in xs]
    restored = [blurred[:, top:top + height, x:x + width].clone() for x in xs]
    return clean, restored, (-step, 0)  # the window moves right: the scene moves left


def _affine_grid(t: int, width: int, height: int, photo_shape, spin: float, zoom: float) -> torch.Tensor:
    """Sampling grid (normalised to the photograph) of frame t: rotated by spin·t, zoomed by zoom^t."""
    angle, scale = math.radians(spin * t), zoom ** t
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64) - (height - 1) / 2,
                            torch.arange(width, dtype=torch.float64) - (width - 1) / 2, indexing="ij")
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    px, py = c * xs - s * ys, s * xs + c * ys  # photograph pixels relative to its centre
    ph, pw = photo_shape[1:]
    return torch.stack([px / ((pw - 1) / 2), py / ((ph - 1) / 2)], -1)[None].float()


def _object_box(t: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the sliding rectangle in frame t."""
    return 20 + 2 * t, 30 + t, width // 3, height // 3


def nonrigid(photo: torch.Tensor, cutout: torch.Tensor, frames: int, width: int = 320, height: int = 240,
             spin: float = 0.5, zoom: float = 1.006, still: int = 0):
    """(clean frames, x* frames, backward flows (entry t for frame t)) of the clip described above."""
    clean, flows = [], [None]
    for t in range(frames + still):
        tt = min(t, frames - 1)
        grid = _affine_grid(tt, width, height, photo.shape, spin, zoom)
        frame = F.grid_sample(photo[None], grid, mode="bicubic", align_corners=True)[0].clamp(0, 1)
        x, y, w, h = _object_box(tt, width, height)
        frame[:, y:y + h, x:x + w] = cutout[:, 40:40 + h, 40:40 + w]
        clean.append(quantize(frame))
        if t > 0:
            flows.append(_flow(tt, t != tt, width, height, spin, zoom))
    return clean, [_blur(c) for c in clean], flows


def _flow(t: int, still: bool, width: int, height: int, spin: float, zoom: float) -> np.ndarray:
    """Exact backward flow of frame t: a similarity on the background, (−2, −1) on the rectangle (pixels
    the rectangle uncovered were hidden in frame t − 1: their flow points at it)."""
    if still:
        return np.zeros((height, width, 2), np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = xs - (width - 1) / 2, ys - (height - 1) / 2
    # frame t shows photograph point R(θt) p / z^t at p, frame t−1 shows it at R(θ) p / z
    angle = math.radians(spin)
    c, s = math.cos(angle) / zoom, math.sin(angle) / zoom
    px, py = c * cx - s * cy, s * cx + c * cy
    flow = np.stack([px - cx, py - cy], -1)
    x, y, w, h = _object_box(t, width, height)
    flow[y:y + h, x:x + w] = (-2.0, -1.0)
    return flow.astype(np.float32)


__all__ = ["pan", "nonrigid", "BLUR"]
