"""Distortion and perception measures: per-image functions and streaming metric objects.

``from dotrestore import metrics`` keeps the functions of the former ``metrics.py``
(:mod:`.functional`); :mod:`.streaming` has the ``update``/``compute`` objects whose states
merge across processes. :data:`PER_IMAGE_METRICS` is the one list of per-image measures an
experiment reports (a mean over test images each): add a ``(name, fn(image, clean) -> float)``
entry there and it appears in results.csv, the report table and the curve's panels.
"""

from __future__ import annotations

from .functional import (  # noqa: F401
    PATCH_FD_STRIDE,
    PERCEPTUAL_METRICS,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    WEIGHTS_NEEDED,
    gaussian_fd,
    latent_fd,
    mse,
    offline,
    patch_fd,
    patch_moments,
    perceptual_availability,
    perceptual_metrics,
    psnr,
    ssim,
    weights_cached,
)
from .perception import halo_measure, spectrum_distance
from .streaming import FID, KID, LPIPS, PatchMoments, PerImageMean, frechet_distance, perceptual_metric  # noqa: F401
from .temporal import TemporalChange, flicker_ratio, temporal_change  # noqa: F401
from .warp import WarpError, warp_error  # noqa: F401

__all__ = [
    "mse", "psnr", "ssim", "patch_moments", "gaussian_fd", "latent_fd", "patch_fd",
    "PATCH_FD_STRIDE", "perceptual_availability", "perceptual_metrics",
    "PER_IMAGE_METRICS", "PERCEPTION_METRICS", "PerImageMean", "PatchMoments", "frechet_distance",
    "FID", "KID", "LPIPS", "perceptual_metric", "flicker_ratio", "temporal_change", "TemporalChange",
    "warp_error", "WarpError",
]

#: Per-image measures averaged over the test images: (column name, fn(image, clean) -> float).
#: Distortion first, then the perception judges of :mod:`.perception`.
PER_IMAGE_METRICS: list[tuple[str, object]] = [("mse", mse), ("psnr", psnr), ("ssim", ssim),
                                               ("spectrum_distance", spectrum_distance),
                                               ("halo_measure", halo_measure)]

#: Columns that measure perception (lower is better): the curve figure gets one panel each.
PERCEPTION_METRICS: list[str] = ["latent_fd", "patch_fd", "spectrum_distance", "halo_measure"]
