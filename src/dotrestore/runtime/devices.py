"""The one parser of ``--device`` / ``device=``: a device this machine really has.

Accepted: ``cpu``; ``cuda`` and ``cuda:N`` (N < the number of visible GPUs) when CUDA is
available; ``mps`` when Apple's Metal backend is available; a :class:`torch.device` of one
of these. ``None`` picks CUDA when available, else the CPU. Anything else (``meta``, a
typo, a GPU index that does not exist) is refused with a message listing what is available,
before any work starts.
"""

from __future__ import annotations

import re

import torch

_CUDA = re.compile(r"cuda(?::(\d+))?")


def available_devices() -> list[str]:
    """Names of the devices usable here, e.g. ``['cpu', 'cuda', 'cuda:0', 'cuda:1']``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def parse_device(value: str | torch.device | None) -> torch.device:
    """The torch.device named by ``value``; ValueError saying what is available otherwise.

    Callers at the command line wrap the ValueError in an InputError naming ``--device``.
    """
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(value).strip().lower() if isinstance(value, (str, torch.device)) else None
    if text is None:
        raise TypeError(f"device must be a string or torch.device, got {type(value).__name__}")
    available = available_devices()
    hint = f"available here: {', '.join(available)}"
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(text)
    if match:
        if not torch.cuda.is_available():
            raise ValueError(f"device {value!r}: CUDA is not available on this machine; {hint}")
        index = match.group(1)
        if index is not None and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {value!r}: there is no GPU {index} "
                             f"({torch.cuda.device_count()} visible); {hint}")
        return torch.device(text)
    if text == "mps" and "mps" in available:
        return torch.device("mps")
    raise ValueError(f"unknown or unavailable device {value!r}; {hint}")


__all__ = ["available_devices", "parse_device"]
