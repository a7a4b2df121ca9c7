"""Video I/O: probe, streamed reading (whole clips and frame ranges), writing that keeps time
stamps, rotation, colour and sound, segments joined by stream copy, and bad inputs.

Clips are made here with PyAV: 256x256, a few dozen frames, a sine tone, subtitles.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

from dotrestore.errors import InputError  # noqa: E402
from dotrestore.io.video import (  # noqa: E402
    VideoWriter,
    concat_segments,
    frame_step,
    is_video,
    probe,
    read_frames,
    sample_frames,
    segment_ranges,
)

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


def _add_audio(container, codec: str):
    stream = container.add_stream(codec, rate=48000)
    stream.layout = "mono"
    return stream


def _encode_tone(container, stream, seconds: float) -> None:
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
    sound = _add_audio(container, audio) if audio else None
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
        _encode_tone(container, sound, float(pts * TIME_BASE))
    container.close()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
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


def test_is_video_by_extension():
    assert is_video("a/clip.MP4") and is_video("x.mkv") and is_video("y.webm") and is_video("z.mov")
    assert not is_video("photo.png") and not is_video("notes.txt") and not is_video("mkv")


def test_probe_describes_the_clip(clips):
    info = probe(clips["mp4"])
    assert (info.width, info.height, info.frame_count) == (SIZE, SIZE, 30)
    assert info.frame_rate == 25 and info.time_base == TIME_BASE
    assert info.duration == pytest.approx(30 / 25)
    assert list(info.pts) == [512 * i for i in range(30)]
    assert info.rotation == 90 and info.display_matrix is not None
    assert info.codec == "h264" and info.pixel_format == "yuv420p" and info.bit_depth == 8
    assert {(s.type, s.codec) for s in info.other_streams} == {("audio", "aac"), ("subtitle", "mov_text")}
    assert list(info.keyframe_pts) == [0, 5120, 10240]  # gop 10
    assert not info.variable_frame_rate and "30 frames" in info.describe()
    vfr = probe(clips["vfr"])
    assert vfr.variable_frame_rate and set(np.diff(vfr.pts)) == {256, 1024}


def test_mkv_round_trip_is_exact_and_keeps_timing_rotation_sound(clips, tmp_path):
    source = probe(clips["mp4"])
    out = copy_clip(clips["mp4"], tmp_path / "copy.mkv")
    copy = probe(out)
    assert copy.codec == "ffv1" and copy.frame_count == source.frame_count
    before, after = all_frames(clips["mp4"]), all_frames(out)
    assert all(torch.equal(as_levels(a.frame), as_levels(b.frame)) for a, b in zip(before, after, strict=True))
    # Matroska counts milliseconds: every frame within half a tick of its original time
    assert np.abs(relative_times(copy) - relative_times(source)).max() <= 0.0005
    assert copy.duration == pytest.approx(source.duration, abs=0.001)
    assert copy.frame_rate == source.frame_rate and copy.rotation == 90
    assert copy.display_matrix == source.display_matrix
    assert copy.color_primaries == source.color_primaries and copy.color_trc == source.color_trc
    assert copy.metadata["title"] == source.metadata["title"] == "A tone and a moving disc"
    assert audio_packets(out) == audio_packets(clips["mp4"])
    # MP4's mov_text subtitles cannot go into Matroska: converted to SubRip, same words and times
    assert subtitle_texts(out) == [b"DOT keeps the words"] * 2
    with av.open(str(out)) as container:
        words = container.streams.subtitles[0]
        assert words.codec_context.name in ("subrip", "srt")
        times = [float(p.pts * p.time_base) for p in container.demux(words) if p.size]
    assert times == pytest.approx([copy.frame_time(3), copy.frame_time(17)], abs=0.001)
    # Matroska stores no negative times: AAC's priming packet (-21 ms) shifts every stream alike
    assert audio_start(out) - copy.frame_time(0) == pytest.approx(audio_start(clips["mp4"]), abs=0.001)


def test_mkv_to_mkv_keeps_every_time_stamp_opus_and_subtitles(clips, tmp_path):
    source = probe(clips["mkv"])
    copy = probe(copy_clip(clips["mkv"], tmp_path / "copy.mkv"))
    assert np.array_equal(copy.pts, source.pts) and copy.time_base == source.time_base
    assert copy.duration == source.duration
    assert audio_packets(copy.path) == audio_packets(clips["mkv"])
    assert subtitle_texts(copy.path) == subtitle_texts(clips["mkv"]) == [b"DOT keeps the words"] * 2
    languages = {s.type: s.language for s in copy.other_streams}
    assert languages == {"audio": None, "subtitle": "eng"}


def test_mp4_keeps_count_timing_and_quality(clips, tmp_path):
    source = probe(clips["mp4"])
    out = copy_clip(clips["mp4"], tmp_path / "copy.mp4")
    copy = probe(out)
    assert copy.codec == "h264" and copy.pixel_format == "yuv420p"
    assert np.array_equal(copy.pts, source.pts) and copy.time_base == source.time_base
    assert copy.duration == source.duration and copy.frame_rate == 25 and copy.rotation == 90
    assert copy.metadata["title"] == "A tone and a moving disc"
    assert audio_packets(out) == audio_packets(clips["mp4"])
    assert subtitle_texts(out) == subtitle_texts(clips["mp4"])
    errors = [float(((a.frame - b.frame) ** 2).mean()) for a, b in frame_pairs(clips["mp4"], out)]
    assert min(10 * np.log10(1 / e) for e in errors) > 36  # CRF 18 on a hard random texture


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_is_kept(clips, tmp_path, suffix):
    source = probe(clips["vfr"])
    copy = probe(copy_clip(clips["vfr"], tmp_path / f"copy{suffix}"))
    assert copy.frame_count == source.frame_count and copy.variable_frame_rate
    assert np.abs(relative_times(copy) - relative_times(source)).max() <= (0.0005 if suffix == ".mkv" else 0)
    assert copy.duration == pytest.approx(source.duration, abs=0.001)


def _flat_clip(path: Path, levels: tuple[int, int, int], color_range: int) -> Path:
    """FFV1 4:4:4 (lossless) with every pixel at the given Y, Cb, Cr, tagged BT.709 and ``color_range``."""
    container = av.open(str(path), "w", format="matroska")
    stream = container.add_stream("ffv1", rate=25)
    stream.width = stream.height = 16
    stream.pix_fmt = "yuv444p"
    stream.codec_context.color_range, stream.codec_context.colorspace = color_range, 1
    frame = av.VideoFrame(16, 16, "yuv444p")
    for plane, level in zip(frame.planes, levels, strict=True):
        plane.update(np.full(plane.buffer_size, level, np.uint8))
    frame.color_range, frame.colorspace, frame.pts = color_range, 1, 0
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    return path


def test_colour_range_and_matrix_are_honoured_when_reading(tmp_path):
    def rgb(levels, color_range):
        (item,) = read_frames(_flat_clip(tmp_path / f"{levels}-{color_range}.mkv", levels, color_range))
        return as_levels(item.frame)[:, 0, 0].tolist()

    assert rgb((16, 128, 128), 1) == [0, 0, 0] and rgb((235, 128, 128), 1) == [255, 255, 255]
    assert rgb((16, 128, 128), 2) == [16, 16, 16]  # full range: 16 is a dark grey
    # BT.709 limited-range red (Y 63, Cb 102, Cr 240) is red; read as BT.601 it would be (232, 0, 1)
    red = rgb((63, 102, 240), 1)
    assert red[0] >= 253 and red[1] <= 1 and red[2] <= 1


def test_limited_range_clip_keeps_its_tags_and_colours(clips, tmp_path):
    source = probe(clips["limited"])
    assert (source.color_range, source.colorspace) == (1, 1)  # tv range, BT.709
    copy = probe(copy_clip(clips["limited"], tmp_path / "copy.mp4"))
    assert (copy.color_range, copy.colorspace) == (1, 1)
    centres = [(k // 2 * SIZE // 2 + SIZE // 4, k % 2 * SIZE // 2 + SIZE // 4) for k in range(4)]
    before, after = all_frames(clips["limited"]), all_frames(copy.path)
    for frame in (before[0], after[0], after[-1]):  # 8-bit limited range YUV: within 2 levels
        colours = [as_levels(frame.frame)[:, y, x].int() for y, x in centres]
        assert all((c - torch.tensor(q)).abs().max() <= 2 for c, q in zip(colours, QUADRANT_COLOURS, strict=True))
    lossless = probe(copy_clip(clips["limited"], tmp_path / "copy.mkv"))
    assert (lossless.color_range, lossless.colorspace) == (2, 0)  # stored as full-range RGB
    pairs = frame_pairs(clips["limited"], lossless.path)
    assert all(torch.equal(as_levels(a.frame), as_levels(b.frame)) for a, b in pairs)


def test_range_reads_equal_the_full_read(clips):
    info = probe(clips["mp4"])  # H.264 with B-frames, a keyframe every 10 frames
    full = all_frames(info)
    assert [f.index for f in full] == list(range(30)) and [f.pts for f in full] == list(info.pts)
    for start, stop in [(0, 4), (7, 13), (10, 11), (13, 30), (29, 30), (5, 5)]:
        part = list(read_frames(info, start, stop))
        assert [f.index for f in part] == list(range(start, stop))
        assert all(torch.equal(a.frame, full[a.index].frame) for a in part)
    with pytest.raises(ValueError):
        list(read_frames(info, 3, 31))


def test_sampling_for_fits(clips):
    assert frame_step(30, 10) == 3 and frame_step(30, 300) == 1 and frame_step(301, 300) == 2
    assert frame_step(100_000) == 334  # a long clip: at most DEFAULT_FIT_FRAMES = 300 frames read
    full = all_frames(clips["vfr"])
    sampled = list(sample_frames(clips["vfr"], max_frames=7))
    assert [f.index for f in sampled] == list(range(0, 30, 5))
    assert all(torch.equal(s.frame, full[s.index].frame) for s in sampled)
    assert [f.index for f in sample_frames(clips["vfr"], step=12)] == [0, 12, 24]


def test_segment_ranges_cover_the_clip():
    assert segment_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert segment_ranges(2, 3) == [(0, 0), (0, 1), (1, 2)]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_segments_joined_equal_one_process_write(clips, tmp_path, suffix):
    info = probe(clips["mp4"])
    whole = probe(copy_clip(clips["mp4"], tmp_path / f"whole{suffix}"))
    parts = []
    for rank, (start, stop) in enumerate(segment_ranges(info.frame_count, 3)):
        part = tmp_path / f"part{rank}{suffix}"
        with VideoWriter(part, info, start=start, copy_streams=False) as writer:
            for item in read_frames(info, start, stop):
                writer.write(item.frame)
        parts.append(part)
    joined = probe(concat_segments(parts, tmp_path / f"joined{suffix}", audio_from=clips["mp4"]))
    assert joined.frame_count == whole.frame_count == 30
    assert np.array_equal(joined.pts, whole.pts) and joined.duration == whole.duration
    assert joined.rotation == 90 and audio_packets(joined.path) == audio_packets(clips["mp4"])
    assert subtitle_texts(joined.path) == subtitle_texts(whole.path)
    pairs = frame_pairs(joined.path, whole.path)
    if suffix == ".mkv":  # lossless: frame for frame identical
        assert all(torch.equal(a.frame, b.frame) for a, b in pairs)
    else:  # each segment starts its own GOP: same frames up to coding noise
        assert max(float((a.frame - b.frame).abs().mean()) for a, b in pairs) < 2 / 255
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _empty_video(path: Path) -> Path:
    """A Matroska file with a video track that holds no frame (its sound track has some)."""
    container = av.open(str(path), "w", format="matroska")
    stream = container.add_stream("ffv1", rate=25)
    stream.width = stream.height = 64
    stream.pix_fmt = "bgr0"
    _encode_tone(container, _add_audio(container, "aac"), 0.5)
    container.close()
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).bytes(20000))
    return path


def _audio_only(path: Path) -> Path:
    container = av.open(str(path), "w", format="mp4")
    sound = _add_audio(container, "aac")
    _encode_tone(container, sound, 0.5)
    container.close()
    return path


def _undecodable(path: Path) -> Path:
    """An MP4 whose video is EVC, a codec this FFmpeg build demuxes but cannot decode."""
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_mux_stream("evc", rate=25, width=64, height=64)
    stream.time_base = Fraction(1, 25)
    for i in range(3):
        packet = av.Packet(b"\x00\x00\x01" + bytes(100))
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
        packet.is_keyframe = True
        container.mux(packet)
    container.close()
    return path


def _truncated(source: Path, path: Path, fraction: float) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


BAD_INPUTS = {
    "corrupt": (lambda d, c: _junk(d / "junk.mp4"), "not a readable video"),
    "truncated mkv": (lambda d, c: _truncated(c["mkv"], d / "cut.mkv", 0.6), "truncated"),
    "truncated mp4": (lambda d, c: _truncated(c["mp4"], d / "cut.mp4", 0.6), "truncated"),
    "no video stream": (lambda d, c: _audio_only(d / "sound.mp4"), "no video stream"),
    "zero frames": (lambda d, c: _empty_video(d / "empty.mkv"), "no video frames"),
    "unsupported codec": (lambda d, c: _undecodable(d / "evc.mp4"), "unsupported codec"),
    "missing": (lambda d, c: d / "absent.mp4", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_and_leaves_no_output(clips, tmp_path, case):
    make, problem = BAD_INPUTS[case]
    source = make(tmp_path, clips)
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    with pytest.raises(InputError, match=problem) as error:
        copy_clip(source, out_folder / "restored.mkv")
    assert error.value.path == str(source) and str(source) in str(error.value)
    assert leftovers(out_folder) == []


def test_frames_over_max_pixels_are_refused_from_the_header(clips, tmp_path):
    with pytest.raises(InputError, match=r"256x256 = 65,536-pixel frames, over the limit of 65,535"):
        probe(clips["mp4"], max_pixels=SIZE * SIZE - 1)
    with pytest.raises(InputError, match="over the limit"):
        list(read_frames(clips["mp4"], max_pixels=1000))
    assert probe(clips["mp4"], max_pixels=SIZE * SIZE).frame_count == 30


@pytest.mark.parametrize("interrupt", [RuntimeError("restorer failed"), KeyboardInterrupt()])
def test_an_error_while_writing_leaves_nothing(clips, tmp_path, interrupt):
    info = probe(clips["mp4"])
    (tmp_path / "old.mkv").write_bytes(b"kept")
    with pytest.raises(type(interrupt)):
        with VideoWriter(tmp_path / "old.mkv", info) as writer:
            for item in read_frames(info):
                writer.write(item.frame)
                if item.index == 12:
                    raise interrupt
    assert leftovers(tmp_path) == ["old.mkv"] and (tmp_path / "old.mkv").read_bytes() == b"kept"


def test_writer_refusals_name_the_output(clips, tmp_path):
    info = probe(clips["mp4"])
    cases = [
        (dict(path=tmp_path / "a.webm"), "cannot hold the audio stream 1 \\(aac\\)"),  # WebM: Opus/Vorbis only
        (dict(path=tmp_path / "a.gif"), "video outputs are"),
        (dict(path=tmp_path / "a.mkv", crf=20), "FFV1 \\(.mkv\\) is lossless"),
        (dict(path=tmp_path / "a.mp4", crf=99), "crf must be an integer from 0 to 63"),
        (dict(path=tmp_path / "a.mp4", codec="nonesuch"), "no such video encoder"),
        (dict(path=tmp_path / "a.mp4", size=(255, 256)), "needs an even width and height"),
    ]
    for options, problem in cases:
        path = options.pop("path")
        with pytest.raises(InputError, match=problem) as error:
            VideoWriter(path, info, **options)
        assert error.value.path == str(path)
    refused_frames = [(torch.zeros(3, 8, 8), "frames must be"), (torch.full((3, SIZE, SIZE), torch.nan), "non-finite")]
    for frame, problem in refused_frames:
        with pytest.raises(ValueError, match=problem), VideoWriter(tmp_path / "b.mkv", info) as writer:
            writer.write(frame)
    with pytest.raises(ValueError, match="no frames were written"), VideoWriter(tmp_path / "c.mkv", info):
        pass
    assert leftovers(tmp_path) == []


def test_other_codecs_by_name(clips, tmp_path):
    info = probe(clips["mkv"])  # Opus audio: WebM holds it
    webm = probe(copy_clip(clips["mkv"], tmp_path / "copy.webm"))
    assert webm.codec == "vp9" and webm.frame_count == info.frame_count
    assert audio_packets(webm.path) == audio_packets(clips["mkv"])
    hevc = probe(copy_clip(clips["mkv"], tmp_path / "copy.mp4", codec="hevc", crf=28))
    assert hevc.codec == "hevc" and np.abs(relative_times(hevc) - relative_times(info)).max() < 1e-6


def test_missing_pyav_says_how_to_install(monkeypatch, clips):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(InputError, match=r'pip install "dotrestore\[video\]"') as error:
        probe(clips["mp4"])
    assert error.value.path == str(clips["mp4"])


def test_ten_bit_clips_keep_their_precision(tmp_path):
    source = make_clip(tmp_path / "deep.mkv", frames=6, pix_fmt="yuv420p10le", audio=None, size=64)
    info = probe(source)
    assert info.bit_depth == 10 and info.pixel_format == "yuv420p10le"
    before = all_frames(source)
    levels = torch.cat([f.frame.flatten() for f in before]) * 65535
    assert torch.equal(levels, levels.round())  # read through 16-bit RGB...
    assert not torch.equal(levels / 257, (levels / 257).round())  # ...finer than 8 bits
    lossless = probe(copy_clip(source, tmp_path / "copy.mkv"))
    assert lossless.pixel_format == "gbrp16le"
    assert all(torch.equal(a.frame, b.frame) for a, b in zip(before, all_frames(lossless.path), strict=True))
    assert probe(copy_clip(source, tmp_path / "copy.mp4")).pixel_format == "yuv420p10le"


def test_a_clip_cut_inside_a_group_of_pictures(clips, tmp_path):
    """Packets before the first keyframe decode to nothing: they are not counted as frames."""
    cut = tmp_path / "cut.mkv"
    with av.open(str(clips["mp4"])) as source, av.open(str(cut), "w", format="matroska") as out:
        video = out.add_stream_from_template(source.streams.video[0], opaque=True)
        packets = [p for p in source.demux(source.streams.video[0]) if p.size]
        for packet in packets[4:]:  # the stream now starts inside its first group of pictures
            packet.stream = video
            out.mux(packet)
    info = probe(cut)
    frames = all_frames(cut)
    assert info.frame_count == len(frames) == 20 and [f.index for f in frames] == list(range(20))
    full = all_frames(clips["mp4"])
    assert all(torch.equal(f.frame, full[f.index + 10].frame) for f in frames)  # from the keyframe at 10
    assert all(torch.equal(f.frame, full[f.index + 10].frame) for f in read_frames(info, 7, 12))


def test_abandoning_a_read_mid_clip_does_not_hang(clips):
    """Closing a frame-threaded decoder mid-clip deadlocked when FFmpeg's log went through Python
    (av.logging.set_level): the log must stay PyAV's default, which never takes the GIL."""
    probe(clips["mp4"])
    assert av.logging.get_level() is None
    script = (
        "import sys\nfrom dotrestore.io.video import probe, read_frames\n"
        "info = probe(sys.argv[1])\n"
        "for i in range(150):\n"
        "    for k, item in enumerate(read_frames(info, i % 20, 30)):\n"
        "        if k == i % 7:\n"
        "            break\n"
    )
    subprocess.run([sys.executable, "-c", script, str(clips["mp4"])], check=True, timeout=120)
