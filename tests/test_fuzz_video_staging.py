"""Fuzz suite, a video output failing during the work: the line names the clip the user asked for.

A clip is written under a hidden staging name beside its destination and moved into place at
the end. Whatever fails on the way (the file that cannot be created or opened, the container's
header, the encoder mid-stream, a frame or a sound packet that cannot be written, a full disk,
the trailer, the move into place, the join of torchrun segments) must end with exit status 2
and one line naming ``-o`` (or the α's clip beside it), never the staging name, and leave
nothing behind; the input is never touched.

Failures are made where FFmpeg makes them: the real container and encoder raise PyAV's own
error (``av.error.err_check``, carrying the file name FFmpeg gives it) at the chosen moment.
"""

from __future__ import annotations

import errno
import os
import types

import fuzz_support
import pytest
from fuzz_support import assert_one_line_error, run

import support

av = pytest.importorskip("av")
from video_clips import make_clip  # noqa: E402  (needs av)

import dotrestore.io.files as files  # noqa: E402
import dotrestore.io.video.remux as remux  # noqa: E402
import dotrestore.io.video.write as write  # noqa: E402
from dotrestore.errors import InputError  # noqa: E402
from dotrestore.io.video import VideoWriter, concat_segments, probe, read_frames  # noqa: E402

one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)
world = pytest.fixture(scope="module", name="world")(fuzz_support.world)

AVERROR_EXTERNAL = 542398533  # FFmpeg's "Generic error in an external library" (an encoder's own failure)


class FailingOutput:
    """A real PyAV output container that fails at one moment: ``header`` (start_encoding), the
    ``third`` video packet, the first ``sound`` packet, or the ``trailer`` (close)."""

    def __init__(self, real, when: str, code: int = errno.ENOSPC):
        self.real, self.when, self.code, self.videos = real, when, code, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def fail(self):
        av.error.err_check(-self.code, self.real.name)  # what FFmpeg raises, naming the file it writes

    def start_encoding(self):
        if self.when == "header":
            self.fail()
        return self.real.start_encoding()

    def mux(self, packets):
        for packet in packets if isinstance(packets, list) else [packets]:
            self.videos += packet.stream.type == "video"
            if (self.when == "third" and self.videos == 3) or (self.when == "sound" and packet.stream.type == "audio"):
                self.fail()
            self.real.mux(packet)

    def close(self):
        self.real.close()
        if self.when == "trailer":
            self.fail()


class FailingStream:
    """A real video stream whose encoder fails on its third frame, as an encoder library does."""

    def __init__(self, real):
        self.real, self.frames = real, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def encode(self, frame=None):
        self.frames += 1
        if self.frames == 3:
            av.error.err_check(-AVERROR_EXTERNAL)  # the encoder's error names no file
        return self.real.encode(frame)


def _failing_container(monkeypatch, module, when, code=errno.ENOSPC):
    real = module.open_output
    monkeypatch.setattr(module, "open_output", lambda av_, path, fmt: FailingOutput(real(av_, path, fmt), when, code))


def _inject(monkeypatch, point: str) -> None:
    """Make the output fail at ``point`` (see FAILURES)."""
    if point in ("header", "third", "sound", "trailer"):
        _failing_container(monkeypatch, write, point)
    elif point == "trailer EIO":
        _failing_container(monkeypatch, write, "trailer", errno.EIO)
    elif point == "encoder":
        real = VideoWriter._add_video
        monkeypatch.setattr(VideoWriter, "_add_video", lambda self, *a: FailingStream(real(self, *a)))
    elif point == "python write":  # an OSError naming no file, as a full disk's write() raises
        real, calls = VideoWriter._mux, [0]

        def mux(self, packets):
            calls[0] += 1
            if calls[0] == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, packets)
        monkeypatch.setattr(VideoWriter, "_mux", mux)
    elif point == "open":
        real_open = av.open

        def refusing(file, mode="r", **kwargs):
            if mode == "w" and isinstance(file, str):  # a file, not the check's output in memory
                av.error.err_check(-errno.EACCES, str(file))
            return real_open(file, mode, **kwargs)
        monkeypatch.setattr(av, "open", refusing)
    elif point == "create":  # no inode left for the staging file: mkstemp's own error names it
        def mkstemp(prefix="", suffix="", dir=None):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(dir, f"{prefix}abcdefgh{suffix}"))
        monkeypatch.setattr(files, "tempfile", types.SimpleNamespace(mkstemp=mkstemp))
    elif point == "move":
        real_replace = os.replace

        def replace(src, dst, **kwargs):
            if os.path.basename(src).startswith(".out"):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, dst)
            return real_replace(src, dst, **kwargs)
        monkeypatch.setattr(os, "replace", replace)
    else:
        raise AssertionError(point)


#: failure point -> what the line must say besides the clip's name
FAILURES = {
    "create": "No space left", "open": "Permission denied", "header": "No space left",
    "encoder": "external library", "third": "No space left", "python write": "No space left",
    "sound": "No space left", "trailer": "No space left", "trailer EIO": "Input/output error",
    "move": "cross-device",
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Six 32x32 frames with AAC sound (the sound packets interleave with the frames)."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=6, size=32, audio="aac")


def _assert_named_and_clean(code, err, shown, folder, clip, before, kept=()):
    line = assert_one_line_error(code, err, shown)
    assert not any(mark in err for mark in (".new", ".part", ".tmp", "abcdefgh")), err  # no staging name
    assert sorted(os.listdir(folder)) == list(kept), "a failed run leaves nothing"
    assert support.tree_digest(clip.parent) == before, "the input is never touched"
    return line


@pytest.mark.parametrize("extension", [".mkv", ".mp4"])
@pytest.mark.parametrize("point", sorted(FAILURES))
def test_a_failure_while_writing_names_the_output_clip(world, clip, tmp_path, monkeypatch, point, extension):
    _, op, _, _ = world
    folder = tmp_path / "out"
    folder.mkdir()
    out, before = folder / f"out{extension}", support.tree_digest(clip.parent)
    _inject(monkeypatch, point)
    code, err = run("apply", op, clip, "-o", out, "--no-progress")
    line = _assert_named_and_clean(code, err, out, folder, clip, before)
    assert FAILURES[point] in line, line


@pytest.mark.parametrize("point", ["third", "encoder", "trailer"])
def test_with_several_alphas_the_line_names_the_alphas_clip(world, clip, tmp_path, monkeypatch, point):
    _, op, _, _ = world
    folder = tmp_path / "out"
    folder.mkdir()
    before = support.tree_digest(clip.parent)
    _inject(monkeypatch, point)
    code, err = run("apply", op, clip, "-o", folder / "out.mkv", "--alpha", "0,0.5", "--no-progress")
    _assert_named_and_clean(code, err, folder / "out_alpha_0.mkv", folder, clip, before)


@pytest.mark.skipif(not fuzz_support.can_mount(), reason="a real full disk needs root (tmpfs) on Linux")
@pytest.mark.parametrize("free", [0, 4096])
def test_a_really_full_disk_names_the_output_clip(world, clip, tmp_path, free):
    _, op, _, _ = world
    with fuzz_support.tmpfs(tmp_path / "disk", free=free) as folder:
        before = support.tree_digest(clip.parent)
        code, err = run("apply", op, clip, "-o", folder / "out.mkv", "--no-progress")
        _assert_named_and_clean(code, err, folder / "out.mkv", folder, clip, before, kept=["filler"])


@pytest.mark.parametrize("point", ["header", "third", "trailer"])
def test_the_api_writers_name_their_destination(clip, tmp_path, monkeypatch, point):
    """VideoWriter and concat_segments (what joins torchrun's segments) stage their own files too."""
    info = probe(clip)
    frames = [f.frame for f in read_frames(info)]
    segment = tmp_path / "segment.mkv"
    with VideoWriter(segment, info, copy_streams=False) as writer:
        for frame in frames:
            writer.write(frame)
    for module, make in ((write, lambda: _write_clip(tmp_path / "written.mkv", info, frames)),
                         (remux, lambda: concat_segments([segment], tmp_path / "joined.mkv", audio_from=info))):
        with monkeypatch.context() as patch:
            _failing_container(patch, module, point)
            with pytest.raises((InputError, OSError)) as caught:
                make()
        shown = str(caught.value)
        assert "written.mkv" in shown or "joined.mkv" in shown, shown
        assert ".tmp" not in shown, shown
    assert sorted(os.listdir(tmp_path)) == ["segment.mkv"]


def _write_clip(path, info, frames):
    with VideoWriter(path, info) as writer:
        for frame in frames:
            writer.write(frame)


@pytest.mark.parametrize("point", ["header", "third", "trailer"])
def test_joining_torchrun_segments_names_the_alphas_clip(clip, tmp_path, monkeypatch, point):
    """Rank 0 joins every rank's segment (hidden files beside the output) into the α's clip."""
    from dotrestore.tasks import apply_video

    info = probe(clip)
    frames = [f.frame for f in read_frames(info)]
    segments = []
    for rank, (start, stop) in enumerate([(0, 3), (3, 6)]):
        part = tmp_path / f".out.mkv.rank{rank}.part.mkv"
        with VideoWriter(part, info, start=start, copy_streams=False, atomic=False) as writer:
            for frame in frames[start:stop]:
                writer.write(frame)
        segments.append({0.0: str(part)})
    plan = apply_video.VideoPlan(info, [0.0], {0.0: tmp_path / "out.mkv"})
    _failing_container(monkeypatch, remux, point)
    staged = {}
    with pytest.raises((InputError, OSError)) as caught:
        apply_video._finish(plan, segments, {}, staged)
    assert str(tmp_path / "out.mkv") in str(caught.value) and ".part" not in str(caught.value), caught.value
    assert ".new" not in str(caught.value) and not (tmp_path / "out.mkv").exists()
