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
#: Near-saturated pixels (:func:`keep_hue`): where the brighter of x* and x̂0 has a channel at or above
#: BRIGHT[1], the transported change may brighten, darken or (de)saturate the pixel but not turn
#: its hue; below BRIGHT[0] it is free, in between the two blend linearly.
BRIGHT = (0.75, 0.9)
#: :func:`recombine` works on bands of rows of about this many pixels: whole, its temporaries
#: are about a dozen full-size copies (3.5 GB for a 24-megapixel photograph)
BAND_PIXELS = 1 << 20


def check_split(kind: str) -> str:
    if kind not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {kind!r}")
    return kind


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)² window of (B, C, H, W), reflected (replicated for tiny maps) borders.

    Separable (a column mean, then a row mean): 2(2r+1) additions per pixel instead of
    (2r+1)². Used for maps too small for :func:`_box_valid`'s reflected margin.
    """
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    k = 2 * radius + 1
    padded = F.pad(x, (radius,) * 4, mode=mode)
    return F.avg_pool2d(F.avg_pool2d(padded, (k, 1), stride=1), (1, k), stride=1)


def _window_sum(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sums of k consecutive samples along ``dim`` (the n − k + 1 windows inside x).

    By doubling: partial sums of widths 1, 2, 4, … (one addition each) are combined after
    k's binary digits, ⌊log2 k⌋ + popcount(k) − 1 additions per sample instead of k − 1.
    Every window sum is a tree of depth ~log2 k, so float32 rounding stays a few ulps
    (a running sum, as with a cumulative sum, would grow with the image width).
    """
    length = x.shape[dim] - k + 1
    pieces, partial, width, offset = [], x, 1, 0
    while True:
        if k & width:
            pieces.append(partial.narrow(dim, offset, length))
            offset += width
        if 2 * width > k:
            break
        n = partial.shape[dim] - width
        partial = partial.narrow(dim, 0, n) + partial.narrow(dim, width, n)
        width *= 2
    out = pieces[0].clone() if len(pieces) == 1 else pieces[0] + pieces[1]
    for piece in pieces[2:]:
        out.add_(piece)
    return out


def _box_valid(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)² windows lying inside (…, H, W): shape (…, H − 2r, W − 2r)."""
    k = 2 * radius + 1
    return _window_sum(_window_sum(x, k, -1), k, -2).div_(k * k)


def _guide_weights(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """w with I = Σ_c w_c x_c: BT.601 luma for RGB, the channel mean otherwise."""
    if channels == 3:
        return torch.tensor((0.299, 0.587, 0.114), dtype=dtype, device=device).view(1, 3, 1, 1)
    return torch.full((1, channels, 1, 1), 1 / channels, dtype=dtype, device=device)


#: the guided filter works on bands of about this many pixels (plus a margin of 4r rows):
#: its temporaries stay in cache and bounded whatever the image size
GUIDED_BAND_PIXELS = 1 << 17
#: the filter's values are centred on this constant: the variances and covariances it
#: takes as differences of means are invariant to it, and centred sums round far less
_CENTRE = 0.5


def guided_lowpass(x: torch.Tensor, sigma: float, eps: float = GUIDED_EPS) -> torch.Tensor:
    r"""Guided filter of (B, C, H, W) x by its grey image I (He et al. 2013, eq. 5-8), r = ⌈2σ⌉:

    .. math:: a_c = \frac{\operatorname{cov}_w(I, x_c)}{\operatorname{var}_w(I) + \epsilon},\quad
              b_c = \bar x_c - a_c \bar I,\quad L(x)_c = \bar a_c I + \bar b_c,

    with bars the box means over the (2r+1)² windows, borders reflected. Flat windows give
    L ≈ the box mean (a smoothing low-pass); windows across an edge give a ≈ 1, L ≈ x: the
    edge is kept.

    I is linear in x (:func:`_guide_weights`), so its means follow from x's:
    Ī = Σ w_c x̄_c and mean(I²) = Σ w_c mean(I x_c): six box means per pixel, not eight.
    The image goes through in bands of rows, each with a 2r margin mirrored at the image's
    borders; on that margin a and b come out mirrored too, so their box means need no
    padding. Values are centred on ½, where float32 suffices (within ~3e-7 of a float64
    computation on photographs and adversarial images); float64 inputs stay float64.
    """
    radius = max(1, math.ceil(2 * sigma))
    height, width = x.shape[-2:]
    if 2 * radius >= min(height, width):
        return _guided_lowpass_small(x, radius, eps)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    margin, channels = 2 * radius, x.shape[1]
    weights = _guide_weights(channels, dtype, x.device)
    bands = math.ceil(height / max(4 * radius, GUIDED_BAND_PIXELS // (width + 2 * margin)))
    band = math.ceil(height / bands)
    out = torch.empty_like(x)
    for top in range(0, height, band):
        bottom = min(top + band, height)
        first, last = max(top - margin, 0), min(bottom + margin, height)
        # the band and 2r rows around it: the image's own rows, mirrored beyond its borders
        pad = (margin, margin, margin - (top - first), margin - (last - bottom))
        u = F.pad(x[..., first:last, :], pad, mode="reflect").to(dtype).sub_(_CENTRE)
        guide = (u * weights).sum(1, keepdim=True)
        stack = torch.cat([u, guide * u], 1)
        del u
        means = _box_valid(stack, radius)  # [x̄, mean(I x)] on the band and an r margin
        mean_x, mean_ix = means[:, :channels], means[:, channels:]
        mean_i = (mean_x * weights).sum(1, keepdim=True)
        var_i = (mean_ix * weights).sum(1, keepdim=True).addcmul_(mean_i, mean_i, value=-1).add_(eps)
        a = mean_ix.addcmul_(mean_i, mean_x, value=-1).div_(var_i)  # cov / (var + ε), in place
        mean_x.addcmul_(a, mean_i, value=-1)  # b = x̄ − a Ī, in place: means is now [b, a]
        smooth = _box_valid(means, radius)
        inner = guide[..., margin:-margin, margin:-margin]
        out[..., top:bottom, :] = smooth[:, :channels].addcmul_(smooth[:, channels:], inner).add_(_CENTRE)
    return out


def _guided_lowpass_small(x: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """:func:`guided_lowpass` for images with a side of at most 2r, in float64 with padded box means."""
    xd = x.to(torch.float64)
    guide = (xd * _guide_weights(xd.shape[1], xd.dtype, xd.device)).sum(1, keepdim=True)
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
    return (x - low).add_(GREY), low  # one full-size temporary, not two


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

    Last, near-saturated pixels keep x*'s hue (:func:`keep_hue`) and values beyond [0, 1] are
    desaturated towards their grey (:func:`clip_keeping_hue`), never clipped channel by channel.
    """
    if low is None:
        return decoded
    if reference is None or not sigma:
        return _recombine(decoded, low, kind, reference, sigma)
    height, width = decoded.shape[-2:]
    margin = _recombine_margin(sigma)
    rows = max(4 * margin, BAND_PIXELS // max(1, width))
    if height <= rows + 2 * margin:
        return _recombine(decoded, low, kind, reference, sigma)
    # Every step is local (within ``margin`` rows), so bands of rows with that margin give the
    # whole-image result while their temporaries (about a dozen copies) stay band-sized.
    out = torch.empty_like(decoded)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        first, last = max(0, top - margin), min(height, bottom + margin)
        band = _recombine(decoded[..., first:last, :], low[..., first:last, :], kind,
                          reference[..., first:last, :], sigma)
        out[..., top:bottom, :] = band[..., top - first:bottom - first, :]
    return out


def _recombine_margin(sigma: float) -> int:
    """Rows of context :func:`_recombine` needs: its widest window (the Gaussian's 3σ, the edge
    clamp's range and band, the ``+clamp`` range)."""
    return max(math.ceil(3 * sigma), EDGE_RANGE, EDGE_BAND + 1, math.ceil(sigma)) + 1


def _recombine(decoded: torch.Tensor, low: torch.Tensor, kind: str, reference: torch.Tensor | None,
               sigma: float | None) -> torch.Tensor:
    """:func:`recombine` on one block of rows (or the whole image)."""
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
    if reference is not None and sigma:  # last, so that no clamp above turns a hue back
        out = reference + keep_hue(out - reference, reference)
    return clip_keeping_hue(out)


def _chroma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, c): x = m·(1, 1, 1) + c per pixel, m the channel mean and c the chroma (Σ_c c = 0)."""
    mean = x.mean(1, keepdim=True)
    return mean, x - mean


def keep_hue(change: torch.Tensor, reference: torch.Tensor, bright: tuple[float, float] = BRIGHT) -> torch.Tensor:
    r"""The transported change Δ with its hue-turning part removed at near-saturated pixels.

    The map moves latent patches of the detail image, and the decoded detail carries colour of
    its own: at a bright yellow light x* = (231, 225, 168) the change was (−19, +24, +34), a
    green-cyan core. A change that keeps the hue of x* lies in the plane spanned by grey
    (1, 1, 1) (lighter, darker) and x*'s own chroma c* (more or less saturated)::

        Δ_hue = m_Δ·(1, 1, 1) + max(b, −1)·c*,     b = ⟨c_Δ, c*⟩ / (‖c*‖² + 10⁻⁴)

    (m, c: channel mean and chroma of a pixel, :func:`_chroma`; b ≥ −1 so that saturation is
    at most removed, never inverted: a hue is never flipped, and a near-neutral highlight,
    ‖c*‖ ≈ 0, gets no colour). Δ' = Δ + w·(Δ_hue − Δ), where w rises from 0 to 1 as the largest
    channel of x* or of x* + Δ goes from ``bright[0]`` to ``bright[1]``: texture keeps its
    colours in the rest of the image. RGB only (other channel counts are returned as they are).
    """
    if change.shape[1] != 3:
        return change
    change_mean, change_chroma = _chroma(change)
    _, chroma = _chroma(reference)
    b = (change_chroma * chroma).sum(1, keepdim=True) / (chroma.square().sum(1, keepdim=True) + 1e-4)
    kept = change_mean + b.clamp_(min=-1.0) * chroma
    value = torch.maximum(reference.amax(1, keepdim=True), (reference + change).amax(1, keepdim=True))
    weight = ((value - bright[0]) / (bright[1] - bright[0])).clamp_(0, 1)
    return change + weight * (kept - change)


def clip_keeping_hue(x: torch.Tensor) -> torch.Tensor:
    r"""x brought into [0, 1] by desaturating towards its own grey, not by clipping each channel.

    Clipping channels one by one turns hues (a bright orange (1.2, 0.9, 0.3) clips to (1, 0.9,
    0.3), yellower). Here x' = g + s·(x − g) with g = clip(mean_c x, 0, 1) and s ∈ [0, 1] the
    largest factor putting every channel in [0, 1]: the chroma keeps its direction (the hue)
    and pixels already in range are unchanged. RGB only; other channel counts are clipped.
    """
    if x.shape[1] != 3:
        return x.clamp(0, 1)
    grey = x.mean(1, keepdim=True).clamp_(0, 1)
    spread = x - grey
    # per channel, the factor at which it reaches the bound it crosses (1 where it crosses none)
    above = torch.where(x > 1, (1 - grey) / spread.clamp(min=1e-12), torch.ones_like(x))
    below = torch.where(x < 0, grey / (-spread).clamp(min=1e-12), torch.ones_like(x))
    scale = torch.minimum(above, below).amin(1, keepdim=True).clamp_(0, 1)
    # pixels in range are returned bit for bit; the clamp only removes rounding
    return torch.where(scale < 1, (grey + scale * spread).clamp_(0, 1), x)


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
