"""Tiled encoding and decoding: any image size with bounded memory, seams blended away.

A codec's networks need memory proportional to the pixels they see, so a big photograph is
cut into overlapping square tiles (side ``tile`` pixels, neighbours sharing ``overlap``
pixels), every tile is encoded (or every latent tile decoded) on its own, and the tiles are
put back together as a weighted average whose weights ramp linearly across each overlap,
as diffusers' ``AutoencoderKL.enable_tiling`` does. Along one axis, a tile whose overlap
with its neighbour is o samples weighs sample i of that overlap

    w(i) = (i + 1) / (o + 1),            i = 0 … o − 1,

and the neighbour weighs it 1 − w(i): the weights form a partition of unity, edges of a
tile (where its convolutions saw zero padding instead of the neighbouring pixels) get the
least weight, and no seam is left where one tile ends. The two-dimensional weight is the
product of the two axes' weights; the sum of weights is divided out, so uneven overlaps
(the last tile is moved back to end at the border) stay exact averages.

Encoding blends latents (overlap/f latent samples), decoding blends pixels; transport
always runs on the whole latent map, so patch statistics never see a tile border. Two more
things make a tile compute what the whole image would: every tile also sees ``overlap``
pixels, and at least :data:`MIN_CONTEXT`, of context beyond its borders (cropped off after;
the blend alone cannot hide a border error that a transport amplifies), and GroupNorm layers normalise
with the statistics of the whole image (:class:`SharedGroupNorm`), not of the tile: from
one pass over the image when it fits the budget, else tile by tile: exactly for networks
with few GroupNorms (TAEF2), and for deep ones (the SD VAE) on an evenly spread sample of
tiles, so that the cost stays within :data:`STAT_PASSES` passes of the network.

``tile="auto"`` tiles only images above 1024×1024 pixels whose estimated activation
memory exceeds the budget (``max_memory``; on CUDA the free device memory, on the CPU
:data:`CPU_BUDGET` bytes), and then picks the largest tile that fits the budget. Images at
or below 1024×1024 are never tiled unless ``tile`` is a number, so they give exactly the
untiled result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .tiled_norm import SharedGroupNorm, tiled_group_norm_stats  # noqa: F401 (part of this module's API)

#: images with at most this many pixels are never tiled under ``tile="auto"``
AUTO_MIN_PIXELS = 1024 * 1024
#: activation budget (bytes) of a codec on the CPU when ``max_memory`` is not given
CPU_BUDGET = 1 << 30
#: tile sides chosen under "auto" are multiples of this, between the bounds below
AUTO_TILE_STEP = 64
AUTO_TILE_MIN, AUTO_TILE_MAX = 256, 4096
#: default overlap between neighbouring tiles, in pixels
DEFAULT_OVERLAP = 64
#: every tile sees at least this many pixels of its neighbours (more when the overlap is
#: wider): a network's output near a tile border depends on pixels that far away. With
#: TAEF2 and 128-pixel tiles, 32 pixels of context leave errors of ~46 dB in the latents
#: that a transport amplifies to 36 dB in x̂0; 64 pixels (8 latent samples when decoding)
#: leave ~70 dB in the latents and ~65 dB in decoded images
MIN_CONTEXT = 64
#: the estimate of a network's working memory is this many times its largest activation
#: (its input, its output and the temporaries of a residual block are alive together)
ACTIVATION_FACTOR = 4
#: GroupNorm statistics of an image too big for one pass cost at most this many passes of
#: the network (see tiled_group_norm_stats): exact ones cost about L/2 passes for L
#: GroupNorms, 1.5 for TAEF2 (which stays exact) and some 15 for the SD VAE's decoder, which
#: above this bound takes them on an evenly spread sample of tiles. None: always exact.
STAT_PASSES: float | None = 2.0


# ---------------------------------------------------------------------- memory
def largest_activation(modules: list[nn.Module], probe: Tensor, run: Callable[[Tensor], Tensor]) -> int:
    """Bytes of the largest tensor any leaf module outputs while ``run(probe)`` runs.

    Counted in the dtype each output really has, so a network run under bfloat16 autocast
    (convolutions in bf16, normalisations in float32) is estimated as it runs.
    """
    largest = [probe.numel() * probe.element_size()]

    def hook(_module, _inputs, output):
        if isinstance(output, Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for module in modules for m in module.modules()
               if next(m.children(), None) is None]
    try:
        with torch.inference_mode():
            run(probe)
    finally:
        for handle in handles:
            handle.remove()
    return largest[0]


def device_budget(device: torch.device, max_memory: int | None, cpu_budget: int = CPU_BUDGET) -> int:
    """Bytes the activations may use: ``max_memory``, else free CUDA memory or ``cpu_budget``."""
    if max_memory is not None:
        return int(max_memory)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.9)  # leave room for the allocator's fragmentation
    return cpu_budget


def auto_tile(pixels: int, bytes_per_pixel: float, budget: int) -> int | None:
    """Tile side for ``tile="auto"`` (None: do not tile) for an image of ``pixels`` pixels."""
    if pixels <= AUTO_MIN_PIXELS or pixels * bytes_per_pixel <= budget:
        return None
    side = int(math.sqrt(budget / bytes_per_pixel)) // AUTO_TILE_STEP * AUTO_TILE_STEP
    return min(max(side, AUTO_TILE_MIN), AUTO_TILE_MAX)


# ---------------------------------------------------------------------- geometry
def tile_context(overlap: int, unit: int) -> int:
    """Pixels of context every tile sees beyond its borders: the overlap, at least
    :data:`MIN_CONTEXT`, rounded up to a multiple of ``unit``."""
    return -(-max(overlap, MIN_CONTEXT) // unit) * unit


def stat_pixels(tile: int, context: int, bytes_per_pixel: float, budget: int) -> int:
    """Pixels of the whole-image pass that gives GroupNorm statistics: what the budget allows,
    and at least what one tile with its context costs."""
    return max((tile + 2 * context) ** 2, int(budget / bytes_per_pixel))


def tile_starts(length: int, tile: int, overlap: int, unit: int = 1) -> list[int]:
    """Starts of tiles of side ``tile`` covering [0, length), neighbours overlapping >= ``overlap``.

    All values are in samples and multiples of ``unit``; the tiles are spread evenly so that
    the last one ends exactly at ``length``.
    """
    if length <= tile:
        return [0]
    count = 1 + math.ceil((length - tile) / max(tile - overlap, unit))
    span = (length - tile) // unit
    return [round(i * span / (count - 1)) * unit for i in range(count)]


def axis_weights(starts: list[int], tile: int, length: int) -> list[Tensor]:
    """Per-tile 1-D blending weights (see the module docstring) along one axis."""
    weights = []
    for k, start in enumerate(starts):
        size = min(tile, length - start)
        w = torch.ones(size, dtype=torch.float64)
        if k > 0:  # ramp up across the overlap with the previous tile
            o = starts[k - 1] + tile - start
            w[:o] = torch.minimum(w[:o], torch.arange(1, o + 1, dtype=torch.float64) / (o + 1))
        if k + 1 < len(starts):  # ramp down across the overlap with the next tile
            o = start + size - starts[k + 1]
            w[size - o:] = torch.minimum(w[size - o:], torch.arange(o, 0, -1, dtype=torch.float64) / (o + 1))
        weights.append(w)
    return weights


def tiled_apply(
    x: Tensor,
    fn: Callable[[Tensor], Tensor],
    tile: int,
    overlap: int,
    scale: float,
    unit: int,
    out_channels: int,
    progress: bool = True,
    desc: str = "tiles",
    context: int = 0,
) -> Tensor:
    """``fn`` over overlapping tiles of x (B, C, H, W), blended into one (B, out_channels, H·scale, W·scale).

    ``tile`` and ``overlap`` are in samples of ``x`` and multiples of ``unit``; ``fn`` maps a
    (B, C, t, t) tile to (B, out_channels, t·scale, t·scale) (an encoder: scale 1/f; a decoder: f).
    ``fn`` sees ``context`` more samples (a multiple of ``unit``) of x on every side where
    the image goes on, and only its output for the tile itself is kept: the tile's convolutions
    then see real neighbours instead of zero padding up to that distance. The output is
    float32 on x's device; the only full-size tensors are the output and the sum of weights.
    """
    batch, _, height, width = x.shape
    rows, cols = tile_starts(height, tile, overlap, unit), tile_starts(width, tile, overlap, unit)
    out_h, out_w = round(height * scale), round(width * scale)
    out_tile = round(tile * scale)
    row_w = axis_weights([round(s * scale) for s in rows], out_tile, out_h)
    col_w = axis_weights([round(s * scale) for s in cols], out_tile, out_w)
    out = torch.zeros(batch, out_channels, out_h, out_w, device=x.device, dtype=torch.float32)
    total = torch.zeros(out_h, out_w, device=x.device, dtype=torch.float32)
    positions = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
    bar = tqdm(positions, desc=desc, unit="tile", leave=False, disable=not progress or len(positions) < 4)
    for i, j in bar:
        r, c = rows[i], cols[j]
        top, left = max(r - context, 0), max(c - context, 0)
        piece = fn(x[..., top:r + tile + context, left:c + tile + context]).float()
        piece = piece[..., round((r - top) * scale):, round((c - left) * scale):]
        weight = (row_w[i][:, None] * col_w[j][None, :]).to(x.device, torch.float32)
        r0, c0 = round(r * scale), round(c * scale)
        h, w = weight.shape
        out[..., r0:r0 + h, c0:c0 + w].addcmul_(piece[..., :h, :w], weight)
        total[r0:r0 + h, c0:c0 + w] += weight
        del piece
    return out.div_(total)


def tiled_codec_apply(
    x: Tensor,
    fn: Callable[[Tensor], Tensor],
    modules,
    tile: int,
    overlap: int,
    scale: float,
    unit: int,
    out_channels: int,
    stat_pixels: int,
    progress: bool = True,
    desc: str = "tiles",
    context: int | None = None,
) -> Tensor:
    """:func:`tiled_apply` for a codec network, its GroupNorms using whole-image statistics.

    The statistics come from one pass of ``fn`` over x when x has at most ``stat_pixels``
    pixels, else from :func:`tiled_group_norm_stats` (within :data:`STAT_PASSES` passes of
    the network). Every tile sees ``context`` samples (default ``overlap``) of x beyond its
    own borders, so the blended region is computed from real neighbours.
    """
    context = overlap if context is None else context
    norms = SharedGroupNorm(modules)
    if not norms:
        return tiled_apply(x, fn, tile, overlap, scale, unit, out_channels, progress, desc, context=context)
    if x.shape[-2] * x.shape[-1] <= stat_pixels:
        with norms.record():
            fn(x)
    else:
        tiled_group_norm_stats(x, fn, norms, tile, context, unit, max_passes=STAT_PASSES, progress=progress)
    with norms.frozen():
        return tiled_apply(x, fn, tile, overlap, scale, unit, out_channels, progress, desc, context=context)
