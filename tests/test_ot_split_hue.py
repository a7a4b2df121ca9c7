"""The detail band never turns the hue of a near-saturated pixel (:func:`keep_hue`,
:func:`clip_keeping_hue`): bright lights stayed yellow-white, not green-cyan."""

from __future__ import annotations

import math

import pytest
import torch

from dotrestore.ot.split import BRIGHT, GREY, SPLITS, clip_keeping_hue, keep_hue, recombine, split


def hue(x: torch.Tensor) -> torch.Tensor:
    """Hue angle (radians) of (B, 3, H, W) pixels: the direction of their chroma in the opponent plane."""
    r, g, b = x.unbind(1)
    return torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b)


def chroma(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(1, keepdim=True)).norm(dim=1)


def angle_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a - b + math.pi, 2 * math.pi).sub(math.pi).abs()


def bright_scene(seed: int, size: int = 40) -> torch.Tensor:
    """Smooth coloured glows near the top of the range, plus strong edges and dark areas."""
    g = torch.Generator().manual_seed(seed)
    glow = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 5, generator=g), size=size, mode="bicubic")
    x = 0.55 + 0.45 * glow.clamp(0, 1)
    x[..., : size // 4, :] *= 0.3  # a dark band: a strong edge across the image
    return x.clamp(0, 1)


@pytest.mark.parametrize("kind", SPLITS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_detail_band_never_turns_a_near_saturated_pixels_hue(kind, seed):
    x = bright_scene(seed)
    _, low = split(x, 4.0, kind)
    g = torch.Generator().manual_seed(100 + seed)
    # a decoded detail with strong colour of its own (±0.3 per channel), as a transport can give
    decoded = (x - low + GREY + 0.3 * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)
    out = recombine(decoded, low, kind, reference=x, sigma=4.0)
    assert out.min() >= 0 and out.max() <= 1
    near = (x.amax(1) >= BRIGHT[1]) & (chroma(x) > 0.05)  # x* near saturation, with a hue
    coloured = near & (chroma(out) > 1e-3)
    assert near.sum() > 100 and coloured.sum() > 50  # the test sees many such pixels, most keep colour
    assert angle_between(hue(out), hue(x))[coloured].max() < 1e-3
    # elsewhere the transported detail keeps its own colour: the rule is local, not global
    dark = torch.maximum(x.amax(1), out.amax(1)) < BRIGHT[0]
    assert dark.sum() > 100 and angle_between(hue(out), hue(x))[dark & (chroma(x) > 0.05)].max() > 0.5


def test_a_white_highlight_gets_no_colour():
    x = torch.full((1, 3, 8, 8), 0.9)  # a near-neutral light
    change = torch.tensor([-0.07, 0.09, 0.13]).view(1, 3, 1, 1).expand_as(x)  # the cyan core measured
    kept = keep_hue(change, x)
    assert torch.allclose(kept, torch.full_like(x, change.mean().item()), atol=1e-6)  # lighter, not coloured


def test_keep_hue_leaves_dark_pixels_alone_and_keeps_saturation_from_inverting():
    dark = torch.tensor([0.4, 0.2, 0.1]).view(1, 3, 1, 1)
    change = torch.tensor([-0.1, 0.1, 0.05]).view(1, 3, 1, 1)
    assert torch.equal(keep_hue(change, dark), change)
    orange = torch.tensor([0.95, 0.6, 0.2]).view(1, 3, 1, 1)
    towards_blue = -3 * (orange - orange.mean())  # would invert the chroma: orange -> blue
    out = orange + keep_hue(towards_blue, orange)
    assert chroma(out).max() < 1e-6  # at most grey, never blue


def test_clip_keeping_hue():
    x = torch.tensor([[1.2, 0.9, 0.3], [0.5, 0.2, -0.1], [0.3, 0.6, 0.9], [1.4, 1.3, 1.2]]).T.reshape(1, 3, 4, 1)
    out = clip_keeping_hue(x)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[..., 2, :], x[..., 2, :])  # in range: bit for bit
    moved = torch.tensor([0, 1, 3])
    assert angle_between(hue(out), hue(x))[0, moved[:2]].max() < 1e-5  # same hue, less saturated
    assert torch.allclose(out[..., 3, :], torch.ones(1, 3, 1))  # brighter than white: white
    per_channel = x.clamp(0, 1)  # what a per-channel clip does: turns orange yellower
    assert angle_between(hue(per_channel), hue(x))[0, 0] > 0.05
