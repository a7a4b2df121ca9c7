"""The perception–distortion trade-off as a blend, with one α or an α per pixel.

Freirich, Michaeli and Meir (NeurIPS 2021) trace the whole trade-off with

.. math:: \\hat x_\\alpha = (1 - \\alpha)\\,\\hat x_0 + \\alpha\\,x^*,

α = 1 the restorer's x*, α = 0 the perceptual optimum x̂0 = T(x*). Since x̂0 and x* are
computed once, α may as well differ from pixel to pixel: an α map A (H, W) or (B, 1, H, W)
gives x̂_A = (1 − A)·x̂0 + A·x* pixel by pixel (realism on walls and foliage, the restorer's own
faces and text). :func:`feather` softens a map's edges so that no seam appears, and
:func:`latent_alpha` brings a map to a latent grid for latent interpolation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: α of the explorer's slider and of the API; |α| above ALPHA_LIMIT is refused everywhere: the
#: blend of two images in [0, 1] is then far outside [0, 1] and saturates to black or white.
ALPHA_LIMIT = 1000.0


def as_alpha_map(alpha: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """An α map (H, W), (1, H, W), (B, 1, H, W) or (1, 1, H, W) as float64 (B, 1, H, W) for images ``shape``.

    float64, so that ``1 − α`` is rounded once, exactly as for a scalar α (see :func:`blend`).
    """
    batch, _, height, width = shape
    if not isinstance(alpha, torch.Tensor) or alpha.is_complex() or alpha.dtype == torch.bool:
        raise TypeError(f"an α map must be a real tensor, got {type(alpha).__name__}")
    a = alpha.detach().to(torch.float64)
    if a.dim() == 2:
        a = a[None, None]
    elif a.dim() == 3 and a.shape[0] == 1:
        a = a[None]
    if a.dim() != 4 or a.shape[1] != 1 or a.shape[0] not in (1, batch) or tuple(a.shape[-2:]) != (height, width):
        raise ValueError(f"an α map must be (H, W) or (B, 1, H, W) with H, W = {height}, {width} and B = 1 or "
                         f"{batch}, got {tuple(alpha.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("an α map must be finite (it holds NaN or infinity)")
    return a.expand(batch, 1, height, width)


def blend(x0: torch.Tensor, x_star: torch.Tensor, alpha) -> torch.Tensor:
    """x̂α = clip((1 − α)·x̂0 + α·x*, 0, 1): the pixel interpolation of the trade-off.

    ``alpha`` is a number or an α map (see :func:`as_alpha_map`). A map whose value is α
    everywhere gives the same bits as the number α: both round 1 − α (computed in float64)
    and α to the images' precision before multiplying.
    """
    if not isinstance(alpha, torch.Tensor):
        a = float(alpha)
        return ((1 - a) * x0 + a * x_star).clamp_(0, 1)
    a = as_alpha_map(alpha, x0.shape).to(x0.device)
    return ((1 - a).to(x0.dtype) * x0 + a.to(x0.dtype) * x_star).clamp_(0, 1)


def feather_kernel(width: int) -> torch.Tensor:
    """A box of ``width`` pixels sampled at pixel centres (sums to 1): a hard edge becomes a linear ramp.

    Odd width: ``width`` taps of 1/width; even width: [½, 1, …, 1, ½]/width (width + 1 taps), so
    the kernel is always centred. Across a step from a to b the ramp rises by at most
    |b − a| / width per pixel, over about ``width`` pixels centred on the edge.
    """
    if width < 1:
        raise ValueError(f"a feather width must be at least 1 pixel, got {width}")
    taps = torch.ones(width + (1 - width % 2), dtype=torch.float64)
    if width % 2 == 0:
        taps[0] = taps[-1] = 0.5
    return taps / width


def feather(alpha: torch.Tensor, width: int) -> torch.Tensor:
    """The map (B, 1, H, W) smoothed by the separable :func:`feather_kernel` (edges replicated).

    Where the map is constant over the kernel's window the value is kept bit for bit (a sum of
    weights may round): a constant map stays exactly its α and only pixels within the feather
    width of an edge change. ``width = 0`` returns the map unchanged.
    """
    if width == 0:
        return alpha
    a = alpha.to(torch.float64)
    taps = feather_kernel(int(width)).tolist()
    r = len(taps) // 2
    padded = F.pad(a, (r, r, r, r), mode="replicate")
    # shifted slices, not conv2d/max_pool2d: 2.6x less CPU time than float64 conv2d on a 500x500 map
    smooth = _separable(padded, lambda parts: sum(w * p for w, p in zip(taps, parts)), len(taps))
    high = _separable(padded, lambda parts: _reduce(torch.maximum, parts), len(taps))
    low = _separable(padded, lambda parts: _reduce(torch.minimum, parts), len(taps))
    return torch.where(high == low, a, smooth)


def _reduce(op, parts: list[torch.Tensor]) -> torch.Tensor:
    out = parts[0]
    for p in parts[1:]:
        out = op(out, p)
    return out


def _separable(padded: torch.Tensor, combine, taps: int) -> torch.Tensor:
    """``combine`` of the ``taps`` shifted copies along the columns, then along the rows (the valid part)."""
    w = padded.shape[-1] - taps + 1
    rows = combine([padded[..., :, i:i + w] for i in range(taps)])
    h = padded.shape[-2] - taps + 1
    return combine([rows[..., i:i + h, :] for i in range(taps)])


def latent_alpha(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An α map (B, 1, H, W) averaged onto a latent grid ``size`` = (h, w) (area averaging).

    Latent interpolation blends latents, (1 − A)·T(z) + A·z, so the map is taken at the
    latent's resolution: each latent position gets the mean α of the pixels it covers.
    """
    return F.adaptive_avg_pool2d(alpha.to(torch.float64), tuple(size))


__all__ = ["as_alpha_map", "blend", "feather", "feather_kernel", "latent_alpha"]
