"""Detail transport: DOT on the fine scales of an image, the restorer's coarse scales kept.

Every image is split with a Gaussian low-pass L_σ (σ in pixels):

    x = L_σ(x) + H_σ(x),        H_σ(x) = x − L_σ(x)

DOT's statistics are fitted on, and its map applied to, the *detail images*
H_σ(x) + ½ (grey-centred, so a VAE sees an image-like input), and the restorer's own
coarse scales are put back after decoding:

    x̂0 = D(T(E(H_σ(x*) + ½))) − ½ + L_σ(x*)

(projected back onto the detail band so that x̂0's low-pass is x*'s, see :func:`recombine`).

Why: a restorer's low frequencies are already accurate (denoisers, deblurrers and
super-resolvers all lose detail, not colour or layout), while the latent patch Gaussians
of a dozen unrelated photographs differ mostly in exactly those low frequencies: which
colours and scenes the few fit images happen to show. Transporting whole images then
moves every new image towards the fit photographs' colours (measurements: README,
"Detail transport", and docs/studies.md). ``lowpass_sigma=None`` gives Adrai et al.'s
original whole-image transport.

Split kinds (``kind``; the operator file records it). A Gaussian low-pass smooths strong
edges, so their step lands in the detail image as a pair of lobes; the transport amplifies
detail, and amplified lobes are light and dark halos along the edge. Hence:

- ``"gaussian"``: L = L_σ, the Gaussian above (the split before halos were measured);
- ``"guided"``: L = the guided filter (He, Sun, Tang 2013) of x guided by its own grey
  image, box radius r = ⌈2σ⌉, ε = :data:`GUIDED_EPS`: an edge-preserving low-pass, so strong
  edges stay in L (kept from x*) and only texture is transported;
- ``"gaussian+clamp"`` / ``"guided+clamp"``: the same split, then x̂0 is clamped to the
  local range of x* (min/max over a (2⌈σ⌉+1)² window) widened by the local range of the
  decoded detail, see :func:`recombine`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .filters import gaussian_blur

#: Added to H_σ(x) so the codec sees values around mid-grey rather than around 0.
GREY = 0.5
#: Split kinds, see the module docstring; "gaussian" is the historical one.
SPLITS = ("gaussian", "guided", "gaussian+clamp", "guided+clamp")
#: The default split kind, chosen by measurement (docs/studies.md).
DEFAULT_SPLIT = "guided"
#: Strong edges of x* (:func:`strong_edges`): grey gradient magnitude at least this (a step of
#: ≥ 0.2, about 51 levels of 255, between neighbours), widened by EDGE_BAND pixels. Near them
#: x̂0 stays within x*'s own range over EDGE_RANGE pixels (:func:`recombine`).
EDGE_THRESHOLD = 0.1
EDGE_BAND = 3
EDGE_RANGE = 6
#: Guided-filter regulariser ε (variance, intensities in [0, 1]): windows whose grey variance is
#: well above ε (an edge of contrast ≳ 2√ε = 0.2) are kept in the low-pass.
GUIDED_EPS = 0.01


def check_split(kind: str) -> str:
    if kind not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {kind!r}")
    return kind


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)² window of (B, C, H, W), reflected (replicated for tiny maps) borders.

    Separable (a column mean, then a row mean): 2(2r+1) additions per pixel instead of
    (2r+1)², the same mean up to float64 rounding (~1e-15); 3.4× faster at r = 8.
    """
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    k = 2 * radius + 1
    padded = F.pad(x, (radius,) * 4, mode=mode)
    return F.avg_pool2d(F.avg_pool2d(padded, (k, 1), stride=1), (1, k), stride=1)


def guided_lowpass(x: torch.Tensor, sigma: float, eps: float = GUIDED_EPS) -> torch.Tensor:
    r"""Guided filter of (B, C, H, W) x by its grey image I (He et al. 2013, eq. 5-8), r = ⌈2σ⌉:

    .. math:: a_c = \frac{\operatorname{cov}_w(I, x_c)}{\operatorname{var}_w(I) + \epsilon},\quad
              b_c = \bar x_c - a_c \bar I,\quad L(x)_c = \bar a_c I + \bar b_c,

    with bars the box means over the (2r+1)² windows. Flat windows give L ≈ the box mean
    (a smoothing low-pass); windows across an edge give a ≈ 1, L ≈ x: the edge is kept.
    """
    radius = max(1, math.ceil(2 * sigma))
    xd = x.to(torch.float64)
    luma = torch.tensor((0.299, 0.587, 0.114), dtype=xd.dtype, device=xd.device)
    guide = (xd * luma.view(1, 3, 1, 1)).sum(1, keepdim=True) if xd.shape[1] == 3 else xd.mean(1, keepdim=True)
    mean_i = _box(guide, radius)
    mean_x = _box(xd, radius)
    cov_ix = _box(guide * xd, radius) - mean_i * mean_x
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ix / (var_i + eps)
    b = mean_x - a * mean_i
    return (_box(a, radius) * guide + _box(b, radius)).to(x.dtype)


def strong_edges(x: torch.Tensor, threshold: float = EDGE_THRESHOLD, band: int = EDGE_BAND) -> torch.Tensor:
    """(B, 1, H, W) bool: pixels within ``band`` px (Chebyshev) of a strong edge of x's grey image.

    A strong edge: central-difference gradient magnitude |∇g| ≥ ``threshold`` of the luma
    g = 0.299 R + 0.587 G + 0.114 B (replicated borders).
    """
    luma = torch.tensor((0.299, 0.587, 0.114), dtype=x.dtype, device=x.device)
    g = (x * luma.view(1, 3, 1, 1)).sum(1, keepdim=True) if x.shape[1] == 3 else x.mean(1, keepdim=True)
    p = F.pad(g, (1, 1, 1, 1), mode="replicate")
    dx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    dy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    edges = (dx.square() + dy.square() >= threshold**2).to(x.dtype)
    return _max_filter(edges, band) > 0


def _window_max(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    # Max over [i − r, i + r] along ``dim`` (window clipped at the ends): pad with −inf, then
    # maxima of doubling windows (1, 2, 4, …) and one last overlapping step, ~log₂(2r+1)
    # elementwise maxima of views; CPU max_pool2d takes several times longer.
    k = 2 * radius + 1
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [radius, radius]
    m = F.pad(x, pad, value=float("-inf"))
    width = 1
    while 2 * width <= k:
        n = m.shape[dim] - width
        m = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, width, n))
        width *= 2
    if width < k:  # m[i] = max x[i : i + width]; the window k = width + rest overlaps two of them
        rest = k - width
        n = m.shape[dim] - rest
        m = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, rest, n))
    return m


def _max_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the (2r+1)² window of (B, C, H, W), clipped at borders: separable, exact."""
    return _window_max(_window_max(x, radius, -2), radius, -1)


def local_range(x: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the (2r+1)² window around each pixel of (B, C, H, W), window clipped at borders."""
    return -_max_filter(-x, radius), _max_filter(x, radius)


def lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """L_σ(x): separable Gaussian blur of (B, C, H, W), std σ pixels, reflected borders."""
    return gaussian_blur(x, sigma)


def split(x: torch.Tensor, sigma: float | None, kind: str = "gaussian") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x − L(x) + ½, L(x)) with L the ``kind``'s low-pass; with σ None or 0, (x, None): whole images."""
    if not sigma:
        return x, None
    low = guided_lowpass(x, sigma) if check_split(kind).startswith("guided") else lowpass(x, sigma)
    return x - low + GREY, low


def project_change(change: torch.Tensor, sigma: float) -> torch.Tensor:
    """(I − G_σ)·Δ: the change Δ with its Gaussian low-pass removed (its mean kept at 0)."""
    return change - lowpass(change, sigma)


def recombine(
    decoded: torch.Tensor, low: torch.Tensor | None, kind: str = "gaussian",
    reference: torch.Tensor | None = None, sigma: float | None = None,
) -> torch.Tensor:
    r"""Put the restorer's coarse scales back: x̂0 = x* + (I − G_σ)(d − H(x*)) (identity when ``low`` is None).

    With d = D(·) − ½ the decoded, transported detail, x* the restoration (``reference``) and
    H(x*) = x* − L(x*) its own detail image, Δ = d − H(x*) is what transport changed. The
    codec and the map carry low frequencies into d (a few levels of colour over regions, and a
    shift of the mean), so Δ is projected back onto the detail band by removing its Gaussian
    low-pass G_σ (σ = the split's σ):

    .. math:: \hat x_0 = x^* + \Delta - G_\sigma \Delta
              = L(x^*) + d - G_\sigma\big(d - H(x^*)\big).

    Then G_σ x̂0 − G_σ x* = G_σ(I − G_σ)Δ, at most ¼ of Δ's content near the cut-off and 0 at the
    mean: the colours are x*'s. An identity map through a perfect codec gives x* back. (The
    plain L(x*) + d − G_σ d would also remove x*'s own detail low-pass G_σ H(x*), which the
    guided split leaves around edges.) Without ``reference`` or ``sigma``: L(x*) + d.

    Within :data:`EDGE_BAND` px of a strong edge of x* (:func:`strong_edges`), x̂0 is then
    clamped to x*'s local range over :data:`EDGE_RANGE` px: transported detail there would be
    a light or dark fringe (a halo) beyond both sides of the edge.

    ``"…+clamp"`` kinds then clamp the result to [lo − δ, hi + δ], with [lo, hi] the local range
    of x* over the (2⌈σ⌉+1)² window and δ half the local range of the decoded detail over the
    same window: texture keeps its own amplitude, while a detail lobe cannot push past the
    brightest or darkest side of a nearby edge by more than the texture around it.
    """
    if low is None:
        return decoded
    if reference is None or not sigma:
        out = decoded - GREY + low
    else:
        reference = reference.to(decoded)
        out = reference + project_change(decoded - GREY - (reference - low), sigma)
        out = _clamp_at_edges(out, reference)
    if check_split(kind).endswith("+clamp"):
        if reference is None or not sigma:
            raise ValueError("a '+clamp' split needs the restoration (reference) and sigma")
        radius = max(1, math.ceil(sigma))
        lo, hi = local_range(reference.to(out), radius)
        dlo, dhi = local_range(decoded, radius)
        margin = (dhi - dlo) / 2
        out = torch.maximum(torch.minimum(out, hi + margin), lo - margin)
    return out


def _clamp_at_edges(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # Near a strong edge of x*, transported detail reads as a halo, a fringe brighter or darker
    # than either side: there x̂0 stays within x*'s own range over EDGE_RANGE px.
    lo, hi = local_range(reference, EDGE_RANGE)
    return torch.where(strong_edges(reference), out.clamp(lo, hi), out)


def describe(sigma: float | None, kind: str = "gaussian") -> str:
    """What is transported, in words, for logs and reports."""
    if not sigma:
        return "whole images"
    low = "an edge-preserving guided filter" if kind.startswith("guided") else "a Gaussian low-pass"
    clamp = ", clamped to the local range" if kind.endswith("+clamp") else ""
    return f"details finer than {low} of sigma {sigma:g} px{clamp}"
