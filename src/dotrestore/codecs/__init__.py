"""Codecs: the autoencoders DOT works in (one module per family) and `load_codec` to pick one.

>>> from dotrestore.codecs import load_codec
>>> codec = load_codec("pixel")
>>> codec.id, codec.latent_channels, codec.downscale
('pixel', 3, 1)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import CodecUnavailableError, InputError
from .base import Codec, pad_to_multiple, weights_sha256
from .bundled import AUTO_SPEC, BUNDLED_TAEF2, TAEF2_SPEC, load_bundled_taef2, resolve_auto
from .diffusers_vae import (
    HUB_ALIASES,
    DiffusersCodec,
    codec_from_diffusers,
    is_diffusers_folder,
    load_diffusers_codec,
    sd_vae_config,
)
from .pixel import PixelCodec
from .taesd import TAESDCodec, is_taesd_source, load_taesd_codec

__all__ = [
    "BUNDLED_TAEF2",
    "Codec",
    "DiffusersCodec",
    "HUB_ALIASES",
    "PixelCodec",
    "TAESDCodec",
    "codec_from_diffusers",
    "load_bundled_taef2",
    "load_codec",
    "load_diffusers_codec",
    "load_taesd_codec",
    "pad_to_multiple",
    "resolve_auto",
    "sd_vae_config",
    "spec_files",
    "weights_sha256",
]

ACCEPTED_SPECS = (
    "'auto' (sd-vae-ft-ema when cached, else the bundled TAEF2); 'taef2' (bundled); 'pixel'; "
    "'sd-vae-ft-ema' or 'sd-vae-ft-mse'; a Hugging Face hub id 'owner/name' of a diffusers "
    "AutoencoderKL/AutoencoderTiny; a local diffusers folder (with config.json); a folder holding one "
    "*_encoder.pth + *_decoder.pth pair (TAESD family, e.g. taef2); or the path of such an *_encoder.pth"
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def spec_files(spec) -> list[Path]:
    """The files a codec spec reads (a folder's files, or the file itself): outputs must never replace them."""
    if spec is None or isinstance(spec, Codec):
        return []
    path = Path(os.fspath(spec)).expanduser()
    if path.is_dir():
        return [p for p in path.iterdir() if p.is_file()]
    return [path] if path.is_file() else []


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "~", "/"))
        or "\\" in spec
        or spec.count("/") > 1
        or spec.endswith((".pth", ".pt", ".safetensors", ".json", ".bin"))
        or bool(re.match(r"[A-Za-z]:", spec))
    )


def load_codec(
    spec: str | os.PathLike | Codec,
    device: torch.device | str | None = None,
    *,
    tile: str | int | None = None,
    tile_overlap: int | None = None,
    dtype: str | torch.dtype | None = None,
    max_memory: int | None = None,
) -> Codec:
    """Resolve ``spec`` to a :class:`Codec` on ``device`` (CPU when None; a Codec stays where it is).

    ``tile`` ("auto" by default, "off" or a side in pixels), ``tile_overlap`` (pixels),
    ``dtype`` (the networks' compute dtype: float32, or bfloat16/float16 on CUDA) and
    ``max_memory`` (bytes: the activation budget that picks tiles under "auto"; text such as
    "8GB" is parsed by :class:`~dotrestore.runtime.Runtime`) are passed to
    :meth:`Codec.configure`; None leaves a setting at its default (or, for a
    Codec instance, as it is).

    Accepted, tried in this order: a :class:`Codec` instance (returned, moved to ``device``);
    ``"auto"`` (the default everywhere: ``sd-vae-ft-ema`` when it is in the local Hugging Face
    cache, otherwise the bundled TAEF2; never downloads, never pixel; the returned codec's
    ``spec`` is the concrete one, see :mod:`dotrestore.codecs.bundled`); ``"taef2"`` (the TAEF2
    weights shipped with the package); ``"pixel"``; ``"sd-vae-ft-ema"`` / ``"sd-vae-ft-mse"``
    (stabilityai hub models); an existing
    local path (diffusers folder with ``config.json``, TAESD folder, ``*_encoder.pth``); an
    ``"owner/name"`` hub id. Hub models come from the local cache, or are downloaded only when
    allowed and reachable; otherwise :class:`~dotrestore.errors.CodecUnavailableError`.

    Raises
    ------
    ValueError
        A bad tiling, dtype or memory setting (reduced precision on a CPU included).
    InputError
        Unknown spec, missing path, unreadable or unsupported weights (the message names the file).
    CodecUnavailableError
        A hub model that is neither cached nor downloadable now.
    """
    options = dict(tile=tile, tile_overlap=tile_overlap, dtype=dtype, max_memory=max_memory)
    if isinstance(spec, Codec):
        if device is not None and torch.device(device) != spec.device:
            spec.to(device)
        return spec.configure(**options)
    return _load(spec, device).configure(**options)


def _load(spec: str | os.PathLike, device: torch.device | str | None) -> Codec:
    if not isinstance(spec, (str, os.PathLike)):
        raise InputError("codec", f"must be a Codec or a string; got {type(spec).__name__}. Accepted: {ACCEPTED_SPECS}")
    text = os.fspath(spec).strip()
    if text.lower() == "pixel":
        return PixelCodec(device=device)
    if text.lower() == AUTO_SPEC:
        return resolve_auto(device=device)[0]
    if text.lower() == TAEF2_SPEC:
        return load_bundled_taef2(device=device)
    if text in HUB_ALIASES:
        return load_diffusers_codec(text, device=device)
    path = Path(text).expanduser()
    if path.exists():
        if is_diffusers_folder(path):
            return load_diffusers_codec(text, device=device)
        if is_taesd_source(path):
            return load_taesd_codec(path, device=device)
        raise InputError(
            path,
            "is neither a diffusers folder (config.json), a TAESD folder (*_encoder.pth + *_decoder.pth) "
            "nor a *_encoder.pth file",
        )
    if _looks_like_path(text):
        raise InputError(path, "does not exist")
    if _HUB_ID.fullmatch(text):
        try:
            return load_diffusers_codec(text, device=device)
        except CodecUnavailableError as exc:
            raise CodecUnavailableError(f"{exc} (No local path '{text}' exists either.)") from exc
    raise InputError(text, f"unknown codec. Accepted: {ACCEPTED_SPECS}")
