"""Copying streams without re-encoding: the input's audio and subtitles into an output, and
segment files written by several processes joined into one clip.

Packets are copied byte for byte with their time stamps (rescaled to the output stream's
time base), interleaved with the video by time, so sound stays in sync and unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ...errors import InputError
from ..files import commit, staged_as, temporary_path
from .probe import PathLike, VideoInfo, import_av, open_input, probe

#: Extension -> (FFmpeg muxer, default video encoder).
OUTPUT_FORMATS = {
    ".mkv": ("matroska", "ffv1"),
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
}

# Tags that describe a file's making or layout, which the new file gets from its own muxer.
_TECHNICAL_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration",
                   "number_of_frames", "number_of_bytes", "_statistics_tags", "_statistics_writing_app",
                   "_statistics_writing_date_utc", "bps", "rotate"}


def output_format(path: PathLike) -> tuple[str, str]:
    """(muxer, default video codec) for an output path, from its extension; InputError otherwise."""
    path = Path(path)
    try:
        return OUTPUT_FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputError(path, f"cannot be written: video outputs are {', '.join(sorted(OUTPUT_FORMATS))} "
                         "(.mkv: lossless FFV1; .mp4: H.264)") from None


def copy_tags(source: dict, target: dict) -> None:
    """Descriptive tags (title, language, creation time, ...) from ``source`` into ``target``."""
    for key, value in source.items():
        if key.lower() not in _TECHNICAL_TAGS and not key.upper().startswith("_STATISTICS"):
            target[key] = value


def open_output(av, path: Path, fmt: str):
    try:
        return av.open(str(path), "w", format=fmt)
    except (av.FFmpegError, OSError) as exc:
        raise InputError(path, f"cannot be written: {exc.strerror or exc}") from exc


# Text subtitle codecs, and the one each container stores text subtitles in.
TEXT_SUBTITLES = frozenset({"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"})
_TEXT_SUBTITLE_CODEC = {"matroska": "subrip", "webm": "webvtt", "mp4": "mov_text", "mov": "mov_text"}


class StreamCopier:
    """Copies a clip's audio and subtitle streams, packets unchanged, into an output container.

    Streams are added at construction (before the header is written); :meth:`until` muxes the
    packets due before a time (call it before each video packet, so the file interleaves and
    memory holds one packet). Text subtitles in a codec the output's container cannot hold
    (MP4's mov_text in Matroska, SubRip in MP4) are converted, text and timing kept; any other
    stream the container refuses is an InputError naming ``out_path``.
    """

    def __init__(self, av, info: VideoInfo, output, out_path: Path):
        self.av, self.path = av, info.path
        self.input = open_input(av, info.path)
        self.streams, self.converted = {}, set()
        try:
            refused = [f"{s.type} stream {s.index} ({s.codec_context.name})" for s in self.input.streams
                       if s.type in ("audio", "subtitle") and s.codec_context is not None
                       and not self._add(output, s)]
        except BaseException:
            self.close()
            raise
        if refused:
            self.close()
            raise InputError(out_path, f"cannot hold the {' and '.join(refused)} of {info.path}: choose an "
                             "output extension whose container can (.mkv holds most)")
        # Data streams (timecode, telemetry) and attachments are not copied.
        self._packets = self.input.demux(*[self.input.streams[i] for i in self.streams]) if self.streams else iter(())
        self._pending = None

    def _add(self, output, stream) -> bool:
        """Add the output stream that copies ``stream``; False when the container refuses it."""
        try:
            copy = output.add_stream_from_template(stream)
        except ValueError:
            copy = self._text_subtitles(output, stream)
            if copy is None:
                return False
        copy_tags(stream.metadata, copy.metadata)
        copy.disposition = stream.disposition
        self.streams[stream.index] = copy
        return True

    def _text_subtitles(self, output, stream):
        """A subtitle stream of the container's own text codec for ``stream``, or None."""
        target = _TEXT_SUBTITLE_CODEC.get(output.format.name)
        if stream.type != "subtitle" or stream.codec_context.name not in TEXT_SUBTITLES or target is None:
            return None
        decoder = stream.codec_context
        if not decoder.is_open:
            decoder.open()  # its ASS header (styles) is what the text encoders start from
        copy = output.add_stream(target)
        copy.time_base = stream.time_base
        copy.codec_context.subtitle_header = decoder.subtitle_header
        self.converted.add(stream.index)
        return copy

    def _convert(self, packet):
        """The packet's subtitle text re-encoded in the output stream's codec (None if empty)."""
        subtitles = packet.stream.codec_context.decode2(packet)
        if subtitles is None or not len(subtitles):
            return None  # MP4 fills gaps between subtitles with empty samples
        converted = self.streams[packet.stream_index].codec_context.encode_subtitle(subtitles)
        converted.pts, converted.dts, converted.duration = packet.pts, packet.dts, packet.duration
        converted.time_base = packet.time_base
        return converted

    def _next(self):
        if self._pending is None:
            try:
                for packet in self._packets:
                    if packet.size:  # demux ends with empty flush packets
                        self._pending = packet
                        break
            except self.av.FFmpegError as exc:
                raise InputError(self.path, f"its sound or subtitles cannot be read: {exc.strerror or exc}") from exc
        return self._pending

    def until(self, output, seconds: float | None) -> None:
        """Mux the packets that start before ``seconds`` (all of them when None)."""
        while (packet := self._next()) is not None:
            stamp = packet.dts if packet.dts is not None else packet.pts
            if seconds is not None and stamp is not None and stamp * packet.time_base > seconds:
                return
            self._pending = None
            target = self.streams[packet.stream_index]
            if packet.stream_index in self.converted:
                packet = self._convert(packet)
                if packet is None:
                    continue
            packet.stream = target
            output.mux(packet)

    def close(self) -> None:
        self.input.close()


def close_quietly(output, copier=None) -> None:
    """Close after a failure: the file is discarded, so a second error must not hide the first."""
    for thing in (copier, output):
        if thing is not None:
            try:
                thing.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass


def _segment_stream(av, path: Path):
    container = open_input(av, path)
    return container, container.streams.video[0]


def _check_same_codec(first, stream, path: Path) -> None:
    a, b = first.codec_context, stream.codec_context
    same = (a.name, a.width, a.height, a.pix_fmt, bytes(a.extradata or b"")) == \
           (b.name, b.width, b.height, b.pix_fmt, bytes(b.extradata or b""))
    if not same:
        raise InputError(path, f"is not encoded like the first segment ({b.name} {b.width}x{b.height} "
                         f"{b.pix_fmt} vs {a.name} {a.width}x{a.height} {a.pix_fmt}, or other codec settings)")


def _mux_segments(av, output, video, segment_paths, copier) -> None:
    last_dts = None
    for path in segment_paths:
        container, stream = _segment_stream(av, path)
        with container:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.dts is not None:
                    dts = packet.dts * packet.time_base  # segments share a time base; seconds compare anyway
                    if last_dts is not None and dts <= last_dts:
                        # each segment's encoder started its own decode clock (B-frame delay)
                        packet.dts = int(last_dts / packet.time_base) + 1
                        dts = packet.dts * packet.time_base
                    last_dts = dts
                if copier is not None:
                    stamp = packet.dts if packet.dts is not None else packet.pts
                    copier.until(output, None if stamp is None else float(stamp * packet.time_base))
                packet.stream = video
                output.mux(packet)


def concat_segments(segment_paths: Sequence[PathLike], out_path: PathLike,
                    audio_from: PathLike | VideoInfo | None = None) -> Path:
    """Join segment files (contiguous frame ranges of one clip, in order, written by
    :class:`~dotrestore.io.video.write.VideoWriter` with ``copy_streams=False`` and the same
    codec settings) into ``out_path`` by stream copy: no re-encoding, time stamps kept.

    Audio and subtitles are copied from ``audio_from`` (the original clip), so the result
    equals a one-process write frame for frame (exactly, with a lossless codec). The output is
    written to a temporary file beside ``out_path`` and moved into place only when complete;
    errors name ``out_path``, never the temporary file.
    """
    av = import_av(out_path)
    out_path = Path(out_path)
    segment_paths = [Path(p) for p in segment_paths]
    if not segment_paths:
        raise ValueError("concat_segments needs at least one segment")
    fmt, _ = output_format(out_path)
    source = probe(audio_from, max_pixels=None) if isinstance(audio_from, (str, os.PathLike)) else audio_from
    tmp = temporary_path(out_path)
    try:
        with staged_as({tmp: out_path}):
            _concat_into(av, tmp, fmt, segment_paths, out_path, source)
        return commit(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


def _concat_into(av, tmp: Path, fmt: str, segment_paths: list[Path], out_path: Path, source: VideoInfo | None) -> None:
    """Write the joined clip into ``tmp`` (a complete file, or an error)."""
    output = open_output(av, tmp, fmt)
    copier = None
    try:
        first, template = _segment_stream(av, segment_paths[0])
        with first:
            for path in segment_paths[1:]:
                other, stream = _segment_stream(av, path)
                with other:
                    _check_same_codec(template, stream, path)
            video = output.add_stream_from_template(template, opaque=True)
            copy_tags(template.metadata, video.metadata)
        if source is not None:
            if source.display_matrix is not None:
                video.set_display_matrix(list(source.display_matrix))
            copy_tags(source.metadata, output.metadata)
            copier = StreamCopier(av, source, output, out_path)
        output.start_encoding()  # the muxer fixes its time bases now (Matroska: 1/1000)
        _mux_segments(av, output, video, segment_paths, copier)
        if copier is not None:
            copier.until(output, None)
    except BaseException:
        close_quietly(output, copier)
        raise
    if copier is not None:
        copier.close()
    output.close()  # the trailer: a full disk may fail it here
