"""The DOT estimator: fit latent patch Gaussians, transport new restorations, blend with α.

Adrai, Ohayon, Elad, Michaeli, "Deep Optimal Transport: A Practical Algorithm for
Photo-realistic Image Restoration", NeurIPS 2023. With x* a restoration and z = E(x*)
its latent, every overlapping p×p latent patch is moved by the Gaussian OT map

    T(z) = A (z − μs) + μt,      A = Σs^{-1/2} (Σs^{1/2} Σt Σs^{1/2})^{1/2} Σs^{-1/2}

(Freirich et al. 2021, eq. 17; eq. 19 when Σs is singular), the overlapping patches are
averaged back, and x̂0 = D(T(z)). The trade-off is traversed without refitting:

    pixel:  x̂α = (1 − α) x̂0 + α x*          latent: x̂α = D((1 − α) T(z) + α z)

By default only the fine scales are transported (``lowpass_sigma``, ``split``; see
:mod:`dotrestore.ot.split`): z = E(x* − L(x*) + ½) and x̂0 = D(T(z)) − ½ + L(x*), so the
restorer's own colours and layout are kept. ``lowpass_sigma=0`` transports whole images,
exactly as in the paper.

Conventions follow scikit-learn: the constructor checks its parameters and stores them as given
(``resolved`` holds their canonical values), ``fit`` / ``partial_fit`` learn attributes with a
trailing underscore, ``transform`` never refits.
Where and how the work runs (device, precision, tiling, batching, workers, the input size
limit, progress bars) is one :class:`~dotrestore.runtime.Runtime`, not part of the method.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from . import settings
from .checks import check_images
from .codecs import Codec, load_codec
from .errors import ImageTooSmallError, InputError, NotFittedError, SettingError
from .ot import gaussian
from .ot import split as detail
from .ot.mixture import MixtureTransport, PatchReservoir
from .ot.patches import extract_patches, transport_latent
from .ot.tradeoff import blend, latent_alpha  # noqa: F401 (blend: part of this module's API)
from .params import PARAMS, Resolved, resolve
from .runtime import Runtime, parallel, pipeline
from .runtime.fitting import encoding_key, partial_fit_together
from .settings.values import check_alpha
from .state import FITTED, ROLES, FittedState, RoleState

logger = logging.getLogger(__name__)


class DOT:
    """Deep Optimal Transport between restored (source) and clean (target) images.

    Every parameter is a setting of :data:`dotrestore.settings.SETTINGS` (its range and help
    live there); a bad value is a :class:`~dotrestore.errors.SettingError` naming it.

    Parameters
    ----------
    codec : str or Codec
        Latent space: ``"auto"`` (``"sd-vae-ft-ema"``, the paper's VAE, when it is in the local
        Hugging Face cache, else the bundled ``"taef2"``), ``"taef2"``, ``"sd-vae-ft-ema"``,
        ``"sd-vae-ft-mse"``, ``"pixel"``, a local folder, or a
        :class:`~dotrestore.codecs.Codec`. See :func:`dotrestore.load_codec`.
    patch_size : int
        Odd side p of the overlapping latent patches; D = C·p² dimensions.
    lowpass_sigma : float
        Scale (pixels) of the low-pass L whose content is kept from x*: statistics and
        transport use the detail images x − L(x) + ½, and L(x*) is added back after decoding.
        0 (or None): whole images, as in the paper.
    split : str
        How L is made: ``"guided"`` (an edge-preserving guided filter, default), ``"gaussian"``,
        or either with ``"+clamp"`` (see :mod:`dotrestore.ot.split`).
    weighting : "uniform" or "gaussian"
        How overlapping transported patches are averaged back into a latent map.
    shrinkage : None, "oas" or float
        Covariance shrinkage towards (tr Σ / D)·I: Oracle Approximating Shrinkage, or a ridge
        fraction ρ ∈ [0, 1]. Useful when the number of patches is below ~2·D.
    eps : float
        Eigenvalues of covariances are clamped at ``eps`` inside matrix square roots.
    stochastic : "auto", "never" or "always"
        Use the stochastic map of eq. 19 (deterministic part plus independent Gaussian noise
        per patch) when Σs is singular ("auto"), never, or always.
    zero_shot : bool
        Take the source statistics from each image being transformed (only target
        statistics are fitted).
    mixture : int
        K Gaussian components per side: 1 is the closed-form map above; K > 1 fits mixtures by
        EM on a seeded reservoir of at most ``max_patches`` patches per side, coupled by the MW2
        plan (Delon & Desolneux 2020; see :mod:`dotrestore.ot.mixture`).
    max_patches : int
        Reservoir size per side for the mixture's EM (K > 1 only).
    seed : int
        Seed of the stochastic map's noise, of the patch reservoirs and of EM.
    runtime : Runtime, dict or None
        Where and how the work runs: device, codec precision, tiling, memory budget, batch
        size, loader workers, the input size limit and progress bars (on by default).
    """

    def __init__(
        self,
        codec: str | Codec = settings.default("codec"),
        patch_size: int = settings.default("patch_size"),
        lowpass_sigma: float | None = settings.default("lowpass_sigma"),
        split: str = settings.default("split"),
        weighting: str = settings.default("weighting"),
        shrinkage: None | str | float = settings.default("shrinkage"),
        eps: float = settings.default("eps"),
        stochastic: str = settings.default("stochastic"),
        zero_shot: bool = settings.default("zero_shot"),
        mixture: int = settings.default("mixture"),
        max_patches: int = settings.default("max_patches"),
        seed: int = settings.default("seed"),
        runtime: Runtime | dict | None = None,
    ):
        # stored as given, never rewritten (scikit-learn's convention): the method reads ``resolved``
        self.codec, self.patch_size, self.lowpass_sigma, self.split = codec, patch_size, lowpass_sigma, split
        self.weighting, self.shrinkage, self.eps, self.stochastic = weighting, shrinkage, eps, stochastic
        self.zero_shot, self.mixture, self.max_patches, self.seed, self.runtime = zero_shot, mixture, max_patches, seed, runtime
        self.resolved  # noqa: B018 (checks every parameter now: a bad value fails here, naming it)

    def get_params(self) -> dict:
        """The method's settings (and the runtime), as given to the constructor."""
        return {name: getattr(self, name) for name in PARAMS}

    @property
    def resolved(self) -> Resolved:
        """The canonical values of the parameters (:mod:`dotrestore.params`), made again when one is changed."""
        given, cached = self.get_params(), self.__dict__.get("_resolved")
        if cached is None or any(given[name] is not cached[0][name] for name in PARAMS):
            self._resolved = (given, resolve(given, Runtime.coerce(given["runtime"])))
        return self._resolved[1]

    # ------------------------------------------------------------------ codec and state
    def prepare(self) -> Codec:
        """Load the codec once (on the runtime's device, configured by it), start the state; the codec."""
        if "codec_" not in self.__dict__:
            run = self.resolved.runtime
            self.codec_ = load_codec(self.resolved.codec, device=run.torch_device, **run.codec_options())
            self.codec_.configure(progress=run.progress and parallel.is_main())
            if parallel.is_main():
                logger.info("codec %s on %s in %s", self.codec_.id, self.codec_.device, self.codec_.precision)
            self.dim_ = self.codec_.latent_channels * self.resolved.patch_size**2
        if self.__dict__.get("state_") is None:
            self.state_ = FittedState()
        return self.codec_

    def __getattr__(self, name: str):
        # only reached when normal lookup fails: a fitted attribute before fit
        if name in FITTED or name in ("codec_", "dim_", "state_"):
            raise NotFittedError(f"DOT has no {name} yet: call fit/partial_fit or DOT.load first")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in FITTED:  # views of state_: set by fit/partial_fit/load only
            raise AttributeError(f"{name} is a fitted attribute (read-only); fit again, or edit state_ and refit")
        super().__setattr__(name, value)

    def set_fitted(self, codec: Codec, state: FittedState) -> DOT:
        """Take a fitted ``state`` (e.g. an operator file's) whose statistics live in ``codec``'s latents."""
        self.codec_, self.dim_, self.state_ = codec, codec.latent_channels * self.resolved.patch_size**2, state
        self._publish()
        return self

    def _publish(self) -> None:
        """Set the fitted attributes (``mean_source_``, ``operator_``, ...) from ``state_``."""
        for name, (get, optional) in FITTED.items():
            value = get(self.state_)
            if value is None and not optional:
                self.__dict__.pop(name, None)
            else:
                self.__dict__[name] = value
        self._cache = None

    def encode_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Latents of (B, 3, H, W) images as DOT models them (of the detail images with a low-pass)."""
        codec = self.prepare()
        return codec.encode(detail.split(images.to(codec.device), self.resolved.lowpass_sigma, self.resolved.split)[0])

    def encode(self, images) -> list[torch.Tensor]:
        """Latents (1, C, h, w) of each image as DOT models them, on the runtime's device.

        With a low-pass these are the latents of the detail images x − L(x) + ½.
        """
        stream, _, _ = pipeline.image_batches(images, "images to encode", self.resolved.runtime)
        return [z[None] for batch in stream for z in self.encode_batch(batch.images)]

    # ------------------------------------------------------------------ fitting
    def fit(self, source_images=None, target_images=None) -> DOT:
        """Fit from scratch: source = restorations x*, target = clean images (unpaired)."""
        self._clear_fitted()
        if not self.resolved.zero_shot and source_images is None:
            raise InputError("source images", "fit needs the restorations (source); or use zero_shot=True")
        if target_images is None:
            raise InputError("target images", "fit needs clean photographs (target)")
        if source_images is not None:
            self.partial_fit(source_images, role="source")
        return self.partial_fit(target_images, role="target")

    def set_target_moments(self, moments: gaussian.Moments, n_images: int) -> DOT:
        """Take the target's statistics from moments computed earlier (the bundled clean photographs)."""
        self.prepare()
        self.state_.target = RoleState(moments=moments, n_images=int(n_images))
        return self.refit() or self

    def partial_fit(self, images, role: str = "source") -> DOT:
        """Accumulate the latent patch statistics of ``images`` as ``role`` ("source" or "target").

        ``images``: a (3, H, W) or (B, 3, H, W) tensor, a list of tensors, image files and
        folders, or an iterable of batches (:class:`~dotrestore.runtime.pipeline.Batch` or
        (B, 3, H, W) tensors, e.g. a DataLoader). Source images are restorations x* of the
        model being corrected; target images are clean photographs; they need not be paired.
        May be called repeatedly (streaming); the map is recomputed after each call.

        Under torchrun every process calls this together (it is collective, like a
        torchmetrics ``compute``): files and folders are split between the processes (rank r
        takes files r, r + W, ...), tensors and streams are each process's own share, and the
        float64 sums of every process are added exactly (:meth:`~dotrestore.ot.moments.Moments.sync`).
        A bad file on any process stops every process with the message naming it.
        """
        partial_fit_together([self], images, role)  # the engine, shared with fits of several DOTs at once
        return self

    def start_fit(self, role: str) -> Codec:
        """Check ``role`` and the settings for fitting; load the codec. Returns it."""
        if role not in ROLES:
            raise SettingError("role", f"must be 'source' or 'target', got {role!r}")
        codec = self.prepare()
        if self.resolved.mixture > 1 and parallel.active():
            raise SettingError("mixture", "a mixture fits in one process only (EM needs the patches, not sums "
                               "that merge across processes): run without torchrun")
        return codec

    def _clear_fitted(self) -> None:
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("_") and n not in ("codec_", "dim_")]:
            delattr(self, name)
        self._cache = None
        self._reservoirs = {}

    def patch_reservoir(self, role: str) -> PatchReservoir:
        reservoirs = self.__dict__.setdefault("_reservoirs", {})
        if role not in reservoirs:
            if self.state_.mixture is not None and not reservoirs:
                raise InputError("operator", "a mixture operator loaded from a file does not store the patch "
                                 "reservoirs EM needs: fit it again from the images to add more")
            reservoirs[role] = PatchReservoir(self.resolved.max_patches, seed=self.resolved.seed + ROLES.index(role))
        return reservoirs[role]

    def refit(self) -> None:
        """The Gaussians and the map from the running moments (a few eigh of D×D)."""
        state = self.state_
        for role in ROLES:
            state.role(role).refit(self.resolved.shrinkage)
        source, target = state.source, state.target
        if not self.resolved.zero_shot and source.cov is not None and target.cov is not None:
            state.operator, state.noise_cov = self._map(source.cov, target.cov)
            reservoirs = self.__dict__.get("_reservoirs", {})
            if self.resolved.mixture > 1 and all(r in reservoirs for r in ROLES):
                samples = [reservoirs[r].samples.to(self.resolved.runtime.torch_device) for r in ROLES]
                state.mixture = MixtureTransport.fit(
                    *samples, self.resolved.mixture, max_samples=self.resolved.max_patches,
                    shrinkage="oas" if self.resolved.shrinkage is None else self.resolved.shrinkage, seed=self.resolved.seed)
            state.w2_squared = float(gaussian.w2_squared(source.mean, source.cov, target.mean, target.cov))
        self._publish()

    def _map(self, cov_source: torch.Tensor, cov_target: torch.Tensor):
        """Operator and (for a singular Σs) the covariance of the per-patch noise, eq. 17 / 19."""
        singular = gaussian.is_singular(cov_source, self.resolved.eps)
        if self.resolved.stochastic == "always" or (self.resolved.stochastic == "auto" and singular):
            return gaussian.stochastic_transport_map(cov_source, cov_target, eps=self.resolved.eps)
        return gaussian.transport_map(cov_source, cov_target, eps=self.resolved.eps), None

    def _check_fitted(self) -> None:
        state = self.__dict__.get("state_")
        ready = state is not None and (state.target.mean is not None if self.resolved.zero_shot else state.operator is not None)
        if not ready or (self.resolved.mixture > 1 and state.mixture is None):
            what = "target" if self.resolved.zero_shot else "source and target"
            raise NotFittedError(f"This DOT has no {what} statistics yet: call fit(source, target) or "
                                 "partial_fit(images, role=...) first, or DOT.load(operator_file).")

    # ------------------------------------------------------------------ transport
    def _operator_on_device(self, device: torch.device):
        """float32 copies of the fitted operator on the device, made once per fit."""
        cache = self.__dict__.get("_cache")
        if cache is None or cache[0].device != device:
            noise = None if self.noise_cov_ is None else gaussian.sqrtm_psd(self.noise_cov_)
            self._cache = tuple(None if t is None else t.to(device=device, dtype=torch.float32)
                                for t in (self.operator_, self.mean_source_, self.mean_target_, noise))
        return self._cache

    def transport(self, z: torch.Tensor) -> torch.Tensor:
        """T(z): every overlapping latent patch of z (B, C, h, w) moved by the OT map, averaged back.

        The noise of a stochastic map (eq. 19) is drawn per latent position from ``seed``
        (:func:`~dotrestore.ot.patches.positional_normal`): the same x* gives the same x̂0 in any
        batch, on any process and in every frame of a video, so a static scene stays static.
        """
        self._check_fitted()
        if self.resolved.mixture > 1:
            return self.mixture_.transport(z, self.resolved.patch_size, self.resolved.weighting)
        if self.resolved.zero_shot:
            p = self.resolved.patch_size
            moments = gaussian.Moments(self.dim_).update(extract_patches(z, p))
            if float(moments.count) < 2:
                raise ImageTooSmallError("image", f"too small for zero-shot transport: its {z.shape[-2]}x"
                                         f"{z.shape[-1]} latent has fewer than 2 {p}x{p} patches")
            cov, _ = gaussian.shrink_covariance(moments.covariance, int(moments.count), self.resolved.shrinkage)
            operator, noise_cov = self._map(cov, self.cov_target_)
            noise = None if noise_cov is None else gaussian.sqrtm_psd(noise_cov)
            args = [None if t is None else t.to(z.device, torch.float32)
                    for t in (operator, moments.mean, self.mean_target_, noise)]
        else:
            args = self._operator_on_device(z.device)
        operator, mean_s, mean_t, noise = args
        return transport_latent(z, operator, mean_s, mean_t, self.resolved.patch_size, weighting=self.resolved.weighting,
                                noise_sqrt=noise, noise_seed=self.resolved.seed)

    def iter_alphas(self, x: torch.Tensor, alphas: Sequence[float], interpolation: str = "pixel",
                    z: torch.Tensor | None = None, latents: dict | None = None) -> Iterator[tuple[float, torch.Tensor]]:
        """Yield (α, x̂α) one α at a time for restorations x (B, 3, H, W), clipped to [0, 1].

        pixel interpolation: x̂α = (1 − α)·D(T(E(x*))) + α·x* (α = 1 returns x* itself); latent
        interpolation: x̂α = D((1 − α)·T(z) + α·z). x is encoded, transported and (pixel) decoded
        once; each x̂α is made when asked for, so a caller that writes and drops it holds one
        full-size output at a time. ``z = codec.encode(x)`` is reused for whole-image transport
        when given (an evaluation needs E(x*) anyway). An α may be a per-pixel map, (H, W) or
        (B, 1, H, W) (:mod:`dotrestore.ot.tradeoff`); latent interpolation then blends the
        latents with the map averaged onto the latent grid.
        ``latents``, a dict shared by several DOTs on the same x, keeps each distinct codec input's
        latent (same codec and low-pass: :func:`~dotrestore.runtime.fitting.encoding_key`), so they encode it once.
        """
        self._check_fitted()
        x = check_images(x, "images", ndims=(4,), allow_empty=True)  # the check every entry point shares
        interpolation = settings.check("interpolation", interpolation)
        codec, r = self.prepare(), self.resolved
        x = x.to(codec.device, torch.float32)
        checked = [check_alpha(a, x.shape) for a in alphas]
        given = [c if not isinstance(c, torch.Tensor) else a for a, c in zip(alphas, checked)]

        if x.shape[0] == 0:  # an empty batch in, an empty batch out
            yield from ((a, x.clone()) for a in alphas)
            return
        encoded, low = detail.split(x, r.lowpass_sigma, r.split)
        key = encoding_key(self)
        if z is not None and low is None:
            z = z.to(codec.device)
        elif latents is not None and key in latents:
            z = latents[key]
        else:
            z = codec.encode(encoded)
        if latents is not None:
            latents[key] = z
        del encoded  # a full-size image no longer needed
        size = tuple(x.shape[-2:])
        z_transported = self.transport(z)

        def decode(latent: torch.Tensor) -> torch.Tensor:
            # x̂0 is an image: clamped before blending, like a decoder's own output
            decoded = codec.decode(latent, size=size)
            return detail.recombine(decoded, low, r.split, reference=x, sigma=r.lowpass_sigma).clamp_(0, 1)

        if interpolation == "pixel":
            del z
            x0 = decode(z_transported)
            del z_transported, low
            for a, c in zip(given, checked):
                yield a, blend(x0, x, c)
        else:
            for a, c in zip(given, checked):
                w = latent_alpha(c, z.shape[-2:]).to(z.device, z.dtype) if isinstance(c, torch.Tensor) else c
                yield a, decode((1 - w) * z_transported + w * z).clamp_(0, 1)

    def transform(self, images, alpha: float = 0.0, interpolation: str = "pixel"):
        """x̂α for one α (see :meth:`iter_alphas`), answered in the kind of input given.

        (3, H, W) tensor → (3, H, W); (B, 3, H, W) → (B, 3, H, W); a list of tensors, files or
        folders → a list of (3, H, W) tensors. Outputs are on the runtime's device. ``alpha`` may
        be an α map: (H, W) for every image, or (B, 1, H, W) with one map per image.
        """
        self._check_fitted()
        per_image = isinstance(alpha, torch.Tensor) and alpha.dim() == 4 and alpha.shape[0] > 1
        alpha = alpha if isinstance(alpha, torch.Tensor) and alpha.dim() > 0 else check_alpha(alpha, ())
        run = self.resolved.runtime
        stream, kind, total = pipeline.image_batches(images, "images to transform", run, allow_empty=True)
        outputs: list[torch.Tensor] = []
        with run.progress_bar(total, "transforming · encoding, transporting, decoding") as bar:
            for batch in stream:
                a = alpha[batch.positions] if per_image else alpha
                outputs.extend(dict(self.iter_alphas(batch.images, [a], interpolation))[a])
                bar.update(len(batch))
        if kind == "single":
            return outputs[0]
        empty = kind == "batch" and not outputs  # an empty batch in, an empty batch out
        return (images.float().to(run.torch_device) if empty else torch.stack(outputs)) if kind == "batch" else outputs

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the fitted statistics and operator (safetensors + JSON metadata)."""
        from .operator_file import save_operator

        self._check_fitted()
        return save_operator(self, path)

    @classmethod
    def load(cls, path: str | Path, codec: str | Codec | None = None, runtime: Runtime | dict | None = None) -> DOT:
        """Read an operator file (or take an ``OperatorFile`` read); the codec is the one it records unless ``codec`` is given.

        A codec whose weights differ from the recorded ones is refused (the statistics live in
        that codec's latent space). Nothing is unpickled.
        """
        from .operator_file import load_operator

        return load_operator(cls, path, codec=codec, runtime=runtime)

    def __repr__(self) -> str:
        r = self.resolved
        codec = r.codec if isinstance(r.codec, str) else getattr(r.codec, "id", type(r.codec).__name__)
        state = "fitted" if "operator_" in self.__dict__ or "mean_target_" in self.__dict__ else "not fitted"
        return (f"DOT(codec={codec!r}, patch_size={r.patch_size}, lowpass_sigma={r.lowpass_sigma:g}, "
                f"split={r.split!r}, mixture={r.mixture}, {state})")
