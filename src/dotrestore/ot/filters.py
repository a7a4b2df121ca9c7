"""The one Gaussian kernel of dotrestore, and the separable blur built on it.

Used by the blur degradation and restorer, the detail split L_σ (:mod:`dotrestore.ot.split`),
the SSIM window and the gaussian patch weighting, so that all of them mean the same filter:

.. math:: g_\\sigma(t) = \\exp\\!\\big(-t^2 / (2\\sigma^2)\\big), \\quad t = -r, \\dots, r,

normalised to sum 1 unless asked otherwise, with radius r = ⌈3σ⌉ (at least 1) by default.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

#: Largest σ (pixels) accepted anywhere a Gaussian blur is configured: wider kernels only
#: flatten an image to its mean, and a bound keeps the radius ⌈3σ⌉ computable.
MAX_SIGMA = 1000.0


def gaussian_kernel1d(sigma: float, radius: int | None = None, normalize: bool = True,
                      dtype=torch.float32, device=None) -> torch.Tensor:
    """Taps g_σ(t), t = -r..r (r = ⌈3σ⌉ ≥ 1 unless ``radius`` is given), computed in float64.

    ``normalize=False`` keeps the centre tap at 1 (the patch weighting's convention).
    """
    sigma = float(sigma)
    if not 0 < sigma <= MAX_SIGMA:
        raise ValueError(f"Gaussian sigma must be in (0, {MAX_SIGMA:g}] pixels, got {sigma!r}")
    radius = max(1, math.ceil(3 * sigma)) if radius is None else int(radius)
    if radius < 0:
        raise ValueError(f"Gaussian radius must be >= 0, got {radius}")
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    if normalize:
        kernel = kernel / kernel.sum()
    return kernel.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _cached_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Detail transport blurs every batch: building the taps on the host and copying them to a
    # GPU each time costs more than the blur itself. Read-only: never modified in place.
    return gaussian_kernel1d(sigma, dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with :func:`gaussian_kernel1d`, reflected borders.

    Reflect padding needs radius < side; smaller images fall back to replicated borders.
    """
    kernel = _cached_kernel(float(sigma), x.dtype, x.device)
    radius = kernel.numel() // 2
    channels = x.shape[1]
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    if x.device.type == "cpu" and radius <= _SHIFTED_SUMS_RADIUS:
        return _shifted_sums(_shifted_sums(x, kernel, -1), kernel, -2)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


#: on the CPU, kernels up to this radius are applied as sums of shifted views (twice as fast as
#: a depthwise convolution there, and the same sums in the same order)
_SHIFTED_SUMS_RADIUS = 64


def _shifted_sums(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Σ_t g(t) · x[i + t] along ``dim`` of an already padded x (the result is 2r shorter there)."""
    n = x.shape[dim] - kernel.numel() + 1
    taps = kernel.tolist()
    out = x.narrow(dim, 0, n) * taps[0]
    for t, tap in enumerate(taps[1:], start=1):
        out.add_(x.narrow(dim, t, n), alpha=tap)
    return out


__all__ = ["MAX_SIGMA", "gaussian_kernel1d", "gaussian_blur"]
