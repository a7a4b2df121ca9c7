"""Synthetic clips for the video I/O tests, made with PyAV: 256x256, a few dozen frames, a sine
tone, subtitles; and small readers the tests compare with."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from dotrestore.io.video import VideoWriter, probe, read_frames

SIZE = 256
TIME_BASE = Fraction(1, 12800)


def picture(t: int, size: int = SIZE) -> np.ndarray:
    """A smooth gradient, a fixed texture and a disc moving with t: (size, size, 3) uint8."""
    y, x = np.mgrid[0:size, 0:size] / size
    texture = np.random.default_rng(0).random((size // 4, size // 4)).repeat(4, 0).repeat(4, 1)
    disc = ((x - 0.2 - 0.02 * t) ** 2 + (y - 0.5) ** 2 < 0.02).astype(float)
    rgb = np.stack([0.6 * x + 0.3 * texture, 0.5 * y + 0.4 * disc, 0.4 + 0.3 * texture * x - 0.2 * disc], -1)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


QUADRANT_COLOURS = [(200, 40, 50), (40, 190, 60), (50, 60, 210), (128, 128, 128)]


def quadrants(t: int, size: int = SIZE) -> np.ndarray:
    """Four flat saturated colours: a wrong range or matrix moves them by many levels."""
    rgb = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    for k, colour in enumerate(QUADRANT_COLOURS):
        rgb[(k // 2) * half:(k // 2 + 1) * half, (k % 2) * half:(k % 2 + 1) * half] = colour
    return rgb


def add_audio(container, codec: str):
    stream = container.add_stream(codec, rate=48000)
    stream.layout = "mono"
    return stream


def encode_tone(container, stream, seconds: float) -> None:
    size, done, total = stream.codec_context.frame_size or 960, 0, int(48000 * seconds)
    while done < total:
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(done, done + size) / 48000)
        frame = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 48000, done
        container.mux(stream.encode(frame))
        done += size
    container.mux(stream.encode(None))


def _add_subtitles(container, codec: str):
    stream = container.add_mux_stream(codec)
    stream.time_base = Fraction(1, 1000)
    stream.metadata["language"] = "eng"
    return stream


def _mux_subtitle(container, stream, codec: str, ms: int) -> None:
    text = b"DOT keeps the words"
    packet = av.Packet(struct.pack(">H", len(text)) + text if codec == "mov_text" else text)
    packet.stream, packet.pts, packet.dts, packet.duration = stream, ms, ms, 500
    packet.time_base = Fraction(1, 1000)
    container.mux(packet)


def make_clip(path: Path, frames: int = 30, *, codec: str = "libx264", pix_fmt: str = "yuv420p",
              vfr: bool = False, rotation: int | None = None, audio: str | None = "aac",
              subtitles: str | None = None, color_range: int | None = None, colorspace: int | None = None,
              gop: int = 10, size: int = SIZE, pictures=picture) -> Path:
    """An H.264 (or other codec) clip at 25 fps (time base 1/12800) with a tone and subtitles."""
    fmt = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov"}[path.suffix]
    container = av.open(str(path), "w", format=fmt)
    container.metadata["title"] = "A tone and a moving disc"
    video = container.add_stream(codec, rate=25, options={"g": str(gop)} if codec == "libx264" else {})
    video.width = video.height = size
    video.pix_fmt = pix_fmt
    video.codec_context.time_base = video.time_base = TIME_BASE
    if color_range is not None:
        video.codec_context.color_range = color_range
    if colorspace is not None:
        video.codec_context.colorspace = colorspace
    if rotation is not None:
        video.set_display_rotation(rotation)
    sound = add_audio(container, audio) if audio else None
    words = _add_subtitles(container, subtitles) if subtitles else None
    pts = 0
    for t in range(frames):
        frame = av.VideoFrame.from_ndarray(pictures(t), format="rgb24")
        frame = frame.reformat(format=pix_fmt, dst_colorspace=colorspace if colorspace in (1, 5) else None,
                               dst_color_range=color_range or None)
        frame.pts, frame.time_base = pts, TIME_BASE
        container.mux(video.encode(frame))
        if words is not None and t in (3, 17):
            _mux_subtitle(container, words, subtitles, int(pts * TIME_BASE * 1000))
        pts += (256 if t % 3 else 1024) if vfr else 512
    container.mux(video.encode(None))
    if sound is not None:
        encode_tone(container, sound, float(pts * TIME_BASE))
    container.close()
    return path


def build_clips(folder: Path) -> dict[str, Path]:
    """The shared clips: H.264 + AAC + mov_text, rotated 90 degrees (mp4); H.264 + Opus + SubRip
    (mkv); variable frame rate (vfr); BT.709 limited range, flat colours (limited)."""
    return {
        "mp4": make_clip(folder / "tone.mp4", rotation=90, subtitles="mov_text"),
        "mkv": make_clip(folder / "tone.mkv", audio="libopus", subtitles="subrip"),
        "vfr": make_clip(folder / "vfr.mp4", vfr=True),
        "limited": make_clip(folder / "limited.mp4", color_range=1, colorspace=1, audio=None, pictures=quadrants),
    }


def as_levels(frame: torch.Tensor) -> torch.Tensor:
    return (frame * 255).round().to(torch.uint8)


def all_frames(path) -> list:
    return list(read_frames(path))


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def frame_pairs(a, b) -> list:
    """Frame i of clip a beside frame i of clip b (the clips must have as many frames)."""
    return list(zip(all_frames(a), all_frames(b), strict=True))


def audio_start(path) -> float:
    with av.open(str(path)) as container:
        first = next(p for p in container.demux(container.streams.audio[0]) if p.size)
        return float(first.pts * first.time_base)


def subtitle_texts(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.subtitles[0]) if p.size > 2]


def copy_clip(source, out, **writer_options) -> Path:
    """What an apply at alpha = 1 does: every frame read, then written."""
    info = probe(source)
    with VideoWriter(out, info, **writer_options) as writer:
        for item in read_frames(info):
            writer.write(item.frame)
    return Path(out)


def relative_times(info) -> np.ndarray:
    return np.array([info.frame_time(i) - info.frame_time(0) for i in range(info.frame_count)])
