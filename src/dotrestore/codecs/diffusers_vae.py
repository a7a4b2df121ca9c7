"""Codecs around diffusers autoencoders: `AutoencoderKL` (Stable Diffusion VAEs) and `AutoencoderTiny`.

Conventions (the ones diffusers pipelines use, so latents live in the space diffusion models see):

* images in [0, 1] are mapped to [-1, 1] before ``model.encode`` (``AutoencoderTiny``'s encoder
  maps [-1, 1] back to [0, 1] internally, and its decoder returns [-1, 1]);
* ``AutoencoderKL``: z = (mean of the posterior − shift_factor) · scaling_factor (a sample of
  the posterior instead when ``sample=True``); ``AutoencoderTiny``: z = (latents − shift_factor) ·
  scaling_factor, which is the identity for the published TAESD configs (1.0 and 0.0);
* decoding inverts the latent scaling and maps the output from [-1, 1] back to [0, 1].

Hub models are looked up in the local Hugging Face cache first; they are downloaded only when
``HF_HUB_OFFLINE`` is not set and a ≤ 3 s connection probe to the hub succeeds. Otherwise a
:class:`~dotrestore.errors.CodecUnavailableError` is raised at once with ways to supply weights.
diffusers itself is imported only when a model is built, so the offline error is fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from ..errors import CodecUnavailableError, InputError
from ..log import libraries_kept_quiet
from .base import Codec, weights_sha256

#: short names accepted by :func:`dotrestore.codecs.load_codec` and the hub ids they mean
HUB_ALIASES = {
    "sd-vae-ft-ema": "stabilityai/sd-vae-ft-ema",
    "sd-vae-ft-mse": "stabilityai/sd-vae-ft-mse",
}
SUPPORTED_CLASSES = ("AutoencoderKL", "AutoencoderTiny")
PROBE_TIMEOUT_S = 3.0


def sd_vae_config() -> dict:
    """The `AutoencoderKL` configuration of stabilityai/sd-vae-ft-ema (and -mse).

    ``AutoencoderKL(**sd_vae_config())`` builds a randomly initialised model with the real
    architecture (83.7 M parameters, 4 latent channels at 1/8 resolution), e.g. for benchmarks
    that need the cost of the real VAE without its weights.
    """
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 256,
        "scaling_factor": 0.18215,
    }


class DiffusersCodec(Codec):
    """A diffusers `AutoencoderKL` or `AutoencoderTiny` as a :class:`Codec` (see module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        spec: str,
        sample: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ):
        kind = _model_kind(model)
        config = model.config
        if kind == "AutoencoderKL":
            downscale = 2 ** (len(config.block_out_channels) - 1)
        else:
            downscale = 2 ** (len(config.encoder_block_out_channels) - 1)
        self.family = kind.lower()
        self.kind = kind
        self.model = model.float().eval().requires_grad_(False)
        self.sample = bool(sample)
        self.generator = generator
        self.scaling_factor = float(getattr(config, "scaling_factor", None) or 1.0)
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)
        super().__init__(
            name=name,
            spec=spec,
            latent_channels=config.latent_channels,
            downscale=downscale,
            sha256=weights_sha256({"model": self.model.state_dict()}),
            device=device if device is not None else next(self.model.parameters()).device,
        )
        self.to(self.device)

    def _modules(self):
        return (self.model,)

    def _encode(self, images: Tensor) -> Tensor:
        x = images * 2.0 - 1.0
        if self.kind == "AutoencoderKL":
            posterior = self.model.encode(x).latent_dist
            z = posterior.sample(generator=self.generator) if self.sample else posterior.mean
        else:
            z = self.model.encode(x).latents
        return (z - self.shift_factor) * self.scaling_factor

    def _decode(self, latents: Tensor) -> Tensor:
        z = latents / self.scaling_factor + self.shift_factor
        return (self.model.decode(z).sample + 1.0) / 2.0


def codec_from_diffusers(
    model: nn.Module,
    name: str = "custom",
    *,
    spec: str | None = None,
    sample: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> DiffusersCodec:
    """Wrap an in-memory `AutoencoderKL` / `AutoencoderTiny` (e.g. a tiny random test model).

    ``spec`` defaults to ``name``; such a codec cannot be re-created by ``load_codec(spec)``
    unless ``spec`` is given as a real path or hub id.
    """
    return DiffusersCodec(model, name=name, spec=spec or name, sample=sample, generator=generator, device=device)


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_diffusers_codec(
    spec: str,
    device: torch.device | str | None = None,
    *,
    sample: bool = False,
    cache_dir: str | Path | None = None,
) -> DiffusersCodec:
    """Load a diffusers autoencoder from a local folder, an alias in HUB_ALIASES, or an "owner/name" hub id."""
    path = Path(spec).expanduser()
    if is_diffusers_folder(path):
        path = path.resolve()
        _check_regular_files(path)
        model = _from_pretrained(_model_class(path / "config.json"), str(path), where=path)
        return DiffusersCodec(model, name=path.name, spec=str(path), sample=sample, device=device)
    repo_id = HUB_ALIASES.get(spec, spec)
    name = spec if spec in HUB_ALIASES else repo_id.rsplit("/", 1)[-1]
    model = _load_from_hub(spec, repo_id, cache_dir)
    return DiffusersCodec(model, name=name, spec=spec, sample=sample, device=device)


# ---- helpers ---------------------------------------------------------------------------
def _model_kind(model: nn.Module) -> str:
    from diffusers import AutoencoderKL, AutoencoderTiny

    if isinstance(model, AutoencoderKL):
        return "AutoencoderKL"
    if isinstance(model, AutoencoderTiny):
        return "AutoencoderTiny"
    raise TypeError(f"expected a diffusers AutoencoderKL or AutoencoderTiny, got {type(model).__name__}")


#: Deepest nesting accepted in a codec's config.json: real configs nest 2 levels; a hostile file
#: nested thousands deep would otherwise end in a RecursionError inside json or diffusers.
MAX_CONFIG_DEPTH = 32


def _depth(value, limit: int) -> int:
    """Nesting depth of parsed JSON, counted without recursion (stops past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _model_class(config_path: Path):
    if Path(config_path).exists() and not Path(config_path).is_file():
        raise InputError(config_path, "is not a regular file (a FIFO, socket or device is never read)")
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        if _depth(config, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
            raise InputError(config_path, f"not a diffusers model config (nested over {MAX_CONFIG_DEPTH} levels deep)")
        class_name = config["_class_name"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        if isinstance(exc, InputError):
            raise
        detail = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise InputError(config_path, f"not a diffusers model config ({detail})") from None
    if class_name not in SUPPORTED_CLASSES:
        raise InputError(
            config_path, f"is a diffusers {class_name}; dotrestore supports {' and '.join(SUPPORTED_CLASSES)}"
        )
    import diffusers

    return getattr(diffusers, class_name)


def _memory_kwargs() -> dict:
    # without accelerate diffusers warns on every load and falls back anyway; say it up front
    return {} if importlib.util.find_spec("accelerate") else {"low_cpu_mem_usage": False}


#: the loggers of the libraries that load a diffusers model (each prints to stderr on its own)
LIBRARY_LOGGERS = ("diffusers", "huggingface_hub", "transformers", "accelerate")


def _pretrained(cls, source: str, **kwargs):
    """``cls.from_pretrained(source)``, the libraries' own messages held back: diffusers logs a
    missing weights file, an unexpected config key or unused weights on stderr itself, beside
    the one line our error (or nothing, on success) gives; ``-v`` shows them."""
    import diffusers  # noqa: F401  (sets up its logging now, not inside the quiet block)

    with libraries_kept_quiet(*LIBRARY_LOGGERS):
        return cls.from_pretrained(source, **kwargs, **_memory_kwargs())


def _from_pretrained(cls, source: str, *, where, **kwargs):
    try:
        return _pretrained(cls, source, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:  # RecursionError is a RuntimeError
        raise InputError(where, f"cannot load diffusers {cls.__name__} weights: {type(exc).__name__}: {exc}") from exc


def _check_regular_files(folder: Path) -> None:
    """InputError naming a file diffusers would read that is not a regular file (a FIFO would hang)."""
    for entry in folder.iterdir():
        if entry.suffix in (".json", ".safetensors", ".bin") and not entry.is_file() and not entry.is_dir():
            raise InputError(entry, "is not a regular file (a FIFO, socket or device is never read)")


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` holds any truthy value (not empty/0/false/no/off)."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def hub_unreachable_reason(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot be used right now, or None when a TCP connection to it opens in time."""
    from huggingface_hub import constants

    if env_flag("HF_HUB_OFFLINE") or constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    outcome: dict[str, object] = {}

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = True
        except OSError as exc:
            outcome["error"] = exc

    # a thread bounds the whole probe, DNS look-up included (getaddrinfo ignores timeouts)
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome.get("ok"):
        return None
    error = outcome.get("error")
    return f"the hub ({host}:{port}) cannot be reached within {timeout:g} s" + (f" ({error})" if error else "")


def unavailable_message(spec: str, repo_id: str, reason: str) -> str:
    label = f"'{spec}' (hub model {repo_id})" if spec != repo_id else f"hub model '{repo_id}'"
    local = f"/path/to/{repo_id.rsplit('/', 1)[-1]}"
    return (
        f"cannot load the VAE {label}: it is not in the local Hugging Face cache and {reason}. "
        f"Supply the weights another way: a local diffusers folder (on a machine with network run "
        f"`hf download {repo_id} --local-dir {local}` (huggingface_hub's command line), copy it here, "
        f"then pass `--vae {local}`), `--vae taef2` (the TAEF2 autoencoder bundled with dotrestore, no download), "
        f"a folder holding a TAESD-family *_encoder.pth + *_decoder.pth pair, or `--vae pixel` to work on "
        f"pixels without a VAE."
    )


def _load_from_hub(spec: str, repo_id: str, cache_dir):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    def config_file(local_files_only: bool) -> Path:
        return Path(hf_hub_download(repo_id, "config.json", cache_dir=cache_dir, local_files_only=local_files_only))

    try:
        cached_config = config_file(local_files_only=True)
    except HFValidationError as exc:
        raise InputError(spec, f"not a valid hub id ({exc})") from exc
    except (OSError, ValueError):
        cached_config = None  # not in the cache
    if cached_config is not None:
        cls = _model_class(cached_config)
        try:
            return _pretrained(cls, repo_id, cache_dir=cache_dir, local_files_only=True)
        except (OSError, ValueError):
            pass  # config cached but not the weights: download them below if we may
    reason = hub_unreachable_reason()
    if reason is not None:
        raise CodecUnavailableError(unavailable_message(spec, repo_id, reason))
    try:
        cls = _model_class(config_file(local_files_only=False))
        return _pretrained(cls, repo_id, cache_dir=cache_dir)
    except InputError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise CodecUnavailableError(unavailable_message(spec, repo_id, f"downloading it failed: {exc}")) from exc
