"""Writing restored frames as a clip that keeps the input's timing, orientation, colour and sound.

:class:`VideoWriter` encodes frames in order with the input's own time stamps (variable frame
rate included), frame rate, display matrix (rotation) and colour tags, and copies the input's
audio and subtitle packets unchanged. The codec follows the extension: ``.mkv`` is FFV1,
lossless, stored as RGB (``bgr0``; 16-bit ``gbrp16le`` for deeper sources) so that writing
the frames just read gives back exactly the same 8-bit RGB values; ``.mp4`` / ``.mov`` /
``.m4v`` are H.264 (libx264, CRF 18, yuv420p, the input's colour range and matrix); ``.webm``
is VP9. The file is staged beside its destination and moved into place only when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ..files import commit, staged_as, temporary_path
from .probe import PathLike, VideoInfo, import_av
from .remux import StreamCopier, close_quietly, copy_tags, open_output, output_format

#: Default constant-quality setting per encoder (lower is better quality, larger files).
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 31}
CODEC_ALIASES = {"h264": "libx264", "x264": "libx264", "hevc": "libx265", "h265": "libx265",
                 "x265": "libx265", "vp9": "libvpx-vp9"}
LOSSLESS_CODECS = frozenset({"ffv1", "ffvhuff", "huffyuv", "utvideo", "png", "qtrle"})
# AVColorSpace -> swscale's SWS_CS_* matrix (only these matrices exist in swscale; 5 is BT.601).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_RGB, _FULL, _LIMITED = 0, 2, 1


def _encoder(av, name: str, path: Path):
    name = CODEC_ALIASES.get(name.lower(), name.lower())
    try:
        codec = av.codec.Codec(name, "w")
    except Exception as exc:  # noqa: BLE001 - PyAV raises several types for unknown codecs
        raise InputError(path, f"cannot be encoded with {name!r}: this FFmpeg build has no such video "
                         "encoder") from exc
    if codec.type != "video":
        raise InputError(path, f"{name!r} is not a video codec")
    return codec


def _pixel_format(codec, bit_depth: int) -> str:
    """RGB for lossless codecs (exact round trip of RGB frames), 4:2:0 YUV otherwise."""
    offered = [f.name for f in codec.video_formats or ()]
    if codec.name in LOSSLESS_CODECS:
        wanted = ["gbrp16le", "rgb48le"] if bit_depth > 8 else []
        wanted += ["bgr0", "gbrp", "rgb24", "bgra"]
    else:
        wanted = (["yuv420p10le"] if bit_depth > 8 else []) + ["yuv420p", "yuv444p"]
    return next((f for f in wanted if f in offered), offered[0] if offered else "yuv420p")


def _encoder_options(codec, crf: int | None, path: Path) -> dict[str, str]:
    if codec.name == "ffv1":
        if crf is not None:
            raise InputError(path, "crf sets lossy quality; FFV1 (.mkv) is lossless: leave it out")
        # Version 3 with slices: multithreaded, CRC-checked; gop 1: every frame a keyframe, so
        # any frame range can be read or joined without decoding its neighbours.
        return {"level": "3", "slices": "4", "slicecrc": "1", "g": "1"}
    default = DEFAULT_CRF.get(codec.name)
    if crf is None:
        crf = default
    elif default is None:
        raise InputError(path, f"crf does not apply to the {codec.name} encoder")
    if crf is None:
        return {}
    if not isinstance(crf, int) or isinstance(crf, bool) or not 0 <= crf <= 63:
        raise InputError(path, f"crf must be an integer from 0 to 63, got {crf!r}")
    options = {"crf": str(crf)}
    if codec.name == "libx265":
        options["x265-params"] = "log-level=error"  # x265 prints its settings to stderr otherwise
    if codec.name == "libvpx-vp9":
        options.update({"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"})
    return options


def encoding(path: PathLike, info: VideoInfo, codec: str | None = None, crf: int | None = None,
             size: tuple[int, int] | None = None):
    """(muxer, encoder, encoder options, pixel format) of a clip written to ``path`` from ``info``'s frames.

    Checks what :class:`VideoWriter` would refuse (the extension, an unknown or non-video
    encoder, a ``crf`` the encoder does not take or out of range, an odd frame size for 4:2:0)
    without creating anything: an InputError naming ``path``. Call it before slow work.
    """
    av, path = import_av(path), Path(path)
    width, height = size or (info.width, info.height)
    fmt, default_codec = output_format(path)
    encoder = _encoder(av, codec or default_codec, path)
    options = _encoder_options(encoder, crf, path)
    pixel_format = _pixel_format(encoder, info.bit_depth)
    if pixel_format.startswith("yuv420") and (width % 2 or height % 2):
        raise InputError(path, f"{encoder.name} in {pixel_format} needs an even width and height, "
                         f"not {width}x{height}: write .mkv (FFV1) instead")
    return fmt, encoder, options, pixel_format


class VideoWriter:
    """Encode frames into ``path`` with the timing, rotation, colour and sound of ``info``'s clip.

    ``write`` takes float (3, H, W) or (B, 3, H, W) RGB tensors in [0, 1] (clamped, rounded to
    the output's bit depth). Frame ``k`` written gets the input's time stamp and duration of
    frame ``start + k``, unless ``pts`` are given. ``size`` = (width, height), default the
    input's. ``copy_streams=False`` writes video only (segments for :func:`concat_segments`).
    Use as a context manager: leaving it normally finishes the file and moves it into place;
    an exception (or Ctrl-C) discards it, leaving nothing. ``atomic=False`` writes ``path``
    directly, for a caller that stages files itself and gives the destination as ``name``:
    errors name ``name`` (default ``path``), never a hidden staging file, even FFmpeg's own.
    """

    def __init__(self, path: PathLike, info: VideoInfo, *, codec: str | None = None, crf: int | None = None,
                 start: int = 0, size: tuple[int, int] | None = None, copy_streams: bool = True,
                 atomic: bool = True, name: PathLike | None = None):
        av = import_av(path)
        self.path, self.info, self.start = Path(path), info, start
        self.name = Path(name if name is not None else path)
        self.width, self.height = size or (info.width, info.height)
        fmt, encoder, options, self.pixel_format = encoding(self.path, info, codec, crf, size)
        self.frames_written, self._durations = 0, {}
        self._av, self._reformatter = av, av.video.reformatter.VideoReformatter()
        flags = av.video.reformatter.Interpolation  # accurate rounding: no bias through 4:2:0
        self._flags = flags.BILINEAR | flags.ACCURATE_RND | flags.FULL_CHR_H_INP
        self._output = self._copier = None
        self._finished = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_path(self.path) if atomic else self.path
        self._shown = {self._tmp: self.name}  # FFmpeg's errors name the file it writes: the hidden one
        try:
            with staged_as(self._shown):
                self._output = open_output(av, self._tmp, fmt)
                self._stream = self._add_video(encoder, options)
                copy_tags(info.metadata, self._output.metadata)
                if copy_streams:
                    self._copier = StreamCopier(av, info, self._output, self.name)
                self._output.start_encoding()  # header now: a container refusing a stream fails before any frame
        except BaseException:
            self.abort()
            raise

    def _add_video(self, encoder, options):
        info, rgb = self.info, self.pixel_format.startswith(("bgr", "gbr", "rgb"))
        stream = self._output.add_stream(encoder.name, rate=info.frame_rate, options=options)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, self.pixel_format
        context = stream.codec_context
        context.time_base = stream.time_base = info.time_base
        context.thread_type = "SLICE" if encoder.name == "ffv1" else "AUTO"
        # RGB samples are full range with no matrix; YUV keeps the input's matrix and range.
        self._colorspace = _RGB if rgb else info.colorspace
        self._range = _FULL if rgb else (info.color_range or _LIMITED)
        context.colorspace = self._colorspace
        context.color_range = _FULL if rgb else info.color_range
        context.color_primaries, context.color_trc = info.color_primaries, info.color_trc
        if info.display_matrix is not None:
            stream.set_display_matrix(list(info.display_matrix))
        for key in ("language", "title", "handler_name"):
            if key in info.stream_metadata:
                stream.metadata[key] = info.stream_metadata[key]
        return stream

    def _to_frame(self, image: torch.Tensor):
        if image.shape != (3, self.height, self.width):
            raise ValueError(f"{self.name}: frames must be (3, {self.height}, {self.width}), "
                             f"got {tuple(image.shape)}")
        planar = image.detach().to("cpu", torch.float32).numpy()
        if not np.isfinite(planar).all():
            raise ValueError(f"{self.name}: frame {self.frames_written} has non-finite values (NaN or inf)")
        high = self.info.bit_depth > 8
        # round(clamp(x, 0, 1) * 255) as save_image quantizes, in numpy (one thread, no torch pool)
        levels = np.clip(planar.transpose(1, 2, 0), 0, 1) * np.float32(65535 if high else 255)
        array = np.rint(levels, out=levels).astype(np.uint16 if high else np.uint8)
        rgb = self._av.VideoFrame.from_ndarray(array, format="rgb48le" if high else "rgb24")
        return self._reformatter.reformat(rgb, format=self.pixel_format, interpolation=self._flags,
                                          dst_colorspace=_SWS_MATRIX.get(self._colorspace, 5),
                                          dst_color_range=self._range)

    def write(self, frames: torch.Tensor, pts=None) -> None:
        """Encode one (3, H, W) frame or a (B, 3, H, W) batch, in order. ``pts`` (one per frame, in
        the input's time base) overrides the input's time stamps."""
        if frames.dim() == 3:
            batch, stamps = frames.unsqueeze(0), [pts]
        else:
            batch, stamps = frames, [None] * len(frames) if pts is None else list(pts)
        with staged_as(self._shown):
            for image, stamp in zip(batch, stamps, strict=True):
                self._write_one(image, stamp)

    def _write_one(self, image: torch.Tensor, stamp) -> None:
        index = self.start + self.frames_written
        if stamp is None and index >= self.info.frame_count:
            raise ValueError(f"{self.name}: frame {index} is past the {self.info.frame_count} frames "
                             "of the input; pass pts= for extra frames")
        frame = self._to_frame(image)
        frame.pts = int(self.info.pts[index]) if stamp is None else int(stamp)
        frame.time_base = self.info.time_base
        if index < self.info.frame_count:  # encoders drop frame durations: packets get them in _mux
            self._durations[frame.pts] = int(self.info.durations[index])
        self._mux(self._stream.encode(frame))
        self.frames_written += 1

    def _mux(self, packets) -> None:
        for packet in packets:
            duration = self._durations.pop(packet.pts, None)
            if duration is not None:  # the last frame's duration sets the clip's end
                packet.duration = duration
            if self._copier is not None and packet.dts is not None:
                self._copier.until(self._output, float(packet.dts * packet.time_base))
            self._output.mux(packet)

    def close(self) -> Path:
        """Flush the encoder, copy the remaining audio, finish the file and move it into place."""
        if self._finished:
            return self.path
        try:
            if not self.frames_written:
                raise ValueError(f"{self.name}: no frames were written; a clip needs at least one")
            with staged_as(self._shown):
                self._mux(self._stream.encode(None))
                if self._copier is not None:
                    self._copier.until(self._output, None)
                    self._copier.close()
                self._output.close()  # the trailer: a full disk may fail it here
            if self._tmp != self.path:
                commit(self._tmp, self.path)
            self._finished = True
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard the output: close everything and delete the (staged) file. No-op once closed."""
        if self._finished:
            return
        close_quietly(self._output, self._copier)
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
