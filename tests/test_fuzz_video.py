"""Fuzz suite, video edge cases: container × encoder × stream kinds, frame sizes that change or
are 1 pixel wide, shared time stamps, frames larger than the header declares.

The property: what :func:`~dotrestore.io.video.check.check_writable` accepts really writes (every
frame, sound and subtitles), and what it refuses is refused before any work with one line
naming the output as the user gave it; a clip whose frames do not keep one size is refused
naming the clip (apply, fit in batches), never a traceback.
"""

from __future__ import annotations

from fractions import Fraction

import fuzz_support
import numpy as np
import pytest
import torch
from fuzz_support import assert_one_line_error, leftovers, run

from dotrestore.errors import InputError

av = pytest.importorskip("av")
from video_clips import make_clip  # noqa: E402  (needs av)

from dotrestore.io.video import VideoWriter, probe, read_frames  # noqa: E402
from dotrestore.io.video.check import check_writable  # noqa: E402

one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)
world = pytest.fixture(scope="module", name="world")(fuzz_support.world)

FRAMES = 6
#: input clips: name -> (file name, make_clip options)
CLIPS = {
    "video only": ("plain.mp4", {"audio": None}),
    "aac + mov_text": ("aac.mp4", {"audio": "aac", "subtitles": "mov_text"}),
    "opus": ("opus.mkv", {"audio": "libopus"}),
    "ass": ("ass.mkv", {"audio": None, "subtitles": "ass"}),
    "subrip": ("subrip.mkv", {"audio": None, "subtitles": "subrip"}),
}
EXTENSIONS = (".mkv", ".mp4", ".mov", ".webm")
ENCODERS = (None, "libx264", "libvpx-vp9", "ffv1", "gif", "mjpeg")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {name: probe(make_clip(folder / file, frames=FRAMES, size=32, **options))
            for name, (file, options) in CLIPS.items()}


def _stream_types(path) -> list[str]:
    with av.open(str(path)) as container:
        return sorted(s.type for s in container.streams if s.type in ("audio", "subtitle"))


@pytest.mark.parametrize("encoder", ENCODERS, ids=lambda e: e or "default")
@pytest.mark.parametrize("extension", EXTENSIONS)
@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_what_is_accepted_is_written_and_what_is_refused_names_the_output(clips, tmp_path, clip, extension, encoder):
    info = clips[clip]
    target = tmp_path / f"out{extension}"
    try:
        check_writable(target, info, encoder)
    except InputError as exc:
        assert exc.subject == str(target), exc
        assert not list(tmp_path.iterdir())  # decided without creating anything
        return
    frames = torch.stack([f.frame for f in read_frames(info)])
    with VideoWriter(target, info, codec=encoder) as writer:
        writer.write(frames)
    written = probe(target)
    assert written.frame_count == FRAMES and (written.width, written.height) == (32, 32)
    assert _stream_types(target) == _stream_types(info.path)  # sound and subtitles kept


@pytest.mark.parametrize("extension, encoder, says", [
    (".webm", "libx264", "libx264"), (".mkv", "gif", "gif"), (".mkv", "mjpeg", "mjpeg"),
    (".mp4", "h264_nvenc", "h264_nvenc"),
])
def test_apply_refuses_an_encoder_the_output_cannot_hold_before_work(world, clips, tmp_path, extension, encoder, says):
    _, op, _, _ = world
    out = tmp_path / f"out{extension}"
    code, err = run("apply", op, clips["video only"].path, "-o", out, "--video-codec", encoder, "--no-progress")
    assert_one_line_error(code, err, out, says=says)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("clip, extension, says", [("opus", ".mov", "audio stream"), ("ass", ".mp4", "subtitle stream")])
def test_apply_refuses_streams_the_output_cannot_hold(world, clips, tmp_path, clip, extension, says):
    _, op, _, _ = world
    out = tmp_path / f"out{extension}"
    code, err = run("apply", op, clips[clip].path, "-o", out, "--no-progress")
    assert_one_line_error(code, err, out, says=says)
    assert not list(tmp_path.iterdir())


def _encode(path, sizes, pts, codec="libx264", fmt=None, time_base=Fraction(1, 25)):
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream(codec, rate=1 / time_base)
    stream.width, stream.height = sizes[0]
    stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
    stream.codec_context.time_base = time_base
    for t, (size, stamp) in enumerate(zip(sizes, pts)):
        rgb = (np.random.default_rng(t).random((size[1], size[0], 3)) * 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=stream.pix_fmt)
        frame.pts, frame.time_base = stamp, time_base
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    return path


@pytest.fixture(scope="module")
def growing(tmp_path_factory):
    """An MPEG-TS clip of 3 frames of 32x32 then 3 of 64x48: the header (and frame 0) say 32x32."""
    folder = tmp_path_factory.mktemp("growing")
    first = _encode(folder / "a.ts", [(32, 32)] * 3, range(3), fmt="mpegts").read_bytes()
    second = _encode(folder / "b.ts", [(64, 48)] * 3, range(3, 6), fmt="mpegts").read_bytes()
    clip = folder / "growing.ts"
    clip.write_bytes(first + second)
    return clip


def test_a_larger_frame_than_the_header_is_never_decoded_into_use(growing):
    """--max-pixels holds for what is decoded: 32x32 = 1024 pixels passes the header check, the
    64x48 frames that follow are refused when met, not used."""
    info = probe(growing, max_pixels=1024)
    with pytest.raises(InputError, match=r"changes its frame size mid-stream: frame 3 is 64x48"):
        for decoded in read_frames(info, max_pixels=1024):
            assert decoded.frame.shape == (3, 32, 32)


@pytest.mark.parametrize("command", ["apply", "fit"])
def test_a_frame_size_change_mid_stream_is_one_line_naming_the_clip(world, growing, tmp_path, command):
    root, op, _, _ = world
    out = tmp_path / ("out.mkv" if command == "apply" else "op.safetensors")
    if command == "apply":
        argv = ["apply", op, growing, "-o", out]
    else:
        argv = ["fit", "--source", growing, "--target", root / "clean", "--vae", "pixel", "--batch-size", "2", "-o", out]
    code, err = run(*argv, "--no-progress")
    assert_one_line_error(code, err, growing, says="frame size mid-stream")
    assert not out.exists() and not leftovers(tmp_path)


def test_shared_time_stamps_are_refused_for_mp4_and_written_to_mkv(world, tmp_path):
    _, op, _, _ = world
    clip = _encode(tmp_path / "dup.mkv", [(32, 32)] * 4, [0, 1, 1, 2], codec="ffv1")
    out = tmp_path / "out.mp4"
    code, err = run("apply", op, clip, "-o", out, "--no-progress")
    assert_one_line_error(code, err, out, says="share a time stamp")
    assert not out.exists()
    code, err = run("apply", op, clip, "-o", tmp_path / "out.mkv", "--no-progress")
    assert code == 0, err
    assert probe(tmp_path / "out.mkv").frame_count == probe(clip).frame_count


def test_one_pixel_wide_frames_are_one_line(world, tmp_path):
    root, op, _, _ = world
    container = av.open(str(tmp_path / "thin.mov"), "w")
    stream = container.add_stream("png", rate=25)
    stream.width, stream.height, stream.pix_fmt = 1, 32, "rgb24"
    for t in range(3):
        frame = av.VideoFrame.from_ndarray(np.full((32, 1, 3), 40 * t, np.uint8), format="rgb24")
        frame.pts, frame.time_base = t, Fraction(1, 25)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    for out in ("out.mkv", "out.mp4", "out.mov"):
        code, err = run("apply", op, tmp_path / "thin.mov", "-o", tmp_path / out, "--no-progress")
        assert_one_line_error(code, err, tmp_path / out)
    code, err = run("fit", "--source", tmp_path / "thin.mov", "--target", root / "clean", "--vae", "pixel",
                    "-o", tmp_path / "op.safetensors", "--no-progress")
    assert_one_line_error(code, err, tmp_path / "thin.mov", says="too small")


@pytest.mark.parametrize("pts, time_base", [([0, 1, 2, 5, 6, 7], Fraction(1, 25)),
                                             ([0, 24, 48, 72], Fraction(1, 600))], ids=["dropped-frames", "1/600"])
def test_complete_avi_files_are_read_and_cut_ones_refused(world, tmp_path, pts, time_base):
    _, op, _, _ = world
    clip = _encode(tmp_path / "clip.avi", [(32, 32)] * len(pts), pts, codec="mpeg4", fmt="avi", time_base=time_base)
    info = probe(clip)
    assert info.frame_count == len(pts) and list(info.pts) == pts
    code, err = run("apply", op, clip, "-o", tmp_path / "out.mkv", "--no-progress")
    assert code == 0, err
    assert probe(tmp_path / "out.mkv").frame_count == len(pts)
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated"):
        probe(cut)
