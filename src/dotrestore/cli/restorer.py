"""``--restorer`` on fit, apply and serve: a restorer spec or a model file, run on the codec's device."""

from __future__ import annotations

from pathlib import Path

from ..restorers import is_model_path, parse_restorer


def add_restorer_option(parser, help_text: str) -> None:
    parser.add_argument("--restorer", metavar="SPEC", default=None,
                        help=f"{help_text}. SPEC: a model file (.pth/.pt/.ckpt/.safetensors: ESRGAN, SwinIR, "
                        "SCUNet, ... read weights-only by spandrel, pip install \"dotrestore[models]\"), or a named "
                        "restorer (bicubic, nlmeans, bm3d:sigma=S, ...), or module:function")


def restorer_from(spec: str | None, runtime):
    """The restorer ``spec`` describes (None: none), a model file on the runtime's device, precision and budget."""
    if spec is None:
        return None
    restorer = parse_restorer(spec)
    if hasattr(restorer, "configure"):
        restorer.configure(device=runtime.torch_device, dtype=runtime.dtype, max_memory=runtime.max_memory,
                           tile_overlap=runtime.tile_overlap)
    return restorer


def restorer_files(spec: str | None) -> list[Path]:
    """The file a restorer spec reads (no output may replace it)."""
    return [Path(spec)] if spec is not None and is_model_path(spec) else []


__all__ = ["add_restorer_option", "restorer_from", "restorer_files"]
