"""Whether a clip can be written as asked, decided before any frame is transported.

:func:`check_writable` sets up the output exactly as :class:`~.video_write.VideoWriter` would (the
muxer, the encoder with its options and pixel format, the copied sound and subtitle streams,
the header), but into memory, and turns every refusal into an
:class:`~dotrestore.errors.InputError` naming the output as the user gave it: an encoder a
container cannot hold (``.webm`` + libx264, ``.mkv`` + gif), an encoder this machine cannot
open (``h264_nvenc`` without its GPU), a sound or subtitle stream the container cannot hold
(Opus in ``.mov``, ASS in ``.mp4``), time stamps the container cannot store (two frames at the
same time in ``.mp4``). Minutes of work must not end in one of these.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ...errors import InputError
from .probe import PathLike, VideoInfo, import_av
from .remux import StreamCopier, close_quietly, output_format
from .write import VideoWriter, encoding

#: Muxers that need strictly increasing time stamps (one frame per instant).
_DISTINCT_TIMES = frozenset({"mp4", "mov", "webm"})


class _InMemory(VideoWriter):
    """VideoWriter's set-up, into a buffer: the same streams and header, no file, no frame."""

    def __init__(self, path: Path, info: VideoInfo, codec: str | None, crf: int | None, copy_streams: bool):
        av = import_av(path)
        self.path, self.info, self.start = path, info, 0
        self.width, self.height = info.width, info.height
        fmt, encoder, options, self.pixel_format = encoding(path, info, codec, crf)
        self._output, self._copier = av.open(io.BytesIO(), "w", format=fmt), None
        try:
            self._stream = self._add_video(encoder, options)
            if copy_streams:
                self._copier = StreamCopier(av, info, self._output, path)
            self._output.start_encoding()
        finally:
            close_quietly(self._output, self._copier)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def check_writable(path: PathLike, info: VideoInfo, codec: str | None = None, crf: int | None = None) -> None:
    """InputError naming ``path`` unless ``info``'s frames, sound and subtitles can be written there
    (``codec``, ``crf`` as for :class:`~.video_write.VideoWriter`). Creates nothing on disk."""
    av, path = import_av(path), Path(path)
    fmt, default = output_format(path)
    name = codec or default
    if fmt in _DISTINCT_TIMES and len(np.unique(info.pts)) < len(info.pts):
        shared = len(info.pts) - len(np.unique(info.pts))
        raise InputError(path, f"a {fmt} file needs one frame per time stamp, and {shared} frame(s) of {info.path} "
                         "share a time stamp with another: write .mkv instead")
    try:
        _InMemory(path, info, codec, crf, copy_streams=False)
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InputError(path, f"cannot be written with the {name} encoder ({_reason(exc)}): choose another "
                         "--video-codec, or an extension whose container holds it (.mkv: FFV1, .mp4: H.264, "
                         ".webm: VP9)") from None
    others = [s for s in info.other_streams if s.type in ("audio", "subtitle")]
    if not others:
        return
    try:
        _InMemory(path, info, codec, crf, copy_streams=True)
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        streams = " and ".join(f"{s.type} stream {s.index} ({s.codec})" for s in others)
        raise InputError(path, f"cannot hold the {streams} of {info.path} ({_reason(exc)}): choose an output "
                         "extension whose container can (.mkv holds most)") from None


__all__ = ["check_writable"]
