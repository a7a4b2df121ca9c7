"""Applying an operator to a video clip, and fitting from clips: outputs named per α, the input's frames
kept exactly at α = 1 with their timing and sound, static frames staying static at α = 0 (a
stochastic map included), fits from sampled frames equal to fits from the same frames as PNGs,
the flicker ratio, and the frame stream (prefetching, names, early stops)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support import write_images

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

from video_clips import all_frames, as_levels, audio_packets, frame_pairs, make_clip, picture, relative_times  # noqa: E402

from dotrestore import DOT  # noqa: E402
from dotrestore.cli import main  # noqa: E402
from dotrestore.errors import InputError  # noqa: E402
from dotrestore.io import images as data  # noqa: E402
from dotrestore.io.video import probe, read_frames  # noqa: E402
from dotrestore.metrics import flicker_ratio, temporal_change  # noqa: E402
from dotrestore.runtime.frames import TrainingInputs, frame_batches, prefetched  # noqa: E402
from dotrestore.tasks.apply_video import plan_video, video_targets, write_video  # noqa: E402

import _torchrun  # noqa: E402

MOVING = 10  # the clip's disc moves for this many frames, then the picture stands still


def halting(t: int):
    return picture(min(t, MOVING - 1))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """24 lossless frames (FFV1, so still frames decode identically) with an AAC tone."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mkv", frames=24, codec="ffv1", pix_fmt="bgr0",
                     audio="aac", pictures=halting)


@pytest.fixture(scope="module")
def operator(clip, tmp_path_factory) -> Path:
    """Fitted by the CLI from the clip's frames (source) and random images (target), pixel codec."""
    folder = tmp_path_factory.mktemp("op")
    op = folder / "op.safetensors"
    clean = write_images(folder / "clean", 3, seed=1, size=(64, 64))
    assert main(["fit", "--source", str(clip), "--target", str(clean), "--vae", "pixel", "--device", "cpu",
                 "--no-progress", "-o", str(op)]) == 0
    return op


def test_outputs_are_named_per_alpha_like_the_image_folders(tmp_path):
    assert video_targets(tmp_path / "out.mkv", [0.5]) == {0.5: tmp_path / "out.mkv"}
    assert video_targets(tmp_path / "out.mp4", [0, -0.0, 1, 0.25]) == {
        0.0: tmp_path / "out_alpha_0.mp4", 1.0: tmp_path / "out_alpha_1.mp4", 0.25: tmp_path / "out_alpha_0.25.mp4"}


def test_plan_refuses_before_any_work(clip, tmp_path):
    plan = plan_video([clip], tmp_path / "out.mkv", [0, 1], max_pixels=None)
    assert plan.frame_count == 24 and plan.alphas == [0.0, 1.0] and list(tmp_path.iterdir()) == []
    cases = [
        (([clip, clip], tmp_path / "o.mkv", {}), "one clip per run"),
        (([clip], clip, {"overwrite": True}), "is one of the inputs"),
        (([clip], tmp_path / "o.gif", {}), "video outputs are"),
        (([clip], tmp_path / "o.mkv", {"crf": 20}), "FFV1 \\(.mkv\\) is lossless"),
        (([clip], tmp_path / "o.mp4", {"codec": "nonesuch"}), "no such video encoder"),
        (([clip], tmp_path, {}), "is a folder"),
    ]
    for (inputs, out, options), problem in cases:
        with pytest.raises(InputError, match=problem):
            plan_video(inputs, out, [0.0], max_pixels=None, **options)
    (tmp_path / "o.mkv").write_bytes(b"old")
    with pytest.raises(InputError, match="already exists"):
        plan_video([clip], tmp_path / "o.mkv", [0.0], max_pixels=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mkv"]


def test_alpha_one_is_the_clip_itself_with_its_timing_and_sound(clip, operator, tmp_path, capsys):
    out = tmp_path / "deep" / "out.mkv"
    assert main(["apply", str(operator), str(clip), "-o", str(out), "--alpha", "0", "--alpha", "1",
                 "--device", "cpu", "--batch-size", "4"]) == 0
    assert "wrote 24 frames" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["out_alpha_0.mkv", "out_alpha_1.mkv"]  # nothing else
    source = probe(clip)
    for name in ("out_alpha_0.mkv", "out_alpha_1.mkv"):
        result = probe(out.parent / name)
        assert result.frame_count == 24 and result.frame_rate == source.frame_rate
        assert result.duration == pytest.approx(source.duration, abs=1e-3)
        assert relative_times(result) == pytest.approx(relative_times(source), abs=1e-3)
        assert audio_packets(out.parent / name) == audio_packets(clip)  # the sound, byte for byte
    changed = []
    for x, one, zero in zip(all_frames(clip), all_frames(out.parent / "out_alpha_1.mkv"),
                            all_frames(out.parent / "out_alpha_0.mkv"), strict=True):
        assert torch.equal(as_levels(one.frame), as_levels(x.frame)), x.index
        changed.append(float((zero.frame - x.frame).abs().mean()) * 255)
    assert min(changed) > 1.0  # α = 0 does transport every frame


def test_still_frames_stay_still_and_batches_do_not_matter(clip, operator, tmp_path):
    for batch in (1, 4):
        assert main(["apply", str(operator), str(clip), "-o", str(tmp_path / f"b{batch}.mkv"), "--device", "cpu",
                     "--batch-size", str(batch), "--no-progress"]) == 0
    one, four = all_frames(tmp_path / "b1.mkv"), all_frames(tmp_path / "b4.mkv")
    for a, b in zip(one, four, strict=True):
        assert float((a.frame - b.frame).abs().max()) * 255 <= 1.0001
    # identical inputs, identical outputs: once the motion has stopped (the first still frame,
    # MOVING - 1, still carries the moving frames' detail; the next takes its own)
    still = [f.frame for f in one[MOVING:]]
    assert temporal_change(still) * 255 <= 0.1
    assert temporal_change([f.frame for f in one[:MOVING]]) * 255 > 1.0


def test_a_stochastic_map_keeps_still_frames_still(tmp_path):
    """Eq. 19's noise is drawn per latent position, not per frame: a static scene keeps its grain."""
    grey = make_clip(tmp_path / "grey.mkv", frames=12, codec="ffv1", pix_fmt="bgr0", audio=None,
                     pictures=lambda t: picture(min(t, 3)).mean(-1, keepdims=True).repeat(3, -1).astype("uint8"))
    frames = [f.frame for f in read_frames(grey)]
    colour = [torch.from_numpy(picture(t)).permute(2, 0, 1).float() / 255 for t in range(0, 40, 5)]
    dot = DOT(codec="pixel", lowpass_sigma=0, stochastic="always", runtime={"device": "cpu", "progress": False})
    dot.fit(frames, colour)  # grey source: a singular Σs, a large noise covariance
    assert float(dot.noise_cov_.diagonal().mean()) > 1e-3
    dot.save(tmp_path / "op.safetensors")
    assert main(["apply", str(tmp_path / "op.safetensors"), str(grey), "-o", str(tmp_path / "out.mkv"),
                 "--device", "cpu", "--no-progress"]) == 0
    out = [f.frame for f in read_frames(tmp_path / "out.mkv")]
    assert temporal_change(out[4:]) * 255 <= 0.1  # frame 3, the first still one, settles (temporal blend)
    reseeded = DOT.load(tmp_path / "op.safetensors", runtime={"device": "cpu", "progress": False})
    reseeded.seed = 1  # the control: other draws change the picture by many levels
    assert float((reseeded.transform(frames[5]) - out[5]).abs().mean()) * 255 > 2.0


def test_fit_from_sampled_frames_equals_fit_from_them_as_images(clip, tmp_path):
    frames = tmp_path / "frames"
    for item in read_frames(clip, step=5):
        data.save_image(item.frame, frames / f"f{item.index:03d}.png")
    clean = write_images(tmp_path / "clean", 2, seed=3, size=(64, 64))
    common = ["--target", str(clean), "--vae", "pixel", "--device", "cpu", "--no-progress", "--workers", "0"]
    assert main(["fit", "--source", str(clip), "--frame-step", "5", "-o", str(tmp_path / "v.safetensors"), *common]) == 0
    assert main(["fit", "--source", str(frames), "-o", str(tmp_path / "i.safetensors"), *common]) == 0
    a, b = load_file(tmp_path / "v.safetensors"), load_file(tmp_path / "i.safetensors")
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), rtol=1e-9, atol=1e-12), key
    mixed = DOT.load(tmp_path / "v.safetensors")
    assert mixed.n_source_images_ == 5  # frames 0, 5, 10, 15, 20
    # a clip and a folder of images in one list; a clip as the target
    assert main(["fit", "--source", str(clip), str(frames), "--target", str(clip), "--frame-step", "12", "-o",
                 str(tmp_path / "m.safetensors"), "--vae", "pixel", "--device", "cpu", "--no-progress"]) == 0
    mixed = DOT.load(tmp_path / "m.safetensors")
    assert (mixed.n_source_images_, mixed.n_target_images_) == (2 + 5, 2)


def test_frame_step_default_and_refusal(clip, tmp_path, capsys):
    inputs = TrainingInputs.from_paths([clip], max_pixels=None).checked(None)
    assert inputs.steps() == [1] and inputs.frame_count() == 24 and inputs.frame_count(5) == 5
    clean = write_images(tmp_path / "clean", 2, seed=3)
    assert main(["fit", "--source", str(clean), "--target", str(clean), "--frame-step", "2", "--vae", "pixel",
                 "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "--frame-step: applies to video inputs only" in capsys.readouterr().err


def test_video_flags_on_images_are_refused(operator, tmp_path, capsys):
    images = write_images(tmp_path / "in", 1, seed=0)
    assert main(["apply", str(operator), str(images), "-o", str(tmp_path / "out"), "--crf", "20"]) == 2
    assert "--crf: applies to video inputs only" in capsys.readouterr().err


def test_progress_counts_frames(clip, operator, tmp_path):
    dot = DOT.load(operator, runtime={"device": "cpu", "progress": False, "batch_size": 5})
    done = []
    plan = plan_video([clip], tmp_path / "o.mkv", [0.0], max_pixels=None)
    assert write_video(dot, plan, progress=done.append) == 24
    assert done == [5, 10, 15, 20, 24]


def test_flicker_ratio_measures_added_change():
    g = torch.Generator().manual_seed(0)
    clip = [torch.rand(3, 16, 16, generator=g) for _ in range(6)]
    assert flicker_ratio(clip, clip) == 1.0
    assert flicker_ratio([2 * f for f in clip], clip) == pytest.approx(2.0)
    assert flicker_ratio(torch.stack(clip)[None], torch.stack(clip)[None]) == 1.0  # one batch of all frames
    assert temporal_change([clip[0]] * 4) == 0.0
    with pytest.raises(ValueError, match="never change"):
        flicker_ratio(clip[:3], [clip[0]] * 3)


def test_frame_batches_name_the_frames_and_stop_early(clip):
    info = probe(clip)
    batches = list(frame_batches(info, 3, 14, step=2, batch_size=2))
    assert [b.positions for b in batches] == [[3, 5], [7, 9], [11, 13]]
    assert batches[0].names == [f"{clip} frame 3", f"{clip} frame 5"] and batches[0].images.shape == (2, 3, 256, 256)
    stream = frame_batches(info, batch_size=1)
    next(stream)
    stream.close()  # the reader thread stops, its decoder closed
    assert not [t for t in threading.enumerate() if t.name == "dotrestore-frames"]


def test_prefetch_raises_where_the_producer_failed():
    def produce():
        yield 1
        yield 2
        raise InputError("clip.mp4 frame 2", "cannot be decoded")

    seen = []
    with pytest.raises(InputError, match="clip.mp4 frame 2"):
        for item in prefetched(produce, depth=1):
            seen.append(item)
    assert seen == [1, 2]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_write_the_clip_of_one_and_fit_alike(clip, operator, tmp_path):
    def apply(out):
        return ["-m", "dotrestore", "apply", operator, clip, "-o", out, "--alpha", "0", "--alpha", "1",
                "--device", "cpu", "--no-progress", "--batch-size", "2"]

    one, two = _torchrun.one(apply(tmp_path / "one.mkv")), _torchrun.two(apply(tmp_path / "two.mkv"))
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-3000:]
    assert two.stdout.count("wrote 24 frames") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one_alpha_0.mkv", "one_alpha_1.mkv", "two_alpha_0.mkv",
                                                           "two_alpha_1.mkv"]  # no segment left
    for alpha in ("alpha_0", "alpha_1"):
        a, b = tmp_path / f"one_{alpha}.mkv", tmp_path / f"two_{alpha}.mkv"
        for x, y in frame_pairs(a, b):
            assert (x.index, x.pts) == (y.index, y.pts) and torch.equal(as_levels(x.frame), as_levels(y.frame))
        assert audio_packets(a) == audio_packets(b) == audio_packets(clip)
        assert probe(a).duration == pytest.approx(probe(b).duration, abs=1e-3)

    _torchrun.one_and_two(lambda name: ["-m", "dotrestore", "fit", "--source", clip, "--target", clip,
                                        "--frame-step", "3", "--vae", "pixel", "--device", "cpu", "--no-progress",
                                        "-o", tmp_path / f"{name}.safetensors"])
    _torchrun.assert_same_operator(tmp_path / "one.safetensors", tmp_path / "two.safetensors")
