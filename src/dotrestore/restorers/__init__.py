"""Restorers read from model files (spandrel: ESRGAN, SwinIR, SCUNet, HAT, ...), weights only.

``ModelRestorer(path)`` is a restorer like the named ones of :mod:`dotrestore.data.restorers`
(``res(img, size=None)``); :func:`dotrestore.data.parse_restorer` builds one from any spec
that ends in ``.pth``, ``.pt``, ``.ckpt`` or ``.safetensors``. spandrel is the optional
dependency ``pip install "dotrestore[models]"``.
"""

from .model import ModelRestorer
from .model_file import MODEL_SUFFIXES, is_model_path, load_model_file, read_weights

__all__ = ["ModelRestorer", "MODEL_SUFFIXES", "is_model_path", "load_model_file", "read_weights"]
