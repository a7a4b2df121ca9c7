"""The environment variables dotrestore reads, parsed once each with an error naming the variable.

``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` are set by torchrun; ``DOTRESTORE_DIST_TIMEOUT`` is
ours. A value that is not a number (``WORLD_SIZE=abc``) is an :class:`~dotrestore.errors.InputError`
naming the variable, read when it is needed (never at import: ``--version`` must always work).
"""

from __future__ import annotations

import math
import os

from ..errors import InputError


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """Integer ``name`` (``default`` when unset or empty); InputError unless a whole number ≥ ``minimum``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise InputError(f"environment variable {name}", f"must be a whole number >= {minimum}, got {text!r}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    """Number ``name`` (``default`` when unset or empty); InputError unless finite and > ``minimum``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= minimum:
        raise InputError(f"environment variable {name}", f"must be a number of seconds > {minimum:g}, got {text!r}")
    return value


def world_size() -> int:
    """Processes torchrun started (``WORLD_SIZE``, 1 when unset)."""
    return env_int("WORLD_SIZE", 1, minimum=1)


def dist_timeout_s() -> float:
    """Seconds a collective waits for the other processes (``DOTRESTORE_DIST_TIMEOUT``, default 60)."""
    return env_float("DOTRESTORE_DIST_TIMEOUT", 60.0)


__all__ = ["env_int", "env_float", "world_size", "dist_timeout_s"]
