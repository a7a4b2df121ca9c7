"""Operator files: a fitted DOT as safetensors tensors plus JSON metadata.

Layout (format version 3; version 1 files, written before ``lowpass_sigma`` existed, are
read as whole-image operators, ``lowpass_sigma=None``; versions 1 and 2, written before
mixtures and split kinds, are read with ``mixture=1`` and ``split="gaussian"``):

- tensors (float64): ``mean_source``, ``cov_source``, ``mean_target``, ``cov_target``,
  ``operator`` (A of eq. 17, or T0 of eq. 19), ``noise_cov`` (Σw of eq. 19, only for the
  stochastic map), and the running moments ``{role}.count|shift|sum|outer`` so that
  fitting can continue after loading;
- for ``mixture`` K > 1 (version 3): ``mixture.plan`` [K, K] and, per role,
  ``mixture.{role}.weights`` [K], ``.means`` [K, D], ``.covariances`` [K, D, D];
- metadata (safetensors' str → str header): ``format`` = ``dotrestore.operator``,
  ``format_version``, ``codec_id``, ``codec_spec``, ``patch_size``, and ``dotrestore``:
  a JSON object with every parameter, the counts, W2² and the package version.

Loading only parses the header and reads raw tensors: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import gaussian
from ._version import __version__
from .codecs import load_codec
from .errors import OperatorFileError
from .mixture import MixtureTransport

FORMAT = "dotrestore.operator"
FORMAT_VERSION = 3
ROLES = ("source", "target")
_FITTED = ("mean_source", "cov_source", "mean_target", "cov_target", "operator", "noise_cov")
_PARAMS = ("patch_size", "eps", "shrinkage", "weighting", "lowpass_sigma", "zero_shot", "stochastic", "seed",
           "mixture", "split", "max_patches")


def operator_metadata(dot) -> dict:
    """The JSON-able description of a fitted estimator written into the file header."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "codec_id": dot.codec_.id,
        "codec_spec": dot.codec_.spec,
        "latent_channels": dot.codec_.latent_channels,
        "downscale": dot.codec_.downscale,
        "dim": dot.dim_,
        "shrinkage_used": getattr(dot, "shrinkage_used_", None),
        "stochastic_map": getattr(dot, "noise_cov_", None) is not None,
        "w2_squared": getattr(dot, "w2_squared_", None),
    }
    meta.update({name: getattr(dot, name) for name in _PARAMS})
    for role in ROLES:
        meta[f"n_{role}_images"] = getattr(dot, f"n_{role}_images_", 0)
        meta[f"n_{role}_patches"] = getattr(dot, f"n_{role}_patches_", 0)
    return meta


def save_operator(dot, path: str | Path) -> Path:
    """Write ``dot`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    tensors = {}
    for name in _FITTED:
        value = getattr(dot, f"{name}_", None)
        if value is not None:
            tensors[name] = value.detach().to("cpu", torch.float64).contiguous()
    for role in ROLES:
        moments = getattr(dot, f"_{role}_moments", None)
        if moments is not None:
            for key, value in moments.state_dict().items():
                tensors[f"{role}.{key}"] = value.detach().to("cpu", torch.float64).contiguous()
    mixture = getattr(dot, "mixture_", None)  # issue 11: every component of both mixtures
    if mixture is not None:
        tensors.update({f"mixture.{k}": v for k, v in mixture.state_dict().items()})
    meta = operator_metadata(dot)
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "codec_id": meta["codec_id"],
        "codec_spec": meta["codec_spec"],
        "patch_size": str(meta["patch_size"]),
        "dotrestore": json.dumps(meta),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_operator_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Validated (metadata, tensors) of an operator file; OperatorFileError naming it otherwise."""
    path = Path(path)
    if not path.exists():
        raise OperatorFileError(path, "does not exist")
    if not path.is_file():
        raise OperatorFileError(path, "is not a file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises several types for bad headers
        raise OperatorFileError(path, f"is not a dotrestore operator file (not safetensors: {exc})") from None
    if header.get("format") != FORMAT or "dotrestore" not in header:
        raise OperatorFileError(path, "is a safetensors file but not a dotrestore operator (no dotrestore metadata)")
    try:
        meta = json.loads(header["dotrestore"])
    except json.JSONDecodeError as exc:
        raise OperatorFileError(path, f"has corrupt dotrestore metadata ({exc})") from None
    version = int(meta.get("format_version", -1))
    if version > FORMAT_VERSION or version < 1:
        raise OperatorFileError(
            path, f"has operator format version {version}; this dotrestore ({__version__}) reads version {FORMAT_VERSION}"
        )
    required = ("mean_target", "cov_target") if meta.get("zero_shot") else ("mean_source", "cov_source", "mean_target", "cov_target", "operator")
    missing = [name for name in required if name not in tensors]
    if missing:
        raise OperatorFileError(path, f"is missing tensors {missing}")
    dim = int(meta["dim"])
    for name in ("cov_source", "cov_target", "operator", "noise_cov"):
        if name in tensors and tuple(tensors[name].shape) != (dim, dim):
            raise OperatorFileError(path, f"tensor {name} has shape {tuple(tensors[name].shape)}, expected {(dim, dim)}")
    return meta, tensors


def same_weights(codec_id: str, other_id: str) -> bool:
    """Whether two codec ids name the same weights.

    Ids are ``family:name:sha12``; the name records where the weights were loaded from
    (an alias, a folder name), so only the family and the weights' digest must agree.
    """
    a, b = codec_id.split(":"), other_id.split(":")
    return a == b or (len(a) == len(b) == 3 and a[0] == b[0] and a[2] == b[2])


def load_operator(cls, path: str | Path, codec=None, device=None):
    """Build a fitted ``cls`` (DOT) from an operator file; refuses a codec of another id."""
    meta, tensors = read_operator_file(path)
    params = {name: meta[name] for name in _PARAMS if name in meta}
    params.setdefault("lowpass_sigma", None)  # version 1: statistics of whole images
    params.setdefault("split", "gaussian")  # versions 1-2: the Gaussian low-pass
    params.setdefault("mixture", 1)
    dot = cls(codec=codec if codec is not None else meta["codec_spec"], device=device, **params)
    codec_obj = load_codec(dot.codec, device=dot._device())
    if not same_weights(codec_obj.id, meta["codec_id"]):
        raise OperatorFileError(
            path,
            f"was fitted with codec {meta['codec_id']!r} (from {meta['codec_spec']!r}) but the codec given is "
            f"{codec_obj.id!r}: the statistics live in the fitted codec's latent space; pass the same weights",
        )
    dot.codec_ = codec_obj
    if codec_obj.latent_channels * dot.patch_size**2 != int(meta["dim"]):
        raise OperatorFileError(path, "patch dimension does not match the codec's latent channels")
    for name in _FITTED:
        if name in tensors:
            setattr(dot, f"{name}_", tensors[name])
    if not meta.get("zero_shot"):
        dot.noise_cov_ = tensors.get("noise_cov")
    for role in ROLES:
        state = {key.split(".", 1)[1]: t for key, t in tensors.items() if key.startswith(f"{role}.")}
        setattr(dot, f"_{role}_moments", gaussian.Moments.from_state_dict(state) if state else None)
        setattr(dot, f"n_{role}_images_", int(meta.get(f"n_{role}_images", 0)))
        setattr(dot, f"n_{role}_patches_", int(meta.get(f"n_{role}_patches", 0)))
    if int(params["mixture"]) > 1:
        state = {key.split(".", 1)[1]: t for key, t in tensors.items() if key.startswith("mixture.")}
        try:
            dot.mixture_ = MixtureTransport.from_state_dict(state, eps=dot.eps)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise OperatorFileError(path, f"has mixture = {params['mixture']} but bad mixture tensors ({exc})") from None
        if dot.mixture_.n_components != int(params["mixture"]) or dot.mixture_.maps.shape[-1] != int(meta["dim"]):
            raise OperatorFileError(path, "mixture tensors do not match the recorded mixture and patch dimension")
    if meta.get("w2_squared") is not None:
        dot.w2_squared_ = float(meta["w2_squared"])
    dot.shrinkage_used_ = meta.get("shrinkage_used")
    dot._cache = None
    return dot
