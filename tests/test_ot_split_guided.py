"""The guided filter of the detail split (ot/split.py): the banded float32 form equals the
plain float64 formula of He et al. (2013) within 1e-6, on photographs and hostile images."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dotrestore.io.images import read_image
from dotrestore.ot import split
from dotrestore.ot.split import guided_lowpass


def _box_reference(x: torch.Tensor, radius: int) -> torch.Tensor:
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode=mode), k, stride=1)


def guided_reference(x: torch.Tensor, sigma: float, eps: float = split.GUIDED_EPS) -> torch.Tensor:
    """He et al. eq. 5-8 written out in float64: eight padded box means over the whole image."""
    radius = max(1, math.ceil(2 * sigma))
    xd = x.to(torch.float64)
    if xd.shape[1] == 3:
        guide = (xd * torch.tensor((0.299, 0.587, 0.114), dtype=xd.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    else:
        guide = xd.mean(1, keepdim=True)
    mean_i, mean_x = _box_reference(guide, radius), _box_reference(xd, radius)
    cov_ix = _box_reference(guide * xd, radius) - mean_i * mean_x
    var_i = _box_reference(guide * guide, radius) - mean_i * mean_i
    a = cov_ix / (var_i + eps)
    b = mean_x - a * mean_i
    return (_box_reference(a, radius) * guide + _box_reference(b, radius)).to(x.dtype)


def _hostile() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    faint_step = torch.zeros(1, 3, 120, 130)
    faint_step[..., 60:] = 0.2  # a weak edge in a dark field, beside a saturated stripe
    faint_step[..., 30:36, :] = 1.0
    return {
        "uniform noise, batch of 2, odd sizes": torch.rand(2, 3, 97, 131, generator=g),
        "binary noise": (torch.rand(1, 3, 90, 110, generator=g) > 0.5).float(),
        "nearly flat": 0.49 + 0.02 * torch.rand(1, 3, 80, 90, generator=g),
        "dark with sparse highlights": torch.rand(1, 3, 80, 90, generator=g) ** 8,
        "bright with sparse shadows": 1 - torch.rand(1, 3, 80, 90, generator=g) ** 8,
        "faint step": faint_step,
        "one channel": torch.rand(1, 1, 50, 70, generator=g),
        "four channels": torch.rand(1, 4, 40, 60, generator=g),
        "thin: one band margin": torch.rand(1, 3, 17, 200, generator=g),
        "smaller than the margins": torch.rand(1, 3, 16, 200, generator=g),
        "tiny": torch.rand(1, 3, 5, 7, generator=g),
    }


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_guided_filter_equals_the_float64_formula_on_hostile_images(sigma):
    for name, x in _hostile().items():
        fast = guided_lowpass(x, sigma)
        assert fast.dtype == x.dtype and fast.shape == x.shape
        assert float((fast - guided_reference(x, sigma)).abs().max()) <= 1e-6, name


def test_guided_filter_equals_the_float64_formula_on_photographs(kodak24_dir):
    for path in sorted(Path(kodak24_dir).glob("*.png"))[::3]:
        x = read_image(path)[None]
        assert float((guided_lowpass(x, 4.0) - guided_reference(x, 4.0)).abs().max()) <= 1e-6, path.name


def test_bands_do_not_change_the_result(monkeypatch):
    x = torch.rand(1, 3, 150, 90, generator=torch.Generator().manual_seed(1))
    whole = guided_lowpass(x, 2.0)
    monkeypatch.setattr(split, "GUIDED_BAND_PIXELS", 1)  # bands of 4r = 16 rows, the last one short
    banded = guided_lowpass(x, 2.0)
    assert float((banded - whole).abs().max()) <= 1e-6
    assert float((banded - guided_reference(x, 2.0)).abs().max()) <= 1e-6


def test_float64_images_are_filtered_in_float64():
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = guided_lowpass(x, 4.0)
    assert out.dtype == torch.float64
    assert float((out - guided_reference(x, 4.0)).abs().max()) <= 1e-12
