"""The identity codec: DOT directly on RGB pixel patches (the paper's pixel-space baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Codec


class PixelCodec(Codec):
    """Latents are the images themselves: 3 channels, ``downscale`` 1, ``id`` ``"pixel"``.

    ``decode`` still clamps to [0, 1], so the round trip is exact for images in [0, 1].
    """

    family = "pixel"

    def __init__(self, device: torch.device | str | None = None):
        super().__init__(name="pixel", spec="pixel", latent_channels=3, downscale=1, sha256=None, device=device)

    def _encode(self, images: Tensor) -> Tensor:
        return images

    def _decode(self, latents: Tensor) -> Tensor:
        return latents
