"""Octave bands of an image: a partition of its spectrum that sums back to the image.

With r = |f| the radial frequency in cycles per pixel and cut-offs c_1 < … < c_K (by default
1/16, 1/8, 1/4: the octaves of a Laplacian pyramid), step functions s_k(r) rise smoothly from 0
to 1 across ``soft`` octaves centred on c_k,

    s_k(r) = ½ + ½ sin(π/2 · clip(log2(r / c_k) / soft, −1, 1)),

and band k keeps the frequencies between c_k and c_{k+1}:

    b_0 = F⁻¹[(1 − s_1) F x],   b_k = F⁻¹[(s_k − s_{k+1}) F x],   b_K = F⁻¹[s_K F x],   Σ_k b_k = x.

The image is mirrored by ``pad`` pixels before the FFT, so its borders are not seen as edges
(a periodic FFT would wrap the right border onto the left). Used by :mod:`dotrestore.temporal`
to give detail the energy it had, band by band: a Gaussian split is too gentle near the Nyquist
frequency, where warping and averaging lose the most.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

#: The default cut-offs (cycles per pixel): three octaves below the Nyquist frequency.
OCTAVES = (1 / 16, 1 / 8, 1 / 4)


@functools.lru_cache(maxsize=8)
def band_filters(height: int, width: int, cuts=OCTAVES, soft: float = 0.25) -> tuple[torch.Tensor, ...]:
    """The K + 1 radial filters (height, width // 2 + 1) of the module's docstring; they sum to 1.
    Cached: every frame of a clip has the same size (``cuts`` must be a tuple)."""
    if list(cuts) != sorted(cuts) or not all(0 < c < 0.5 for c in cuts):
        raise ValueError(f"cuts must increase within (0, 0.5), got {tuple(cuts)}")
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    r = torch.sqrt(fx ** 2 + fy ** 2).clamp_min(1e-9)
    filters, below = [], torch.ones_like(r)
    for c in cuts:
        u = (torch.log2(r / c) / soft).clamp(-1, 1) if soft > 0 else torch.sign(r - c)
        step = 0.5 + 0.5 * torch.sin(u * (math.pi / 2))
        filters.append(below - step)
        below = step
    filters.append(below)
    return tuple(f.float() for f in filters)


def fft_size(n: int) -> int:
    """The smallest 5-smooth number (2^a 3^b 5^c) ≥ n: sizes the FFT factors quickly."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def octave_bands(image: np.ndarray, cuts=OCTAVES, soft: float = 0.25, pad: int = 16) -> list[np.ndarray]:
    """The bands b_0 (coarsest) … b_K (finest) of an (H, W, C) float32 array; they sum to it."""
    height, width = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    pad = max(0, min(pad, height - 1, width - 1))
    # mirrored at least ``pad`` pixels on each side, up to a size whose FFT is fast
    bottom = min(fft_size(height + 2 * pad) - height - pad, height - 1)
    right = min(fft_size(width + 2 * pad) - width - pad, width - 1)
    if pad or bottom or right:
        x = torch.nn.functional.pad(x[None], (pad, right, pad, bottom), mode="reflect")[0]
    spectrum = torch.fft.rfft2(x)
    size = tuple(x.shape[-2:])
    bands = []
    for f in band_filters(*size, cuts=tuple(cuts), soft=soft)[:-1]:
        band = torch.fft.irfft2(spectrum * f, s=size)[:, pad:pad + height, pad:pad + width]
        bands.append(band.permute(1, 2, 0).contiguous().numpy())
    bands.append(image - sum(bands))  # the finest: what the others leave (one inverse FFT fewer)
    return bands


__all__ = ["OCTAVES", "band_filters", "fft_size", "octave_bands"]
