"""dotrestore: Deep Optimal Transport (DOT) image restoration.

Fit the closed-form optimal transport map between Gaussians of overlapping VAE-latent
patches of a model's restorations (source) and of clean images (target); transport new
restorations and blend, x̂α = (1 − α)·x̂0 + α·x*, to pick a point on the
perception–distortion trade-off at test time without retraining.
"""

from . import log
from ._version import __version__
from .errors import CodecUnavailableError, DotRestoreError, InputError, NotFittedError, OperatorFileError, SettingError

log.install_default_handler()

#: Loaded when first used (they import torch, seconds): ``import dotrestore`` and the command's
#: start-up stay quick, and a Ctrl-C while torch loads is the command's to report (see ``_entry``).
_LAZY = {"DOT": ".estimator", "Runtime": ".runtime", "Codec": ".codecs", "load_codec": ".codecs"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "DOT",
    "Runtime",
    "Codec",
    "load_codec",
    "DotRestoreError",
    "InputError",
    "OperatorFileError",
    "CodecUnavailableError",
    "NotFittedError",
    "SettingError",
    "__version__",
]
