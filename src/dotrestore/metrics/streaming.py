"""Streaming metrics: ``update`` per batch, ``compute`` at the end, states that add up.

The torchmetrics pattern: a metric's state is a few tensors whose per-process values are
combined by a sum (``sync``), so N processes that each saw a shard of the images compute
the same value as one process that saw them all. Nothing keeps an image to the end.

- :class:`PerImageMean` — the mean over images of any per-image measure ``fn(image, clean)``
  (MSE, PSNR, SSIM and whatever :data:`dotrestore.metrics.PER_IMAGE_METRICS` lists);
  state: float64 ``total`` and ``count``.
- :class:`PatchMoments` — the Gaussian of overlapping p×p patches (latent_fd, patch_fd);
  state: a float64 :class:`~dotrestore.ot.moments.Moments`, summed around a common shift.
- :class:`FID`, :class:`KID`, :class:`LPIPS` — torchmetrics objects (extra
  ``dotrestore[metrics]``) synchronised through :mod:`dotrestore.runtime.parallel`; FID and KID
  accept any feature network (``feature=``), which is how the tests run them offline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..ot.moments import Moments
from ..ot.statistics import Statistics
from ..runtime import parallel
from . import functional

logger = logging.getLogger(__name__)


class Metric(Statistics):
    """Base: a :class:`~dotrestore.ot.statistics.Statistics` whose ``sync`` goes through
    :mod:`~dotrestore.runtime.parallel`; subclasses define ``update`` and ``compute``. ``merge``
    adds another object's state (torchmetrics' ``merge_state``), ``sync`` shows the sum over
    processes (idempotent, collective), ``reset`` empties the state."""

    def sync(self) -> Metric:
        """Show the state summed over all processes (no-op in one process). Collective."""
        return super().sync(parallel)


class PerImageMean(Metric):
    """Mean over images of ``fn(image, clean) -> float``:  (1/N) Σ_i fn(x̂_i, x_i).

    ``update`` takes one (3, H, W) pair or a batch (B, 3, H, W) of pairs. Infinite values
    (PSNR of identical images) propagate to the mean, as a plain mean would.
    """

    def __init__(self, name: str, fn: Callable[[Tensor, Tensor], float]):
        super().__init__()
        self.name = name
        self.fn = fn
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))

    def update(self, images: Tensor, cleans: Tensor) -> list[float]:
        """Add the pairs; returns each pair's value (for per-image rows)."""
        if images.ndim == 3:
            images, cleans = images[None], cleans[None]
        values = [float(self.fn(i, c)) for i, c in zip(images, cleans)]
        self._local_state()
        self.total += sum(values)
        self.count += len(values)
        return values

    def compute(self) -> float:
        n = float(self.count)
        return float(self.total) / n if n else math.nan


class PatchMoments(Metric):
    """Mean and covariance of every valid p×p patch (stride s) of the tensors given to ``update``.

    Compare two with :func:`frechet_distance` (latent_fd on codec latents, patch_fd on RGB).
    """

    def __init__(self, patch_size: int, stride: int = 1):
        super().__init__()
        self.patch_size = int(patch_size)
        self.stride = int(stride)
        self.moments: Moments | None = None

    def update(self, tensors: Tensor) -> None:
        self.moments = functional.patch_moments(tensors, self.patch_size, self.stride, moments=self.moments)

    def merge(self, other: PatchMoments) -> PatchMoments:
        if other.moments is not None:
            self.moments = other.moments if self.moments is None else self.moments.merge(other.moments)
        return self

    def sync(self) -> PatchMoments:
        # Every rank must take part, also one that saw nothing: the dimension is agreed on first.
        dims = parallel.gather_objects(None if self.moments is None else self.moments.dim)
        dim = next((d for d in dims if d is not None), None)
        if dim is None:
            return self
        if self.moments is None:
            self.moments = Moments(dim)
        self.moments.sync(parallel)
        return self

    def reset(self) -> PatchMoments:
        self.moments = None
        return self

    def compute(self) -> Moments:
        if self.moments is None:
            raise ValueError("PatchMoments: no tensors were given to update()")
        return self.moments


def frechet_distance(a: PatchMoments, b: PatchMoments) -> float:
    """FD = ‖μa − μb‖² + tr(Σa + Σb − 2 (Σb^{1/2} Σa Σb^{1/2})^{1/2}) of two patch Gaussians."""
    return functional.gaussian_fd(a.compute(), b.compute())


# ----------------------------------------------------------------------- torchmetrics-backed


def _tm_kwargs() -> dict:
    # torchmetrics gathers its states with this function: the only collectives stay in parallel.py.
    return {"dist_sync_fn": parallel.gather_tensors, "sync_on_compute": parallel.active()}


def _prep(images: Tensor, device) -> Tensor:
    images = images[None] if images.ndim == 3 else images
    return images.detach().float().clamp(0, 1).to(device)


class _FeatureSetDistance:
    """An unpaired set distance (FID, KID) of outputs to the clean images.

    The clean images are fed once to a shared ``reference``; each output set's metric
    receives the reference's real-image state at ``compute`` time, so the clean features are
    extracted once per experiment however many output sets (α values) are compared.
    """

    _real_states: tuple[str, ...] = ()

    def __init__(self, metric):
        self.metric = metric

    @property
    def device(self):
        return next(iter(self.metric.parameters()), torch.zeros(())).device

    def update(self, images: Tensor, real: bool = False) -> None:
        with torch.no_grad():
            self.metric.update(_prep(images, self.device), real=real)

    def merge(self, other: _FeatureSetDistance) -> _FeatureSetDistance:
        self.metric.merge_state(other.metric)
        return self

    def compute(self, reference: _FeatureSetDistance | None = None) -> float:
        if reference is not None:
            for name in self._real_states:
                value = getattr(reference.metric, name)
                setattr(self.metric, name, list(value) if isinstance(value, list) else value.clone())
        with torch.no_grad():
            value = self.metric.compute()
        return float(value[0] if isinstance(value, tuple) else value)


class FID(_FeatureSetDistance):
    """Fréchet distance of Inception (or ``feature``-network) features; torchmetrics' FID.

    FID = ‖μr − μf‖² + tr(Σr + Σf − 2 (Σr Σf)^{1/2}); state: feature sums and
    cross-product sums in float64 (summed across processes).
    """

    _real_states = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")

    def __init__(self, feature: int | torch.nn.Module = 2048, device="cpu"):
        from torchmetrics.image.fid import FrechetInceptionDistance

        super().__init__(FrechetInceptionDistance(feature=feature, normalize=True, **_tm_kwargs()).to(device))


class KID(_FeatureSetDistance):
    """Kernel Inception distance: unbiased MMD² with the kernel k(a, b) = (aᵀb / d + 1)³.

    State: the feature vectors (gathered across processes). With ``subset_size`` None the
    whole sets are used (one subset): the value does not depend on the order of images, so
    it is the same for any number of processes.
    """

    _real_states = ("real_features",)

    def __init__(self, feature: int | torch.nn.Module = 2048, device="cpu", subset_size: int | None = None):
        from torchmetrics.image.kid import KernelInceptionDistance

        self.subset_size = subset_size
        metric = KernelInceptionDistance(feature=feature, normalize=True, subset_size=subset_size or 1,
                                         subsets=1, **_tm_kwargs())
        super().__init__(metric.to(device))

    def compute(self, reference: _FeatureSetDistance | None = None) -> float:
        if self.subset_size is None:  # the whole (synchronised) sets: known only now
            real = (reference if reference is not None else self).metric
            self.metric.subset_size = min(_total_rows(self.metric.fake_features), _total_rows(real.real_features))
        return super().compute(reference)


def _total_rows(features: list[Tensor]) -> int:
    local = torch.tensor(float(sum(int(f.shape[0]) for f in features)), dtype=torch.float64)
    return int(parallel.all_reduce_sum(local).item())


class LPIPS:
    """Mean LPIPS (AlexNet) over (output, clean) pairs; torchmetrics' state: sum and count."""

    def __init__(self, device="cpu"):
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True, **_tm_kwargs()).to(device)
        self.device = device

    def update(self, images: Tensor, cleans: Tensor) -> None:
        with torch.no_grad():
            self.metric.update(_prep(images, self.device), _prep(cleans, self.device))

    def merge(self, other: LPIPS) -> LPIPS:
        self.metric.merge_state(other.metric)
        return self

    def compute(self) -> float:
        with torch.no_grad():
            return float(self.metric.compute())


def perceptual_metric(name: str, device="cpu", feature: int | torch.nn.Module | None = None):
    """A new "fid", "kid" or "lpips" object; logs once that uncached weights will download."""
    if feature is None and name in functional.PERCEPTUAL_METRICS and not functional.weights_cached(name):
        logger.info("%s: downloading %s on first use", name.upper(), functional.WEIGHTS_NEEDED[name][2])
    if name == "fid":
        return FID(2048 if feature is None else feature, device=device)
    if name == "kid":
        return KID(2048 if feature is None else feature, device=device)
    if name == "lpips":
        return LPIPS(device=device)
    raise ValueError(f"unknown perceptual metric {name!r}; known: {functional.PERCEPTUAL_METRICS}")
