"""The codecs that need no download: the bundled TAEF2 weights, and what ``"auto"`` resolves to.

``"taef2"`` loads the TAEF2 pair shipped in ``codecs/weights/taef2`` (MIT, madebyollin/taesd).
``"auto"`` is the default codec of every command and of :class:`~dotrestore.DOT`: Stable
Diffusion's ``sd-vae-ft-ema`` (the paper's VAE) when it is already in the local Hugging Face
cache, otherwise the bundled TAEF2. It never downloads and never picks the pixel codec, so the
first result a user sees is always in a learned latent space. The resolved codec's ``spec``
is the concrete one (``"sd-vae-ft-ema"`` or ``"taef2"``), so operator files record the real codec.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import DotRestoreError
from .base import Codec
from .diffusers_vae import HUB_ALIASES, load_diffusers_codec
from .taesd import TAESDCodec, load_taesd_codec

logger = logging.getLogger(__name__)

BUNDLED_TAEF2 = Path(__file__).resolve().parent / "weights" / "taef2"
TAEF2_SPEC = "taef2"
AUTO_SPEC = "auto"
#: what ``auto`` prefers when it is cached
AUTO_PREFERRED = "sd-vae-ft-ema"


def load_bundled_taef2(device: torch.device | str | None = None) -> TAESDCodec:
    """The TAEF2 codec from the weights shipped inside the package (spec ``"taef2"``)."""
    codec = load_taesd_codec(BUNDLED_TAEF2, device=device)
    codec.spec = TAEF2_SPEC  # portable: load_codec("taef2") re-creates it on any machine
    return codec


def hub_model_cached(spec: str = AUTO_PREFERRED) -> bool:
    """Whether the hub model behind ``spec`` has its config and weights in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    repo_id = HUB_ALIASES.get(spec, spec)
    if not isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return False
    return any(
        isinstance(try_to_load_from_cache(repo_id, name), str)
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    )


def resolve_auto(device: torch.device | str | None = None) -> tuple[Codec, str]:
    """(codec, why) for ``"auto"``: cached sd-vae-ft-ema, else the bundled TAEF2; logs the choice."""
    if hub_model_cached(AUTO_PREFERRED):
        try:
            codec = load_diffusers_codec(AUTO_PREFERRED, device=device)
        except DotRestoreError as exc:
            why = (f"--vae auto: {AUTO_PREFERRED} is in the Hugging Face cache but failed to load "
                   f"({str(exc).split('. ')[0]}); using the bundled TAEF2 instead")
        else:
            why = f"--vae auto: using {AUTO_PREFERRED} (the paper's VAE), found in the local Hugging Face cache"
            logger.info("%s", why)
            return codec, why
    else:
        why = (f"--vae auto: using the bundled TAEF2 (tiny autoencoder, 32 latent channels at 1/8) because "
               f"{AUTO_PREFERRED} is not in the local Hugging Face cache; pass --vae {AUTO_PREFERRED} to download it")
    logger.info("%s", why)
    return load_bundled_taef2(device=device), why
