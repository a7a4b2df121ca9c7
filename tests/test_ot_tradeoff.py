"""The trade-off blend with a per-pixel α: broadcasting, bit-equality with a number, feathering, latent grid."""

from __future__ import annotations

import pytest
import torch

from dotrestore.ot.tradeoff import as_alpha_map, blend, feather, feather_kernel, latent_alpha


def images(b=2, h=12, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7, 128 / 255, -0.5, 1.5, 1.0, 0.1 + 0.2])
def test_a_constant_map_gives_the_bits_of_its_number(alpha):
    x0, x_star = images()
    expected = blend(x0, x_star, alpha)
    for shape in ((12, 16), (1, 12, 16), (1, 1, 12, 16), (2, 1, 12, 16)):
        assert torch.equal(blend(x0, x_star, torch.full(shape, alpha, dtype=torch.float64)), expected)
    assert torch.equal(blend(x0, x_star, torch.full((12, 16), alpha, dtype=torch.float32)),
                       blend(x0, x_star, float(torch.tensor(alpha, dtype=torch.float32))))


def test_a_map_blends_pixel_by_pixel_and_per_image():
    x0, x_star = images()
    a = torch.zeros(2, 1, 12, 16, dtype=torch.float64)
    a[0, :, :, 8:] = 1.0
    a[1] = 0.25
    out = blend(x0, x_star, a)
    assert torch.equal(out[0, :, :, :8], x0[0, :, :, :8]) and torch.equal(out[0, :, :, 8:], x_star[0, :, :, 8:])
    assert torch.equal(out[1], blend(x0[1:], x_star[1:], 0.25)[0])


def test_bad_maps_are_refused():
    x0, x_star = images()
    for bad in (torch.zeros(12, 15), torch.zeros(3, 1, 12, 16), torch.zeros(2, 2, 12, 16), torch.zeros(16)):
        with pytest.raises(ValueError, match="α map must be"):
            blend(x0, x_star, bad)
    nan = torch.zeros(12, 16)
    nan[3, 4] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        as_alpha_map(nan, x0.shape)
    with pytest.raises(TypeError):
        as_alpha_map(torch.zeros(12, 16, dtype=torch.bool), x0.shape)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 7, 8])
def test_feather_turns_an_edge_into_a_ramp_of_one_level_per_pixel(width):
    kernel = feather_kernel(width)
    assert len(kernel) % 2 == 1 and abs(float(kernel.sum()) - 1) < 1e-15 and torch.equal(kernel, kernel.flip(0))
    a = torch.zeros(1, 1, 20, 40, dtype=torch.float64)
    a[..., 20:] = 1.0
    out = feather(a, width)
    row = out[0, 0, 5]
    assert torch.equal(out, out[:, :, :1].expand_as(out))  # a vertical edge stays vertical
    steps = row.diff()
    assert float(steps.min()) >= 0 and float(steps.max()) <= 1 / width + 1e-12  # monotone, ≤ 1/width per pixel
    changed = (row > 0) & (row < 1)
    assert int(changed.sum()) == (width if width % 2 == 0 else width - 1)  # only within the feather width
    assert torch.equal(row[:20 - width // 2], torch.zeros(20 - width // 2, dtype=torch.float64))
    assert abs(float(row[19] + row[20]) - 1) < 1e-12  # centred on the edge


def test_feather_keeps_constant_regions_exactly_and_zero_is_off():
    a = torch.full((2, 1, 9, 11), 0.1 + 0.2, dtype=torch.float64)
    assert torch.equal(feather(a, 5), a)
    spot = torch.zeros(1, 1, 9, 11, dtype=torch.float64)
    spot[..., 4, 5] = 1
    assert torch.equal(feather(spot, 0), spot)
    out = feather(spot, 3)
    assert abs(float(out.sum()) - 1) < 1e-12 and float(out.max()) == pytest.approx(1 / 9)


def test_latent_alpha_is_the_area_mean():
    a = torch.zeros(1, 1, 16, 24, dtype=torch.float64)
    a[..., :, 12:] = 1.0
    small = latent_alpha(a, (2, 3))
    assert small.shape == (1, 1, 2, 3)
    assert torch.allclose(small[0, 0], torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]], dtype=torch.float64))
