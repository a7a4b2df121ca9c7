"""Which device this process computes on.

Names are checked by the ``device`` setting (:func:`dotrestore.settings.device`: a device this
machine really has). Here a checked name becomes a :class:`torch.device`: ``None`` means CUDA
when available, else the CPU; under torchrun, ``cuda`` without an index means
``cuda:LOCAL_RANK`` (one GPU per local process).
"""

from __future__ import annotations

import torch

from . import environment


def local_device(device: str | torch.device | None = None) -> torch.device:
    """The device of this process: ``device`` as given, ``cuda`` meaning ``cuda:LOCAL_RANK`` under
    torchrun; None means CUDA when available."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and environment.world_size() > 1:
        # more processes than GPUs share them round robin (gloo only)
        dev = torch.device("cuda", environment.env_int("LOCAL_RANK", 0) % max(1, torch.cuda.device_count()))
    return dev


__all__ = ["local_device"]
