"""Reading video frames as images: streamed, one frame in memory at a time.

Frames come in presentation order as float32 (3, H, W) RGB tensors in [0, 1], converted from
the stream's pixel format by FFmpeg's swscale, which honours the frame's colour range
(limited 16-235 or full) and matrix (BT.601/709/2020; untagged streams are read as BT.601, as
FFmpeg does). Streams deeper than 8 bits are read through 16-bit RGB (value / 65535), so
their precision is kept. Frames are not rotated: the display matrix travels to the output
instead (:class:`~dotrestore.io.video.write.VideoWriter`), as players apply it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from ...errors import InputError
from ..images import DEFAULT_MAX_PIXELS
from .probe import PathLike, VideoInfo, import_av, open_input, probe

#: A fit reads at most this many frames of a clip by default (see :func:`frame_step`).
DEFAULT_FIT_FRAMES = 300


class DecodedFrame(NamedTuple):
    """Frame ``index`` of the clip (0-based, presentation order), its time stamp in the stream's
    time base, and the picture as a float32 (3, H, W) RGB tensor in [0, 1]."""

    index: int
    pts: int
    frame: torch.Tensor


class FrameConverter:
    """Decoded frames (any pixel format) to float32 RGB tensors; one swscale context reused."""

    def __init__(self, bit_depth: int = 8):
        from av.video.reformatter import Interpolation, VideoReformatter

        self.high = bit_depth > 8
        self.format = "rgb48le" if self.high else "rgb24"
        self.scale = 65535 if self.high else 255
        self._reformatter = VideoReformatter()
        # swscale's default 4:2:0 -> RGB path is fast but darkens by ~1.3 levels on average;
        # accurate rounding with full chroma interpolation is unbiased (+-0.3), ~25 ms at 1080p.
        self._flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT

    def __call__(self, frame) -> torch.Tensor:
        # The frame's own colour range and matrix drive the conversion (PyAV >= 17 passes its tags).
        rgb = self._reformatter.reformat(frame, format=self.format, interpolation=self._flags)
        array = rgb.to_ndarray()  # (H, W, 3) uint8 / uint16
        # numpy, one pass, one thread: the same float32 values as reading a PNG (value / 255), and
        # no torch thread pool to fight over with a codec running beside the reader.
        planar = np.empty((3, *array.shape[:2]), dtype=np.float32)
        np.divide(array.transpose(2, 0, 1), np.float32(self.scale), out=planar)
        return torch.from_numpy(planar)


def _as_info(video: PathLike | VideoInfo, max_pixels) -> VideoInfo:
    return video if isinstance(video, VideoInfo) else probe(video, max_pixels)


def _check_range(info: VideoInfo, start: int, stop: int | None, step: int) -> tuple[int, int]:
    count = info.frame_count
    stop = count if stop is None else stop
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop <= count):
        raise ValueError(f"frame range [{start}, {stop}) is not within the {count} frames of {info.path}")
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive integer, got {step!r}")
    return start, stop


def _unique_pts(info: VideoInfo) -> bool:
    return len(np.unique(info.pts)) == len(info.pts)


def _indexed(container, stream, info: VideoInfo, seek: int | None) -> Iterator[tuple[int, object]]:
    """(index, frame) decoded from ``seek`` (None: from the start). The index comes from matching
    the frame's time stamp to the probe's list, or from counting when time stamps are unusable
    (then decoding must start at the beginning)."""
    if seek is not None:
        container.seek(seek, stream=stream, backward=True, any_frame=False)
    by_pts = _unique_pts(info)
    for count, frame in enumerate(container.decode(stream)):
        if frame.pts is None or not by_pts:
            if seek is not None:
                raise InputError(info.path, "has frames without time stamps: it cannot be read in ranges")
            yield count, frame
            continue
        index = int(np.searchsorted(info.pts, frame.pts))
        if index >= len(info.pts) or info.pts[index] != frame.pts:
            raise InputError(info.path, f"decoded a frame at pts {frame.pts} that its packets do not list "
                             "(damaged or inconsistent time stamps)")
        yield index, frame


def _positioned(container, stream, info: VideoInfo, start: int) -> Iterator[tuple[int, object]]:
    """Decoded (index, frame) starting at or before frame ``start``: after a seek to the keyframe
    before it when time stamps allow, else (or when the seek lands late) from the beginning."""
    if start == 0 or not _unique_pts(info):
        return _indexed(container, stream, info, None)
    frames = _indexed(container, stream, info, int(info.pts[start]))
    first = next(frames, None)
    if first is not None and first[0] <= start:
        return itertools.chain([first], frames)
    container.seek(int(info.pts[0]), stream=stream, backward=True)
    return _indexed(container, stream, info, None)


def _frames(info: VideoInfo, start: int, stop: int, step: int, threads: int) -> Iterator[tuple[int, object]]:
    """Decoded (index, av frame) for index in range(start, stop, step), in order."""
    av = import_av(info.path)
    expected = start
    with open_input(av, info.path) as container:
        stream = container.streams[info.stream_index]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        try:
            for index, frame in _positioned(container, stream, info, start):
                if index < expected:
                    continue  # frames between the keyframe and the range, or between samples
                if index > expected:
                    raise InputError(info.path, f"frame {expected} could not be decoded (damaged file)")
                _check_frame_size(info, index, frame)
                yield index, frame
                expected += step
                if expected >= stop:
                    return
        except av.FFmpegError as exc:
            raise InputError(info.path, f"cannot be decoded at frame {expected}: {exc.strerror or exc}") from exc
    raise InputError(info.path, f"only {min(expected, stop)} of its {info.frame_count} frames could be decoded "
                     "(damaged or truncated file)")


def _check_frame_size(info: VideoInfo, index: int, frame) -> None:
    """Every frame has the probed size, so the limits checked on the first (``--max-pixels``) hold
    for what is decoded, and a batch of frames stacks: a size change mid-stream is refused."""
    if (frame.width, frame.height) != (info.width, info.height):
        raise InputError(info.path, f"changes its frame size mid-stream: frame {index} is {frame.width}x"
                         f"{frame.height}, frame 0 is {info.width}x{info.height} (every frame must have "
                         "one size; re-encode it at one size, e.g. ffmpeg -vf scale=W:H)")


def read_frames(video: PathLike | VideoInfo, start: int = 0, stop: int | None = None, *, step: int = 1,
                max_pixels: int | None = DEFAULT_MAX_PIXELS, threads: int = 0) -> Iterator[DecodedFrame]:
    """Frames ``start, start + step, ... < stop`` of a clip, in presentation order.

    ``video`` is a path (probed first, with ``max_pixels``) or a :class:`VideoInfo` from
    :func:`probe`. A range that does not start at frame 0 seeks to the keyframe before it and
    decodes forward, so contiguous ranges [a, b), [b, c) read by several processes give
    exactly the frames of one full read. Memory holds one decoded frame (plus the decoder's
    reference frames). ``threads``: decoder threads, 0 = FFmpeg's choice.
    """
    info = _as_info(video, max_pixels)
    start, stop = _check_range(info, start, stop, step)
    if start == stop:
        return
    convert = FrameConverter(info.bit_depth)
    for index, frame in _frames(info, start, stop, step, threads):
        pts = frame.pts if frame.pts is not None else int(info.pts[index])
        yield DecodedFrame(index, int(pts), convert(frame))


def frame_step(frame_count: int, max_frames: int = DEFAULT_FIT_FRAMES) -> int:
    """Smallest step that samples at most ``max_frames`` of ``frame_count`` frames: ceil(n / max)."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    return max(1, -(-frame_count // max_frames))


def sample_frames(video: PathLike | VideoInfo, max_frames: int = DEFAULT_FIT_FRAMES, *,
                  step: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[DecodedFrame]:
    """Every ``step``-th frame for fitting statistics (default :func:`frame_step`: at most
    ``max_frames`` frames, spread evenly over the clip). Only the sampled frames are converted."""
    info = _as_info(video, max_pixels)
    step = frame_step(info.frame_count, max_frames) if step is None else step
    return read_frames(info, step=step)


def segment_ranges(frame_count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous [start, stop) ranges covering ``frame_count`` frames, sizes within one
    of each other; part ``r`` is for process rank ``r``. With more parts than frames some ranges
    are empty: such a rank writes no segment, and it is left out of ``concat_segments``."""
    if parts < 1:
        raise ValueError(f"parts must be a positive integer, got {parts!r}")
    bounds = [frame_count * r // parts for r in range(parts + 1)]
    return list(itertools.pairwise(bounds))
