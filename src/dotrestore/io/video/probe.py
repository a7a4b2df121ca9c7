"""What a video file holds, read before any frame is decoded into an image.

:func:`probe` opens a clip with PyAV (FFmpeg), checks it (a decodable video stream, frames no
larger than ``max_pixels``, not truncated) and describes it in a :class:`VideoInfo`: the exact
presentation time stamp of every frame (from a scan of the packets, which reads the file but
decodes only one frame), frame rate, time base, rotation, colour tags and the other streams.
Every problem is an :class:`~dotrestore.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..images import DEFAULT_MAX_PIXELS, check_max_pixels

PathLike = str | os.PathLike

#: Extensions read as videos (lower case, with the dot); everything FFmpeg demuxes well.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".ogv", ".mxf", ".vob",
})

INSTALL_HINT = 'video files need PyAV: pip install "dotrestore[video]"'

# AVColorSpace values (libavutil/pixfmt.h): the matrix a YUV stream was made with.
COLORSPACE_NAMES = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
                    7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}
COLOR_RANGE_NAMES = {0: "unspecified", 1: "tv", 2: "pc"}  # tv: limited 16-235, pc: full 0-255


def is_video(path: PathLike) -> bool:
    """True when ``path`` has a video extension (:data:`VIDEO_EXTENSIONS`); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def import_av(path: PathLike | None = None):
    """The ``av`` module, or an InputError naming ``path`` that says how to install it."""
    try:
        import av
    except ImportError as exc:
        raise InputError(path, INSTALL_HINT) from exc
    # PyAV's default discards FFmpeg's log without taking the GIL. Do not call av.logging.set_level:
    # it routes the log through Python, and a decoder thread logging while the main thread holds
    # the GIL (closing a frame-threaded decoder mid-clip) deadlocks.
    return av


@dataclass(frozen=True)
class StreamInfo:
    """A stream beside the video (audio, subtitles, data): copied to outputs when it can be."""

    index: int
    type: str
    codec: str | None
    language: str | None = None


@dataclass(frozen=True, eq=False)
class VideoInfo:
    """A clip's video stream as :func:`probe` found it.

    ``pts`` holds every frame's presentation time stamp in ``time_base`` units, increasing
    (frame ``i`` is shown at ``pts[i] * time_base`` seconds); ``durations`` how long each frame
    is shown. ``keyframe_pts`` are the frames a decoder can start from. ``display_matrix`` is
    FFmpeg's 3x3 display matrix (rotation and flips a player applies); ``rotation`` its angle,
    counter-clockwise degrees. Colour tags are FFmpeg's enum values (AVColorRange,
    AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic).
    """

    path: Path
    stream_index: int
    codec: str
    width: int
    height: int
    pixel_format: str
    bit_depth: int
    frame_rate: Fraction
    time_base: Fraction
    pts: np.ndarray
    durations: np.ndarray
    keyframe_pts: np.ndarray
    rotation: int = 0
    display_matrix: tuple[int, ...] | None = None
    color_range: int = 0
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2
    other_streams: tuple[StreamInfo, ...] = ()
    metadata: dict = field(default_factory=dict)
    stream_metadata: dict = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end."""
        return float((int(self.pts[-1]) + int(self.durations[-1]) - int(self.pts[0])) * self.time_base)

    @property
    def variable_frame_rate(self) -> bool:
        return bool(len(self.durations) > 1 and np.ptp(self.durations[:-1]) > 0)

    def frame_time(self, index: int) -> float:
        """When frame ``index`` is shown, in seconds."""
        return float(int(self.pts[index]) * self.time_base)

    def describe(self) -> str:
        """One line for people: size, frames, rate, codec, colour, rotation, other streams."""
        rate = f"{float(self.frame_rate):.3f}".rstrip("0").rstrip(".")
        text = (f"{self.width}x{self.height} {self.codec} {self.pixel_format}, {self.frame_count} frames,"
                f" {rate} fps{' (variable)' if self.variable_frame_rate else ''}, {self.duration:.3f} s,"
                f" range {COLOR_RANGE_NAMES.get(self.color_range, self.color_range)},"
                f" matrix {COLORSPACE_NAMES.get(self.colorspace, self.colorspace)}")
        if self.rotation:
            text += f", rotated {self.rotation} degrees"
        if self.other_streams:
            text += ", also " + ", ".join(f"{s.type} ({s.codec})" for s in self.other_streams)
        return text


def open_input(av, path: Path):
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_dir():
        raise InputError(path, "is a folder, not a video file")
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as exc:
        raise InputError(path, f"is not a readable video (corrupt, truncated or not a video file): "
                         f"{exc.strerror or exc}") from exc


def _video_stream(container, path: Path):
    # Cover art in MP4 / Matroska is a video stream marked attached_pic: not the clip.
    from av.stream import Disposition

    streams = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not streams:
        raise InputError(path, "has no video stream")
    stream = streams[0]
    if stream.codec_context is None:
        raise InputError(path, "its video codec has no decoder in this FFmpeg build (unsupported codec)")
    return stream


def _check_header_size(stream, path: Path, max_pixels: int | None, size: tuple[int, int] | None = None) -> None:
    """InputError unless the frames (the header's size, or ``size`` = (width, height) of a decoded
    frame) are non-empty and within ``max_pixels``."""
    width, height = size or (stream.codec_context.width, stream.codec_context.height)
    if width < 1 or height < 1:
        raise InputError(path, f"declares an empty {width}x{height} video")
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(path, f"has {width}x{height} = {width * height:,}-pixel frames, over the limit of "
                         f"{max_pixels:,} (raise it with --max-pixels / max_pixels=)")


def _scan_packets(av, container, stream, path: Path):
    """(pts, duration, keyframe) of every video packet that holds a frame, demuxed without decoding."""
    rows = []
    try:
        for packet in container.demux(stream):
            if packet.size and not packet.is_discard:
                rows.append((packet.pts, packet.duration or 0, packet.is_keyframe))
    except av.FFmpegError as exc:
        raise InputError(path, f"is corrupt or truncated after {len(rows)} frames: {exc.strerror or exc}") from exc
    return rows


def _first_frame(av, path: Path, stream_index: int):
    """Decode the first frame: proves the codec decodes, and carries rotation and colour tags."""
    with open_input(av, path) as container:
        stream = container.streams[stream_index]
        try:
            for frame in container.decode(stream):
                return frame
        except av.FFmpegError as exc:
            raise InputError(path, f"cannot be decoded ({stream.codec_context.name}): "
                             f"{exc.strerror or exc}") from exc
    raise InputError(path, "has no decodable video frame")


def _decoded_pts(av, path: Path, stream_index: int) -> list[int]:
    """Frame time stamps by decoding, for streams whose packets carry none (raw or AVI streams)."""
    pts = []
    with open_input(av, path) as container:
        stream = container.streams[stream_index]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                pts.append(frame.pts if frame.pts is not None else (pts[-1] + 1 if pts else 0))
        except av.FFmpegError as exc:
            raise InputError(path, f"is corrupt after {len(pts)} frames: {exc.strerror or exc}") from exc
    return pts


def _tag_seconds(text: str | None) -> float | None:
    """Matroska's DURATION tag ``HH:MM:SS.nnnnnnnnn`` in seconds."""
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", (text or "").strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _check_complete(stream, path: Path, pts: np.ndarray, durations: np.ndarray, time_base) -> None:
    """InputError when the header declares more frames or time than the packets hold (truncated).

    MP4 / MOV / AVI headers count the frames; Matroska's duration tag is written last, so a
    cut file still declares the whole length. Other containers (MPEG-TS, ...) only estimate
    durations and are not judged by them.
    """
    present = len(pts)
    if stream.container.format.name == "avi":
        # AVI counts ticks of its time base, dropped frames (gaps) and a 1/600 base included: a
        # complete file's last frame is at tick frames - 1 however many frames it holds.
        present = max(present, int(pts[-1]) + 1)
    if stream.frames and present < stream.frames:
        raise InputError(path, f"is truncated: its header declares {stream.frames} frames, "
                         f"only {len(pts)} are present")
    if "matroska" not in stream.container.format.name:
        return
    declared = _tag_seconds(stream.metadata.get("DURATION"))
    if declared is None:
        return
    end = float((int(pts[-1]) + int(durations[-1])) * time_base)
    start = float(int(pts[0]) * time_base)
    frame = float(np.median(durations) * time_base)
    # A complete stream ends where its header says (within rounding); half a frame of slack.
    if declared - max(end, end - start) > 0.5 * frame + 2e-3:
        raise InputError(path, f"is truncated: its header declares {declared:.3f} s of video, "
                         f"only {end - start:.3f} s ({len(pts)} frames) are present")


def _frame_rate(stream, pts: np.ndarray, time_base: Fraction) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate)
    if len(pts) > 1 and pts[-1] > pts[0]:
        return Fraction(len(pts) - 1) / (int(pts[-1] - pts[0]) * time_base)
    return Fraction(25)


def _timing(av, container, stream, path: Path):
    """Sorted pts, per-frame durations and keyframe pts of the stream."""
    rows = _scan_packets(av, container, stream, path)
    if not rows:
        raise InputError(path, "has no video frames")
    if any(pts is None for pts, _, _ in rows):
        pts = np.asarray(_decoded_pts(av, path, stream.index), dtype=np.int64)
        if len(pts) == 0:
            raise InputError(path, "has no decodable video frames")
        keyframes = pts[:1]
        last = 0
    else:
        order = sorted(range(len(rows)), key=lambda i: rows[i][0])
        pts = np.asarray([rows[i][0] for i in order], dtype=np.int64)
        keyframes = np.asarray(sorted(p for p, _, key in rows if key), dtype=np.int64)
        last = rows[order[-1]][1]
    durations = np.diff(pts, append=pts[-1])
    if len(pts) > 1:
        typical = int(np.median(durations[:-1]))
        durations[-1] = last or typical
    else:
        durations[-1] = last or max(1, round(1 / (_frame_rate(stream, pts, stream.time_base) * stream.time_base)))
    return pts, durations, keyframes


def _display_matrix(frame, stream) -> tuple[tuple[int, ...] | None, int]:
    for side in frame.side_data:
        if side.type.name == "DISPLAYMATRIX":
            matrix = tuple(int(v) for v in np.frombuffer(bytes(side), dtype=np.int32)[:9])
            return matrix, int(round(frame.rotation))
    rotate = stream.metadata.get("rotate")  # files tagged by older FFmpeg versions
    if rotate and rotate.lstrip("-").isdigit():
        angle = (-int(rotate)) % 360  # the tag is clockwise; report counter-clockwise, in (-180, 180]
        return None, angle - 360 if angle > 180 else angle
    return None, 0


def _other_streams(container, video_index: int) -> tuple[StreamInfo, ...]:
    others = []
    for s in container.streams:
        if s.index == video_index:
            continue
        codec = s.codec_context.name if s.codec_context is not None else None
        others.append(StreamInfo(s.index, s.type, codec, s.metadata.get("language")))
    return tuple(others)


def probe(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Open and check a video file; describe its video stream (see :class:`VideoInfo`).

    The frame size is checked against ``max_pixels`` from the header, before anything is
    decoded. The frame count is exact: every packet is demuxed (the file is read once, only
    the first frame is decoded). Raises InputError naming the file when it is missing,
    corrupt or truncated, has no video stream, an unsupported codec, or no frames.
    """
    path = Path(path)
    max_pixels = check_max_pixels(max_pixels)
    av = import_av(path)
    with open_input(av, path) as container:
        stream = _video_stream(container, path)
        _check_header_size(stream, path, max_pixels)
        time_base = Fraction(stream.time_base)
        pts, durations, keyframes = _timing(av, container, stream, path)
        first = _first_frame(av, path, stream.index)
        _check_header_size(stream, path, max_pixels, (first.width, first.height))  # what is decoded, not only declared
        if first.pts is not None and first.pts > pts[0]:
            # Frames before the first the decoder outputs (a clip cut inside a group of pictures,
            # open-GOP leading pictures) are never shown: they are not frames of the clip.
            keep = pts >= first.pts
            pts, durations, keyframes = pts[keep], durations[keep], keyframes[keyframes >= first.pts]
        _check_complete(stream, path, pts, durations, time_base)
        matrix, rotation = _display_matrix(first, stream)
        context = stream.codec_context
        fmt = first.format
        return VideoInfo(
            path=path, stream_index=stream.index, codec=context.name, width=first.width,
            height=first.height, pixel_format=fmt.name, bit_depth=max(c.bits for c in fmt.components),
            frame_rate=_frame_rate(stream, pts, time_base), time_base=time_base, pts=pts,
            durations=durations, keyframe_pts=keyframes, rotation=rotation, display_matrix=matrix,
            color_range=int(first.color_range or context.color_range),
            colorspace=int(first.colorspace if first.colorspace != 2 else context.colorspace),
            color_primaries=int(first.color_primaries), color_trc=int(first.color_trc),
            other_streams=_other_streams(container, stream.index),
            metadata=dict(container.metadata), stream_metadata=dict(stream.metadata))
