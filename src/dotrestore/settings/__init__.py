"""Every setting of dotrestore, once: its type, range, default and help.

:data:`SETTINGS` is the one table (as scikit-learn's ``_parameter_constraints``). Everything
else derives from it: the constructor check of :class:`~dotrestore.DOT`, the operator file's
metadata schema (:mod:`dotrestore.state`), the runtime object
(:class:`dotrestore.runtime.Runtime`), :class:`~dotrestore.experiment.ExperimentConfig`'s
defaults and validation, the command line's flags, types, defaults and help
(:mod:`dotrestore.cli.options`), and the defaults of ``dotrestore serve``.

A setting's ``parse`` takes what a user wrote (a Python value, a YAML value, or the text of a
command-line flag) and returns the one canonical value, or raises ``ValueError`` saying what
is accepted; :meth:`Setting.check` turns that into a :class:`~dotrestore.errors.SettingError`
naming the setting as the interface spells it. "Whole images" (no detail split) has one
spelling: ``lowpass_sigma = 0`` (``None`` is read as 0).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import SettingError
from ..ot.filters import MAX_SIGMA  # noqa: F401
from ..ot.patches import WEIGHTINGS
from ..ot.split import SPLITS
from .values import (  # noqa: F401  (the parsers and constants are part of this module's API)
    ALPHA_LIMIT,
    AUTO,
    DEFAULT_ALPHAS,
    DEFAULT_VARIANTS,
    DEMO_VARIANTS,
    DTYPES,
    INTERPOLATIONS,
    MAX_MIXTURE,
    MAX_PATCH_SIZE,
    STOCHASTIC,
    alpha,
    alpha_range,
    alphas,
    available_devices,
    boolean,
    choice,
    codec_spec,
    device,
    dtype,
    integer,
    lowpass_sigma,
    memory,
    optional_text,
    real,
    shrinkage,
    tile,
    variants,
)


# ---------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Setting:
    """One setting: its canonical ``parse``, default, help, and how the interfaces spell it.

    ``group`` is "method" (what DOT fits and operator files record), "runtime" (where and how
    the work runs), "experiment", "apply" or "serve". ``types`` are the Python (and JSON) types
    a value may have when it is not text from a command line: Python callers, configuration
    files and operator files store numbers as numbers (empty: any type the parser takes).
    """

    name: str
    group: str
    default: object
    parse: Callable[[object], object]
    help: str
    metavar: str | None = None
    flag: str | None = None
    types: tuple[type, ...] = ()

    @property
    def option(self) -> str:
        """The command-line flag, e.g. ``--lowpass-sigma``."""
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value, subject: str | None = None, text: bool = False):
        """The canonical value, or a SettingError naming ``subject`` (default: the setting's name).

        ``text``: ``value`` is what a user typed (a flag, a form field), so "4" may mean 4.
        """
        try:
            if not text and not self.has_type(value):
                raise ValueError(f"must be {self.rule}, got {value!r} ({type(value).__name__})")
            return self.parse(value)
        except (ValueError, TypeError) as exc:
            raise SettingError(subject or self.name, str(exc)) from None

    @property
    def rule(self) -> str:
        """What is accepted, in words."""
        return getattr(self.parse, "rule", None) or (self.parse.__doc__ or self.name).split("\n")[0].rstrip(".")

    def has_type(self, value) -> bool:
        if not self.types:
            return True
        return isinstance(value, self.types) and (bool in self.types or not isinstance(value, bool))

    def accepts_stored(self, value) -> bool:
        """Whether an operator file may hold ``value`` for this setting (type and range)."""
        if not self.has_type(value):
            return False
        try:
            self.parse(value)
        except (ValueError, TypeError):
            return False
        return True


_NUMBER = (numbers.Real,)
_INT = (numbers.Integral,)
_TEXT = (str, os.PathLike)
_NONE = (type(None),)
_M, _R, _E, _V = "method", "runtime", "experiment", "video"
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    # ---- the method: DOT's constructor, recorded in operator files
    Setting("codec", _M, "auto", codec_spec, "codec: auto (sd-vae-ft-ema when it is in the local Hugging Face "
            "cache, else the bundled taef2), taef2, sd-vae-ft-ema, sd-vae-ft-mse, pixel, a local diffusers folder, "
            "or a folder holding a TAESD-family *_encoder.pth/*_decoder.pth pair", "SPEC", "--vae"),
    Setting("patch_size", _M, 3, integer(1, MAX_PATCH_SIZE, odd=True),
            "odd side p of the overlapping latent patches (D = C·p²)", "P", types=_INT),
    Setting("lowpass_sigma", _M, 4.0, lowpass_sigma, "transport only details finer than the low-pass (--split) of "
            "scale S pixels; the restorer's own low-pass is kept. 0 transports whole images, as in the paper",
            "S", types=(*_NUMBER, *_NONE)),
    Setting("split", _M, "guided", choice(SPLITS), "how the detail band is made: guided = an edge-preserving "
            "guided filter, gaussian = a Gaussian low-pass; '+clamp' also clamps x̂0 to x*'s local range",
            types=(str,)),
    Setting("weighting", _M, "uniform", choice(WEIGHTINGS), "how overlapping transported patches are averaged",
            types=(str,)),
    Setting("shrinkage", _M, None, shrinkage, "covariance shrinkage towards (tr Σ / D)·I: oas, or a ridge fraction "
            "in [0, 1] (useful below ~2·D patches per side)", "oas|RHO", types=(*_NUMBER, str, *_NONE)),
    Setting("eps", _M, 1e-8, real(0.0, low_open=True), "eigenvalues are clamped at eps in matrix square roots",
            types=_NUMBER),
    Setting("stochastic", _M, "auto", choice(STOCHASTIC), "use the stochastic map (Freirich et al. eq. 19) when "
            "the source covariance is singular (auto), never, or always", types=(str,)),
    Setting("zero_shot", _M, False, boolean, "fit target statistics only; the source statistics come from each "
            "image at apply time", types=(bool,)),
    Setting("mixture", _M, 1, integer(1, MAX_MIXTURE), "Gaussian-mixture components per side (1: one Gaussian, "
            "the closed-form map)", "K", types=_INT),
    Setting("max_patches", _M, 200_000, integer(2), "reservoir of patches per side for the mixture's EM",
            "N", types=_INT),
    Setting("seed", _M, 0, integer(0, 2**63 - 1), "seed of the degradations, the stochastic map's noise and EM",
            types=_INT),
    # ---- the runtime: where and how the work runs (not recorded in operator files)
    Setting("device", _R, None, device, "cpu, cuda, cuda:1, mps ... (default: cuda when available)",
            types=(str, torch.device, *_NONE)),
    Setting("dtype", _R, "auto", dtype, "the codec's compute precision: auto = bfloat16 autocast on CPUs that "
            "compute it natively (AMX-BF16, AVX-512 BF16), else float32; bfloat16 elsewhere is emulated (slow); "
            "float16 needs CUDA. Statistics stay float64, the operator float32", "auto|float32|bfloat16|float16",
            types=(str, torch.dtype)),
    Setting("tile", _R, "auto", tile, "encode/decode big images in overlapping tiles of N pixels; auto tiles "
            "only images above 1024x1024 whose codec activations would exceed --max-memory", "auto|off|N",
            types=(str, *_INT)),
    Setting("tile_overlap", _R, None, integer(0, optional=True), "pixels shared by neighbouring tiles, blended "
            "(default 64, at most half a tile)", "N", types=(*_INT, *_NONE)),
    Setting("max_memory", _R, None, memory, "memory for the codec's activations, e.g. 8GB, that picks the tile "
            "size under --tile auto, and for a model restorer's (default: the GPU's free memory; on the "
            "CPU 1 GiB for the codec, 4 GiB for a model restorer)", "SIZE",
            types=(*_NUMBER, str, *_NONE)),
    Setting("batch_size", _R, 1, integer(1), "images of the same size encoded, transported and decoded "
            "together", "B", types=_INT),
    Setting("workers", _R, None, integer(0, optional=True), "processes that read (and degrade and restore) "
            "images; 0 = in the main process (default: min(4, CPU cores))", "N", types=(*_INT, *_NONE)),
    Setting("max_pixels", _R, 40_000_000, integer(1, optional=True), "refuse images whose header declares more "
            "than N pixels, before decoding them", "N", types=(*_INT, *_NONE)),
    Setting("progress", _R, True, boolean, "show progress bars on long steps", types=(bool,)),
    # ---- the experiment (dotrestore experiment, ExperimentConfig)
    Setting("clean", _E, None, optional_text, "folder of clean images (sorted by name)", "DIR", types=(*_TEXT, *_NONE)),
    Setting("restored", _E, None, optional_text, "folder of your restored images, paired with --clean by file "
            "stem", "DIR", types=(*_TEXT, *_NONE)),
    Setting("degrade", _E, None, optional_text, "degradation name[:k=v,...], composed with +, from the "
            "degradation registry (`dotrestore experiment --help` lists them with their parameters)", "SPEC",
            types=(str, *_NONE)),
    Setting("restorer", _E, None, optional_text, "restorer name[:k=v,...] from the restorer registry "
            "(`dotrestore experiment --help` lists them with their parameters), a model file (.pth/.pt/.ckpt/"
            ".safetensors: ESRGAN, SwinIR, SCUNet, ... via spandrel), or module:function / "
            "file.py:function on (B,3,H,W) tensors in [0,1]", "SPEC", types=(str, *_NONE)),
    Setting("test_clean", _E, None, optional_text, "test images (default: the clean images not used for "
            "fitting)", "DIR", types=(*_TEXT, *_NONE)),
    Setting("fit_source", _E, 10, integer(1), "restored images for the source statistics", "N", types=_INT),
    Setting("fit_target", _E, 10, integer(1), "clean images for the target statistics", "N", types=_INT),
    Setting("paired", _E, False, boolean, "source and target statistics from the same images' restored and "
            "clean versions (default: disjoint images, unpaired)", types=(bool,)),
    Setting("alphas", _E, list(DEFAULT_ALPHAS), alphas, "trade-off values", "A", types=(list, tuple, str, *_NUMBER)),
    Setting("crop", _E, None, integer(8, optional=True), "centre-crop every clean image to N x N", "N",
            types=(*_INT, *_NONE)),
    Setting("resize", _E, None, integer(8, optional=True), "resize every clean image to shorter side N", "N",
            types=(*_INT, *_NONE)),
    Setting("save_outputs", _E, False, boolean, "write outputs/alpha_<A>/<stem>.png for every alpha", types=(bool,)),
    Setting("out", _E, "dotrestore-experiment", optional_text, "output folder", "DIR", types=_TEXT),
    Setting("overwrite", _E, False, boolean, "replace the results of a previous run in --out", types=(bool,)),
    Setting("collages", _E, 4, integer(0), "collages for the first K test images", "K", types=_INT),
    Setting("variants", _E, None, variants, "DOT configurations compared, comma-separated: whole (the paper), "
            "detail (--lowpass-sigma), mix<K> (the first one is operator.safetensors and the headline; default: "
            f"{','.join(DEFAULT_VARIANTS)}, or whole alone with --lowpass-sigma 0)", "LIST",
            types=(str, list, tuple, *_NONE)),
    # ---- apply and serve
    Setting("alpha", "apply", 0.0, alpha, "trade-off: 0 = perceptual, 1 = the input; repeat for several", "A",
            types=_NUMBER),
    Setting("interpolation", "apply", "pixel", choice(INTERPOLATIONS), "blend decoded images (pixel) or latents "
            "(latent, decodes every alpha)", types=(str,)),
    Setting("alpha_map", "apply", None, optional_text, "a greyscale alpha map the size of the image (black = "
            "perceptual x0, white = the input x*), or a folder of maps matched to the inputs by file stem; "
            "images without a map get --alpha", "MAP", types=(*_TEXT, *_NONE)),
    Setting("alpha_map_range", "apply", (0.0, 1.0), alpha_range, "alpha of black and of white in an alpha map; "
            "grey levels map linearly between them, e.g. --alpha-map-range=-0.5,1.5 (with '=' when LO is negative; "
            "default: 0,1)", "LO,HI", types=(list, tuple, str)),
    Setting("alpha_map_feather", "apply", 4, integer(0, 1000), "soften an alpha map's edges over N pixels (a "
            "linear ramp, so no seam shows; 0 = hard edges)", "N", types=_INT),
    Setting("alpha_map_resize", "apply", False, boolean, "resize an alpha map of another size to its image "
            "(default: refuse it)", types=(bool,)),
    # ---- video clips (apply and fit)
    Setting("video_codec", _V, None, optional_text, "video encoder of the output clip, e.g. ffv1, libx264, libx265, "
            "libvpx-vp9 (default: from the output's extension: .mkv FFV1, lossless; .mp4/.mov H.264; .webm VP9)",
            "CODEC", types=(str, *_NONE)),
    Setting("crf", _V, None, integer(0, 63, optional=True), "constant-quality level of a lossy video encoder, lower "
            "is better (default: 18 for H.264, 20 for H.265, 31 for VP9; FFV1 is lossless and takes none)", "Q",
            types=(*_INT, *_NONE)),
    Setting("frame_step", _V, None, integer(1, optional=True), "fit reads every N-th frame of a video (default: the "
            "smallest step that reads at most 300 frames of each clip)", "N", types=(*_INT, *_NONE)),
    Setting("temporal", _V, "on", choice(("on", "off")), "temporal consistency of a video: the detail added to a "
            "frame follows the previous frame's along the motion of the input (off: every frame on its own)",
            types=(str,)),
    Setting("host", "serve", "127.0.0.1", optional_text, "address to bind (127.0.0.1: this machine only)",
            types=(str,)),
    Setting("port", "serve", 7860, integer(1, 65535), "port", types=_INT),
)}


def default(name: str):
    """The default of a setting (a fresh copy of lists)."""
    value = SETTINGS[name].default
    return list(value) if isinstance(value, list) else value


def check(name: str, value, subject: str | None = None, text: bool = False):
    """``SETTINGS[name].check(value, subject, text)``."""
    return SETTINGS[name].check(value, subject, text)


def names(group: str) -> tuple[str, ...]:
    return tuple(name for name, s in SETTINGS.items() if s.group == group)


#: What DOT fits and operator files record (the codec is recorded by its id, not here).
METHOD = tuple(n for n in names(_M) if n != "codec")
RUNTIME = names(_R)

__all__ = ["SETTINGS", "Setting", "default", "check", "names", "METHOD", "RUNTIME", "MAX_PATCH_SIZE",
           "MAX_MIXTURE", "STOCHASTIC", "INTERPOLATIONS", "DTYPES", "AUTO", "DEFAULT_ALPHAS", "ALPHA_LIMIT",
           "available_devices"]
