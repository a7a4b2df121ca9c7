"""The `Codec` base class: an image <-> latent map with fixed padding and cropping rules.

Every codec family (pixel, diffusers VAEs, TAESD-family .pth pairs) only implements
``_encode`` / ``_decode`` on tensors whose height and width are already multiples of
``downscale``; the padding, cropping, clamping, dtype and no-grad rules live here once so
that all families behave identically at image borders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import options, precision, tiling


def weights_sha256(state_dicts: Mapping[str, Mapping[str, Tensor]]) -> str:
    """Hex sha256 over parameter names and bytes (as float32 on the CPU), in a fixed order.

    ``state_dicts`` maps a part name (e.g. ``"encoder"``) to that part's state_dict. The
    digest depends only on the weights, never on the file path or file format, so that the
    same weights give the same :attr:`Codec.id` wherever they are stored.
    """
    digest = hashlib.sha256()
    for part in sorted(state_dicts):
        state = state_dicts[part]
        for key in sorted(state):
            tensor = state[key].detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{part}.{key}:{tuple(tensor.shape)}".encode())
            # float32 bytes through numpy: a view, no extra copy of large VAEs
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def make_id(family: str, name: str, sha256_hex: str) -> str:
    """``family:name:<first 12 hex digits of the weights' sha256>``."""
    return f"{family}:{name}:{sha256_hex[:12]}"


def _pad_side(x: Tensor, dim: int, pad: int) -> Tensor:
    """Pad ``pad`` rows (dim=-2) or columns (dim=-1) at the bottom/right end."""
    if pad == 0:
        return x
    widths = (0, pad, 0, 0) if dim == -1 else (0, 0, 0, pad)
    # reflect needs pad < size (it mirrors without repeating the edge); tiny images replicate
    mode = "reflect" if pad < x.shape[dim] else "replicate"
    return F.pad(x, widths, mode=mode)


def pad_to_multiple(images: Tensor, multiple: int) -> Tensor:
    """Reflect-pad (B, C, H, W) at the bottom and right so H and W are multiples of ``multiple``.

    Falls back to replicate padding along a side that is too short to reflect.
    """
    if multiple == 1:
        return images
    height, width = images.shape[-2:]
    images = _pad_side(images, -1, -width % multiple)
    return _pad_side(images, -2, -height % multiple)


class Codec:
    """An autoencoder seen by DOT: images in [0, 1] <-> latents, with fixed border handling.

    Attributes
    ----------
    id : str
        Stable identity recorded in operator files: ``family:name:sha12`` where ``sha12`` is
        the first 12 hex digits of the sha256 of the weights (see :func:`weights_sha256`);
        ``"pixel"`` for the identity codec. Compare :attr:`weights_sha256` (or the last
        ``:``-field of ``id``) to decide whether two codecs hold the same weights.
    spec : str
        What to pass to :func:`dotrestore.codecs.load_codec` to get this codec again.
    latent_channels : int
        C of the latents.
    downscale : int
        f: latents are ``ceil(H/f) x ceil(W/f)``.
    device : torch.device
        Where the networks run; ``encode`` and ``decode`` return tensors on this device.

    Notes
    -----
    ``encode`` reflect-pads the bottom/right of H and W up to multiples of f; ``decode``
    clamps to [0, 1] and crops the top-left ``size`` back out, so
    ``decode(encode(x), size=x.shape[-2:])`` has the shape of ``x``. Both run under
    ``torch.inference_mode`` and return ordinary (non-inference) float32 tensors; the networks
    compute in :attr:`precision` (``dtype="auto"`` by default: bfloat16 autocast on CPUs with
    native bf16, else float32; see :mod:`dotrestore.codecs.precision`).

    Big images are encoded and decoded in overlapping tiles whose seams are blended (see
    :mod:`dotrestore.codecs.tiling`): ``tile`` is ``"auto"`` (tile only images above
    1024×1024 whose activations would not fit ``max_memory``), ``"off"`` or a tile side in
    pixels; ``tile_overlap`` is the overlap of neighbouring tiles in pixels. Set them with
    the constructor, :meth:`configure` or :func:`dotrestore.codecs.load_codec`.
    """

    family: str = "codec"

    def __init__(
        self,
        *,
        name: str,
        spec: str,
        latent_channels: int,
        downscale: int,
        sha256: str | None = None,
        device: torch.device | str | None = None,
        tile: str | int = "auto",
        tile_overlap: int | None = None,
        dtype: str | torch.dtype | None = None,
        max_memory: int | str | None = None,
    ):
        self.name = name
        self.spec = spec
        self.latent_channels = int(latent_channels)
        self.downscale = int(downscale)
        self.weights_sha256 = sha256
        self.id = self.family if sha256 is None else make_id(self.family, name, sha256)
        self.device = torch.device("cpu" if device is None else device)
        self.tile, self.tile_overlap, self.max_memory = "auto", None, None
        self.requested_dtype = None
        self.precision = precision.Precision("float32", "not configured yet")
        self.progress = True
        self._bytes_per_pixel: dict = {}
        self.configure(tile=tile, tile_overlap=tile_overlap, dtype=precision.AUTO if dtype is None else dtype,
                       max_memory=max_memory)

    # ---- what a family provides -------------------------------------------------------
    def _modules(self) -> Iterable[nn.Module]:
        """The networks to move with :meth:`to` (none for the pixel codec)."""
        return ()

    def _encode(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1], H and W multiples of ``downscale`` -> (B, C, H/f, W/f)."""
        raise NotImplementedError

    def _decode(self, latents: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, 3, h*f, w*f), roughly in [0, 1] (clamped by the caller)."""
        raise NotImplementedError

    # ---- shared behaviour -------------------------------------------------------------
    def configure(
        self,
        *,
        tile: str | int | None = None,
        tile_overlap: int | None = None,
        dtype: str | torch.dtype | None = None,
        max_memory: int | str | None = None,
        progress: bool | None = None,
    ) -> Codec:
        """Set tiling, compute dtype, memory budget or progress bars (None leaves one as it is)."""
        if tile is not None:
            self.tile = options.tile(tile)
        if tile_overlap is not None:
            self.tile_overlap = options.tile_overlap(tile_overlap)
        if max_memory is not None:
            self.max_memory = options.max_memory(max_memory)
        if progress is not None:
            self.progress = bool(progress)
        if dtype is not None:
            requested = options.dtype_name(dtype)
            precision.check_precision(requested, self.device)
            self.requested_dtype = requested
            self._resolve_precision()
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The networks' compute precision (:attr:`precision` says which and why)."""
        return self.precision.dtype

    def _resolve_precision(self) -> None:
        resolved = precision.resolve_precision(self.requested_dtype, self.device)
        if self._modules_present():
            self.precision = resolved
        else:  # the pixel codec has no network: its "computation" stays exact in float32
            self.precision = precision.Precision("float32", "the pixel codec has no network to run")
        self._bytes_per_pixel.clear()

    def to(self, device: torch.device | str) -> Codec:
        """Move the networks to ``device`` (weights float32; :attr:`precision` re-resolved); returns ``self``."""
        device = torch.device(device)
        if self.requested_dtype is not None:
            precision.check_precision(self.requested_dtype, device)
        for module in self._modules():
            # channels_last: oneDNN's convolutions (float32 and bf16) are faster on the CPU in this layout
            # (weights are float32 from the families' constructors; autocast never casts them)
            module.to(device=device, memory_format=torch.channels_last)
        self.device = device
        if self.requested_dtype is not None:
            self._resolve_precision()
        return self

    @contextmanager
    def statistics_precision(self):
        """Within: float32 when the precision was ``auto`` (fits accumulate statistics from these
        latents; bf16 autocast moved TAEF2's patch moments by 2-5 % relative on Kodak, so a fit's
        encodes stay float32 and only applying runs in bf16). An explicit ``dtype`` is kept."""
        saved = self.precision, dict(self._bytes_per_pixel)
        if self.requested_dtype == precision.AUTO and self.precision.name != "float32":
            self.precision = precision.Precision("float32", "--dtype auto: statistics are encoded in float32")
            self._bytes_per_pixel.clear()
        try:
            yield self
        finally:
            self.precision, self._bytes_per_pixel = saved

    def _modules_present(self) -> bool:
        return any(True for _ in self._modules())

    def _run(self, fn, x: Tensor) -> Tensor:
        """``fn(x)`` in :attr:`precision`: reduced precision is autocast (weights stay float32, and
        autocast keeps normalisations and reductions in float32)."""
        if self.dtype == torch.float32:
            return fn(x)
        with torch.autocast(self.device.type, dtype=self.dtype):
            return fn(x)

    def _encode_in_precision(self, x: Tensor) -> Tensor:
        return self._run(self._encode, x)

    def _decode_in_precision(self, z: Tensor) -> Tensor:
        return self._run(self._decode, z)

    def _tile_plan(self, height: int, width: int, role: str) -> tuple[int, int, int] | None:
        """(tile, overlap, context) in pixels, multiples of ``downscale``, for a padded image; None: untiled."""
        f = self.downscale
        if self.tile == "off":
            return None
        if self.tile == "auto":
            tile = tiling.auto_tile(height * width, self.bytes_per_pixel(role),
                                    tiling.device_budget(self.device, self.max_memory))
        else:
            tile = self.tile
        if tile is None:
            return None
        tile = max(tile // f * f, 2 * f)
        if height <= tile and width <= tile:
            return None  # one tile: exactly the untiled computation
        overlap = self.tile_overlap if self.tile_overlap is not None else min(tiling.DEFAULT_OVERLAP, tile // 4)
        # at most half a tile, so that a tile overlaps only its direct neighbours
        overlap = min(overlap, tile // 2) // f * f
        return tile, overlap, tiling.tile_context(overlap, f)

    def _stat_pixels(self, plan: tuple[int, int, int], role: str) -> int:
        budget = tiling.device_budget(self.device, self.max_memory)
        return tiling.stat_pixels(plan[0], plan[2], self.bytes_per_pixel(role), budget)

    def bytes_per_pixel(self, role: str) -> float:
        """Estimated working memory of ``_encode`` (role "encode") or ``_decode`` per image pixel."""
        if role not in self._bytes_per_pixel:
            modules = list(self._modules())
            f, side = self.downscale, 16
            if not modules:
                largest = 3 * (side * f) ** 2 * 4
            elif role == "encode":
                probe = torch.zeros(1, 3, side * f, side * f, device=self.device)
                largest = tiling.largest_activation(modules, self._layout(probe), self._encode_in_precision)
            else:
                probe = torch.zeros(1, self.latent_channels, side, side, device=self.device)
                largest = tiling.largest_activation(modules, self._layout(probe), self._decode_in_precision)
            self._bytes_per_pixel[role] = tiling.ACTIVATION_FACTOR * largest / (side * f) ** 2
        return self._bytes_per_pixel[role]

    def encode(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] -> latents (B, C, ceil(H/f), ceil(W/f)), float32."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode expects images of shape (B, 3, H, W); got {tuple(images.shape)}")
        with torch.inference_mode():
            x = pad_to_multiple(self._layout(images.to(self.device, torch.float32)), self.downscale)
            plan = self._tile_plan(*x.shape[-2:], "encode")
            if plan is None:
                latents = self._encode_in_precision(x)
            else:
                f = self.downscale
                latents = tiling.tiled_codec_apply(
                    x, self._encode_in_precision, self._modules(), plan[0], plan[1], 1 / f, f, self.latent_channels,
                    self._stat_pixels(plan, "encode"), progress=self.progress, desc="encoding tiles",
                    context=plan[2])
        # a clone outside inference mode is an ordinary tensor callers may modify in place
        return latents.float().clone(memory_format=torch.contiguous_format)

    def decode(self, latents: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Latents (B, C, h, w) -> images (B, 3, H, W) in [0, 1], cropped to ``size`` if given.

        Without ``size`` the output is (h*f, w*f), i.e. the padded size used by ``encode``.
        """
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"decode expects latents of shape (B, {self.latent_channels}, h, w) for codec "
                f"{self.id}; got {tuple(latents.shape)}",
            )
        full = (latents.shape[-2] * self.downscale, latents.shape[-1] * self.downscale)
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if not (0 < size[0] <= full[0] and 0 < size[1] <= full[1]):
                raise ValueError(f"decode size {size} does not fit the decoded size {full}")
        with torch.inference_mode():
            z = self._layout(latents.to(self.device, torch.float32))
            plan = self._tile_plan(*full, "decode")
            if plan is None:
                images = self._decode_in_precision(z).float().clamp(0.0, 1.0)
            else:
                f = self.downscale
                # blended in float32 and clamped in place: one full-size image, no copies
                images = tiling.tiled_codec_apply(
                    z, self._decode_in_precision, self._modules(), plan[0] // f, plan[1] // f, f, 1, 3,
                    self._stat_pixels(plan, "decode") // f**2, progress=self.progress, desc="decoding tiles",
                    context=plan[2] // f,
                ).clamp_(0.0, 1.0)
            if size is not None:
                images = images[..., : size[0], : size[1]]
        return images.float().clone(memory_format=torch.contiguous_format)

    def _layout(self, x: Tensor) -> Tensor:
        """Inputs of the networks in channels_last, matching the weights (see :meth:`to`)."""
        return x.contiguous(memory_format=torch.channels_last) if self._modules_present() else x

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(id={self.id!r}, spec={self.spec!r}, latent_channels="
            f"{self.latent_channels}, downscale={self.downscale}, device={str(self.device)!r})"
        )
