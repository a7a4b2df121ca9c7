"""Video frames as batches for the engine that runs images: fitting and applying read clips here.

A clip is decoded by one reader, in order (a decoder is sequential: frames depend on the ones
before them), on a background thread that stays one batch ahead of the codec, so
decoding overlaps the encode → transport → decode of the previous batch and memory holds a
bounded number of frames whatever the clip's length. Frames come as
:class:`~dotrestore.runtime.pipeline.Batch` es of consecutive frames: ``positions`` are frame
indices and ``names`` read ``clip.mp4 frame 12``, so an error names the file and the frame.

For fitting, :class:`TrainingInputs` takes a mixed list of image files, folders and video
files (a video is a file with a video extension, :func:`~dotrestore.io.video.is_video`; a
folder is always a folder of images, frames included) and :meth:`TrainingInputs.batches`
streams this process's share of them: images r, r + W, ... (as for images alone) and of each
clip's sampled frames (every ``frame_step``-th, :func:`~dotrestore.io.video.frame_step`) a
contiguous part.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..io.images import ImageFile, list_images
from ..io.video import VideoInfo, frame_step, is_video, probe, read_frames, segment_ranges
from . import parallel
from .pipeline import Batch, checked_share, image_batches

_DONE = object()


def decoder_threads() -> int:
    """FFmpeg's decoder threads: its own choice in one process; 2 when several processes share
    the machine (each would otherwise start one thread per core)."""
    return 2 if parallel.requested() else 0


def frame_name(info: VideoInfo, index: int) -> str:
    """What an error about frame ``index`` of a clip names: ``clip.mp4 frame 12``."""
    return f"{info.path} frame {index}"


def prefetched(make: Callable[[], Iterator], depth: int = 2) -> Iterator:
    """The items of ``make()``, produced on a background thread at most ``depth`` items ahead.

    An exception of the producer is raised in the consumer, at the item where it happened.
    When the consumer stops early (``break``, an error, Ctrl-C) the producer stops too and its
    iterator is closed on its own thread (a decoder is closed where it ran) before this returns.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            source = make()
            try:
                for item in source:
                    if not put((item, None)):
                        return
            finally:
                getattr(source, "close", lambda: None)()
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - carried to the consumer, raised there
            put((_DONE, exc))

    thread = threading.Thread(target=produce, name="dotrestore-frames", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def frame_batches(info: VideoInfo, start: int = 0, stop: int | None = None, *, step: int = 1, batch_size: int = 1,
                  threads: int | None = None, prefetch: int = 1) -> Iterator[Batch]:
    """Batches of at most ``batch_size`` frames ``start, start + step, ... < stop`` of a probed
    clip, in order, decoded ``prefetch`` batches ahead on a background thread."""
    threads = decoder_threads() if threads is None else threads

    def batches() -> Iterator[Batch]:
        frames = read_frames(info, start, stop, step=step, threads=threads)
        try:
            while group := list(itertools.islice(frames, batch_size)):
                yield Batch([f.index for f in group], torch.stack([f.frame for f in group]),
                            [frame_name(info, f.index) for f in group])
        finally:
            frames.close()

    return prefetched(batches, prefetch)


def probed(clips: Sequence[Path], max_pixels: int | None) -> list[VideoInfo]:
    """Each clip probed once, by rank 0 (a probe demuxes the whole file), its
    :class:`~dotrestore.io.video.VideoInfo` handed to every rank; collective under torchrun: a bad
    clip stops every rank with the same line."""
    return parallel.on_main(lambda: [probe(clip, max_pixels) for clip in clips]) if clips else []


@dataclass
class TrainingInputs:
    """Images and clips to fit statistics from (see the module's docstring); ``videos`` holds
    the clips probed, once :meth:`checked`."""

    images: list[Path] | list[ImageFile]
    clips: list[Path]
    videos: list[VideoInfo] = field(default_factory=list)

    @classmethod
    def from_paths(cls, paths: Sequence[str | os.PathLike], max_pixels: int | None) -> TrainingInputs:
        """Video files and images listed without opening them (:func:`~dotrestore.io.images.list_images`;
        :meth:`checked` opens them); InputError naming a missing file or a folder without images."""
        paths = [Path(p) for p in paths]
        clips = [p for p in paths if is_video(p) and not p.is_dir()]
        rest = [p for p in paths if p not in clips]
        return cls(list_images(rest, max_pixels, headers=False) if rest else [], list(dict.fromkeys(clips)))

    def checked(self, max_pixels: int | None) -> TrainingInputs:
        """The clips probed (readable, frames within ``max_pixels``: :func:`probed`, by rank 0 for
        all), then this process's share of the images, each opened and decoded once into an
        :class:`~dotrestore.io.images.ImageFile`. Collective under torchrun: a bad file anywhere
        stops every process with the same message."""
        videos = probed(self.clips, max_pixels)
        return TrainingInputs(checked_share(self.images, max_pixels), self.clips, videos)

    @property
    def files(self) -> list[Path]:
        """Every file read (no output may be one of them)."""
        return [getattr(i, "path", i) for i in self.images] + list(self.clips)

    def steps(self, step: int | None = None) -> list[int]:
        """The frame step of each probed clip: ``step``, or the smallest that samples at most
        :data:`~dotrestore.io.video.DEFAULT_FIT_FRAMES` of its frames."""
        return [step or frame_step(v.frame_count) for v in self.videos]

    def frame_count(self, step: int | None = None) -> int:
        """How many frames a fit reads from the clips (all processes together)."""
        return sum(len(range(0, v.frame_count, s)) for v, s in zip(self.videos, self.steps(step)))

    def batches(self, runtime, what: str, step: int | None = None) -> Iterator[Batch]:
        """This process's share of the images, then of each clip's sampled frames, in batches of
        ``runtime.batch_size``: what :meth:`DOT.partial_fit <dotrestore.DOT.partial_fit>` takes as a stream."""
        if self.images:
            yield from image_batches(self.images, what, runtime, shard=True)[0]
        for info, every in zip(self.videos, self.steps(step)):
            samples = len(range(0, info.frame_count, every))
            first, last = segment_ranges(samples, parallel.world_size())[parallel.rank()]
            if first == last:
                continue
            yield from frame_batches(info, first * every, (last - 1) * every + 1, step=every,
                                     batch_size=runtime.batch_size)

    def source(self, runtime, what: str, step: int | None = None):
        """What to give :meth:`DOT.fit <dotrestore.DOT.fit>`: the image files themselves when there is
        no clip (the image path, unchanged), else the stream of :meth:`batches`."""
        if not self.videos:
            return self.images
        return self.batches(runtime, what, step)


__all__ = ["decoder_threads", "frame_name", "prefetched", "frame_batches", "probed", "TrainingInputs"]
