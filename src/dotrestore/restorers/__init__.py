"""Restorers x* = R(y): the named baselines, a user's function, and models read from files.

``--restorer`` on fit, apply and serve (and the experiment's ``restorer``) is a spec parsed by
:func:`parse_restorer`: a named restorer of :data:`RESTORERS` (:mod:`.named`: bicubic, nlmeans,
bm3d, ...), ``module:function`` / ``file.py:function``, or a model file. ``ModelRestorer(path)``
reads a model file (spandrel: ESRGAN, SwinIR, SCUNet, HAT, ..., weights only; any spec ending in
``.pth``, ``.pt``, ``.ckpt`` or ``.safetensors``). spandrel is the optional dependency
``pip install "dotrestore[models]"``. :mod:`.specs` holds the ``name:k=v,...`` registry shared
with the experiment's degradations.
"""

from .model import ModelRestorer
from .model_file import MODEL_SUFFIXES, is_model_path, load_model_file, read_weights
from .named import RESTORERS, Restorer, UserRestorer, parse_restorer

__all__ = ["ModelRestorer", "MODEL_SUFFIXES", "is_model_path", "load_model_file", "read_weights",
           "RESTORERS", "Restorer", "UserRestorer", "parse_restorer"]
