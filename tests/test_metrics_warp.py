"""The warp error (Lai et al. 2018) and the motion it rests on: exact under known motion, close with
DIS flow estimated on the clean frames, blind to blur, counting fresh per-frame change in levels,
and leaving out what the forward–backward check cannot trust."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("cv2", reason="OpenCV (the video extra) is not installed")

from dotrestore import motion  # noqa: E402
from dotrestore.metrics import WarpError, temporal_change, warp_error  # noqa: E402

H, W, STEP = 96, 128, 3


def texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A photograph-like field: smooth colour plus detail at several scales, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(1, 3, height, width)
    for cells, weight in ((6, 0.5), (24, 0.3), (height // 2, 0.2)):
        field = torch.rand(1, 3, cells, cells * width // height, generator=g)
        out += weight * F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)
    return out[0].clamp(0, 1)


def blurred(image: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x**2 / (2 * sigma**2))
    k = k / k.sum()
    image = F.pad(image[None], (radius,) * 4, mode="reflect")
    image = F.conv2d(image, k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(image, k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)[0]


def pan(picture: torch.Tensor, frames: int) -> list[torch.Tensor]:
    """Frames of a window moving STEP pixels right per frame: the scene moves by (−STEP, 0)."""
    return [picture[:, :H, STEP * t:STEP * t + W] for t in range(frames)]


@pytest.fixture(scope="module")
def picture() -> torch.Tensor:
    return texture(H, W + STEP * 12)


def test_a_pan_has_no_warp_error_under_its_motion_sharp_or_blurred(picture):
    sharp, soft = pan(picture, 8), pan(blurred(picture), 8)
    for frames in (sharp, soft):
        assert warp_error(frames, motion=(-STEP, 0)) < 1e-4  # integer motion: exact
        assert warp_error(frames, sharp) < 0.5  # DIS on the clean frames: close to exact
    # the plain frame difference rewards blur; the warp error does not
    assert temporal_change(sharp) > 1.3 * temporal_change(soft) > 0
    assert warp_error(sharp, motion=(0, 0)) > 5  # the wrong motion is no motion compensation


def test_fresh_noise_per_frame_is_counted_in_levels(picture):
    """E|n_t − n_{t−1}| for independent N(0, σ²) per pixel is 2σ/√π."""
    sigma = 3 / 255
    g = torch.Generator().manual_seed(1)
    frames = [f + sigma * torch.randn(f.shape, generator=g) for f in pan(picture, 6)]
    expected = 2 * 3 / math.sqrt(math.pi)
    assert warp_error(frames, motion=(-STEP, 0)) == pytest.approx(expected, rel=0.03)
    assert warp_error(frames, pan(picture, 6)) == pytest.approx(expected, rel=0.1)  # flow from the clean frames


def test_known_flows_and_batches_give_the_same_value(picture):
    frames = pan(picture, 5)
    flow = motion.translation_flow((H, W), -STEP, 0)
    noisy = [f + 0.01 * torch.randn(f.shape, generator=torch.Generator().manual_seed(t)) for t, f in enumerate(frames)]
    by_tuple = warp_error(noisy, motion=(-STEP, 0))
    assert warp_error(noisy, motion=[None] + [flow] * 4) == by_tuple
    assert warp_error(noisy, motion=lambda t: flow) == by_tuple
    assert warp_error([torch.stack(noisy[:2]), torch.stack(noisy[2:])], motion=(-STEP, 0)) == by_tuple
    streaming = WarpError()
    streaming.update(torch.stack(noisy[:3]), torch.stack(frames[:3])).update(torch.stack(noisy[3:]), torch.stack(frames[3:]))
    assert streaming.compute() == pytest.approx(warp_error(noisy, frames), abs=1e-9)
    assert len(streaming.per_frame) == 4


def test_pixels_the_previous_frame_never_saw_are_left_out(picture):
    """With the motion known, the column that entered the frame is outside the warp: not counted,
    however different it is."""
    frames = pan(picture, 2)
    frames[1] = frames[1].clone()
    frames[1][:, :, -STEP:] = 1 - frames[1][:, :, -STEP:]
    assert warp_error(frames, motion=(-STEP, 0)) < 1e-4


def test_forward_backward_check_leaves_out_occlusions(picture):
    """A square sliding over a still background: where it uncovers the background the two flows
    disagree; the rest is reliable."""
    background, square = picture[:, :H, :W], texture(32, 32, seed=5)
    frames = []
    for t in range(2):
        frame = background.clone()
        frame[:, 30:62, 20 + 6 * t:52 + 6 * t] = square
        frames.append(frame)
    grey = [motion.grey_levels(f) for f in frames]
    dis = motion.FlowEstimator("medium")
    backward, forward = dis(grey[1], grey[0]), dis(grey[0], grey[1])
    trusted = motion.reliable(backward, forward)
    assert trusted.mean() > 0.85
    assert abs(float(np.median(backward[35:57, 30:48, 0])) + 6) < 0.5  # the square moved 6 px right
    # the strip the square uncovered (columns 20-25) is mostly left out; the far background kept
    assert trusted[34:58, 20:26].mean() < 0.5 and trusted[:, 80:].mean() > 0.95
    masked, unmasked = warp_error(frames, frames, mask=True), warp_error(frames, frames, mask=False)
    assert masked < unmasked


def test_bad_calls_are_refused(picture):
    frames = pan(picture, 3)
    with pytest.raises(ValueError, match="either motion_frames"):
        warp_error(frames)
    with pytest.raises(ValueError, match="either motion_frames"):
        warp_error(frames, frames, motion=(1, 0))
    with pytest.raises(ValueError, match="frames change size"):
        warp_error([frames[0], frames[1][:, :, :-8]], motion=(0, 0))
    with pytest.raises(ValueError, match="at least two frames"):
        warp_error(frames[:1], motion=(0, 0))
    with pytest.raises(ValueError, match="preset"):
        motion.FlowEstimator("slowest")
