"""Distortion and perception measures.

Distortion, per image pair (3, H, W) in [0, 1] → Python float:

- :func:`mse`, :func:`psnr`, :func:`ssim` (SSIM computed in torch, matching scikit-image's
  ``structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``).

Perception, per image *set* (unpaired):

- :func:`patch_moments` streams the mean and covariance of every overlapping p×p patch;
- :func:`gaussian_fd` is the Fréchet distance (Gaussian W2²) between two such fits;
- :func:`latent_fd` (patches of codec latents, the statistic DOT itself transports) and
  :func:`patch_fd` (RGB pixel patches) wrap the two.
- :func:`perceptual_metrics` adds LPIPS / FID / KID through torchmetrics, when it is
  installed (extra ``dotrestore[metrics]``); uncached backbone weights download on first use
  the way torchmetrics does it, unless the run is offline, in which case they are skipped.

Streaming versions with ``update``/``compute`` and states that merge across processes are
in :mod:`dotrestore.metrics.streaming`.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..ot.gaussian import Moments, w2_squared
from ..ot.patches import extract_patches

logger = logging.getLogger(__name__)

__all__ = [
    "mse", "psnr", "ssim", "patch_moments", "gaussian_fd", "latent_fd", "patch_fd",
    "PATCH_FD_STRIDE", "perceptual_availability", "perceptual_metrics",
]

# SSIM constants of Wang et al. (2004), as scikit-image uses them with gaussian_weights=True.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# Stride of patch_fd's 7×7 RGB patches; see patch_fd for the measurement behind it.
PATCH_FD_STRIDE = 4

# Patches handed to Moments.update at once: bounds memory (≈ 32 MiB of float64) for any image.
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------- distortion


def _check_pair(x: Tensor, y: Tensor, need_chw: bool = False) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"expected two tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if need_chw and x.dim() != 3:
        raise ValueError(f"expected one image of shape (C, H, W), got {tuple(x.shape)}")


def mse(x: Tensor, y: Tensor) -> float:
    """Mean squared error ``mean((x − y)²)`` over all channels and pixels (float64)."""
    _check_pair(x, y)
    return float(torch.mean((x.double() - y.double()) ** 2))


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range² / MSE)`` in dB.

    Returns ``math.inf`` when the images are identical (MSE = 0), as scikit-image does.
    """
    err = mse(x, y)
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / err)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device) -> Tensor:
    # Same taps as scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5): radius 5, normalised.
    from ..ot.filters import gaussian_kernel1d

    return gaussian_kernel1d(sigma, radius=(size - 1) // 2, dtype=dtype, device=device)


def _valid_filter(maps: Tensor, taps: Tensor, dim: int) -> Tensor:
    """Valid 1-D correlation along ``dim`` as a sum of shifted slices: float64 ``conv2d`` on
    the CPU has no fast kernel, and a few fused multiply-adds over slices are much quicker."""
    k = taps.numel()
    n = maps.shape[dim] - k + 1
    weights = taps.tolist()
    out = maps.narrow(dim, 0, n) * weights[0]
    for i in range(1, k):
        out.add_(maps.narrow(dim, i, n), alpha=weights[i])
    return out


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> float:
    """Structural similarity of two images (C, H, W), averaged over channels and pixels.

    Per channel, with Gaussian-weighted local statistics (11 taps, σ = 1.5) μx, μy, σx², σy²,
    σxy (population, not sample, moments) and C1 = (K1·L)², C2 = (K2·L)², K1 = 0.01,
    K2 = 0.03, L = ``data_range``::

        SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))

    averaged over the pixels whose window lies fully inside the image. scikit-image filters
    with reflect padding and then crops a 5-pixel border (``crop(S, pad)``), so what it
    averages is exactly a *valid* convolution, which is what is computed here (in float64).
    """
    _check_pair(x, y, need_chw=True)
    c, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {h}×{w}")
    x64 = x.detach().double().reshape(c, 1, h, w)
    y64 = y.detach().double().reshape(c, 1, h, w)
    # One separable filtering pass over the five maps at once.
    maps = torch.cat([x64, y64, x64 * x64, y64 * y64, x64 * y64], dim=0)
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, torch.float64, x64.device)
    maps = _valid_filter(_valid_filter(maps, g, dim=-1), g, dim=-2)
    mx, my, mxx, myy, mxy = maps.split(c, dim=0)
    vx, vy, vxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


# --------------------------------------------------------------------------- patch statistics


def _as_batch(t, what: str) -> Tensor:
    if not isinstance(t, Tensor) or t.dim() not in (3, 4):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{what}: expected tensors (C, H, W) or (B, C, H, W), got {shape}")
    return t.unsqueeze(0) if t.dim() == 3 else t


def patch_moments(
    tensors: Tensor | Iterable[Tensor], patch_size: int, stride: int = 1, moments: Moments | None = None
) -> Moments:
    """Mean and covariance of every valid p×p patch (stride ``stride``) of every tensor.

    Each patch is a D = C·p² vector in ``unfold`` order. ``tensors`` is one tensor
    (C, H, W) / (B, C, H, W) or an iterable of them (sizes may differ; a generator is fine).
    Patches are extracted one image, and at most ``2**22`` values, at a time and folded into
    a float64 :class:`~dotrestore.ot.moments.Moments`, so memory stays small whatever the
    number and size of the images. Pass ``moments`` to keep accumulating into an existing one.
    """
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if patch_size < 1 or stride < 1:
        raise ValueError(f"patch_size and stride must be ≥ 1, got {patch_size} and {stride}")
    p, s = int(patch_size), int(stride)
    for t in tensors:
        batch = _as_batch(t, "patch_moments").detach()
        _, c, h, w = batch.shape
        if h < p or w < p:
            raise ValueError(f"patch_moments: a {h}×{w} map has no {p}×{p} patch")
        if moments is None:
            moments = Moments(c * p * p)
        elif moments.dim != c * p * p:
            raise ValueError(f"patch_moments: {c} channels × {p}×{p} does not match D = {moments.dim}")
        n_rows, n_cols = (h - p) // s + 1, (w - p) // s + 1
        # Rows of patches per chunk, so that one chunk holds ≤ _CHUNK_ELEMENTS values.
        rows = max(1, _CHUNK_ELEMENTS // (n_cols * c * p * p))
        for z in batch:
            for r0 in range(0, n_rows, rows):
                r1 = min(n_rows, r0 + rows)
                band = z[None, :, r0 * s : (r1 - 1) * s + p]
                moments.update(extract_patches(band, p, s))
    if moments is None:
        raise ValueError("patch_moments: no tensors given")
    return moments


def gaussian_fd(moments_a: Moments, moments_b: Moments) -> float:
    """Fréchet distance (squared Gaussian W2) between the Gaussians fitted to two sets::

        FD = ‖μa − μb‖² + tr(Σa + Σb − 2 (Σb^{1/2} Σa Σb^{1/2})^{1/2})

    (the FID formula, on whatever features the moments hold). Exact ties give 0 up to
    round-off; tiny negative round-off is clipped to 0.
    """
    da, db = moments_a.dim, moments_b.dim
    if da != db:
        raise ValueError(f"gaussian_fd: moments of different dimension ({da} vs {db})")
    for m in (moments_a, moments_b):
        if float(m.count) < 2:
            raise ValueError(f"gaussian_fd: needs ≥ 2 samples per set, got {int(float(m.count))}")
    fd = w2_squared(moments_a.mean, moments_a.covariance, moments_b.mean, moments_b.covariance)
    return max(float(fd), 0.0)


def _moments_of(x, patch_size: int, stride: int) -> Moments:
    # A precomputed Moments passes through, so a reference set is fitted once per experiment.
    return x if isinstance(x, Moments) else patch_moments(x, patch_size, stride)


def latent_fd(latents_a, latents_b, patch_size: int = 3, stride: int = 1) -> float:
    """Fréchet distance between the p×p patch Gaussians of two sets of latents.

    Each argument is a latent batch (B, C, h, w), an iterable of latents (e.g. what
    ``DOT.encode`` returns), or a precomputed :class:`Moments` of the same patch size. This
    is the quantity DOT's transport minimises, so it is the most direct measure of how far a
    restored set sits from the clean set in the model's own statistics.
    """
    return gaussian_fd(_moments_of(latents_a, patch_size, stride), _moments_of(latents_b, patch_size, stride))


def patch_fd(images_a, images_b, patch_size: int = 7, stride: int = PATCH_FD_STRIDE) -> float:
    """Fréchet distance between the Gaussians of RGB p×p pixel patches (D = 3·7² = 147).

    A codec-independent perception measure: blur and over-smoothing shrink the patch
    covariance's high-frequency eigenvalues, noise inflates them. Arguments as for
    :func:`latent_fd` (image tensors or lists of (3, H, W), or a precomputed ``Moments``).

    Stride (default :data:`PATCH_FD_STRIDE` = 4): the cost is the float64 cross-products,
    N·D² per set, and a stride s divides N by s². Neighbouring 7×7 patches overlap heavily,
    so a strided subsample still holds far more than D patches and its FD stays close to the
    dense one (see the README's notes on metrics). Pass ``stride=1`` for the dense value.
    """
    return gaussian_fd(_moments_of(images_a, patch_size, stride), _moments_of(images_b, patch_size, stride))


# --------------------------------------------------------------------------- perceptual (optional)

PERCEPTUAL_METRICS = ("lpips", "fid", "kid")

# What each metric needs: Python modules, and the file torch.hub downloads on first use.
_INCEPTION = ("weights-inception-2015-12-05-6726825d.pth", "the Inception weights (torch-fidelity's pt_inception-2015-12-05)")
WEIGHTS_NEEDED = {
    "lpips": (("torchmetrics", "torchvision"), "alexnet-owt-7be5be79.pth", "the AlexNet weights LPIPS needs"),
    "fid": (("torchmetrics", "torch_fidelity"), *_INCEPTION),
    "kid": (("torchmetrics", "torch_fidelity"), *_INCEPTION),
}


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    """True when the environment forbids downloads (``HF_HUB_OFFLINE`` or ``DOTRESTORE_OFFLINE`` set)."""
    return any(os.environ.get(k, "").strip().lower() not in ("", "0", "false", "no")
               for k in ("HF_HUB_OFFLINE", "DOTRESTORE_OFFLINE"))


def weights_cached(name: str) -> bool:
    """True when the backbone weights of perceptual metric ``name`` are in the torch hub cache."""
    return (_hub_checkpoints() / WEIGHTS_NEEDED[name][1]).is_file()


def perceptual_availability() -> dict[str, str | None]:
    """For "lpips", "fid", "kid": ``None`` when computable here, else why not (one line).

    Cheap: checks that the modules are importable (without importing them) and that the
    backbone weights are already in the torch hub cache (``$TORCH_HOME/hub/checkpoints``)
    or may be downloaded on first use (installing the ``metrics`` extra asks for them;
    offline, uncached weights make the metric skipped).
    """
    out: dict[str, str | None] = {}
    for name in PERCEPTUAL_METRICS:
        modules, weights_file, weights_desc = WEIGHTS_NEEDED[name]
        missing = [m.replace("_", "-") for m in modules if importlib.util.find_spec(m) is None]
        problems = [f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"] if missing else []
        if not (_hub_checkpoints() / weights_file).is_file() and offline():
            problems.append(f"{weights_desc} are not cached ({_hub_checkpoints() / weights_file}) "
                            "and this run is offline (HF_HUB_OFFLINE)")
        out[name] = f"{name.upper()} skipped: " + "; ".join(problems) if problems else None
    return out


def _compute(name: str, outputs: Sequence[Tensor], references: Sequence[Tensor], device) -> float:
    def prep(t: Tensor) -> Tensor:
        return t.detach().float().clamp(0, 1)[None].to(device)

    with torch.no_grad():
        if name == "lpips":
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            if len(outputs) != len(references):
                raise ValueError("LPIPS needs as many outputs as references (paired)")
            metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device)
            for o, r in zip(outputs, references):
                metric.update(prep(o), prep(r))
            return float(metric.compute())
        n = min(len(outputs), len(references))
        if name == "fid":
            from torchmetrics.image.fid import FrechetInceptionDistance

            metric = FrechetInceptionDistance(feature=2048, normalize=True).to(device)
        else:
            from torchmetrics.image.kid import KernelInceptionDistance

            # KID's subsets must be no larger than the sets; a few dozen images are typical here.
            metric = KernelInceptionDistance(subset_size=min(n, 50), normalize=True).to(device)
        for r in references:
            metric.update(prep(r), real=True)
        for o in outputs:
            metric.update(prep(o), real=False)
        value = metric.compute()
        return float(value[0] if isinstance(value, tuple) else value)


def perceptual_metrics(
    outputs: Sequence[Tensor], references: Sequence[Tensor], device="cpu"
) -> tuple[dict[str, float | None], dict[str, str]]:
    """LPIPS (paired, AlexNet), FID and KID (unpaired, Inception) of ``outputs`` vs ``references``.

    Returns ``(values, reasons)``: ``values[name]`` is a float, or ``None`` when the metric
    was skipped, in which case ``reasons[name]`` says why (see :func:`perceptual_availability`).
    Uses torchmetrics when installed; see :func:`perceptual_availability` for downloads. FID on a
    few dozen images is strongly biased (2048-D features):
    compare values across methods on the same sets, not with published numbers.
    """
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for name, why in perceptual_availability().items():
        values[name] = None
        if why is not None:
            reasons[name] = why
            continue
        try:
            values[name] = _compute(name, outputs, references, device)
        except Exception as exc:  # a metric failing must not sink the experiment that asked for it
            reasons[name] = f"{name.upper()} failed: {type(exc).__name__}: {exc}"
            logger.warning("%s", reasons[name])
    return values, reasons
