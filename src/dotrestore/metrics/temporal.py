"""Temporal stability of a restored clip: how much more its frames change than the input's.

The flicker ratio of an output clip x̂ against the restorations x* it was made from is

    F = mean_t mean |x̂_t − x̂_{t−1}|  ÷  mean_t mean |x*_t − x*_{t−1}|,

means over all pixels and channels, t over consecutive frame pairs. F = 1: the output changes
from frame to frame exactly as much as its input; F > 1: it adds temporal change. Noise drawn
anew for every frame (a stochastic map seeded per frame, the sampling of a diffusion or GAN
restorer) shows as F ≫ 1 on a static scene. On a moving scene F also counts added sharpness
(sharper frames differ more under motion), so compare it with the same ratio of the clean clip.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class TemporalChange:
    """Streaming mean |f_t − f_{t−1}| over consecutive frames given in order, in batches or one by one."""

    def __init__(self):
        self.previous: torch.Tensor | None = None
        self.total = 0.0
        self.pairs = 0

    def update(self, frames: torch.Tensor) -> TemporalChange:
        """Add (3, H, W) or (B, 3, H, W) frames, the next ones of the clip."""
        frames = frames.detach().to(torch.float64)
        frames = frames[None] if frames.dim() == 3 else frames
        for frame in frames:
            if self.previous is not None:
                if frame.shape != self.previous.shape:
                    raise ValueError(f"frames change size: {tuple(self.previous.shape)} then {tuple(frame.shape)}")
                self.total += float((frame - self.previous).abs().mean())
                self.pairs += 1
            self.previous = frame
        return self

    def compute(self) -> float:
        if self.pairs == 0:
            raise ValueError("temporal change needs at least two frames")
        return self.total / self.pairs


def temporal_change(frames: Iterable[torch.Tensor]) -> float:
    """mean_t mean |f_t − f_{t−1}| of a clip given as (3, H, W) frames or (B, 3, H, W) batches, in order."""
    change = TemporalChange()
    for frame in frames:
        change.update(frame)
    return change.compute()


def flicker_ratio(outputs: Iterable[torch.Tensor], restored: Iterable[torch.Tensor]) -> float:
    """F = mean |x̂_t − x̂_{t−1}| ÷ mean |x*_t − x*_{t−1}| (see the module's docstring).

    ``outputs`` and ``restored``: the same frames of the two clips, in order ((3, H, W) frames
    or (B, 3, H, W) batches). A static input (x* never changes) has no finite ratio: ValueError.
    """
    out, ref = TemporalChange(), TemporalChange()
    for a, b in zip(outputs, restored, strict=True):
        out.update(a)
        ref.update(b)
    denominator = ref.compute()
    if denominator == 0:
        raise ValueError("the restored frames never change: the flicker ratio is undefined (compare the outputs "
                         "with temporal_change, which should be 0)")
    return out.compute() / denominator


__all__ = ["TemporalChange", "temporal_change", "flicker_ratio"]
