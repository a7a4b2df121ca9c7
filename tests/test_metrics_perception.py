"""Perception measures against constructed cases with known answers."""

import math

import pytest
import torch

from dotrestore.experiment.degradations import gaussian_blur
from dotrestore.metrics.perception import halo_measure, radial_power_spectrum, spectrum_distance, strong_edge_band


def _textured(seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, size // 8, size // 8, generator=g)
    x = torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)[0]
    return (0.7 * x + 0.3 * torch.rand(3, size, size, generator=g)).clamp(0, 1)


def _step(size=48, lo=0.2, hi=0.8):
    x = torch.full((3, size, size), lo)
    x[:, :, size // 2 :] = hi
    return x


def test_clean_image_scores_zero():
    x = _textured()
    assert spectrum_distance(x, x) == 0.0
    assert halo_measure(x, x) == 0.0
    assert halo_measure(_step(), _step()) == 0.0


def test_spectrum_distance_scaling_is_closed_form():
    # Scaling the grey image's zero-mean part by s multiplies every nonzero-frequency power by s²:
    # the distance is |log10 s²| exactly.
    x = _textured(1)
    mean = x.mean()
    for s in (0.5, 2.0):
        y = mean + s * (x - mean)
        assert spectrum_distance(y, x) == pytest.approx(abs(math.log10(s * s)), rel=1e-6)


def test_spectrum_distance_sees_blur_and_noise():
    x = _textured(2)
    blurred = gaussian_blur(x[None], 1.5)[0]
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert spectrum_distance(blurred, x) > 0.5
    assert spectrum_distance(noisy, x) > 0.1
    assert spectrum_distance(gaussian_blur(x[None], 3.0)[0], x) > spectrum_distance(blurred, x)


def test_radial_spectrum_parseval():
    # A single cosine along x of frequency k/N lands in ring k and nowhere else (apart from DC).
    n, k = 32, 5
    u = torch.arange(n, dtype=torch.float64)
    g = torch.cos(2 * math.pi * k * u / n)[None, :].expand(n, n)
    p = radial_power_spectrum(g)
    assert p.argmax().item() == k
    assert p[torch.arange(p.numel()) != k].abs().max() < 1e-20


def test_halo_of_ringing_step_is_positive_and_blur_is_not():
    clean = _step()
    ringing = clean.clone()
    ringing[:, :, 24:26] += 0.1  # light fringe on the bright side
    ringing[:, :, 22:24] -= 0.1  # dark fringe on the dark side
    blurred = gaussian_blur(clean[None], 2.0)[0]
    assert halo_measure(ringing, clean) > 0.02
    assert halo_measure(blurred, clean) == pytest.approx(0.0, abs=1e-7)


def test_halo_closed_form():
    # Uniform overshoot δ on every band pixel of one channel out of three: h = δ / 3.
    clean = _step()
    band = strong_edge_band(clean)
    assert band.any() and not band.all()
    delta = 0.05
    x = clean.clone()
    x[0][band] = clean[0][band] + delta * torch.where(clean[0][band] > 0.5, 1.0, -1.0)
    assert halo_measure(x, clean) == pytest.approx(delta / 3, rel=1e-6)
    # Changes away from strong edges do not count.
    far = clean.clone()
    far[:, ~band] += 0.3
    assert halo_measure(far, clean) == 0.0


def test_flat_image_has_no_edges():
    flat = torch.full((3, 32, 32), 0.5)
    assert halo_measure(flat + 0.2, flat) == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        halo_measure(torch.rand(3, 16, 16), torch.rand(3, 16, 17))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        spectrum_distance(torch.rand(16, 16), torch.rand(16, 16))
