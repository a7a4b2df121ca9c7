"""Per-image cache of the α explorer: x* and x̂0 = D(T(E(x*))) by content hash, least recently used out.

With pixel interpolation x̂α = (1 − α)·x̂0 + α·x* (clipped to [0, 1]), so once x* and x̂0 of an
image are known every other α is a blend, not a pass through the codec: the estimator's own
:func:`~dotrestore.estimator.blend`, on the same float32 tensors, so a cached α gives the same
bits as ``dotrestore apply --alpha α``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..estimator import blend
from ..io.files import open_regular


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes: the same picture uploaded twice (under any name) is one entry."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:  # an upload swapped for a FIFO is refused, not waited on
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Entry:
    """One image the explorer has transported: x* (3, H, W) and x̂0, both float32 in [0, 1]."""

    key: str
    stem: str
    x_star: torch.Tensor
    x0: torch.Tensor
    reference: torch.Tensor | None = None
    reference_name: str | None = None
    #: α ↦ MSE(x̂α, reference) on the explorer's α grid, filled on first use
    mse_curve: list[tuple[float, float]] | None = field(default=None, repr=False)
    #: what the file had beyond RGB (grey, alpha, 16 bits): the download keeps it, as apply does
    source: object | None = field(default=None, repr=False)

    def at(self, alpha) -> torch.Tensor:
        """x̂α at a number α, or at an α map ((H, W) or (1, 1, H, W))."""
        if isinstance(alpha, torch.Tensor):
            return blend(self.x0[None], self.x_star[None], alpha)[0]
        return blend(self.x0, self.x_star, alpha)


class TransportCache:
    """A bounded, thread-safe LRU map ``key -> Entry`` (key: operator id + image content hash)."""

    def __init__(self, capacity: int = 16):
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, entry: Entry) -> Entry:
        with self._lock:
            self._entries[entry.key] = entry
            self._entries.move_to_end(entry.key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries
