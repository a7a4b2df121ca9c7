"""The DOT estimator: fit latent patch Gaussians, transport new restorations, blend with α.

Adrai, Ohayon, Elad, Michaeli, "Deep Optimal Transport: A Practical Algorithm for
Photo-realistic Image Restoration", NeurIPS 2023. With x* a restoration and z = E(x*)
its latent, every overlapping p×p latent patch is moved by the Gaussian OT map

    T(z) = A (z − μs) + μt,      A = Σs^{-1/2} (Σs^{1/2} Σt Σs^{1/2})^{1/2} Σs^{-1/2}

(Freirich et al. 2021, eq. 17; eq. 19 when Σs is singular), the overlapping patches are
averaged back, and x̂0 = D(T(z)). The trade-off is traversed without refitting:

    pixel:  x̂α = (1 − α) x̂0 + α x*          latent: x̂α = D((1 − α) T(z) + α z)

By default only the fine scales are transported (``lowpass_sigma``, see
:mod:`dotrestore.detail`): z = E(x* − L_σ(x*) + ½) and x̂0 = D(T(z)) − ½ + L_σ(x*), so the
restorer's own colours and layout are kept. ``lowpass_sigma=None`` transports whole images,
exactly as in the paper.

Conventions follow scikit-learn: the constructor stores parameters only, ``fit`` /
``partial_fit`` learn attributes with a trailing underscore, ``transform`` never refits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .ot import split as detail, gaussian
from .ot.mixture import MixtureTransport, PatchReservoir
from .codecs import Codec, load_codec
from .io.images import DEFAULT_MAX_PIXELS, check_max_pixels
from .runtime.devices import parse_device
from .ot.filters import MAX_SIGMA
from .errors import ImageTooSmallError, InputError, NotFittedError
from .runtime.image_items import image_items, load_item
from .ot.patches import MAX_PATCH_SIZE, WEIGHTINGS, extract_patches, transport_latent
from .state import MAX_MIXTURE, ROLES, STOCHASTIC, FittedState, RoleState

INTERPOLATIONS = ("pixel", "latent")


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise InputError(None, f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


class DOT:
    """Deep Optimal Transport between restored (source) and clean (target) images.

    Parameters
    ----------
    codec : str or Codec
        Latent space: ``"auto"`` (default: ``"sd-vae-ft-ema"``, the paper's VAE, when it is in
        the local Hugging Face cache, else the bundled ``"taef2"``), ``"sd-vae-ft-ema"``,
        ``"sd-vae-ft-mse"``, ``"taef2"``, ``"pixel"``, a local diffusers folder, a TAESD-family ``.pth`` pair folder, or a
        :class:`~dotrestore.codecs.Codec`. See :func:`dotrestore.load_codec`.
    patch_size : int
        Odd side p of the overlapping latent patches; D = C·p² dimensions.
    eps : float
        Eigenvalues of covariances are clamped at ``eps`` inside matrix square roots.
    shrinkage : None, "oas" or float
        Covariance shrinkage towards (tr Σ / D)·I before the map is computed: Oracle
        Approximating Shrinkage, or a fixed ridge fraction ρ ∈ [0, 1]. Useful when the
        number of patches is below ~2·D.
    weighting : "uniform" or "gaussian"
        How overlapping transported patches are averaged back into a latent map.
    lowpass_sigma : float or None
        Std (pixels) of the Gaussian low-pass L_σ whose content is kept from x*: statistics
        and transport use the detail images x − L_σ(x) + ½, and L_σ(x*) is added back after
        decoding (see :mod:`dotrestore.detail`). None or 0: whole images, as in the paper.
        The default 4 keeps colour and layout from the restorer, so a fit on few unpaired
        photographs does not move colours between unrelated pictures (see the README).
    zero_shot : bool
        Take the source statistics from each image being transformed (only target
        statistics are fitted).
    stochastic : "auto", "never" or "always"
        Use the stochastic map of eq. 19 (deterministic part plus independent Gaussian
        noise per patch) when Σs is singular ("auto"), never, or always.
    device : str or torch.device, optional
        Where encoding, transport and decoding run; CUDA when available by default.
        Statistics are accumulated in float64, transport runs in float32.
    batch_size : int
        Images encoded together when a (B, 3, H, W) tensor is given.
    progress : bool
        Show progress bars while encoding.
    seed : int
    max_pixels : int or None
        Image files whose header declares more pixels are refused before decoding
        (default :data:`dotrestore.data.DEFAULT_MAX_PIXELS`; None: no limit).
    tile, tile_overlap, dtype, max_memory : optional
        Codec settings (see :meth:`dotrestore.codecs.Codec.configure`): ``tile`` "auto",
        "off" or a side in pixels, ``tile_overlap`` in pixels, ``dtype`` the codec's compute
        dtype ("float32"; "bfloat16"/"float16" on CUDA), ``max_memory`` the activation budget
        that picks tiles under "auto". None keeps the codec's own setting. Transport always
        runs on the whole latent map; statistics stay float64, the operator float32.
        Seed of the per-patch noise of the stochastic map, of the patch reservoirs and of EM.
    mixture : int
        K, the number of Gaussian components of the source and target patch models. 1 (default):
        one Gaussian each, the closed-form map above. K > 1: Gaussian mixtures fitted by EM on a
        seeded uniform reservoir of at most ``max_patches`` patches per role, coupled by the MW2
        plan (Delon & Desolneux 2020), each patch moved by the posterior-weighted component maps
        (see :mod:`dotrestore.mixture`).
    split : str
        How detail images are made (see :mod:`dotrestore.detail`): ``"gaussian"``,
        ``"guided"`` (edge-preserving), or either with ``"+clamp"``.
    max_patches : int
        Reservoir size per role for the mixture's EM (K > 1 only).
    """

    def __init__(
        self,
        codec: str | Codec = "auto",
        patch_size: int = 3,
        eps: float = 1e-8,
        shrinkage: None | str | float = None,
        weighting: str = "uniform",
        lowpass_sigma: float | None = 4.0,
        zero_shot: bool = False,
        stochastic: str = "auto",
        device: str | torch.device | None = None,
        batch_size: int = 1,
        progress: bool = False,
        seed: int = 0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        tile: str | int | None = None,
        tile_overlap: int | None = None,
        dtype: str | torch.dtype | None = None,
        max_memory: int | str | None = None,
        mixture: int = 1,
        split: str = detail.DEFAULT_SPLIT,
        max_patches: int = 200_000,
    ):
        self.codec = codec
        self.patch_size = patch_size
        self.eps = eps
        self.shrinkage = shrinkage
        self.weighting = weighting
        self.lowpass_sigma = lowpass_sigma
        self.zero_shot = zero_shot
        self.stochastic = stochastic
        self.device = device
        self.batch_size = batch_size
        self.progress = progress
        self.seed = seed
        self.max_pixels = max_pixels
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.dtype = dtype
        self.max_memory = max_memory
        self.mixture = mixture
        self.split = split
        self.max_patches = max_patches

    # ------------------------------------------------------------------ set-up
    def _check_params(self) -> None:
        p = self.patch_size
        if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= MAX_PATCH_SIZE or p % 2 == 0:
            raise InputError(None, f"patch_size must be an odd integer from 1 to {MAX_PATCH_SIZE}, got {p!r}")
        if self.weighting not in WEIGHTINGS:
            raise InputError(None, f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.stochastic not in STOCHASTIC:
            raise InputError(None, f"stochastic must be one of {STOCHASTIC}, got {self.stochastic!r}")
        if not 0 < self.eps < float("inf"):
            raise InputError(None, f"eps must be a finite number > 0, got {self.eps!r}")
        sigma = self.lowpass_sigma
        if sigma is not None and not (isinstance(sigma, (int, float)) and 0 <= sigma <= MAX_SIGMA):
            raise InputError(None, f"lowpass_sigma must be None or a number in [0, {MAX_SIGMA:g}] (pixels), got {sigma!r}")
        if self.batch_size < 1:
            raise InputError(None, f"batch_size must be >= 1, got {self.batch_size!r}")
        try:
            check_max_pixels(self.max_pixels)
        except ValueError as exc:
            raise InputError(None, str(exc)) from None
        # --- mixture / split hook (issue 11) ---
        if self.split not in detail.SPLITS:
            raise InputError(None, f"split must be one of {detail.SPLITS}, got {self.split!r}")
        k = self.mixture
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_MIXTURE:
            raise InputError(None, f"mixture must be an integer from 1 to {MAX_MIXTURE} (components), got {k!r}")
        if k > 1 and self.zero_shot:
            raise InputError(None, "mixture > 1 needs fitted source statistics: it cannot be zero-shot")
        if not isinstance(self.max_patches, int) or self.max_patches < 2 * k:
            raise InputError(None, f"max_patches must be an integer >= 2 * mixture, got {self.max_patches!r}")

    def _device(self) -> torch.device:
        try:
            return parse_device(self.device)
        except ValueError as exc:
            raise InputError(None, str(exc)) from None

    def _get_codec(self) -> Codec:
        if not hasattr(self, "codec_"):
            self._check_params()
            self.codec_ = load_codec(self.codec, device=self._device(), **self._codec_options())
        return self.codec_

    def _codec_options(self) -> dict:
        return {name: getattr(self, name, None) for name in ("tile", "tile_overlap", "dtype", "max_memory")}

    @property
    def dim_(self) -> int:
        """D = C·p², the dimension of a latent patch."""
        return self._get_codec().latent_channels * self.patch_size**2

    def _role(self, role: str) -> RoleState:
        """The role's state, with fresh moments on first use."""
        if role not in ROLES:
            raise InputError(None, f"role must be 'source' or 'target', got {role!r}")
        if getattr(self, "state_", None) is None:
            self.state_ = FittedState()
        state = self.state_.role(role)
        if state.moments is None:
            state.moments = gaussian.Moments(self.dim_)
            state.n_images = 0
        return state

    # ------------------------------------------------------------------ fitted attributes
    # Read-only views of ``state_`` (the one fitted state), named as scikit-learn would.
    def _fitted(self, name: str, get, optional: bool = False):
        state = self.__dict__.get("state_")
        value = None if state is None else get(state)
        if value is None and (state is None or not optional):
            raise NotFittedError(f"DOT has no fitted {name} yet: call fit/partial_fit or DOT.load first")
        return value

    mean_source_ = property(lambda self: self._fitted("mean_source_", lambda s: s.source.mean))
    cov_source_ = property(lambda self: self._fitted("cov_source_", lambda s: s.source.cov))
    mean_target_ = property(lambda self: self._fitted("mean_target_", lambda s: s.target.mean))
    cov_target_ = property(lambda self: self._fitted("cov_target_", lambda s: s.target.cov))
    operator_ = property(lambda self: self._fitted("operator_", lambda s: s.operator))
    noise_cov_ = property(lambda self: self._fitted("noise_cov_", lambda s: s.noise_cov, optional=True))
    w2_squared_ = property(lambda self: self._fitted("w2_squared_", lambda s: s.w2_squared, optional=True))
    n_source_images_ = property(lambda self: self._fitted("n_source_images_", lambda s: s.source.n_images))
    n_target_images_ = property(lambda self: self._fitted("n_target_images_", lambda s: s.target.n_images))
    n_source_patches_ = property(lambda self: self._fitted("n_source_patches_", lambda s: s.source.n_patches))
    n_target_patches_ = property(lambda self: self._fitted("n_target_patches_", lambda s: s.target.n_patches))
    mixture_ = property(lambda self: self._fitted("mixture_", lambda s: s.mixture, optional=True))
    shrinkage_used_ = property(lambda self: self._fitted(
        "shrinkage_used_", lambda s: {r: s.role(r).shrinkage_used for r in ROLES}))

    # ------------------------------------------------------------------ images
    def _progress(self, items, desc: str):
        return tqdm(items, desc=desc, unit="img", disable=not self.progress or len(items) < 2, leave=False)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what the codec encodes, the low-pass kept from x): see :mod:`dotrestore.detail`."""
        return detail.split(x, self.lowpass_sigma, self.split.split("+")[0])

    def _encode_one(self, x: torch.Tensor) -> torch.Tensor:
        codec = self._get_codec()
        return codec.encode(self._split(x.to(codec.device))[0])

    def encode(self, images) -> list[torch.Tensor]:
        """Latents (1, C, h, w) of each image as DOT models them, on the estimator's device.

        With ``lowpass_sigma`` these are the latents of the detail images x − L_σ(x) + ½.
        """
        items, kind = image_items(images, "encode", self.max_pixels)
        if kind == "batch":  # a (B, 3, H, W) tensor: the codec encodes batch_size images at a time
            [load_item(x, None) for x in items]  # NaN/inf refused, as for single images
            return [z[None] for chunk in images.float().split(self.batch_size) for z in self._encode_one(chunk)]
        return [self._encode_one(load_item(x, self.max_pixels)[None]) for x in self._progress(items, "encoding")]

    # ------------------------------------------------------------------ fitting
    def partial_fit(self, images, role: str = "source") -> "DOT":
        """Accumulate the latent patch moments of ``images`` as ``role`` ("source" or "target").

        Source images are restorations x* of the model being corrected; target images are
        clean photographs. They need not be paired. Can be called repeatedly (streaming);
        the map is recomputed from the running moments after each call.
        """
        state = self._role(role)
        items, _ = image_items(images, f"{role} images", self.max_pixels)
        for i, x in enumerate(self._progress(items, f"encoding {role}")):
            image = load_item(x, self.max_pixels)
            z = self._encode_one(image[None])
            patches = extract_patches(z, self.patch_size)
            if patches.shape[0] == 0:
                p = self.patch_size
                raise ImageTooSmallError(
                    x if isinstance(x, (str, Path)) else None,
                    f"{'' if isinstance(x, (str, Path)) else f'{role} image {i}: '}image is "
                    f"{image.shape[-2]}x{image.shape[-1]} pixels, too small for one {p}x{p} latent patch "
                    f"(its latent is {z.shape[-2]}x{z.shape[-1]})", index=i)
            state.moments.update(patches)
            if self.mixture > 1:
                self._reservoir(role).update(patches)
            state.n_images += 1
        self._update_fitted()
        return self

    def partial_fit_moments(self, moments: gaussian.Moments, role: str = "source", n_images: int = 0) -> "DOT":
        """Accumulate precomputed latent patch moments (of :meth:`encode`'s latents) as ``role``.

        For streamed or distributed fitting: the moments may come from a data pipeline or an
        all-reduce over processes (:mod:`dotrestore.parallel`). ``n_images`` is how many
        images they summarise. Merging is exact (see :meth:`gaussian.Moments.merge`).
        """
        if moments.dim != self.dim_:
            raise ValueError(f"{role} moments have D = {moments.dim}, this DOT needs D = {self.dim_}")
        state = self._role(role)
        state.moments.merge(moments)
        state.n_images += int(n_images)
        self._update_fitted()
        return self

    def fit(self, source_images=None, target_images=None) -> "DOT":
        """Fit from scratch: source = restorations x*, target = clean images (unpaired)."""
        self._clear_fitted()
        if not self.zero_shot and source_images is None:
            raise InputError(None, "fit needs source images (restorations); or use zero_shot=True")
        if target_images is None:
            raise InputError(None, "fit needs target images (clean photographs)")
        if source_images is not None:
            self.partial_fit(source_images, role="source")
        return self.partial_fit(target_images, role="target")

    def _clear_fitted(self) -> None:
        for name in list(vars(self)):
            if name.endswith("_") and not name.startswith("_") and name != "codec_":
                delattr(self, name)
        self._cache = None
        self._reservoirs = {}

    # --- mixture hook (issue 11): reservoir of patches per role, EM + MW2 when both exist ---
    def _reservoir(self, role: str) -> PatchReservoir:
        reservoirs = self.__dict__.setdefault("_reservoirs", {})
        if role not in reservoirs:
            if self.state_.mixture is not None and not reservoirs:
                raise InputError(None, "this mixture operator was loaded from a file, which does not store the "
                                       "patch reservoirs EM needs: fit it again from the images to add more")
            reservoirs[role] = PatchReservoir(self.max_patches, seed=self.seed + ROLES.index(role))
        return reservoirs[role]

    def _update_mixture(self) -> None:
        reservoirs = self.__dict__.get("_reservoirs", {})
        if self.mixture > 1 and all(r in reservoirs for r in ROLES):
            source, target = (reservoirs[r].samples.to(self._device()) for r in ROLES)
            self.state_.mixture = MixtureTransport.fit(
                source, target, self.mixture, max_samples=self.max_patches,
                shrinkage="oas" if self.shrinkage is None else self.shrinkage, seed=self.seed)
    # --- end of the mixture hook ---

    def _update_fitted(self) -> None:
        """Recompute the fitted Gaussians and the map from the running moments (a few eigh of D×D)."""
        self._cache = None
        state = self.state_
        for role in ROLES:
            state.role(role).refit(self.shrinkage)
        source, target = state.source, state.target
        if self.zero_shot or source.cov is None or target.cov is None:
            return
        state.operator, state.noise_cov = self._map(source.cov, target.cov)
        self._update_mixture()
        state.w2_squared = float(gaussian.w2_squared(source.mean, source.cov, target.mean, target.cov))

    def _map(self, cov_source: torch.Tensor, cov_target: torch.Tensor):
        """Operator and (for a singular Σs) the covariance of the per-patch noise, eq. 17 / 19."""
        singular = gaussian.is_singular(cov_source, self.eps)
        if self.stochastic == "always" or (self.stochastic == "auto" and singular):
            return gaussian.stochastic_transport_map(cov_source, cov_target, eps=self.eps)
        return gaussian.transport_map(cov_source, cov_target, eps=self.eps), None

    def _check_fitted(self) -> None:
        state = getattr(self, "state_", None)
        if state is None or (state.target.mean is None if self.zero_shot else state.operator is None) or (
                self.mixture > 1 and state.mixture is None):
            what = "target" if self.zero_shot else "source and target"
            raise NotFittedError(
                f"This DOT instance has no {what} statistics yet: call fit(source, target) or "
                "partial_fit(images, role=...) first, or DOT.load(operator_file)."
            )

    # ------------------------------------------------------------------ transport
    def _operator_on_device(self, device: torch.device):
        """float32 copies of the fitted operator on the device, made once per fit."""
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0].device != device:
            noise = None if self.noise_cov_ is None else gaussian.sqrtm_psd(self.noise_cov_)
            self._cache = tuple(
                None if t is None else t.to(device=device, dtype=torch.float32)
                for t in (self.operator_, self.mean_source_, self.mean_target_, noise)
            )
        return self._cache

    def transport(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """T(z): every overlapping latent patch of z (B, C, h, w) moved by the OT map."""
        self._check_fitted()
        if self.zero_shot:
            mean_s, cov_s, _ = self._zero_shot_source(z)
            operator, noise_cov = self._map(cov_s, self.cov_target_)
            noise = None if noise_cov is None else gaussian.sqrtm_psd(noise_cov)
            args = [None if t is None else t.to(z.device, torch.float32) for t in (operator, mean_s, self.mean_target_, noise)]
        elif self.mixture > 1:
            return self.mixture_.transport(z, self.patch_size, self.weighting)
        else:
            args = self._operator_on_device(z.device)
        operator, mean_s, mean_t, noise = args
        return transport_latent(
            z, operator, mean_s, mean_t, self.patch_size,
            weighting=self.weighting, noise_sqrt=noise, generator=generator,
        )

    def _zero_shot_source(self, z: torch.Tensor):
        moments = gaussian.Moments(self.dim_).update(extract_patches(z, self.patch_size))
        if float(moments.count) < 2:
            raise ImageTooSmallError(None, f"image is too small for zero-shot transport: its {z.shape[-2]}x{z.shape[-1]} "
                                     f"latent has fewer than 2 {self.patch_size}x{self.patch_size} patches")
        cov, used = gaussian.shrink_covariance(moments.covariance, int(moments.count), self.shrinkage)
        return moments.mean, cov, used

    def _generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)

    def transform_alphas(
        self, images, alphas: Sequence[float], interpolation: str = "pixel"
    ) -> dict[float, list[torch.Tensor]]:
        """x̂α for several α at once; each image is encoded, transported and decoded once.

        pixel interpolation: x̂α = (1 − α)·D(T(E(x*))) + α·x*; latent interpolation:
        x̂α = D((1 − α)·T(z) + α·z). α may be any real number (α < 0 and α > 1
        extrapolate); outputs are clipped to [0, 1]. α = 1 with pixel interpolation
        returns x* itself.
        """
        self._check_fitted()
        _check_interpolation(interpolation)
        alphas = [float(a) for a in alphas]
        items, _ = image_items(images, "images to transform", self.max_pixels)
        codec = self._get_codec()
        generator = self._generator(codec.device)
        out: dict[float, list[torch.Tensor]] = {a: [] for a in alphas}
        for x in self._progress(items, "transporting"):
            x = load_item(x, self.max_pixels)[None].to(codec.device)
            for a, xa in self.transform_encoded(x, None, alphas, interpolation, generator).items():
                out[a].append(xa[0])
        return out

    def transform_encoded(
        self, x: torch.Tensor, z: torch.Tensor | None, alphas: Sequence[float], interpolation: str = "pixel",
        generator: torch.Generator | None = None,
    ) -> dict[float, torch.Tensor]:
        """x̂α for restorations x (B, 3, H, W), reusing ``z = codec.encode(x)`` when given.

        An evaluation needs E(x*) anyway; with whole-image transport (``lowpass_sigma=None``)
        it is the transported latent too, so x* is encoded once. With detail transport the
        codec encodes the detail image x − L_σ(x) + ½ here and ``z`` is not needed.
        """
        return dict(self.iter_alphas(x, alphas, interpolation, generator, z=z))

    def iter_alphas(
        self, x: torch.Tensor, alphas: Sequence[float], interpolation: str = "pixel",
        generator: torch.Generator | None = None, z: torch.Tensor | None = None,
    ):
        """Yield (α, x̂α) one α at a time for restorations x (B, 3, H, W); see :meth:`transform_alphas`.

        x is encoded, transported and (for pixel interpolation) decoded once; each x̂α is made
        when asked for, so a caller that writes and drops it holds one full-size output at a
        time, whatever the number of α. ``z`` is reused as in :meth:`transform_encoded`.
        """
        self._check_fitted()
        _check_interpolation(interpolation)
        alphas = [float(a) for a in alphas]
        codec = self._get_codec()
        x = x.to(codec.device, torch.float32)
        encoded, low = self._split(x)
        z = codec.encode(encoded) if z is None or low is not None else z.to(codec.device)
        del encoded  # a full-size image no longer needed
        size = tuple(x.shape[-2:])
        generator = generator if generator is not None else self._generator(codec.device)
        z_transported = self.transport(z, generator)

        def decode(latent: torch.Tensor) -> torch.Tensor:
            # x̂0 is an image: clamped before blending, like a decoder's own output
            decoded = codec.decode(latent, size=size)
            return detail.recombine(decoded, low, self.split, reference=x, sigma=self.lowpass_sigma).clamp_(0, 1)

        if interpolation == "pixel":
            del z
            x0 = decode(z_transported)
            del z_transported, low
            for a in alphas:
                yield a, ((1 - a) * x0 + a * x).clamp_(0, 1)
        else:
            for a in alphas:
                yield a, decode((1 - a) * z_transported + a * z).clamp_(0, 1)

    def transform(self, images, alpha: float = 0.0, interpolation: str = "pixel"):
        """x̂α for one α; answers in the kind of input given.

        (3, H, W) tensor → (3, H, W); (B, 3, H, W) → (B, 3, H, W); a list of tensors or
        paths → a list of (3, H, W) tensors. Inputs may live on any device; outputs are on
        the estimator's device. See :meth:`transform_alphas` for the formula.
        """
        self._check_fitted()
        _check_interpolation(interpolation)
        items, kind = image_items(images, "images to transform", self.max_pixels)
        if kind == "list":
            return self.transform_alphas(items, [alpha], interpolation)[float(alpha)]
        codec = self._get_codec()
        generator = self._generator(codec.device)
        batch = images if kind == "batch" else images[None]
        outs = [
            self.transform_encoded(chunk, None, [alpha], interpolation, generator)[float(alpha)]
            for chunk in batch.to(codec.device, torch.float32).split(self.batch_size)
        ]
        result = torch.cat(outs)
        return result[0] if kind == "single" else result

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the fitted statistics and operator (safetensors + JSON metadata)."""
        from .operator_file import save_operator

        self._check_fitted()
        return save_operator(self, path)

    @classmethod
    def load(cls, path: str | Path, codec: str | Codec | None = None, device=None, **codec_options) -> "DOT":
        """Read an operator file; the codec is the one it records unless ``codec`` is given.

        ``codec_options`` (``tile``, ``tile_overlap``, ``dtype``, ``max_memory``) configure
        its codec, as in the constructor.

        A codec whose id differs from the recorded one is refused (the statistics live in
        that codec's latent space). Nothing is unpickled.
        """
        from .operator_file import load_operator

        dot = load_operator(cls, path, codec=codec, device=device)
        return dot.set_codec_options(**codec_options) if codec_options else dot

    def set_codec_options(self, **options) -> "DOT":
        """Set ``tile``, ``tile_overlap``, ``dtype`` or ``max_memory`` (None keeps one) here and on the loaded codec."""
        for name, value in options.items():
            if name not in ("tile", "tile_overlap", "dtype", "max_memory"):
                raise TypeError(f"unknown codec option {name!r}")
            if value is not None:
                setattr(self, name, value)
        if hasattr(self, "codec_"):
            self.codec_.configure(**self._codec_options())
        return self

    def __repr__(self) -> str:
        codec = self.codec if isinstance(self.codec, str) else getattr(self.codec, "id", type(self.codec).__name__)
        state = "fitted" if hasattr(self, "operator_") or hasattr(self, "mean_target_") else "not fitted"
        return (f"DOT(codec={codec!r}, patch_size={self.patch_size}, lowpass_sigma={self.lowpass_sigma}, "
                f"split={self.split!r}, mixture={self.mixture}, {state})")
