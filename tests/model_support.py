"""spandrel for the tests, and small random-initialised model files of real architectures.

torchvision from the registry does not import beside the CPU torch these tests run with, and
spandrel imports it at import time for two architectures only (LaMa: ``rotate`` and
``InterpolationMode``; RestoreFormer: ``normalize``). When the real torchvision is missing or
broken, :func:`import_spandrel` installs a stand-in module whose functions raise if called:
the architectures these tests load (ESRGAN, SwinIR, SCUNet) never call torchvision, so a call
would fail the test rather than pass silently. Users install the real one with the extra.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

REAL_ESRGAN = Path("weights") / "realesrgan-x4plus" / "RealESRGAN_x4plus.pth"


def _stand_in_torchvision() -> None:
    def not_available(*args, **kwargs):
        raise RuntimeError("the test stand-in for torchvision was called: this architecture needs the real one")

    class InterpolationMode:
        NEAREST, BILINEAR, BICUBIC = "nearest", "bilinear", "bicubic"

    torchvision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.rotate = functional.normalize = not_available
    functional.InterpolationMode = InterpolationMode
    torchvision.transforms, transforms.functional = transforms, functional
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


def import_spandrel():
    """spandrel (skipping the test when it is not installed), with torchvision stood in if needed.

    The stand-in is visible only while spandrel is imported, and removed from ``sys.modules``
    afterwards: other libraries (torchmetrics) then see no torchvision, as before.
    """
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        import torchvision  # noqa: F401
        stood_in = False
    except Exception:  # missing, or a build that does not match torch
        _drop_torchvision()
        _stand_in_torchvision()
        stood_in = True
    try:
        return pytest.importorskip("spandrel", reason='spandrel is not installed (pip install "dotrestore[models]")')
    finally:
        if stood_in:
            _drop_torchvision()


def _drop_torchvision() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def save_model(path: Path, kind: str, scale: int = 1, seed: int = 0) -> Path:
    """A small random-initialised ``kind`` ("esrgan", "swinir", "scunet") saved at ``path``
    (``.safetensors`` or a ``.pth`` state dict)."""
    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.SCUNet import SCUNet
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    if kind == "esrgan":
        net = ESRGAN(num_filters=8, num_blocks=1, scale=scale)
    elif kind == "swinir":
        net = SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=scale,
                     upsampler="pixelshuffledirect" if scale > 1 else "", resi_connection="1conv")
    elif kind == "scunet":
        net = SCUNet(config=[1] * 7, dim=64)  # attention heads of 32 channels need dim 64
    else:
        raise ValueError(kind)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
