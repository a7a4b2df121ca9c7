"""Decoded Pillow images as float arrays: the conversion :func:`dotrestore.io.images.read_image` uses."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..checks import RANGE_TOLERANCE

#: Pillow's 16-bit (and 32-bit integer) grey modes, scaled by 65535
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class NotFinite(Exception):
    """A float image holds NaN or ±inf (raised before any clip could hide it)."""


class OutOfRange(Exception):
    """A float image's values (min, max) are outside [0, 1] beyond the tolerance."""


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; alpha is dropped (not composited), 16-bit scaled by 65535."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).astype(np.float32) / 255
    if mode in SIXTEEN_BIT_MODES:
        gray = np.asarray(image).astype(np.float32) / 65535
    elif mode == "F":  # float images are taken as already in [0, 1]: checked before the clip hides inf
        gray = np.asarray(image, dtype=np.float32)
        if not np.isfinite(gray).all():
            raise NotFinite
        if gray.size and (gray.min() < -RANGE_TOLERANCE or gray.max() > 1 + RANGE_TOLERANCE):
            raise OutOfRange(float(gray.min()), float(gray.max()))
    elif mode in ("L", "LA", "La", "1"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8).astype(np.float32) / 255
    else:  # RGBA, RGBa, P, PA, CMYK, YCbCr, LAB, HSV, ...: Pillow's conversion, alpha dropped
        return np.asarray(image.convert("RGB"), dtype=np.uint8).astype(np.float32) / 255
    gray = np.clip(gray, 0.0, 1.0)
    return np.repeat(gray[:, :, None], 3, axis=2)


def stored_bits(image: Image.Image) -> int:
    """16 when the file's raw samples are 16-bit (``RGB;16B``, ``I;16B``, ...), else 8; from the
    decoder's raw mode, which only an image not yet loaded still has."""
    for tile in image.tile:
        args = tile[3]
        raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if isinstance(raw, str) and ";16" in raw:
            return 16
    return 8


__all__ = ["SIXTEEN_BIT_MODES", "NotFinite", "OutOfRange", "to_rgb_array", "stored_bits"]
