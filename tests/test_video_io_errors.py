"""Video I/O refusals: each bad input (corrupt, truncated, no video stream, zero frames, an
undecodable codec, frames over max_pixels) is an InputError naming the file that leaves no
output; an error or Ctrl-C while writing leaves nothing; PyAV missing says how to install it.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

from video_clips import SIZE, add_audio, build_clips, copy_clip, encode_tone  # noqa: E402

from dotrestore.errors import InputError  # noqa: E402
from dotrestore.io.video import VideoWriter, probe, read_frames  # noqa: E402


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return build_clips(tmp_path_factory.mktemp("clips"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _empty_video(path: Path) -> Path:
    """A Matroska file with a video track that holds no frame (its sound track has some)."""
    container = av.open(str(path), "w", format="matroska")
    stream = container.add_stream("ffv1", rate=25)
    stream.width = stream.height = 64
    stream.pix_fmt = "bgr0"
    encode_tone(container, add_audio(container, "aac"), 0.5)
    container.close()
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).bytes(20000))
    return path


def _audio_only(path: Path) -> Path:
    container = av.open(str(path), "w", format="mp4")
    sound = add_audio(container, "aac")
    encode_tone(container, sound, 0.5)
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
    with pytest.raises(type(interrupt)), VideoWriter(tmp_path / "old.mkv", info) as writer:
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


def test_missing_pyav_says_how_to_install(monkeypatch, clips):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(InputError, match=r'pip install "dotrestore\[video\]"') as error:
        probe(clips["mp4"])
    assert error.value.path == str(clips["mp4"])


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
