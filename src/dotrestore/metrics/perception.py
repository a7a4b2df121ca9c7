r"""Perception judged independently of DOT's latent space: spectrum distance and halo measure.

``latent_fd`` is measured in the very space DOT transports, so it cannot be the only judge.
The two pure per-image functions here look at pixels only:

- :func:`spectrum_distance`: how far the fine-scale power spectrum of an image is from the
  clean image's (blur lowers it, noise and over-sharpening raise it);
- :func:`halo_measure`: how much an image overshoots the clean image's local range next to
  strong edges (the light or dark fringes that sharpening and detail amplification draw).

Images are (3, H, W) (or (1, H, W)) tensors in [0, 1]; both functions return a Python float
and are 0 when the image equals the clean image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["grey", "radial_power_spectrum", "spectrum_distance", "strong_edge_band", "halo_measure"]

#: ITU-R BT.601 luma weights for the grey image.
LUMA = (0.299, 0.587, 0.114)
#: Floor added to the power before log10, far below any photograph's spectrum.
POWER_FLOOR = 1e-20


def _check(image: torch.Tensor, clean: torch.Tensor) -> None:
    for name, t in (("image", image), ("clean", clean)):
        if not isinstance(t, torch.Tensor) or t.ndim != 3 or t.shape[0] not in (1, 3):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a (3, H, W) or (1, H, W) tensor, got {shape}")
    if image.shape != clean.shape:
        raise ValueError(f"image and clean differ in shape: {tuple(image.shape)} vs {tuple(clean.shape)}")
    if min(image.shape[-2:]) < 8:
        raise ValueError(f"images must be at least 8×8 pixels, got {tuple(image.shape[-2:])}")


def grey(image: torch.Tensor) -> torch.Tensor:
    """Luma 0.299 R + 0.587 G + 0.114 B of a (3, H, W) image (a (1, H, W) one is returned as (H, W)), float64."""
    x = image.detach().to(torch.float64)
    if x.shape[0] == 1:
        return x[0]
    w = torch.tensor(LUMA, dtype=torch.float64, device=x.device)
    return (x * w[:, None, None]).sum(0)


def radial_power_spectrum(g: torch.Tensor) -> torch.Tensor:
    r"""Radially averaged power spectrum P(k), k = 0 … N/2, of a grey image g (H, W), N = min(H, W).

    .. math:: P(k) = \operatorname{mean}\{\,|\hat g(f)|^2 / (HW) :
              \operatorname{round}(N\,\lVert f\rVert) = k\,\},

    with f the 2-D frequency in cycles per pixel (``torch.fft.fftfreq``), so bin k is the
    ring at radius k / N cycles per pixel and k = N/2 is the Nyquist frequency. Frequencies
    beyond the Nyquist radius (the corners) are left out.
    """
    h, w = g.shape
    n = min(h, w)
    power = torch.fft.fft2(g).abs().square() / (h * w)
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=g.device)
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=g.device)
    radius = torch.sqrt(fy[:, None].square() + fx[None, :].square())
    k = torch.round(radius * n).long().reshape(-1)
    keep = k <= n // 2
    bins = n // 2 + 1
    total = torch.zeros(bins, dtype=torch.float64, device=g.device).index_add_(0, k[keep], power.reshape(-1)[keep])
    count = torch.zeros(bins, dtype=torch.float64, device=g.device).index_add_(
        0, k[keep], torch.ones_like(power.reshape(-1)[keep])
    )
    return total / count.clamp(min=1)


def spectrum_distance(image: torch.Tensor, clean: torch.Tensor) -> float:
    r"""High-frequency log power-spectrum distance between an image and its clean counterpart.

    With :math:`P_x` and :math:`P_c` the radially averaged power spectra of the grey images
    (:func:`radial_power_spectrum`, N = min(H, W)), over the high-frequency half of the rings,
    :math:`\mathcal K = \{k : N/4 < k \le N/2\}`:

    .. math:: d_{\text{spec}}(x, c) = \frac{1}{|\mathcal K|}\sum_{k\in\mathcal K}
              \big|\log_{10}(P_x(k) + \epsilon) - \log_{10}(P_c(k) + \epsilon)\big|,

    ε = 1e-20. 0 for the clean image itself; 1 means the fine scales carry, on average, ten
    times too much or too little power (blur is below, noise above).
    """
    _check(image, clean)
    px = radial_power_spectrum(grey(image))
    pc = radial_power_spectrum(grey(clean))
    n = min(image.shape[-2:])
    k = torch.arange(px.numel(), device=px.device)
    high = (k > n / 4) & (k <= n // 2)
    diff = (torch.log10(px + POWER_FLOOR) - torch.log10(pc + POWER_FLOOR)).abs()
    return float(diff[high].mean())


def _gradient_magnitude(g: torch.Tensor) -> torch.Tensor:
    # Central differences, replicate borders: a step of height h gives h/2 on both sides.
    p = F.pad(g[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    dx = (p[1:-1, 2:] - p[1:-1, :-2]) / 2
    dy = (p[2:, 1:-1] - p[:-2, 1:-1]) / 2
    return torch.sqrt(dx.square() + dy.square())


def _max_pool(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the (2r+1)×(2r+1) window around each pixel of (C, H, W), window clipped at borders."""
    k = 2 * radius + 1
    return F.max_pool2d(x[None], k, stride=1, padding=radius)[0] if radius else x


def strong_edge_band(clean: torch.Tensor, threshold: float = 0.1, radius: int = 3) -> torch.Tensor:
    r"""Boolean (H, W) mask: pixels within ``radius`` (Chebyshev distance) of a strong edge.

    A strong edge is a pixel where the grey clean image's central-difference gradient has
    magnitude :math:`\lVert\nabla g\rVert \ge` ``threshold`` (0.1: a step of ≥ 0.2, about
    51 grey levels of 255, between its neighbours).
    """
    edges = (_gradient_magnitude(grey(clean)) >= threshold).to(torch.float64)
    return _max_pool(edges[None], radius)[0] > 0


def halo_measure(image: torch.Tensor, clean: torch.Tensor, threshold: float = 0.1, radius: int = 3) -> float:
    r"""Mean overshoot of ``image`` beyond the clean image's local range in a band around strong edges.

    With B the band of pixels within ``radius`` r of a strong edge of the clean image c
    (:func:`strong_edge_band`) and, per channel, the local range of c over the
    (2r+1)×(2r+1) window W(u) around u,

    .. math:: \text{lo}(u) = \min_{v\in W(u)} c(v),\quad \text{hi}(u) = \max_{v\in W(u)} c(v),

    .. math:: h(x, c) = \frac{1}{3|B|}\sum_{u\in B}\sum_{\text{channels}}
              \big[(x(u) - \text{hi}(u))_+ + (\text{lo}(u) - x(u))_+\big],

    in intensity units of [0, 1]. A halo is a light or dark fringe along an edge that goes
    beyond anything the clean picture shows nearby, so it counts; a blurred (monotone) edge
    stays within the range and counts 0; the clean image itself scores exactly 0. Images
    without strong edges score 0.
    """
    _check(image, clean)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    band = strong_edge_band(clean, threshold, radius)
    if not bool(band.any()):
        return 0.0
    c = clean.detach().to(torch.float64)
    x = image.detach().to(torch.float64, copy=False).to(c.device)
    hi = _max_pool(c, 2 * radius)
    lo = -_max_pool(-c, 2 * radius)
    over = (x - hi).clamp(min=0) + (lo - x).clamp(min=0)  # (C, H, W)
    return float(over[:, band].mean())
