"""One streaming data pipeline for fitting, applying and experiments.

A :class:`torch.utils.data.DataLoader` runs a per-item function (read, convert, degrade,
restore: CPU work) in ``workers`` background processes while the main process runs the codec
and the transport on the device. Items whose images have the same size are batched
(``batch_size``), others go one at a time, so encode → transport → decode run in batches.
:class:`ImageWriter` writes PNGs on a small thread pool so the device never waits for zlib.

Only a bounded number of items is in flight (``prefetch_factor`` per worker, the writer's
queue), so memory does not grow with the number of images. Any error raised while loading an
item reaches the main process as the same exception object, so a message reads the same with
and without workers (``--workers 0``).

:func:`image_batches` turns everything :class:`~dotrestore.DOT` accepts as images (tensors,
lists of tensors or paths, folders, or an iterable of batches such as a DataLoader) into one
stream of :class:`Batch`.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..checks import check_images, check_values
from ..errors import InputError
from ..io import images as image_files
from . import parallel


@dataclass
class Batch:
    """Items loaded together: their positions in the list given, the data, and their names.

    ``data`` is a (B, 3, H, W) tensor, or a dict of such tensors (None values allowed);
    ``names[j]`` is what an error about item j names (its file).
    """

    positions: list[int]
    data: torch.Tensor | dict
    names: list[str]

    @property
    def images(self) -> torch.Tensor:
        return self.data

    def __len__(self) -> int:
        return len(self.positions)


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


class _Failed:
    """An error raised while loading an item, carried to the main process as data.

    torch would re-create a worker's exception from its message alone (``type(message)``), which
    loses the file an :class:`~dotrestore.errors.InputError` names and turns every error into a
    multi-line "Caught ... in DataLoader worker process" text. The exception object itself
    travels instead (every dotrestore error pickles with its subject), with the worker's
    traceback as text for ``--debug``; an exception that does not survive pickling becomes a
    RuntimeError naming its type and message.
    """

    def __init__(self, error: BaseException):
        self.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 (any failure to travel)
            error = RuntimeError(f"{type(error).__name__}: {error}")
        self.error = error

    def __reduce__(self):
        return _rebuilt, (self.error, self.traceback)

    def raise_it(self):
        raise self.error from _WorkerTraceback(self.traceback)


def _rebuilt(error: BaseException, text: str) -> _Failed:
    failed = _Failed.__new__(_Failed)
    failed.error, failed.traceback = error, text
    return failed


class _WorkerTraceback(Exception):
    """The traceback of an error raised in a loading worker (shown by ``--debug`` as its cause)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


class _Items(Dataset):
    def __init__(self, items: Sequence, load: Callable):
        self.items = list(items)
        self.load = load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            return i, self.load(self.items[i])
        except Exception as exc:  # noqa: BLE001 (every error reaches the main process as itself)
            return i, _Failed(exc)


def _collate(samples: list) -> tuple[list[int], object]:
    """(positions, loaded) with tensors stacked along a new batch dimension; dicts per key."""
    failed = next((x for _, x in samples if isinstance(x, _Failed)), None)
    if failed is not None:
        return [i for i, _ in samples], failed
    return [i for i, _ in samples], _stack([x for _, x in samples])


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
    sys.excepthook = _quiet_when_main_is_gone  # multiprocessing's fd-sharing thread reports through it


def _quiet_when_main_is_gone(exc_type, exc, tb) -> None:
    """A worker's helper thread (the one handing tensors over) that loses its connection means the
    main process stopped (Ctrl-C, SIGTERM): the main process reports that, not a traceback here."""
    if issubclass(exc_type, (ConnectionError, EOFError)):
        return
    sys.__excepthook__(exc_type, exc, tb)


def batches(items: Sequence, load: Callable, *, sizes: Sequence | None = None, batch_size: int = 1,
            workers: int | None = None, name: Callable[[object], str] = str) -> Iterator[Batch]:
    """Yield :class:`Batch` es of ``load(items[i])``, every item exactly once.

    ``load`` returns a (3, H, W) tensor, or a dict of tensors (and None values); it runs in
    ``workers`` processes (0: in this process; default :func:`default_workers`). ``sizes``
    (one (H, W) per item, as :func:`dotrestore.io.images.validate_images` returns them) allows
    batching; without it every image goes alone. ``name(item)`` is what errors name.
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
    for positions, loaded in loader:
        if isinstance(loaded, _Failed):
            loaded.raise_it()
        yield Batch(positions, loaded, [name(items[i]) for i in positions])


# ---------------------------------------------------------------------- what DOT accepts
def image_batches(images, what: str, runtime, *, shard: bool = False,
                  allow_empty: bool = False) -> tuple[Iterator[Batch], str, int | None]:
    """(stream of Batch, input kind, number of images or None) for anything DOT accepts as images.

    Kinds: ``"single"`` a (3, H, W) tensor; ``"batch"`` a (B, 3, H, W) tensor (split into
    ``runtime.batch_size`` chunks); ``"list"`` a list of (3, H, W) tensors, or image files and
    folders (validated up front, read one batch at a time by the loader's workers), or
    :class:`~dotrestore.io.images.ImageFile` records checked already (:func:`checked_share`:
    taken as this process's share, as tensors are); ``"stream"``
    an iterable of :class:`Batch` or of (B, 3, H, W) tensors, such as a DataLoader.
    With ``shard`` (fitting under torchrun), this process takes its share of files and folders:
    files r, r + W, ...; tensors and streams are taken as this process's share already.
    Every tensor passes :func:`~dotrestore.checks.check_images` (dense, real floating point, at
    least 1×1 pixels, finite, in [0, 1]); errors name the file (or ``what`` and the position).
    ``allow_empty`` accepts a (0, 3, H, W) batch (an empty stream).
    """
    if isinstance(images, torch.Tensor):
        images = check_images(images, what, allow_empty=allow_empty, values=False)
        if images.ndim == 3:
            return _checked(_chunks(images[None], 1, what), what), "single", 1
        return _checked(_chunks(images, runtime.batch_size, what), what), "batch", images.shape[0]
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, (list, tuple)):
        return _listed(list(images), what, runtime, shard)
    if isinstance(images, Iterable):
        return _checked(_streamed(images, what), what), "stream", None
    raise InputError(what, f"expected tensors, image paths or an iterable of batches, got {type(images).__name__}")


def checked_share(paths: Sequence, max_pixels: int | None, *, shard: bool = True) -> list[image_files.ImageFile]:
    """This process's share of listed image ``paths``, each opened and decoded once into an
    :class:`~dotrestore.io.images.ImageFile` (with ``shard`` False: all of them).

    Under torchrun (``shard``) rank r checks only files r, r + W, ...; the verdicts are gathered
    (:func:`~dotrestore.runtime.parallel.run_checked`, collective), so a bad file in any share
    stops every rank with the same message naming it.
    """
    mine = parallel.shard(list(paths)) if shard else list(paths)
    if not shard:
        return image_files.check_images(mine, max_pixels)
    return parallel.run_checked(image_files.check_images, mine, max_pixels)


def _listed(items: list, what: str, runtime, shard: bool):
    if not items:
        raise InputError(what, "no images given")
    if all(isinstance(i, (str, os.PathLike)) for i in items):
        paths = image_files.list_images(items, runtime.max_pixels, headers=False)
        items = checked_share(paths, runtime.max_pixels, shard=shard)
    if all(isinstance(i, image_files.ImageFile) for i in items):  # checked already: this process's share
        def read(record):
            return image_files.read_image(record.path, runtime.max_pixels)
        stream = batches(items, read, sizes=[r.size for r in items], batch_size=runtime.batch_size,
                         workers=runtime.workers, name=lambda r: str(r.path))
        return _checked(stream, what), "list", len(items)
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            raise InputError(what, f"item {i} is a path among tensors (all items must be one kind)")
        check_images(item, f"{what} [{i}]", ndims=(3,), values=False)
    plan = size_batches([tuple(x.shape[-2:]) for x in items], runtime.batch_size)
    stream = (Batch(group, torch.stack([items[i] for i in group]).float(), [f"{what} [{i}]" for i in group])
              for group in plan)
    return _checked(stream, what), "list", len(items)


def _chunks(images: torch.Tensor, size: int, what: str) -> Iterator[Batch]:
    for start in range(0, images.shape[0], size):
        positions = list(range(start, min(start + size, images.shape[0])))
        yield Batch(positions, images[start:start + size].float(), [f"{what} [{i}]" for i in positions])


def _streamed(stream: Iterable, what: str) -> Iterator[Batch]:
    seen = 0
    for item in stream:
        if isinstance(item, Batch):
            check_images(item.images, f"{what} (batch at image {seen})", ndims=(4,), allow_empty=True, values=False)
            yield item
            seen += len(item)
            continue
        if not isinstance(item, torch.Tensor):
            raise InputError(what, f"a stream must yield Batch objects or (B, 3, H, W) tensors, got "
                             f"{type(item).__name__}")
        item = check_images(item, f"{what} (batch at image {seen})", allow_empty=True, values=False)
        item = item if item.ndim == 4 else item[None]
        positions = list(range(seen, seen + item.shape[0]))
        seen += item.shape[0]
        if positions:
            yield Batch(positions, item.float(), [f"{what} [{i}]" for i in positions])


def _checked(stream: Iterator[Batch], what: str) -> Iterator[Batch]:
    """Each batch finite and in [0, 1] (clamped within the tolerance); the error names the image."""
    for batch in stream:
        try:
            images = check_values(batch.images, what)
        except InputError:
            for j in range(len(batch)):
                check_values(batch.images[j], batch.names[j])
            raise
        yield batch if images is batch.images else Batch(batch.positions, images, batch.names)


# ---------------------------------------------------------------------- writing
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

    def submit(self, image: torch.Tensor, path: str | Path, write_file: Callable | None = None,
               encode: Callable | None = None) -> None:
        """Queue ``image`` for ``path``; ``write_file(path, write)`` writes it (default: atomically by path),
        ``encode(image, path)`` makes ``write`` (default: an 8-bit RGB PNG, see ``save_image``)."""
        self._raise_failed()
        self._slots.acquire()
        future = self._pool.submit(image_files.save_image, image.detach().cpu(), path, write_file, encode)
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

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: finish quietly, the original error wins
            self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["Batch", "batches", "checked_share", "image_batches", "size_batches", "default_workers", "ImageWriter"]
