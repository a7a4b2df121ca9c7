"""Octave bands (dotrestore.octaves): a partition of the spectrum that sums back to the image,
with each frequency in the band its cut-offs say, and sharp warps (dotrestore.motion.warp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dotrestore.octaves import OCTAVES, band_filters, octave_bands


def wave(height: int, width: int, frequency: float, angle: float = 0.3) -> np.ndarray:
    """(H, W, 3) plane wave of ``frequency`` cycles per pixel."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = 2 * math.pi * frequency * (math.cos(angle) * xs + math.sin(angle) * ys)
    return np.repeat(np.sin(phase)[..., None], 3, -1).astype(np.float32)


def test_filters_are_a_partition_of_unity():
    filters = band_filters(40, 64)
    assert len(filters) == len(OCTAVES) + 1
    assert torch.allclose(sum(filters), torch.ones_like(filters[0]), atol=1e-6)
    assert all(float(f.min()) >= -1e-6 for f in filters)


def test_bands_sum_to_the_image_and_hold_their_frequencies():
    rng = np.random.default_rng(0)
    image = rng.random((48, 80, 3), dtype=np.float32)
    assert np.allclose(sum(octave_bands(image)), image, atol=1e-5)
    # a wave well inside one octave lands in that band (away from the mirrored borders)
    for frequency, band in ((0.03, 0), (0.09, 1), (0.18, 2), (0.38, 3)):
        bands = octave_bands(wave(96, 96, frequency))
        energy = [float((b[16:-16, 16:-16] ** 2).mean()) for b in bands]
        assert energy[band] > 0.9 * sum(energy), (frequency, energy)


def test_bad_cuts_are_refused():
    with pytest.raises(ValueError, match="increase"):
        band_filters(8, 8, cuts=(0.25, 0.125))


def test_lanczos_warp_keeps_more_fine_detail_than_cubic():
    from dotrestore import motion as mo

    pytest.importorskip("cv2", reason="OpenCV (the video extra) is not installed")
    image = wave(64, 64, 0.35)
    flow = mo.translation_flow((64, 64), 0.5, 0.0)  # half a pixel: the worst case for interpolation
    kept = {name: float(mo.warp(image, flow, name)[8:-8, 8:-8].std()) for name in mo.INTERPOLATIONS}
    assert kept["linear"] < kept["cubic"] < kept["lanczos"] <= 1.0 * image.std() + 1e-3, kept
    with pytest.raises(ValueError, match="interpolation"):
        mo.warp(image, flow, "nearest")
