"""One streaming data pipeline for ``fit``, ``apply`` and ``experiment``.

A :class:`torch.utils.data.DataLoader` runs a per-item function (read, convert, degrade,
restore: CPU work) in ``workers`` background processes while the main process runs the codec
and the transport on the device. Items whose images have the same size are batched
(``batch_size``), others go one at a time, so encode → transport → decode run in batches.
:class:`ImageWriter` writes PNGs on a small thread pool so the device never waits for zlib.

Only a bounded number of items is in flight (``prefetch_factor`` per worker, the writer's
queue), so memory does not grow with the number of images.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .. import data


def default_workers() -> int:
    """min(4, CPU cores available to this process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(4, cores))


def size_batches(sizes: Sequence[tuple[int, int] | None], batch_size: int) -> list[list[int]]:
    """Positions grouped into batches of at most ``batch_size`` images of one size.

    Groups keep the order in which sizes first appear and the order of positions inside a
    size; an unknown size (None) always forms a batch of its own.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: OrderedDict = OrderedDict()
    for i, size in enumerate(sizes):
        key = ("alone", i) if size is None or batch_size == 1 else tuple(size)
        groups.setdefault(key, []).append(i)
    return [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]


class _Items(Dataset):
    def __init__(self, items: Sequence, load: Callable):
        self.items = list(items)
        self.load = load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return i, self.load(self.items[i])


def _collate(samples: list) -> tuple[list[int], object]:
    """(positions, loaded) with tensors stacked along a new batch dimension; dicts per key."""
    positions = [i for i, _ in samples]
    loaded = [x for _, x in samples]
    return positions, _stack(loaded)


def _stack(values: list):
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, dict):
        return {k: _stack([v[k] for v in values]) for k in first}
    if first is None:
        return None
    return values


def _worker_init(_: int) -> None:
    # Each worker is one of several busy processes: one thread each avoids oversubscription.
    torch.set_num_threads(1)


def batches(
    items: Sequence, load: Callable, *, sizes: Sequence | None = None, batch_size: int = 1,
    workers: int | None = None,
) -> Iterator[tuple[list[int], object]]:
    """Yield ``(positions, batch)``: ``load(items[i])`` for the positions, stacked.

    ``load`` returns a (3, H, W) tensor, or a dict of tensors (and None values); it runs in
    ``workers`` processes (0: in this process; default :func:`default_workers`). ``sizes``
    (one (H, W) per item, as :func:`dotrestore.data.validate_images` returns them) allows
    batching; without it every image goes alone. Every item is yielded exactly once.
    """
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if not items:
        return
    plan = size_batches(list(sizes) if sizes is not None else [None] * len(items), batch_size)
    workers = min(workers, len(plan))
    extra = {}
    if workers > 0:
        extra = dict(worker_init_fn=_worker_init, persistent_workers=False, prefetch_factor=2)
        if sys.platform.startswith("linux"):
            extra["multiprocessing_context"] = "fork"  # closures (user restorers) need no pickling
    loader = DataLoader(_Items(items, load), batch_sampler=plan, num_workers=workers, collate_fn=_collate, **extra)
    yield from loader


class ImageWriter:
    """Write images as PNG on background threads; errors surface in the caller.

    ``submit(image, path)`` queues a (3, H, W) tensor in [0, 1] (moved to the CPU here);
    at most ``max_pending`` writes are queued, so memory stays bounded. The first failed
    write is raised by the next :meth:`submit` or by :meth:`close` (and the ``with`` block).
    """

    def __init__(self, threads: int = 2, max_pending: int = 16):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dotrestore-writer")
        self._pending: list[Future] = []
        self._slots = threading.BoundedSemaphore(max_pending)
        self.written: list[Path] = []

    def submit(self, image: torch.Tensor, path: str | Path) -> None:
        self._raise_failed()
        self._slots.acquire()
        future = self._pool.submit(data.save_image, image.detach().cpu(), path)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    def _raise_failed(self, wait: bool = False) -> None:
        still = []
        for future in self._pending:
            if wait or future.done():
                self.written.append(future.result())  # raises the write's error
            else:
                still.append(future)
        self._pending = still

    def close(self) -> None:
        """Wait for every queued write; raise the first error."""
        try:
            self._raise_failed(wait=True)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ImageWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: finish quietly, the original error wins
            self._pool.shutdown(wait=True, cancel_futures=True)


def latent_moments(dot, items: Sequence, load: Callable = data.read_image, *, sizes: Sequence | None = None,
                   batch_size: int = 1, workers: int | None = None, progress=None, name: Callable | None = None):
    """(Moments of ``dot.encode``'s latent patches over ``items``, number of images).

    What :meth:`DOT.partial_fit` accumulates, streamed through the loader: images are read in
    the workers and dropped once encoded. ``progress`` is an optional tqdm-like bar to advance.
    An image without one complete latent patch is an ImageTooSmallError naming ``name(item)``
    (default: the item itself, a path). Returns ``(None, 0)`` for no items.
    """
    from ..errors import ImageTooSmallError, InputError
    from ..ot.gaussian import Moments
    from ..ot.patches import extract_patches

    name = name or (lambda item: item)
    moments, count = None, 0
    for positions, batch in batches(items, load, sizes=sizes, batch_size=batch_size, workers=workers):
        if not torch.isfinite(batch).all():
            bad = next(k for k, image in zip(positions, batch) if not torch.isfinite(image).all())
            raise InputError(name(items[bad]), "image contains NaN or infinite values")
        # one codec call per loader batch (same-size images), whatever dot.batch_size is
        for k, z in zip(positions, dot._encode_one(batch.float())[:, None]):
            patches = extract_patches(z, dot.patch_size)
            if patches.shape[0] == 0:
                p = dot.patch_size
                raise ImageTooSmallError(name(items[k]), f"image is {batch.shape[-2]}x{batch.shape[-1]} pixels, too "
                                         f"small for one {p}x{p} latent patch (its latent is {z.shape[-2]}x{z.shape[-1]})")
            moments = (Moments(dot.dim_) if moments is None else moments).update(patches)
        count += len(positions)
        if progress is not None:
            progress.update(len(positions))
    return moments, count
