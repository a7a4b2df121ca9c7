"""Whole-image GroupNorm statistics for tiled codecs (see :mod:`dotrestore.codecs.tiling`).

GroupNorm normalises a feature map by its own mean and variance; a tile run on its own would
be normalised by the tile's statistics, which no overlap blends away. Here every GroupNorm
of a codec's networks records the statistics of the whole image, found tile by tile, and
normalises every tile with them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


class SharedGroupNorm:
    """GroupNorm statistics of the whole image, shared by every tile.

    GroupNorm normalises by the mean and variance of a whole feature map; run per tile it
    would normalise each tile by its own statistics (a 128-pixel tile of sky and one of
    foliage are normalised very differently), which no overlap can blend away. Inside
    ``with SharedGroupNorm(modules).record():`` every ``nn.GroupNorm`` of ``modules``
    stores the per-group mean and variance it computes (run the network once on the whole
    image, or a downscaled copy that fits in memory); inside ``.frozen()`` they normalise
    with those stored statistics instead of the tile's own:

        GN(x) = (x − μ_g) / sqrt(σ²_g + ε) · γ + β,   μ_g, σ²_g of the whole image.
    """

    def __init__(self, modules):
        self.norms = [m for module in modules for m in module.modules() if isinstance(m, nn.GroupNorm)]
        self.stats: dict[int, tuple[Tensor, Tensor]] = {}

    def __bool__(self) -> bool:
        return bool(self.norms)

    def _patched(self, forward):
        @contextlib.contextmanager
        def manager():
            for norm in self.norms:
                norm.forward = forward.__get__(norm)
            try:
                yield self
            finally:
                for norm in self.norms:
                    del norm.forward  # back to the class's forward
        return manager()

    def record(self):
        stats = self.stats

        def forward(norm, x):
            groups = x.float().reshape(x.shape[0], norm.num_groups, -1)
            stats[id(norm)] = (groups.mean(-1), groups.var(-1, unbiased=False))
            return nn.GroupNorm.forward(norm, x)
        return self._patched(forward)

    def frozen(self):
        return self._patched(self.frozen_forward())

    def frozen_forward(self):
        stats = self.stats

        def forward(norm, x):
            mean, var = stats[id(norm)]
            b, c = x.shape[:2]
            per_group = c // norm.num_groups
            scale = torch.rsqrt(var + norm.eps).repeat_interleave(per_group, dim=1)  # (B, C)
            shift = -mean.repeat_interleave(per_group, dim=1) * scale
            if norm.affine:
                shift = shift * norm.weight.float() + norm.bias.float()
                scale = scale * norm.weight.float()
            view = (b, c) + (1,) * (x.ndim - 2)
            return x * scale.reshape(view).to(x.dtype) + shift.reshape(view).to(x.dtype)
        return forward


class _Stop(Exception):
    """Raised inside a network once the statistics wanted from it are taken."""


def call_order(norms: SharedGroupNorm, fn: Callable[[Tensor], Tensor], probe: Tensor) -> list[nn.GroupNorm]:
    """The GroupNorms of ``norms`` that a forward pass of ``fn`` calls, in call order."""
    with norms.record():
        fn(probe)
    order = {key: i for i, key in enumerate(norms.stats)}
    norms.stats.clear()
    return sorted((norm for norm in norms.norms if id(norm) in order), key=lambda norm: order[id(norm)])


def stat_tiles(rows: int, cols: int, count: int) -> list[tuple[int, int]]:
    """``count`` of the rows × cols grid positions, spread over the whole image.

    Rows are evenly spaced; columns follow the golden-ratio sequence, so that no two samples
    share a column or row when avoidable and the sample is not a stripe for any count.
    """
    if count >= rows * cols:
        return [(i, j) for i in range(rows) for j in range(cols)]
    golden = (math.sqrt(5) - 1) / 2
    picked = []
    for k in range(count):
        position = (int((k + 0.5) * rows / count), int(((k + 0.5) * golden) % 1.0 * cols))
        if position not in picked:
            picked.append(position)
    return picked


class _Sums:
    """Σx, Σx² and n per (image, group) of GroupNorm inputs over the tiles' own regions, in float64.

    Per channel, ``var_mean`` reduces the tile's strided view in float32 without copying
    it (a 640² tile of 256 channels would be a 420 MB copy); channels then combine into
    groups exactly: Σx = n·μ_c, Σx² = n·(σ²_c + μ_c²).
    """

    def __init__(self):
        self.totals: dict[int, Tensor] = {}
        self.region = None  # ((r0, r1), (c0, c1), (height, width)) of the current crop, in its samples

    def add(self, norm: nn.GroupNorm, h: Tensor) -> None:
        (r0, r1), (c0, c1), full = self.region
        if h.ndim == 3:  # attention normalises (B, C, h·w): give it back its spatial shape
            scale = math.sqrt(h.shape[-1] / (full[0] * full[1]))
            h = h.unflatten(-1, (round(full[0] * scale), round(full[1] * scale)))
        sy, sx = h.shape[-2] / full[0], h.shape[-1] / full[1]
        own = h[..., round(r0 * sy):round(r1 * sy), round(c0 * sx):round(c1 * sx)]
        var, mean = torch.var_mean(own.float(), dim=(-2, -1), unbiased=False)  # (B, C)
        n = own.shape[-2] * own.shape[-1]
        b, c = mean.shape
        mean, var = mean.double().reshape(b, norm.num_groups, -1), var.double().reshape(b, norm.num_groups, -1)
        sums = torch.stack([n * mean.sum(-1), n * (var + mean * mean).sum(-1),
                            torch.full_like(mean[..., 0], n * mean.shape[-1])])
        key = id(norm)
        self.totals[key] = self.totals[key] + sums if key in self.totals else sums

    def store(self, norms: SharedGroupNorm) -> None:
        """μ_g = Σx / n and σ²_g = Σx² / n − μ_g² into the shared statistics."""
        for key, (sums, squares, n) in self.totals.items():
            mean = sums / n
            norms.stats[key] = (mean.float(), (squares / n - mean * mean).clamp_min(0).float())

    def run(self, x: Tensor, fn: Callable[[Tensor], Tensor], positions, tile: int, context: int) -> None:
        """``fn`` over the tiles at grid ``positions`` (with context), setting :attr:`region` for each."""
        height, width = x.shape[-2:]
        for i, j in positions:
            r, c = i * tile, j * tile
            top, left = max(r - context, 0), max(c - context, 0)
            crop = x[..., top:r + tile + context, left:c + tile + context]
            size = (min(r + tile, height) - top, min(c + tile, width) - left)
            self.region = ((r - top, size[0]), (c - left, size[1]), crop.shape[-2:])
            try:
                fn(crop)
            except _Stop:
                pass


def tiled_group_norm_stats(
    x: Tensor,
    fn: Callable[[Tensor], Tensor],
    norms: SharedGroupNorm,
    tile: int,
    context: int,
    unit: int,
    max_passes: float | None = None,
    progress: bool = False,
) -> str:
    """Whole-image GroupNorm statistics of ``fn`` over x, one tile at a time; returns how they were found.

    The layers are taken in call order (layer k's statistics depend on the layers before
    it): with the statistics of layers < k frozen, every tile (with ``context`` samples of
    neighbours) runs up to layer k, which adds Σx and Σx² over the tile's own,
    non-overlapping region and stops the pass:

        μ_g = Σx / n,   σ²_g = Σx² / n − μ_g²   (sums in float64).

    Over every tile this is exact, and costs about L/2 passes of the network for L
    GroupNorms: 1.5 for TAEF2, some 15 decoder passes for the SD VAE's 31. When
    ``max_passes`` is given and L/2 exceeds it, the sums run over an evenly spread sample
    of ``⌈2 · max_passes · T / L⌉`` of the T tiles: an estimate, but the same for every
    tile, so no seam appears. (Correcting a sample's estimate with whole passes, every
    layer summing at once, is a fixed-point iteration that converged for TAEF2 but
    diverged for a random-init KL autoencoder, so it is not used.)
    """
    probe = x[..., : min(x.shape[-2], 4 * unit), : min(x.shape[-1], 4 * unit)]
    order = call_order(norms, fn, probe)
    rows, cols = math.ceil(x.shape[-2] / tile), math.ceil(x.shape[-1] / tile)
    count = rows * cols
    if max_passes is not None and len(order) / 2 > max_passes:
        count = min(count, max(1, math.ceil(2 * max_passes * count / len(order))))
    positions = stat_tiles(rows, cols, count)
    frozen_forward = norms.frozen_forward()
    for target in tqdm(order, desc="GroupNorm statistics", unit="layer", leave=False, disable=not progress):
        sums = _Sums()

        def accumulate(norm, h, target=target, sums=sums):
            if norm is not target:
                return frozen_forward(norm, h)
            sums.add(norm, h)
            raise _Stop

        with norms._patched(accumulate):
            sums.run(x, fn, positions, tile, context)
        sums.store(norms)
    return "exact" if len(positions) == rows * cols else f"{len(positions)} of {rows * cols} tiles"
