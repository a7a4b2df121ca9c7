r"""Latent map ↔ transported latent map.

DOT treats every overlapping p×p patch of a latent map z (B, C, H, W) as a sample of a
D = C·p² dimensional Gaussian, vectorised in ``torch.nn.functional.unfold`` order
(index d = c·p² + i·p + j). At test time every patch centred on a latent pixel is moved
by the affine OT map T(x) = A(x − μs) + μt, and the overlapping transported patches are
averaged back into a map.

With one operator shared by all positions, "unfold → matmul → fold" is a ``conv2d`` whose
weight is A reshaped to (D, C, p, p) and whose bias is μt − Aμs, followed by a fold
(overlap-add) and a division by the overlap weight; :func:`transport_latent` computes it
that way, which avoids materialising the [B, D, H·W] patch matrix of the input.
:func:`transport_latent_reference` is the plain form, kept for tests.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .filters import gaussian_kernel1d

__all__ = ["extract_patches", "transport_latent", "transport_latent_reference", "patch_weights", "overlap_add",
           "positional_normal"]

WEIGHTINGS = ("uniform", "gaussian")
#: Largest patch side accepted (fit, config, operator files): D = C·p² grows fast, and the
#: D×D covariances with it.
MAX_PATCH_SIZE = 15


def extract_patches(z: torch.Tensor, patch_size: int, stride: int = 1) -> torch.Tensor:
    """All valid (unpadded) p×p patches of ``z`` [B, C, H, W] as rows of a [N, C·p²] matrix.

    Rows are ordered batch-major, then by patch position in raster order; columns in
    ``F.unfold`` order. N = B·⌊(H−p)/s + 1⌋·⌊(W−p)/s + 1⌋ (0 when the map is smaller than p).
    """
    if z.ndim != 4:
        raise ValueError(f"expected a latent of shape (B, C, H, W), got {tuple(z.shape)}")
    p, s = int(patch_size), int(stride)
    if p < 1 or s < 1:
        raise ValueError(f"patch_size and stride must be >= 1, got {patch_size}, {stride}")
    b, c, h, w = z.shape
    if h < p or w < p:
        return z.new_empty((0, c * p * p))
    cols = F.unfold(z, kernel_size=p, stride=s)  # [B, D, L]
    return cols.transpose(1, 2).reshape(-1, c * p * p)


def patch_weights(patch_size: int, weighting: str = "uniform", dtype=torch.float32, device=None) -> torch.Tensor:
    r"""Weight [p, p] of each position in a patch when overlapping patches are averaged.

    ``"uniform"``: all ones. ``"gaussian"``: :math:`\exp(-((i-r)^2 + (j-r)^2) / (2\sigma^2))`
    with r = p // 2 and σ = p / 4 (centre weight 1; for p = 3 the corners get 0.17), so a
    pixel is mostly explained by the patches centred near it.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    p = int(patch_size)
    if weighting == "uniform":
        return torch.ones(p, p, dtype=dtype, device=device)
    g = gaussian_kernel1d(p / 4.0, radius=p // 2, normalize=False, dtype=torch.float64)
    return torch.outer(g, g).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def overlap_weight(h: int, w: int, p: int, weighting: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Σ of the weights of every patch (centred on an input pixel) covering each output pixel.
    # Depends only on (H, W, p, weighting), so it is computed once and reused.
    r = p // 2
    wts = patch_weights(p, weighting, dtype=torch.float64)
    cols = wts.reshape(1, p * p, 1).expand(1, p * p, h * w)
    total = F.fold(cols, output_size=(h + 2 * r, w + 2 * r), kernel_size=p)
    return total[0, :, r : r + h, r : r + w].to(dtype=dtype, device=device)


def _check(z, operator, mean_source, mean_target, patch_size, weighting, noise_sqrt) -> tuple[int, int]:
    if z.ndim != 4:
        raise ValueError(f"expected a latent of shape (B, C, H, W), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"latent must be a floating-point tensor, got {z.dtype}")
    p = int(patch_size)
    if p < 1 or p % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd integer (patches are centred), got {patch_size}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    d = z.shape[1] * p * p
    if operator.shape != (d, d):
        raise ValueError(f"operator must be ({d}, {d}) for C={z.shape[1]}, p={p}, got {tuple(operator.shape)}")
    for name, v in (("mean_source", mean_source), ("mean_target", mean_target)):
        if v.shape != (d,):
            raise ValueError(f"{name} must have shape ({d},), got {tuple(v.shape)}")
    if noise_sqrt is not None and noise_sqrt.shape != (d, d):
        raise ValueError(f"noise_sqrt must be ({d}, {d}), got {tuple(noise_sqrt.shape)}")
    return p, d


_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # (x · c) mod 2³² for int64 x in [0, 2³²), in 16-bit halves of c so no product overflows int64
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    # C. Wellons' 32-bit xorshift-multiply integer hash (constants from his hash-prospector
    # search): a bijection of [0, 2³²) whose output bits each flip with probability ~½
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def positional_normal(
    seed: int, channels: int, height: int, width: int, origin: tuple[int, int] = (0, 0),
    dtype: torch.dtype = torch.float32, device=None,
) -> torch.Tensor:
    r"""Standard normal draws ε[c, y, x] (C, H, W) that depend only on (seed, c, y + y0, x + x0).

    A counter-based generator: the key h = H(H(H(H(s) ⊕ c) ⊕ y) ⊕ x) of the absolute position
    (H a 32-bit integer hash, :func:`_hash32`; s the seed; (y0, x0) = ``origin`` the offset of this map in
    a larger one) gives two uniforms u₁ = (h + ½)/2³², u₂ = (H(h ⊕ 0x9E3779B9) + ½)/2³², and
    Box–Muller gives ε = √(−2 ln u₁)·cos(2π u₂). Unlike a stream generator, a value does not
    depend on how many were drawn before it: the same latent position gets the same draw in
    any batch, tile or crop and on every call, so a static scene in a video keeps its grain.
    """
    def coords(n, offset):
        return (torch.arange(n, dtype=torch.int64, device=device) + int(offset)) & _MASK32

    s = int(seed)
    key = _hash32(torch.tensor((s & _MASK32) ^ _hash32(torch.tensor((s >> 32) & _MASK32)).item(),
                               dtype=torch.int64, device=device))
    key = _hash32(key ^ coords(channels, 0)).view(-1, 1, 1)
    key = _hash32(key ^ coords(height, origin[0]).view(1, -1, 1))
    key = _hash32(key ^ coords(width, origin[1]).view(1, 1, -1))
    u1 = (key.to(torch.float64) + 0.5) / 2.0**32
    u2 = (_hash32(key ^ 0x9E3779B9).to(torch.float64) + 0.5) / 2.0**32
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)).to(dtype)


@functools.lru_cache(maxsize=4)
def _cached_positional(seed, channels, height, width, origin, dtype, device) -> torch.Tensor:
    # The draws depend on the shape only: frames of a video (or images of one size) reuse them.
    # Read-only: never modified in place.
    return positional_normal(seed, channels, height, width, origin, dtype, device)


def _noise(b, d, h, w, generator, noise_seed, origin, dtype, device) -> torch.Tensor:
    """(B, D, H·W) standard normal draws: position-seeded when ``noise_seed`` is given."""
    if noise_seed is None:
        return _standard_normal((b, d, h * w), generator, dtype, device)
    eps = _cached_positional(int(noise_seed), d, h, w, (int(origin[0]), int(origin[1])), dtype, torch.device(device))
    return eps.view(1, d, h * w).expand(b, d, h * w)


def _standard_normal(shape, generator, dtype, device) -> torch.Tensor:
    # Draw where the generator lives so a CPU generator also seeds noise for a GPU latent.
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


def transport_latent(
    z: torch.Tensor,
    operator: torch.Tensor,
    mean_source: torch.Tensor,
    mean_target: torch.Tensor,
    patch_size: int,
    weighting: str = "uniform",
    noise_sqrt: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise_seed: int | None = None,
    origin: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    r"""Transport every overlapping patch of ``z`` and average them back (convolution form).

    For each latent pixel, the p×p patch x centred on it (replicate padding by p // 2 at
    the borders) is mapped to

    .. math:: T(x) = A(x - \mu_s) + \mu_t\ [+\ L\varepsilon],\quad \varepsilon\sim\mathcal N(0, I_D),

    with ε drawn independently per patch when ``noise_sqrt`` = L (e.g.
    :math:`\Sigma_w^{1/2}` from :func:`dotrestore.ot.gaussian.stochastic_transport_map`): from
    ``generator`` (a stream: each call draws new noise), or, when ``noise_seed`` is given,
    by :func:`positional_normal` at the patch centre's position (offset by ``origin``), the
    same for every image of the batch and on every call.
    Each output pixel is the weighted average, over all transported patches covering it,
    of that patch's value at the pixel; weights from :func:`patch_weights` (``"gaussian"``:
    σ = p/4). Patches centred in the replicate padding are not used, so border pixels
    average fewer patches.

    Computed as ``conv2d(pad(z), diag(w) A, diag(w)(μt − Aμs))`` → fold (:func:`overlap_add`)
    → division by the overlap weight (computed once per (H, W, p, weighting) and cached).
    Runs in ``z``'s dtype and device: the operator, means and ``noise_sqrt`` are cast to
    them (pass them already cast to avoid a copy per call). Any H×W works, including sizes
    below p; p must be odd.

    Parameters
    ----------
    z : Tensor [B, C, H, W]
    operator : Tensor [D, D], D = C·p² (unfold order)
    mean_source, mean_target : Tensor [D]
    patch_size : int, odd
    weighting : "uniform" | "gaussian"
    noise_sqrt : Tensor [D, D], optional
    generator : torch.Generator, optional, for the noise
    noise_seed : int, optional, position-seeded noise instead (takes precedence over ``generator``)
    origin : (int, int), the latent map's offset in a larger map, for position-seeded noise

    Returns
    -------
    Tensor [B, C, H, W] in z's dtype.
    """
    p, d = _check(z, operator, mean_source, mean_target, patch_size, weighting, noise_sqrt)
    b, c, h, w = z.shape
    r = p // 2
    dt, dev = z.dtype, z.device
    # Bias in the operator's own (usually higher) precision, then cast once.
    bias = mean_target.to(operator) - operator @ mean_source.to(operator)
    a = operator.to(dtype=dt, device=dev)
    bias = bias.to(dtype=dt, device=dev)
    wvec = None
    if weighting != "uniform":
        # Weighting patch entries before the fold = scaling rows of the affine map.
        wvec = patch_weights(p, weighting, dtype=dt, device=dev).reshape(-1).repeat(c)  # [D]
        a = a * wvec[:, None]
        bias = bias * wvec

    zp = F.pad(z, (r, r, r, r), mode="replicate") if r else z
    y = F.conv2d(zp, a.reshape(d, c, p, p), bias)  # [B, D, H, W]: patch centred at each pixel
    if noise_sqrt is not None:
        l_mat = noise_sqrt.to(dtype=dt, device=dev)
        if wvec is not None:
            l_mat = l_mat * wvec[:, None]
        eps = _noise(b, d, h, w, generator, noise_seed, origin, dt, dev)
        y = y.view(b, d, h * w).baddbmm_(l_mat.expand(b, d, d), eps).view(b, d, h, w)
    if p == 1:
        return y  # weights are 1 and each pixel is covered once
    return overlap_add(y, c, p).div_(overlap_weight(h, w, p, weighting, dt, dev))


def overlap_add(y: torch.Tensor, channels: int, patch_size: int, use_fold: bool | None = None) -> torch.Tensor:
    """Sum of the patches ``y`` [B, C·p², H, W] (patch centred at each pixel) into [B, C, H, W].

    Output pixel u receives entry a of the patch centred at u − a + p//2, for every such
    centre inside the map: ``F.fold`` onto the padded map, cropped. On CUDA that is one
    ``F.fold`` kernel; on CPU, where ``F.fold`` is several times slower, p² in-place
    slice additions straight into the cropped output do the same (``use_fold`` forces one).
    """
    b, d, h, w = y.shape
    p, r = patch_size, patch_size // 2
    if use_fold is None:
        use_fold = y.is_cuda
    if use_fold:
        out = F.fold(y.reshape(b, d, h * w), output_size=(h + 2 * r, w + 2 * r), kernel_size=p)
        return out[:, :, r : r + h, r : r + w].contiguous()
    yv = y.view(b, channels, p, p, h, w)
    out = yv[:, :, r, r].clone()  # the centre entry covers every pixel
    for i in range(p):
        u0, u1 = max(0, i - r), min(h, h + i - r)
        for j in range(p):
            v0, v1 = max(0, j - r), min(w, w + j - r)
            if (i == r and j == r) or u0 >= u1 or v0 >= v1:
                continue
            out[:, :, u0:u1, v0:v1] += yv[:, :, i, j, u0 + r - i : u1 + r - i, v0 + r - j : v1 + r - j]
    return out


def transport_latent_reference(
    z: torch.Tensor,
    operator: torch.Tensor,
    mean_source: torch.Tensor,
    mean_target: torch.Tensor,
    patch_size: int,
    weighting: str = "uniform",
    noise_sqrt: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise_seed: int | None = None,
    origin: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Same result as :func:`transport_latent` by plain unfold → matmul → fold (for tests).

    Draws the noise in the same order, so equal generator states give equal outputs.
    """
    p, d = _check(z, operator, mean_source, mean_target, patch_size, weighting, noise_sqrt)
    b, c, h, w = z.shape
    r = p // 2
    dt, dev = z.dtype, z.device
    a = operator.to(dtype=dt, device=dev)
    mu_s = mean_source.to(dtype=dt, device=dev)
    mu_t = mean_target.to(dtype=dt, device=dev)

    zp = F.pad(z, (r, r, r, r), mode="replicate")
    patches = F.unfold(zp, kernel_size=p)  # [B, D, H·W], one column per patch centre
    moved = a @ (patches - mu_s[:, None]) + mu_t[:, None]
    if noise_sqrt is not None:
        eps = _noise(b, d, h, w, generator, noise_seed, origin, dt, dev)
        moved = moved + noise_sqrt.to(dtype=dt, device=dev) @ eps
    wts = patch_weights(p, weighting, dtype=dt, device=dev).reshape(-1).repeat(c)[:, None]
    size = (h + 2 * r, w + 2 * r)
    num = F.fold(moved * wts, output_size=size, kernel_size=p)
    den = F.fold(wts.expand(d, h * w).unsqueeze(0), output_size=size, kernel_size=p)
    return (num / den)[:, :, r : r + h, r : r + w]

