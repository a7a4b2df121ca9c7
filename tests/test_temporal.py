"""Temporal consistency of the added detail (dotrestore.temporal): the detail moves with the scene
(the warp error of a boiling detail falls), the detail itself is kept, scene cuts and still frames
behave, any frame is reproduced bit for bit from its warm-up start, and `apply --temporal off`
is frame-by-frame DOT."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("cv2", reason="OpenCV (the video extra) is not installed")
av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

from test_metrics_warp import blurred, texture  # noqa: E402
from video_clips import all_frames, as_levels, make_clip  # noqa: E402

from dotrestore import DOT  # noqa: E402
from dotrestore.cli import main  # noqa: E402
from dotrestore.io.images import quantize  # noqa: E402
from dotrestore.metrics import temporal_change, warp_error  # noqa: E402
from dotrestore.temporal import TemporalDetail  # noqa: E402

H, W, STEP, FRAMES = 96, 128, 3, 14


@pytest.fixture(scope="module")
def scene():
    """x* (a blurred pan) and a frame-by-frame output whose detail is the scene's true detail,
    moving with it, plus a boil: fresh detail-like noise in every frame."""
    sharp = texture(H, W + STEP * FRAMES, seed=2)
    soft = blurred(sharp)
    x_star = [soft[:, :, STEP * t:STEP * t + W] for t in range(FRAMES)]
    truth = [(sharp - soft)[:, :, STEP * t:STEP * t + W] for t in range(FRAMES)]
    g = torch.Generator().manual_seed(3)
    boil = [0.6 * blurred(torch.randn(3, H, W, generator=g) * 0.05, 0.7) for _ in range(FRAMES)]
    outputs = [(x + d + b).clamp(0, 1) for x, d, b in zip(x_star, truth, boil)]
    return x_star, outputs, truth


def run(temporal: TemporalDetail, x_star, outputs, start: int = 0) -> list[torch.Tensor]:
    return [temporal(t, x_star[t], {0.0: outputs[t]})[0.0] for t in range(start, len(x_star))]


def test_the_added_detail_moves_with_the_scene_and_is_kept(scene):
    x_star, outputs, truth = scene
    steady = run(TemporalDetail(), x_star, outputs)
    before, after = warp_error(outputs, motion=(-STEP, 0)), warp_error(steady, motion=(-STEP, 0))
    assert after < 0.6 * before, (before, after)
    # the true (moving) detail is kept: its share in the added detail does not fall
    for t in (5, 12):
        added, true = steady[t] - x_star[t], truth[t]
        assert float((added * true).sum() / (true * true).sum()) > 0.85
    assert warp_error(steady, x_star) < 0.6 * warp_error(outputs, x_star)  # with flow estimated on x*


def test_any_frame_is_reproduced_from_its_warm_up_start(scene):
    x_star, outputs, _ = scene
    whole = run(TemporalDetail(), x_star, outputs)
    for start in (5, 8, 11):
        temporal = TemporalDetail()
        first = temporal.warm_up_start(start)
        assert start - first < 2 * temporal.period
        part = run(temporal, x_star, outputs, first)[start - first:]
        assert all(torch.equal(a, b) for a, b in zip(part, whole[start:], strict=True)), start
    with pytest.raises(ValueError, match="in order"):
        temporal(3, x_star[3], {0.0: outputs[3]})
    with pytest.raises(ValueError, match="chain's first frame"):
        TemporalDetail()(5, x_star[5], {0.0: outputs[5]})


def test_scene_cuts_and_still_frames(scene):
    x_star, outputs, _ = scene
    other = texture(H, W, seed=9)
    cut_x, cut_out = x_star[:6] + [blurred(other)] * 3, outputs[:6] + [other] * 3
    steady = run(TemporalDetail(), cut_x, cut_out)
    assert torch.allclose(steady[6], cut_out[6], atol=1e-6)  # after a cut: the frame's own detail
    assert temporal_change(steady[6:]) * 255 < 0.1  # then a still scene stays still


def test_alpha_one_is_exact_and_off_is_frame_by_frame(tmp_path):
    frames = [quantize(texture(64, 64 + 2 * 10, seed=4)[:, :, 2 * t:2 * t + 64]) for t in range(10)]
    levels = lambda t: as_levels(frames[t]).permute(1, 2, 0).numpy()  # noqa: E731
    clip = make_clip(tmp_path / "x.mkv", frames=10, codec="ffv1", pix_fmt="bgr0", audio=None, size=64,
                     pictures=levels)
    dot = DOT(codec="pixel", runtime={"device": "cpu", "progress": False})
    dot.fit(frames, [texture(64, 64, seed=s) for s in range(5, 9)])
    dot.save(tmp_path / "op.safetensors")
    common = ["--device", "cpu", "--no-progress", "--batch-size", "3", "--alpha", "0", "--alpha", "1"]
    for mode in ("on", "off"):
        assert main(["apply", str(tmp_path / "op.safetensors"), str(clip), "-o", str(tmp_path / f"{mode}.mkv"),
                     "--temporal", mode, *common]) == 0
    for mode in ("on", "off"):
        for x, one in zip(all_frames(clip), all_frames(tmp_path / f"{mode}_alpha_1.mkv"), strict=True):
            assert torch.equal(as_levels(one.frame), as_levels(x.frame))
    by_frame = [dot.transform(f, alpha=0.0) for f in frames]
    off = [f.frame for f in all_frames(tmp_path / "off_alpha_0.mkv")]
    on = [f.frame for f in all_frames(tmp_path / "on_alpha_0.mkv")]
    assert max(float((a - b).abs().max()) for a, b in zip(off, by_frame)) * 255 <= 1.0001
    assert max(float((a - b).abs().max()) for a, b in zip(on, by_frame)) * 255 > 1  # on does change frames


def test_temporal_flag_is_for_video_only(tmp_path, capsys):
    from support import write_images

    images = write_images(tmp_path / "in", 2, seed=1, size=(32, 32))
    dot = DOT(codec="pixel", runtime={"device": "cpu", "progress": False})
    dot.fit([torch.rand(3, 32, 32) for _ in range(3)], [torch.rand(3, 32, 32) for _ in range(3)])
    dot.save(tmp_path / "op.safetensors")
    code = main(["apply", str(tmp_path / "op.safetensors"), str(images), "-o", str(tmp_path / "out"),
                 "--temporal", "off", "--device", "cpu", "--no-progress"])
    assert code == 2 and "--temporal" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["apply", str(tmp_path / "op.safetensors"), str(images), "-o", str(tmp_path / "out"),
              "--temporal", "sideways"])
    assert exc.value.code == 2


def test_fine_detail_survives_sub_pixel_motion():
    """At 1.5 px per frame every carried frame is resampled, which softens the finest detail
    frame after frame; the octave gains give each band back the energy of the frame's own."""
    from dotrestore.octaves import octave_bands

    frames, width = 12, W
    big = texture(H, 2 * width + 3 * frames, seed=5)
    sharp = [big[:, :, 3 * t:3 * t + 2 * width:2] for t in range(frames)]  # 1.5 px per frame
    x_star = [blurred(s, 1.0) for s in sharp]
    g = torch.Generator().manual_seed(6)
    outputs = [(x + (s - x) + 0.03 * torch.randn(3, H, width, generator=g)).clamp(0, 1)
               for x, s in zip(x_star, sharp)]
    steady = run(TemporalDetail(), x_star, outputs)

    def finest(image, star):
        return float((octave_bands((image - star).permute(1, 2, 0).numpy())[-1][8:-8, 8:-8] ** 2).mean())

    kept = [finest(s, x) / finest(o, x) for s, o, x in zip(steady[4:], outputs[4:], x_star[4:])]
    assert min(kept) > 0.8, kept
    assert warp_error(steady, motion=(-1.5, 0)) < 0.7 * warp_error(outputs, motion=(-1.5, 0))
