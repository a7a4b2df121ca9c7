"""A restorer from its model file: ESRGAN, SwinIR, SCUNet, ... read by spandrel from the state dict.

Only weights are ever read: ``.pth``/``.pt``/``.ckpt`` with ``torch.load(weights_only=True)``
(a pickle that needs any Python object beyond tensors and plain containers is refused, never
executed) and ``.safetensors`` with safetensors. spandrel then detects the architecture from
the state dict's keys and shapes (about 40 families) and builds the network; its scale
(×1, ×2, ×4, ...) comes with it. Every problem with the file is an InputError naming it.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import InputError
from ..io.files import open_regular

logger = logging.getLogger(__name__)

#: file suffixes read as model files (weights only)
MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def is_model_path(spec) -> bool:
    """True when ``spec`` names a model file by its suffix (whether or not it exists)."""
    return isinstance(spec, (str, Path)) and Path(str(spec).strip()).suffix.lower() in MODEL_SUFFIXES


def import_spandrel():
    """The ``spandrel`` module; InputError saying how to install it when it is missing."""
    try:
        import spandrel
    except ImportError as err:
        raise InputError("--restorer", 'a model file needs the "spandrel" package, which is not installed: '
                         'pip install "dotrestore[models]"') from err
    return spandrel


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, unwrapped (``params_ema``, ``state_dict``, ``module.`` ...), on the CPU.

    Raises InputError naming the file when it is missing, not a regular file, truncated, not a
    weights file, or a pickle holding more than weights.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist (expected a model file: .pth, .pt, .ckpt or .safetensors)")
    with open_regular(path) as handle:
        if path.suffix.lower() == ".safetensors":
            state = _read_safetensors(path, handle.read())
        else:
            state = _read_pickle(path, handle)
    if not isinstance(state, Mapping):
        raise InputError(path, f"holds a {type(state).__name__}, not a state dict of weights")
    from spandrel import canonicalize_state_dict

    state = canonicalize_state_dict(dict(state))
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(path, "holds no weight tensors (not a model's state dict)")
    return tensors


def _read_safetensors(path: Path, content: bytes) -> dict:
    from safetensors.torch import load

    try:
        return load(content)
    except Exception as err:  # SafetensorError, and header JSON errors, are not one type
        raise InputError(path, f"is not a readable safetensors file (truncated or not a model: {err})") from err


def _read_pickle(path: Path, handle) -> object:
    try:
        return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise InputError(path, "holds Python objects beyond weights; only weights are loaded (weights_only), "
                             "never pickled code: save the model's state_dict() instead") from err
        raise InputError(path, f"is not a PyTorch weights file ({_first_line(err)})") from err
    except Exception as err:  # the unpickler fails on garbage with many types (EOFError, IndexError, ...)
        raise InputError(path, f"is not a readable PyTorch weights file (truncated or not a model: "
                         f"{_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_model_file(path: str | Path):
    """spandrel's ``ImageModelDescriptor`` for the model in ``path``, in eval mode on the CPU.

    InputError naming the file for an unknown architecture, weights that do not fit the
    detected one, an inpainting model (which needs a mask) or a model that does not map RGB to RGB.
    """
    spandrel = import_spandrel()
    state = read_weights(path)
    try:
        model = spandrel.MAIN_REGISTRY.load(state)
    except spandrel.UnsupportedModelError as err:
        raise InputError(path, "is not a model architecture spandrel knows (ESRGAN, SwinIR, SCUNet, HAT, "
                         "NAFNet, Restormer, ...): its weights match none of them") from err
    except Exception as err:  # a known layout whose shapes or keys are inconsistent
        raise InputError(path, f"has weights that do not build a model ({type(err).__name__}: "
                         f"{_first_line(err)})") from err
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise InputError(path, f"is a {model.architecture.name} {model.purpose} model, which needs a mask; "
                         "only image-to-image restorers are supported")
    if model.input_channels != 3 or model.output_channels != 3:
        raise InputError(path, f"is a {model.architecture.name} model for {model.input_channels}-channel inputs "
                         f"and {model.output_channels}-channel outputs; RGB to RGB is needed")
    return model.eval()


__all__ = ["MODEL_SUFFIXES", "is_model_path", "import_spandrel", "read_weights", "load_model_file"]
