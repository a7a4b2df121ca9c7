"""A codec's options as typed values: checked here, parsed from text at the entry points.

The command line, config files and :class:`~dotrestore.runtime.Runtime` turn ``"8GB"`` or
``"256"`` into values through :mod:`dotrestore.settings`; a codec takes the values themselves
and only checks them (a :class:`~dotrestore.errors.SettingError` naming the option).
"""

from __future__ import annotations

import numbers

import torch

from ..errors import SettingError

#: The compute precisions a codec runs in, by name.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Smallest tile side in pixels.
MIN_TILE = 16


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def tile(value) -> str | int:
    """``"auto"``, ``"off"`` or a tile side of at least :data:`MIN_TILE` pixels."""
    if value in ("auto", "off") or (_is_int(value) and value >= MIN_TILE):
        return value if isinstance(value, str) else int(value)
    raise SettingError("tile", f"must be 'auto', 'off' or a tile side of at least {MIN_TILE} pixels, got {value!r}")


def tile_overlap(value) -> int | None:
    """Pixels shared by neighbouring tiles (>= 0), or None for the codec's own choice."""
    if value is None or (_is_int(value) and value >= 0):
        return None if value is None else int(value)
    raise SettingError("tile_overlap", f"must be a number of pixels >= 0, got {value!r}")


def max_memory(value) -> int | None:
    """The activation budget in bytes (> 0), or None."""
    if value is None or (_is_int(value) and value > 0):
        return None if value is None else int(value)
    raise SettingError("max_memory", f"must be a positive number of bytes, got {value!r}")


def dtype_name(value) -> str:
    """``"auto"`` or the name of a dtype of :data:`DTYPES` (given as itself or by name)."""
    if value == "auto":
        return "auto"
    return str(dtype(value)).removeprefix("torch.")


def dtype(value) -> torch.dtype:
    """A torch dtype of :data:`DTYPES` (given as itself or by name)."""
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    raise SettingError("dtype", f"must be one of {', '.join(DTYPES)}, got {value!r}")
