"""Video I/O: probe, streamed reading (whole clips and frame ranges), writing that keeps time
stamps, rotation, colour and sound, and segments joined by stream copy (bad inputs:
test_video_io_errors.py). Clips are made with PyAV (video_clips.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

from video_clips import (  # noqa: E402
    QUADRANT_COLOURS,
    SIZE,
    TIME_BASE,
    all_frames,
    as_levels,
    audio_packets,
    audio_start,
    build_clips,
    copy_clip,
    frame_pairs,
    make_clip,
    relative_times,
    subtitle_texts,
)

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


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return build_clips(tmp_path_factory.mktemp("clips"))


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


def test_other_codecs_by_name(clips, tmp_path):
    info = probe(clips["mkv"])  # Opus audio: WebM holds it
    webm = probe(copy_clip(clips["mkv"], tmp_path / "copy.webm"))
    assert webm.codec == "vp9" and webm.frame_count == info.frame_count
    assert audio_packets(webm.path) == audio_packets(clips["mkv"])
    hevc = probe(copy_clip(clips["mkv"], tmp_path / "copy.mp4", codec="hevc", crf=28))
    assert hevc.codec == "hevc" and np.abs(relative_times(hevc) - relative_times(info)).max() < 1e-6


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
