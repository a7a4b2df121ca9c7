"""TAESD-family tiny autoencoders (madebyollin/taesd) loaded from a ``*_encoder.pth`` + ``*_decoder.pth`` pair.

The files are plain ``nn.Sequential`` state_dicts, so the architecture is read off the keys
and shapes, following madebyollin/taesd's ``taesd.py``:

* ``N.weight`` (+ ``N.bias``): a 3×3 convolution with padding 1. In the encoder the bias-free
  ones (and any followed by a parameter-free index, i.e. a ReLU, as in the f32 variant) have
  stride 2; in the decoder a bias-free one follows a nearest 2× upsampling.
* ``N.conv.{0,2,4}.*``: a residual :class:`Block` conv–ReLU–conv–ReLU–conv plus a skip
  (identity, or a 1×1 conv ``N.skip.weight`` when the channels change), then ReLU; with
  ``N.pool.*`` the block first adds a branch 1×1 conv (4× channels) – GroupNorm(4) – ReLU – 1×1
  conv to its input (the mid-block GroupNorm variant used by TAEF2).
* decoder parameter-free indices: 0 is :class:`Clamp` (``tanh(x/3)·3``), the one after the
  first conv is ReLU, the others are nearest 2× upsampling.

Images are in [0, 1] on both sides; latents are the raw encoder output (no scaling).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import InputError
from .base import Codec, weights_sha256


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (−3, 3): tanh(x / 3) · 3."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block: ReLU(conv(x) + skip(x)), after x ← x + pool(x) when ``use_midblock_gn``."""

    def __init__(self, n_in: int, n_out: int, use_midblock_gn: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if use_midblock_gn:
            n_gn = n_in * 4
            self.pool = nn.Sequential(
                nn.Conv2d(n_in, n_gn, 1, bias=False),
                nn.GroupNorm(4, n_gn),
                nn.ReLU(inplace=True),
                nn.Conv2d(n_gn, n_in, 1, bias=False),
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


_BLOCK_KEYS = {f"conv.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
_SKIP_KEYS = {"skip.weight"}
_POOL_KEYS = {"pool.0.weight", "pool.1.weight", "pool.1.bias", "pool.3.weight"}


def _group_by_index(state: dict, path: Path) -> dict[int, dict[str, Tensor]]:
    layers: dict[int, dict[str, Tensor]] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(\d+)\.(.+)", str(key))
        if match is None or not isinstance(value, Tensor):
            raise InputError(path, f"unsupported TAESD state_dict layout (key {key!r} is not 'index.name')")
        layers.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if not layers:
        raise InputError(path, "empty state_dict: not a TAESD-family encoder/decoder")
    return layers


def _parametrised_layer(entry: dict[str, Tensor], index: int, path: Path, stride: int = 1) -> nn.Module:
    keys = set(entry)
    if "conv.0.weight" in keys:
        if not (_BLOCK_KEYS <= keys <= _BLOCK_KEYS | _SKIP_KEYS | _POOL_KEYS) or (
            _POOL_KEYS & keys and not keys >= _POOL_KEYS
        ):
            raise InputError(path, f"unsupported TAESD block at index {index}: keys {sorted(keys)}")
        weight = entry["conv.0.weight"]
        return Block(weight.shape[1], weight.shape[0], use_midblock_gn="pool.0.weight" in keys)
    if keys in ({"weight"}, {"weight", "bias"}) and entry["weight"].ndim == 4 and entry["weight"].shape[-2:] == (3, 3):
        weight = entry["weight"]
        return conv(weight.shape[1], weight.shape[0], stride=stride, bias="bias" in keys)
    raise InputError(path, f"unsupported TAESD layer at index {index}: keys {sorted(keys)}")


def _is_conv(entry: dict[str, Tensor] | None) -> bool:
    return entry is not None and "weight" in entry


def build_encoder(state: dict, path: Path) -> tuple[nn.Sequential, int, int]:
    """(encoder, latent_channels, downscale) from an encoder state_dict; weights not loaded."""
    layers = _group_by_index(state, path)
    last = max(layers)
    modules: list[nn.Module] = []
    n_stride2 = 0
    for index in range(last + 1):
        entry = layers.get(index)
        if entry is None:
            if not _is_conv(layers.get(index - 1)):
                raise InputError(path, f"unsupported TAESD encoder: parameter-free index {index} not after a conv")
            modules.append(nn.ReLU(inplace=True))
            continue
        # downsampling convs are bias-free, or (f32 variant) biased and followed by a ReLU index
        strided = _is_conv(entry) and ("bias" not in entry or (index + 1 not in layers and index < last))
        n_stride2 += strided
        modules.append(_parametrised_layer(entry, index, path, stride=2 if strided else 1))
    first, final = modules[0], modules[-1]
    if not (isinstance(first, nn.Conv2d) and first.in_channels == 3 and isinstance(final, nn.Conv2d)):
        raise InputError(path, "unsupported TAESD encoder: it must start with a conv on RGB and end with a conv")
    return nn.Sequential(*modules), final.out_channels, 2**n_stride2


def build_decoder(state: dict, path: Path) -> tuple[nn.Sequential, int, int]:
    """(decoder, latent_channels, upscale) from a decoder state_dict; weights not loaded."""
    layers = _group_by_index(state, path)
    last = max(layers)
    first_conv = min(layers)
    modules: list[nn.Module] = []
    n_upsample = 0
    for index in range(last + 1):
        entry = layers.get(index)
        if entry is not None:
            modules.append(_parametrised_layer(entry, index, path))
        elif index == 0:
            modules.append(Clamp())
        elif index == first_conv + 1:
            modules.append(nn.ReLU())
        elif _is_conv(layers.get(index + 1)) and "bias" not in layers[index + 1]:
            modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
            n_upsample += 1
        else:
            raise InputError(path, f"unsupported TAESD decoder: cannot tell what parameter-free index {index} is")
    first = modules[first_conv]
    final = modules[-1]
    if not (isinstance(first, nn.Conv2d) and isinstance(final, nn.Conv2d) and final.out_channels == 3):
        raise InputError(path, "unsupported TAESD decoder: it must start with a conv and end with a conv to RGB")
    return nn.Sequential(*modules), first.in_channels, 2**n_upsample


def _load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors have no common base class
        raise InputError(path, f"cannot read as a PyTorch state_dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise InputError(path, f"holds a {type(state).__name__}, not a state_dict")
    return state


def _load_weights(module: nn.Module, state: dict, path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)  # copies (and casts fp16 files) into float32
    except RuntimeError as exc:
        raise InputError(path, f"weights do not fit the architecture read off its keys: {exc}") from exc


def find_pair(path: str | Path) -> tuple[Path, Path, str]:
    """(encoder_path, decoder_path, name) from a folder holding one pair, or an ``*_encoder.pth`` path."""
    path = Path(path).expanduser()
    if path.is_dir():
        encoders = sorted(p for p in path.glob("*_encoder.pth") if p.is_file())  # never a FIFO: it would hang
        if len(encoders) != 1:
            found = ", ".join(p.name for p in encoders) or "none"
            raise InputError(path, f"a TAESD folder must hold exactly one *_encoder.pth (found {found})")
        encoder = encoders[0]
    elif path.is_file() and path.name.endswith("_encoder.pth"):
        encoder = path
    else:
        raise InputError(path, "not a TAESD folder or *_encoder.pth file")
    name = encoder.name[: -len("_encoder.pth")]
    decoder = encoder.with_name(f"{name}_decoder.pth")
    if not decoder.is_file():
        raise InputError(encoder, f"no matching decoder {decoder.name} beside it")
    return encoder, decoder, name


def is_taesd_source(path: Path) -> bool:
    """True for a folder holding some ``*_encoder.pth`` or for an ``*_encoder.pth`` file."""
    if path.is_dir():
        return any(p.is_file() for p in path.glob("*_encoder.pth"))
    return path.is_file() and path.name.endswith("_encoder.pth")


class TAESDCodec(Codec):
    """A TAESD-family autoencoder: [0, 1] images ↔ raw latents; decoder output clamped to [0, 1]."""

    family = "taesd"

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, name: str, spec: str,
                 latent_channels: int, downscale: int, device: torch.device | str | None = None):
        self.encoder = encoder.float().eval().requires_grad_(False)
        self.decoder = decoder.float().eval().requires_grad_(False)
        sha = weights_sha256({"encoder": self.encoder.state_dict(), "decoder": self.decoder.state_dict()})
        super().__init__(name=name, spec=spec, latent_channels=latent_channels, downscale=downscale,
                         sha256=sha, device=device)
        self.to(self.device)

    def _modules(self):
        return (self.encoder, self.decoder)

    def _encode(self, images: Tensor) -> Tensor:
        return self.encoder(images)

    def _decode(self, latents: Tensor) -> Tensor:
        return self.decoder(latents)


def load_taesd_codec(path: str | Path, device: torch.device | str | None = None) -> TAESDCodec:
    """Load a TAESD-family codec from a folder with one ``*_encoder.pth``/``*_decoder.pth`` pair or the encoder path."""
    encoder_path, decoder_path, name = find_pair(path)
    encoder_state, decoder_state = _load_state(encoder_path), _load_state(decoder_path)
    encoder, latent_channels, downscale = build_encoder(encoder_state, encoder_path)
    decoder, decoder_channels, upscale = build_decoder(decoder_state, decoder_path)
    if (decoder_channels, upscale) != (latent_channels, downscale):
        raise InputError(
            decoder_path,
            f"decoder takes {decoder_channels} channels at 1/{upscale} but the encoder "
            f"{encoder_path.name} makes {latent_channels} channels at 1/{downscale}",
        )
    _load_weights(encoder, encoder_state, encoder_path)
    _load_weights(decoder, decoder_state, decoder_path)
    source = Path(path).expanduser().resolve()
    return TAESDCodec(encoder, decoder, name=name, spec=str(source), latent_channels=latent_channels,
                      downscale=downscale, device=device)
