"""Detail transport: DOT on the fine scales of an image, the restorer's coarse scales kept.

Every image is split with a Gaussian low-pass L_σ (σ in pixels):

    x = L_σ(x) + H_σ(x),        H_σ(x) = x − L_σ(x)

DOT's statistics are fitted on, and its map applied to, the *detail images*
H_σ(x) + ½ (grey-centred, so a VAE sees an image-like input), and the restorer's own
coarse scales are put back after decoding:

    x̂0 = D(T(E(H_σ(x*) + ½))) − ½ + L_σ(x*)

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


def local_range(x: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the (2r+1)² window around each pixel of (B, C, H, W), window clipped at borders."""
    k = 2 * radius + 1
    hi = F.max_pool2d(x, k, stride=1, padding=radius)
    lo = -F.max_pool2d(-x, k, stride=1, padding=radius)
    return lo, hi


def lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """L_σ(x): separable Gaussian blur of (B, C, H, W), std σ pixels, reflected borders."""
    return gaussian_blur(x, sigma)


def split(x: torch.Tensor, sigma: float | None, kind: str = "gaussian") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x − L(x) + ½, L(x)) with L the ``kind``'s low-pass; with σ None or 0, (x, None): whole images."""
    if not sigma:
        return x, None
    low = guided_lowpass(x, sigma) if check_split(kind).startswith("guided") else lowpass(x, sigma)
    return (x - low).add_(GREY), low  # one full-size temporary, not two


def recombine(
    decoded: torch.Tensor, low: torch.Tensor | None, kind: str = "gaussian",
    reference: torch.Tensor | None = None, sigma: float | None = None,
) -> torch.Tensor:
    """D(·) − ½ + L(x*): put the restorer's coarse scales back (identity when ``low`` is None).

    ``"…+clamp"`` kinds then clamp the result to [lo − δ, hi + δ], with [lo, hi] the local range
    of the restoration x* (``reference``) over the (2⌈σ⌉+1)² window and δ half the local range
    of the decoded detail over the same window: texture keeps its own amplitude, while a
    detail lobe cannot push past the brightest or darkest side of a nearby edge by more than
    the texture around it.
    """
    if low is None:
        return decoded
    out = decoded - GREY + low
    if check_split(kind).endswith("+clamp"):
        if reference is None or not sigma:
            raise ValueError("a '+clamp' split needs the restoration (reference) and sigma")
        radius = max(1, math.ceil(sigma))
        lo, hi = local_range(reference.to(out), radius)
        dlo, dhi = local_range(decoded, radius)
        margin = (dhi - dlo) / 2
        out = torch.maximum(torch.minimum(out, hi + margin), lo - margin)
    return out


def describe(sigma: float | None, kind: str = "gaussian") -> str:
    """What is transported, in words, for logs and reports."""
    if not sigma:
        return "whole images"
    low = "an edge-preserving guided filter" if kind.startswith("guided") else "a Gaussian low-pass"
    clamp = ", clamped to the local range" if kind.endswith("+clamp") else ""
    return f"details finer than {low} of sigma {sigma:g} px{clamp}"
