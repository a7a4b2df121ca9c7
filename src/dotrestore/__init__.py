"""dotrestore: Deep Optimal Transport (DOT) image restoration.

Fit the closed-form optimal transport map between Gaussians of overlapping VAE-latent
patches of a model's restorations (source) and of clean images (target); transport new
restorations and blend, x̂α = (1 − α)·x̂0 + α·x*, to pick a point on the
perception–distortion trade-off at test time without retraining.
"""

from . import log
from ._version import __version__
from .codecs import Codec, load_codec
from .errors import CodecUnavailableError, DotRestoreError, InputError, NotFittedError, OperatorFileError, SettingError
from .estimator import DOT
from .runtime import Runtime

log.install_default_handler()

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
