"""argparse types shared by every subcommand: values are checked when the arguments are parsed,
so a bad flag fails at once (exit 2, naming the flag) before any file is read or written."""

from __future__ import annotations

import argparse
import math

def device_arg(value: str) -> str:
    """argparse type of ``--device``: a device this machine has (see :mod:`dotrestore.devices`)."""
    from ..runtime.devices import parse_device

    try:
        parse_device(value)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def finite_float(value: str) -> float:
    """argparse type of α and other real values: finite numbers only."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite number")
    return number


def max_pixels_arg(value: str) -> int:
    """argparse type of ``--max-pixels``: a positive integer (``1e8`` and ``100_000_000`` work too)."""
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of pixels") from None
    if not (math.isfinite(number) and number >= 1 and number == int(number)):
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive whole number of pixels")
    return int(number)


__all__ = ["device_arg", "finite_float", "max_pixels_arg"]
