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

from . import detail, gaussian
from .mixture import MixtureTransport, PatchReservoir
from .codecs import Codec, load_codec
from .errors import InputError, NotFittedError
from .image_items import image_items, load_item
from .patches import extract_patches, transport_latent

ROLES = ("source", "target")
INTERPOLATIONS = ("pixel", "latent")
WEIGHTINGS = ("uniform", "gaussian")
STOCHASTIC = ("auto", "never", "always")


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise InputError(None, f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


class DOT:
    """Deep Optimal Transport between restored (source) and clean (target) images.

    Parameters
    ----------
    codec : str or Codec
        Latent space: ``"sd-vae-ft-ema"`` (default, as in the paper), ``"sd-vae-ft-mse"``,
        ``"pixel"``, a local diffusers folder, a TAESD-family ``.pth`` pair folder, or a
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
        The default 4 keeps colour and layout from the restorer; it made unpaired fits on 5 + 5
        photographs far less sensitive to which photographs they were.
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
        codec: str | Codec = "sd-vae-ft-ema",
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
        self.mixture = mixture
        self.split = split
        self.max_patches = max_patches

    # ------------------------------------------------------------------ set-up
    def _check_params(self) -> None:
        p = self.patch_size
        if not isinstance(p, int) or p < 1 or p % 2 == 0:
            raise InputError(None, f"patch_size must be a positive odd integer, got {p!r}")
        if self.weighting not in WEIGHTINGS:
            raise InputError(None, f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.stochastic not in STOCHASTIC:
            raise InputError(None, f"stochastic must be one of {STOCHASTIC}, got {self.stochastic!r}")
        if not self.eps > 0:
            raise InputError(None, f"eps must be > 0, got {self.eps!r}")
        sigma = self.lowpass_sigma
        if sigma is not None and not (isinstance(sigma, (int, float)) and 0 <= sigma < float("inf")):
            raise InputError(None, f"lowpass_sigma must be None or a number >= 0 (pixels), got {sigma!r}")
        if self.batch_size < 1:
            raise InputError(None, f"batch_size must be >= 1, got {self.batch_size!r}")
        # --- mixture / split hook (issue 11) ---
        if self.split not in detail.SPLITS:
            raise InputError(None, f"split must be one of {detail.SPLITS}, got {self.split!r}")
        k = self.mixture
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(None, f"mixture must be a positive integer (components), got {k!r}")
        if k > 1 and self.zero_shot:
            raise InputError(None, "mixture > 1 needs fitted source statistics: it cannot be zero-shot")
        if not isinstance(self.max_patches, int) or self.max_patches < 2 * k:
            raise InputError(None, f"max_patches must be an integer >= 2 * mixture, got {self.max_patches!r}")

    def _device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _get_codec(self) -> Codec:
        if not hasattr(self, "codec_"):
            self._check_params()
            self.codec_ = load_codec(self.codec, device=self._device())
        return self.codec_

    @property
    def dim_(self) -> int:
        """D = C·p², the dimension of a latent patch."""
        return self._get_codec().latent_channels * self.patch_size**2

    def _moments(self, role: str) -> gaussian.Moments:
        if role not in ROLES:
            raise InputError(None, f"role must be 'source' or 'target', got {role!r}")
        moments = getattr(self, f"_{role}_moments", None)
        if moments is None:
            moments = gaussian.Moments(self.dim_)
            setattr(self, f"_{role}_moments", moments)
            setattr(self, f"n_{role}_images_", 0)
        return moments

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
        items, _ = image_items(images, "encode")
        return [self._encode_one(load_item(x)[None]) for x in self._progress(items, "encoding")]

    # ------------------------------------------------------------------ fitting
    def partial_fit(self, images, role: str = "source") -> "DOT":
        """Accumulate the latent patch moments of ``images`` as ``role`` ("source" or "target").

        Source images are restorations x* of the model being corrected; target images are
        clean photographs. They need not be paired. Can be called repeatedly (streaming);
        the map is recomputed from the running moments after each call.
        """
        moments = self._moments(role)
        items, _ = image_items(images, f"{role} images")
        for x in self._progress(items, f"encoding {role}"):
            z = self._encode_one(load_item(x)[None])
            patches = extract_patches(z, self.patch_size)
            moments.update(patches)
            if self.mixture > 1:
                self._reservoir(role).update(patches)
            setattr(self, f"n_{role}_images_", getattr(self, f"n_{role}_images_") + 1)
        self._update_fitted()
        return self

    def fit(self, source_images=None, target_images=None) -> "DOT":
        """Fit from scratch: source = restorations x*, target = clean images (unpaired)."""
        for role in ROLES:
            setattr(self, f"_{role}_moments", None)
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
            if getattr(self, "mixture_", None) is not None:
                raise InputError(None, "this mixture operator was loaded from a file, which does not store the "
                                       "patch reservoirs EM needs: fit it again from the images to add more")
            reservoirs[role] = PatchReservoir(self.max_patches, seed=self.seed + ROLES.index(role))
        return reservoirs[role]

    def _update_mixture(self) -> None:
        reservoirs = self.__dict__.get("_reservoirs", {})
        if self.mixture > 1 and all(r in reservoirs for r in ROLES):
            source, target = (reservoirs[r].samples.to(self._device()) for r in ROLES)
            self.mixture_ = MixtureTransport.fit(source, target, self.mixture, max_samples=self.max_patches,
                                                 shrinkage="oas" if self.shrinkage is None else self.shrinkage,
                                                 seed=self.seed)
    # --- end of the mixture hook ---

    def _gaussian(self, role: str) -> tuple[torch.Tensor, torch.Tensor, str] | None:
        moments = getattr(self, f"_{role}_moments", None)
        if moments is None or float(moments.count) < 2:
            return None
        cov, used = gaussian.shrink_covariance(moments.covariance, int(moments.count), self.shrinkage)
        return moments.mean, cov, used

    def _update_fitted(self) -> None:
        """Recompute fitted attributes from the running moments (cheap: a few eigh of D×D)."""
        self._cache = None
        for role in ROLES:
            fitted = self._gaussian(role)
            moments = getattr(self, f"_{role}_moments", None)
            if moments is not None:
                setattr(self, f"n_{role}_patches_", int(moments.count))
            if fitted is not None:
                setattr(self, f"mean_{role}_", fitted[0])
                setattr(self, f"cov_{role}_", fitted[1])
                self.shrinkage_used_ = fitted[2]
        if self.zero_shot or not (hasattr(self, "cov_source_") and hasattr(self, "cov_target_")):
            return
        self.operator_, self.noise_cov_ = self._map(self.cov_source_, self.cov_target_)
        self._update_mixture()
        self.w2_squared_ = float(gaussian.w2_squared(self.mean_source_, self.cov_source_, self.mean_target_, self.cov_target_))

    def _map(self, cov_source: torch.Tensor, cov_target: torch.Tensor):
        """Operator and (for a singular Σs) the covariance of the per-patch noise, eq. 17 / 19."""
        singular = gaussian.is_singular(cov_source, self.eps)
        if self.stochastic == "always" or (self.stochastic == "auto" and singular):
            return gaussian.stochastic_transport_map(cov_source, cov_target, eps=self.eps)
        return gaussian.transport_map(cov_source, cov_target, eps=self.eps), None

    def _check_fitted(self) -> None:
        needed = ("mean_target_",) if self.zero_shot else ("operator_",) + (("mixture_",) if self.mixture > 1 else ())
        if not all(hasattr(self, n) for n in needed):
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
            raise InputError(None, "zero-shot transport needs an image with at least 2 latent patches")
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
        items, _ = image_items(images, "images to transform")
        codec = self._get_codec()
        generator = self._generator(codec.device)
        out: dict[float, list[torch.Tensor]] = {a: [] for a in alphas}
        for x in self._progress(items, "transporting"):
            x = load_item(x)[None].to(codec.device)
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
        self._check_fitted()
        _check_interpolation(interpolation)
        codec = self._get_codec()
        x = x.to(codec.device, torch.float32)
        encoded, low = self._split(x)
        z = codec.encode(encoded) if z is None or low is not None else z.to(codec.device)
        size = tuple(x.shape[-2:])
        generator = generator if generator is not None else self._generator(codec.device)
        z_transported = self.transport(z, generator)

        def decode(latent: torch.Tensor) -> torch.Tensor:
            # x̂0 is an image: clamped before blending, like a decoder's own output
            decoded = codec.decode(latent, size=size)
            return detail.recombine(decoded, low, self.split, reference=x, sigma=self.lowpass_sigma).clamp_(0, 1)

        if interpolation == "pixel":
            x0 = decode(z_transported)
            return {a: ((1 - a) * x0 + a * x).clamp_(0, 1) for a in map(float, alphas)}
        return {a: decode((1 - a) * z_transported + a * z).clamp_(0, 1) for a in map(float, alphas)}

    def transform(self, images, alpha: float = 0.0, interpolation: str = "pixel"):
        """x̂α for one α; answers in the kind of input given.

        (3, H, W) tensor → (3, H, W); (B, 3, H, W) → (B, 3, H, W); a list of tensors or
        paths → a list of (3, H, W) tensors. Inputs may live on any device; outputs are on
        the estimator's device. See :meth:`transform_alphas` for the formula.
        """
        self._check_fitted()
        _check_interpolation(interpolation)
        items, kind = image_items(images, "images to transform")
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
    def load(cls, path: str | Path, codec: str | Codec | None = None, device=None) -> "DOT":
        """Read an operator file; the codec is the one it records unless ``codec`` is given.

        A codec whose id differs from the recorded one is refused (the statistics live in
        that codec's latent space). Nothing is unpickled.
        """
        from .operator_file import load_operator

        return load_operator(cls, path, codec=codec, device=device)

    def __repr__(self) -> str:
        codec = self.codec if isinstance(self.codec, str) else getattr(self.codec, "id", type(self.codec).__name__)
        state = "fitted" if hasattr(self, "operator_") or hasattr(self, "mean_target_") else "not fitted"
        return (f"DOT(codec={codec!r}, patch_size={self.patch_size}, lowpass_sigma={self.lowpass_sigma}, "
                f"split={self.split!r}, mixture={self.mixture}, {state})")
