"""What an input image had beyond RGB, and output files that keep it, in the format their name asks.

DOT transports RGB. An input can hold more: one grey channel, an alpha channel, 16 bits per
sample. :func:`read_kept` reads an image as the (3, H, W) tensor the transport needs plus a
:class:`SourceFormat` recording what else it had; :func:`image_writer` writes an output so that

- a grey input comes back grey: the luma of the result, Y = 0.299 R + 0.587 G + 0.114 B
  (ITU-R BT.601, as Pillow converts RGB to L);
- an input with an alpha channel keeps it unchanged: RGB transported, A copied sample for sample;
- a 16-bit grey input comes back 16-bit (round(65535 · x)). Pillow decodes 16-bit *colour*
  PNGs to 8 bits per channel, so those are read and written at 8 bits, and a log line says so.

The format follows the file name (:data:`OUTPUT_FORMATS`): PNG, TIFF (lossless), WebP (lossless),
JPEG (quality 95, no chroma subsampling), BMP. A format that cannot hold what the input had
(alpha in JPEG or BMP, 16 bits outside PNG and TIFF) drops it with a log line naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from . import images

logger = logging.getLogger(__name__)

#: extension → (Pillow format, save options, modes it writes besides RGB)
OUTPUT_FORMATS: dict[str, tuple[str, dict, frozenset]] = {
    ".png": ("PNG", {}, frozenset({"L", "LA", "RGBA", "I;16"})),
    ".tif": ("TIFF", {"compression": "tiff_adobe_deflate"}, frozenset({"L", "LA", "RGBA", "I;16"})),
    ".tiff": ("TIFF", {"compression": "tiff_adobe_deflate"}, frozenset({"L", "LA", "RGBA", "I;16"})),
    ".webp": ("WEBP", {"lossless": True, "exact": True}, frozenset({"RGBA"})),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}, frozenset({"L"})),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}, frozenset({"L"})),
    ".bmp": ("BMP", {}, frozenset({"L"})),
}
_GREY_MODES = ("L", "LA", "La", "1", "F", "I", "I;16", "I;16L", "I;16B", "I;16N")
#: ITU-R BT.601 luma weights (Pillow's RGB → L)
_LUMA = (0.299, 0.587, 0.114)


def image_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) of every image format the installed Pillow reads or writes."""
    return images.image_extensions() | frozenset(
        ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)


def is_output_image_name(path: str | os.PathLike) -> bool:
    """True when ``path``'s extension is one of :data:`OUTPUT_FORMATS` (a file, not a folder, is meant)."""
    return Path(path).suffix.lower() in OUTPUT_FORMATS


@dataclass(frozen=True, eq=False)
class SourceFormat:
    """What an input had beyond its RGB: ``grey`` (one channel), ``bits`` per sample of what was
    decoded (8 or 16), ``alpha`` its alpha channel ((H, W) uint8, after EXIF orientation) or None;
    ``mode`` is Pillow's mode of the file (for messages)."""

    grey: bool = False
    bits: int = 8
    alpha: np.ndarray | None = None
    mode: str = "RGB"


def inspect(image: Image.Image, file_bits: int, path: str | os.PathLike = "image") -> SourceFormat:
    """The :class:`SourceFormat` of a decoded (and EXIF-oriented) Pillow image whose file (``path``)
    stored ``file_bits`` per sample."""
    mode = image.mode
    grey = mode in _GREY_MODES or (mode in ("P", "PA") and _grey_palette(image))
    bits = 16 if mode in ("I", "F") or mode.startswith("I;16") else 8
    alpha = None
    if image.has_transparency_data:
        alpha = np.asarray(image.convert("LA" if grey else "RGBA").getchannel("A"), dtype=np.uint8)
    if file_bits > bits:
        logger.warning("%s: %d-bit colour image: Pillow decodes it to 8 bits per channel, so it is transported "
                       "and written with 8 bits", path, file_bits)
    return SourceFormat(grey=grey, bits=bits, alpha=alpha, mode=mode)


def _grey_palette(image: Image.Image) -> bool:
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def read_kept(path: str | os.PathLike, max_pixels: int | None = images.DEFAULT_MAX_PIXELS) -> dict:
    """``{"image": (3, H, W) float32 in [0, 1], "source": SourceFormat}`` of one image file."""
    image, source = images.read_image_and(path, max_pixels, lambda picture, bits: inspect(picture, bits, path))
    return {"image": image, "source": source}


def _samples(img: torch.Tensor, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    array = (img.detach().float().clamp(0, 1) * top).round().cpu().numpy()
    return array.astype(np.uint16 if bits > 8 else np.uint8)


def _picture(img: torch.Tensor, source: SourceFormat | None, allowed: frozenset, path: Path) -> Image.Image:
    """The Pillow image to write: RGB, or what ``source`` had (grey, 16 bits, alpha) as far as
    the format's ``allowed`` modes go; a log line names what the format cannot hold."""
    source = source or SourceFormat()
    grey = source.grey and "L" in allowed
    if grey:
        luma = sum(w * img[c].float() for c, w in enumerate(_LUMA))
        bits = 16 if source.bits > 8 and "I;16" in allowed and source.alpha is None else 8
        picture = Image.fromarray(_samples(luma, bits))  # uint16 → I;16, uint8 → L
    else:
        bits = 8
        picture = Image.fromarray(np.ascontiguousarray(_samples(img, 8).transpose(1, 2, 0)))  # RGB
    alpha = source.alpha
    if alpha is not None:
        wanted = "LA" if grey else "RGBA"
        if wanted in allowed:
            if alpha.shape != (img.shape[1], img.shape[2]):
                raise ValueError(f"{path}: the input's alpha channel is {alpha.shape}, the output {tuple(img.shape)}")
            picture = picture.convert(wanted)
            picture.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
        else:
            logger.warning("%s: this format has no alpha channel; the input's alpha is not written", path)
    if source.bits > bits:
        logger.warning("%s: written with 8 bits per sample (the input had %d)", path, source.bits)
    return picture


def image_writer(img: torch.Tensor, path: str | os.PathLike,
                 source: SourceFormat | None = None) -> Callable[[BinaryIO], None]:
    """Check (3, H, W) ``img``; returns ``write(handle)`` writing it in the format of ``path``'s
    extension, keeping what ``source`` had. InputError naming ``path`` for an extension of no
    format here, a wrong shape or non-finite values. With ``source=None`` a ``.png`` is exactly
    :func:`dotrestore.io.images.png_writer`'s."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(path, f"no image format writes {suffix or 'files without an extension'}: use one of "
                         f"{', '.join(OUTPUT_FORMATS)}")
    img = images.checked_rgb(img, path)
    fmt, options, allowed = OUTPUT_FORMATS[suffix]
    picture = _picture(img, source, allowed, path)
    return lambda handle: picture.save(handle, format=fmt, **options)


def kept_writer(source: SourceFormat | None) -> Callable[[torch.Tensor, str | os.PathLike], Callable]:
    """``encode(img, path)`` for :class:`dotrestore.runtime.pipeline.ImageWriter`, keeping ``source``."""
    def encode(img: torch.Tensor, path: str | os.PathLike) -> Callable[[BinaryIO], None]:
        return image_writer(img, path, source)
    return encode


__all__ = ["OUTPUT_FORMATS", "image_extensions", "SourceFormat", "inspect", "read_kept", "image_writer", "kept_writer",
           "is_output_image_name"]
