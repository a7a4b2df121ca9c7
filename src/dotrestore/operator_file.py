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
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save

from . import settings
from ._version import __version__
from .codecs import load_codec
from .errors import DotRestoreError, OperatorFileError
from .io.files import open_regular
from .io.outputs.folder import write_file
from .state import FORMAT, FORMAT_VERSION, FittedState, validate

logger = logging.getLogger("dotrestore")

#: The method's settings an operator file records (:data:`dotrestore.settings.METHOD`).
_PARAMS = settings.METHOD
#: Header entries that repeat a metadata field: they must agree with it.
_HEADER_COPIES = ("format_version", "codec_id", "codec_spec", "patch_size")


def operator_metadata(dot) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a fitted estimator: its state dict plus codec and parameters."""
    tensors, state_meta = dot.state_.state_dict()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "codec_id": dot.codec_.id,
        "codec_spec": dot.codec_.spec,
        "latent_channels": dot.codec_.latent_channels,
        "downscale": dot.codec_.downscale,
        "dim": dot.dim_,
        **state_meta,
    }
    meta.update({name: getattr(dot.resolved, name) for name in _PARAMS})  # canonical values: JSON, one spelling
    return tensors, meta


def save_operator(dot, path: str | Path, *, protected=(), overwrite: bool = True) -> Path:
    """Write ``dot`` to ``path`` atomically (:func:`dotrestore.io.outputs.folder.write_file`: never over a
    file whose identity is in ``protected``, over an existing file only with ``overwrite``; a
    full disk names ``path``). The result is checked against the same schema as files being
    read, so a written file always loads."""
    path = Path(path)
    tensors, meta = operator_metadata(dot)
    validate(json.loads(json.dumps(meta)), tensors, path)
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "codec_id": meta["codec_id"],
        "codec_spec": meta["codec_spec"],
        "patch_size": str(meta["patch_size"]),
        "dotrestore": json.dumps(meta),
    }
    # serialised in memory (a few D×D matrices): safetensors' own file writer reports a full disk
    # as a SafetensorError that names no file
    return write_file(path, save(tensors, metadata=header), protected=protected, overwrite=overwrite)


@dataclass(frozen=True)
class OperatorFile:
    """An operator file read and validated once: :meth:`DOT.load <dotrestore.DOT.load>` builds from it."""

    path: Path
    meta: dict
    tensors: dict[str, torch.Tensor]


def read_operator(path: str | Path) -> OperatorFile:
    """The validated :class:`OperatorFile` at ``path`` (opened once); OperatorFileError naming it otherwise.

    Every metadata field and every tensor is checked by :func:`dotrestore.state.validate`.
    """
    path = Path(path)
    if not path.exists():
        raise OperatorFileError(path, "does not exist")
    if not path.is_file():
        raise OperatorFileError(path, "is not a file")
    with open_regular(path) as handle:  # a few D×D matrices: read whole, parsed from memory
        data = handle.read()
    try:
        header = _safetensors_metadata(data)
        tensors = load(data)
    except Exception as exc:  # safetensors raises several types for bad headers
        raise OperatorFileError(path, f"is not a dotrestore operator file (not safetensors: {exc})") from None
    if header.get("format") != FORMAT or "dotrestore" not in header:
        raise OperatorFileError(path, "is a safetensors file but not a dotrestore operator (no dotrestore metadata)")
    try:
        meta = json.loads(header["dotrestore"], parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise OperatorFileError(path, f"has corrupt dotrestore metadata ({exc})") from None
    meta = validate(meta, tensors, path)
    for key in _HEADER_COPIES:  # a file edited by hand must not say one thing here and another there
        if key in header and header[key] != str(meta[key]):
            raise OperatorFileError(path, f"header {key} = {header[key]!r} disagrees with its metadata "
                                    f"({meta[key]!r})")
    return OperatorFile(path, meta, {name: t.to(torch.float64) for name, t in tensors.items()})


def read_operator_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Validated (metadata, tensors) of an operator file (:func:`read_operator`)."""
    operator = read_operator(path)
    return operator.meta, operator.tensors


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The str → str ``__metadata__`` of a safetensors file's header (8-byte length, then JSON)."""
    if len(data) < 8:
        raise ValueError("file shorter than a safetensors header")
    length = int.from_bytes(data[:8], "little")
    if length > len(data) - 8:
        raise ValueError(f"header of {length} bytes in a file of {len(data)}")
    header = json.loads(data[8:8 + length])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise ValueError("__metadata__ is not a str -> str map")
    return meta or {}


def _refuse_constant(name: str):
    # JSON has no NaN/Infinity; Python's json would accept them silently
    raise ValueError(f"{name} is not valid JSON")
def same_weights(codec_id: str, other_id: str) -> bool:
    """Whether two codec ids name the same weights.

    Ids are ``family:name:sha12``; the name records where the weights were loaded from
    (an alias, a folder name), so only the family and the weights' digest must agree.
    """
    a, b = codec_id.split(":"), other_id.split(":")
    return a == b or (len(a) == len(b) == 3 and a[0] == b[0] and a[2] == b[2])


def _bundled_with_id(codec_id: str, device):
    """The bundled TAEF2 when it holds the weights ``codec_id`` names (an operator fitted from a
    TAEF2 folder that is not on this machine), else None."""
    if not codec_id.startswith("taesd:"):
        return None
    bundled = load_codec("taef2", device=device)
    if not same_weights(bundled.id, codec_id):
        return None
    logger.info("the operator's codec folder is missing here; using the bundled TAEF2 (same weights, %s)", bundled.id)
    return bundled


def load_operator(cls, source: str | Path | OperatorFile, codec=None, runtime=None):
    """Build a fitted ``cls`` (DOT) from an operator file (a path, or one :func:`read_operator` read
    already); refuses a codec of another id."""
    operator = source if isinstance(source, OperatorFile) else read_operator(source)
    path, meta, tensors = operator.path, operator.meta, operator.tensors
    params = {name: meta[name] for name in _PARAMS if name in meta}
    params.setdefault("lowpass_sigma", 0.0)  # version 1: statistics of whole images
    params.setdefault("split", "gaussian")  # versions 1-2: the Gaussian low-pass
    dot = cls(codec=codec if codec is not None else meta["codec_spec"], runtime=runtime, **params)
    resolved = dot.resolved
    device, options = resolved.runtime.torch_device, resolved.runtime.codec_options()
    try:
        codec_obj = load_codec(resolved.codec, device=device, **options)
    except DotRestoreError as exc:
        if codec is not None:
            raise
        codec_obj = _bundled_with_id(meta["codec_id"], device)
        if codec_obj is None:
            raise OperatorFileError(path, f"records codec {meta['codec_spec']!r}, which cannot be loaded here "
                                    f"({exc}); pass --vae / codec= with the same weights") from None
        codec_obj.configure(**options)
        dot.codec = codec_obj.spec  # the parameter that builds this DOT again here
    if not same_weights(codec_obj.id, meta["codec_id"]):
        raise OperatorFileError(
            path,
            f"was fitted with codec {meta['codec_id']!r} (from {meta['codec_spec']!r}) but the codec given is "
            f"{codec_obj.id!r}: the statistics live in the fitted codec's latent space; pass the same weights",
        )
    p = resolved.patch_size
    if codec_obj.latent_channels * p**2 != int(meta["dim"]):
        raise OperatorFileError(
            path, f"has patch dimension D = {meta['dim']}, but codec {codec_obj.id!r} with patch size "
            f"{p} gives D = {codec_obj.latent_channels * p**2}")
    codec_obj.configure(progress=resolved.runtime.progress)
    try:
        state = FittedState.from_state_dict(tensors, meta, eps=resolved.eps)
    except ValueError as exc:  # e.g. mixture components that do not form a valid mixture
        raise OperatorFileError(path, f"has inconsistent fitted tensors ({exc})") from None
    return dot.set_fitted(codec_obj, state)
