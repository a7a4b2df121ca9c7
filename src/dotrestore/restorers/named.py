"""Baseline restorers x* = R(y) and the adapter for a user's own model.

Every restorer is called as ``res(img, size=(H, W)) -> img`` on (3, h, w) (or (B, 3, h, w))
float tensors in [0, 1] and returns (3, H, W) clipped to [0, 1]. ``size`` defaults to the input
size. ``bicubic`` and user callables receive the input as it is (they do the upscaling); every
other restorer first resizes an input whose size differs from ``size`` back to ``size``
(antialiased bicubic) and then restores at full size, so ``down:scale=2`` followed by
``gaussian-blur`` still gives a full-size image.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.images import resize_image
from ..ot.filters import gaussian_blur
from .model import ModelRestorer
from .model_file import is_model_path
from .specs import BLUR_SIGMA, Param, SpecRegistry, format_value

logger = logging.getLogger(__name__)


class Restorer:
    """Base class: subclasses implement ``restore(x[B,3,H,W], size) -> [B,3,H,W]``."""

    name = ""
    params: tuple[Param, ...] = ()
    resizes_input = True  # bring the input to ``size`` before restoring

    def __init__(self, **values):
        for key, value in values.items():
            setattr(self, key, value)

    def restore(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, img: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        batch = img if img.dim() == 4 else img[None]
        size = tuple(batch.shape[-2:]) if size is None else (int(size[0]), int(size[1]))
        batch = batch.float()
        if self.resizes_input and tuple(batch.shape[-2:]) != size:
            batch = resize_image(batch, size)
        out = self.restore(batch, size).clamp(0, 1)
        return out if img.dim() == 4 else out[0]

    def __str__(self) -> str:
        values = ",".join(
            f"{p.name}={format_value(getattr(self, p.name))}"
            for p in self.params
            if getattr(self, p.name) != p.default
        )
        return f"{self.name}:{values}" if values else self.name

    def __repr__(self) -> str:
        return f"parse_restorer({str(self)!r})"


class Identity(Restorer):
    """x* = y (resized to ``size`` when needed): the degraded image itself."""

    name = "identity"

    def restore(self, x, size):
        return x


class GaussianBlurRestorer(Restorer):
    """x* = G_σ * y: the DOT paper's seed restorer, a Gaussian blur of the noisy image."""

    name = "gaussian-blur"
    params = (BLUR_SIGMA,)

    def restore(self, x, size):
        return gaussian_blur(x, self.sigma)


class Bicubic(Restorer):
    """Upsample back to ``size`` with bicubic interpolation (antialiased when shrinking)."""

    name = "bicubic"
    resizes_input = False

    def restore(self, x, size):
        return resize_image(x, size)


def estimate_sigma(image: np.ndarray) -> float:
    """Gaussian noise σ of an (H, W, 3) image, averaged over channels (Donoho & Johnstone 1994).

    σ̂ = median(|d|) / Φ⁻¹(0.75) over the non-zero finest diagonal db2 wavelet coefficients d:
    ``skimage.restoration.estimate_sigma(image, channel_axis=-1, average_sigmas=True)``
    (PyWavelets, which it needs, is a dependency of dotrestore).
    """
    from skimage.restoration import estimate_sigma as skimage_estimate_sigma

    return float(skimage_estimate_sigma(image, channel_axis=-1, average_sigmas=True))


class NLMeans(Restorer):
    """Non-local means (scikit-image), noise level estimated per image.

    σ̂ = ``estimate_sigma(y, channel_axis=-1, average_sigmas=True)`` unless ``sigma`` is given;
    ``denoise_nl_means(y, h=0.8·σ̂, sigma=σ̂, fast_mode=True, patch_size=5, patch_distance=6,
    channel_axis=-1)``. ``h`` and ``sigma`` are given in 0-255 units, like ``noise:sigma``.
    """

    name = "nlmeans"
    params = (
        Param("h", float, lambda v: v >= 0, "≥ 0, in 0-255 units", None, "0.8·sigma"),
        Param("sigma", float, lambda v: v >= 0, "≥ 0, in 0-255 units", None, "estimated"),
        Param("patch_size", int, lambda v: v >= 1, "≥ 1", 5),
        Param("patch_distance", int, lambda v: v >= 1, "≥ 1", 6),
    )

    def restore(self, x, size):
        from skimage.restoration import denoise_nl_means

        out = []
        for img in x:
            array = img.permute(1, 2, 0).detach().cpu().double().numpy()
            if self.sigma is None:
                sigma = estimate_sigma(array)
            else:
                sigma = self.sigma / 255.0
            h = 0.8 * sigma if self.h is None else self.h / 255.0
            if h <= 0:  # nothing to remove: NL-means with h = 0 would divide by zero
                out.append(img)
                continue
            denoised = denoise_nl_means(
                array, h=h, sigma=sigma, fast_mode=True, patch_size=self.patch_size,
                patch_distance=self.patch_distance, channel_axis=-1,
            )
            out.append(torch.from_numpy(np.ascontiguousarray(denoised, dtype=np.float32)).permute(2, 0, 1))
        return torch.stack(out).to(x.device)


class BM3D(Restorer):
    """BM3D (Dabov, Foi, Katkovnik & Egiazarian, IEEE TIP 2007), the ``bm3d`` package.

    ``bm3d.bm3d_rgb(y, sigma_psd=σ/255)``: block matching in the opponent colour space's
    luminance, collaborative hard thresholding then Wiener filtering of 3-D groups of similar
    blocks. ``sigma`` is the white Gaussian noise level in 0-255 units, like ``noise:sigma``;
    without it σ is estimated per image (:func:`estimate_sigma`).
    The package is an optional dependency: ``pip install "dotrestore[bm3d]"``.
    """

    name = "bm3d"
    params = (Param("sigma", float, lambda v: 0 < v <= 255, "in (0, 255], in 0-255 units", None, "estimated"),)

    def __init__(self, **values):
        super().__init__(**values)
        _import_bm3d()  # fail at parse time, before any image is read

    def restore(self, x, size):
        bm3d = _import_bm3d()
        out = []
        for img in x:
            array = img.permute(1, 2, 0).detach().cpu().double().numpy()
            sigma = estimate_sigma(array) if self.sigma is None else self.sigma / 255.0
            if sigma <= 0:  # a noise-free image: nothing to remove
                out.append(img)
                continue
            denoised = bm3d.bm3d_rgb(array, sigma_psd=sigma)
            out.append(torch.from_numpy(np.ascontiguousarray(denoised, dtype=np.float32)).permute(2, 0, 1))
        return torch.stack(out).to(x.device)


def _import_bm3d():
    try:
        import bm3d
    except ImportError as err:
        raise InputError("bm3d", 'restorer needs the "bm3d" package, which is not installed: '
                         'pip install "dotrestore[bm3d]"') from err
    return bm3d


#: How far a user restorer's output may stray outside [0, 1] (rounding in its last layer) before
#: it is refused rather than clamped: silently clamping ``x * 1000 - 500`` would report nonsense.
RANGE_TOLERANCE = 1e-3


class UserRestorer(Restorer):
    """Wrap ``fn(x[B,3,h,w] in [0,1]) -> [B,3,H',W']``, a user's model; output checked.

    Runs under ``torch.no_grad``. A non-tensor, a tensor that is not (B, 3, ·, ·), not
    floating point (uint8), not finite, or outside [0, 1] by more than :data:`RANGE_TOLERANCE`
    raises InputError naming the callable and what it returned. An output whose size differs
    from ``size`` is resized to it (bicubic) with a logged notice.
    """

    resizes_input = False

    def __init__(self, fn: Callable, label: str):
        self.fn, self.label = fn, label

    def restore(self, x, size):
        with torch.no_grad():
            try:
                out = self.fn(x)
            except InputError:
                raise
            except Exception as err:
                raise InputError(self.label, f"failed on an input of shape {tuple(x.shape)} "
                                 f"({type(err).__name__}: {err})") from err
        expected = f"expected a ({x.shape[0]}, 3, H, W) tensor for an input of shape {tuple(x.shape)}"
        if not isinstance(out, torch.Tensor):
            raise InputError(self.label, f"returned a {type(out).__name__}, {expected}")
        if out.dim() != 4 or out.shape[0] != x.shape[0] or out.shape[1] != 3:
            raise InputError(self.label, f"returned a tensor of shape {tuple(out.shape)}, {expected}")
        if not out.is_floating_point():  # (x * 255).to(torch.uint8) would be clamped to a black-and-white image
            raise InputError(self.label, f"returned a {str(out.dtype).replace('torch.', '')} tensor; expected "
                             "floating-point values in [0, 1] (e.g. out.float() / 255)")
        out = out.detach().float().to(x.device)
        if not bool(torch.isfinite(out).all()):
            raise InputError(self.label, "returned non-finite values (NaN or inf)")
        low, high = float(out.min()), float(out.max())
        if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            raise InputError(self.label, f"returned values in [{low:.4g}, {high:.4g}]; expected images in [0, 1] "
                             f"(a tolerance of {RANGE_TOLERANCE:g} is clamped, nothing more)")
        if tuple(out.shape[-2:]) != size:
            logger.warning("%s: returned %dx%d, resized to %dx%d", self.label, *out.shape[-2:], *size)
            out = resize_image(out.clamp(0, 1), size)
        return out

    def __str__(self) -> str:
        return self.label


#: The named restorers, parsed from ``name:k=v`` specs by the shared :class:`SpecRegistry`.
RESTORERS = SpecRegistry("restorer", (GaussianBlurRestorer, NLMeans, BM3D, Bicubic, Identity))
_USER_HINT = ("or a model file (.pth, .pt, .ckpt, .safetensors; ESRGAN, SwinIR, SCUNet, ... via spandrel), "
              "or 'module:function' / 'path/to/file.py:function' for your own model")


def _load_callable(target: str, func: str) -> Callable:
    label = f"{target}:{func}"
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise InputError(path, "does not exist (expected a Python file holding the restorer)")
        module_name = f"_dotrestore_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise InputError(path, f"cannot import ({type(err).__name__}: {err})") from err
    else:
        # a console script does not put the working folder on sys.path; users expect it there
        added = os.getcwd() not in sys.path
        if added:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except Exception as err:
            raise InputError(target, f"cannot import module ({type(err).__name__}: {err})") from err
        finally:
            if added:
                sys.path.remove(os.getcwd())
    fn = getattr(module, func, None)
    if fn is None:
        raise InputError(label, f"module {target!r} has no attribute {func!r}")
    if not callable(fn):
        raise InputError(label, f"{func!r} is a {type(fn).__name__}, not a callable")
    return fn


def parse_restorer(spec: str | Restorer | ModelRestorer | Callable) -> Restorer | ModelRestorer:
    """Build a restorer from a spec.

    ``gaussian-blur:sigma=S`` (S in pixels), ``nlmeans`` (``nlmeans:h=..,sigma=..`` in 0-255
    units, ``patch_size``, ``patch_distance``), ``bm3d:sigma=S`` (0-255 units; the optional
    ``bm3d`` package), ``bicubic``, ``identity``, a model file ``path/to/model.pth`` (``.pt``,
    ``.ckpt``, ``.safetensors``; weights only, architecture detected by spandrel:
    :class:`dotrestore.restorers.ModelRestorer`), or a user callable
    ``module:function`` / ``path/to/file.py:function`` (also a Python callable directly).
    Bad specs raise InputError listing the valid names.
    """
    if isinstance(spec, (Restorer, ModelRestorer)):
        return spec
    if callable(spec) and not isinstance(spec, str):
        return UserRestorer(spec, getattr(spec, "__qualname__", type(spec).__name__))
    valid = f"{RESTORERS.catalogue()}; {_USER_HINT}"
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("restorer spec", f"is empty ({spec!r}); {valid}")
    spec = spec.strip()
    if is_model_path(spec):
        return ModelRestorer(spec)
    name = spec.partition(":")[0].strip().lower()
    if name in RESTORERS:
        return RESTORERS.parse(spec)
    target, colon, func = spec.rpartition(":")
    if not colon or not target or not func.isidentifier():
        raise InputError("restorer spec", f"unknown restorer {spec!r}; {valid}")
    return UserRestorer(_load_callable(target, func), f"{target}:{func}")


__all__ = ["Restorer", "Identity", "GaussianBlurRestorer", "Bicubic", "NLMeans", "BM3D", "UserRestorer",
           "RESTORERS", "parse_restorer"]
