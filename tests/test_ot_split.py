"""Detail transport (lowpass_sigma): the split, the estimator's formula, what it keeps, files."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from dotrestore import DOT
from dotrestore.errors import InputError
from dotrestore.ot.split import GREY, lowpass, recombine, split


def textured(n: int, size: int = 48, seed: int = 0, tint=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """Smooth colour fields plus fine texture, optionally tinted (a global colour offset)."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=size, mode="bicubic", align_corners=False)
    base = 0.25 + 0.5 * base + torch.tensor(tint).view(1, 3, 1, 1)
    return (base + 0.08 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def blurry(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(images, (2, 2, 2, 2), mode="replicate"), 5, stride=1)


def test_split_and_recombine():
    x = torch.rand(2, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    d, low = split(x, 3.0)
    assert torch.allclose(recombine(d, low), x, atol=1e-6)
    assert torch.allclose(low, lowpass(x, 3.0))
    flat = torch.full((1, 3, 16, 16), 0.3)
    d, low = split(flat, 4.0)
    assert torch.allclose(d, torch.full_like(flat, GREY), atol=1e-6) and torch.allclose(low, flat, atol=1e-6)
    same, none = split(x, None)
    assert same is x and none is None and recombine(x, None) is x
    assert split(x, 0)[1] is None


def test_transform_is_decode_transport_of_the_detail_image_plus_the_lowpass():
    dot = DOT(codec="pixel", lowpass_sigma=3.0, split="gaussian").fit(list(blurry(textured(4, seed=1))),
                                                                   list(textured(4, seed=2)))
    x = blurry(textured(1, seed=3))
    z = dot.codec_.encode(x - lowpass(x, 3.0) + GREY)
    expected = (dot.codec_.decode(dot.transport(z), size=x.shape[-2:]) - GREY + lowpass(x, 3.0)).clamp(0, 1)
    assert torch.allclose(dot.transform(x), expected, atol=1e-6)
    assert torch.allclose(dot.encode([x[0]])[0], z)
    assert torch.equal(dot.transform(x, alpha=1.0), x)


def test_source_equal_to_target_changes_nothing():
    images = textured(4, seed=5)
    dot = DOT(codec="pixel", lowpass_sigma=4.0).fit(list(images), list(images))
    x = textured(1, seed=6)
    assert (dot.transform(x) - x).abs().max() < 1e-4


def test_detail_transport_keeps_the_restorers_colours_whole_image_transport_does_not():
    """Unpaired fit where source and target differ in colour as well as in sharpness."""
    source = list(blurry(textured(6, seed=10, tint=(0.15, 0.0, -0.15))))  # warm, blurry
    target = list(textured(6, seed=11, tint=(-0.15, 0.0, 0.15)))           # cool, sharp
    clean = textured(3, seed=12, tint=(0.15, 0.0, -0.15))                   # new warm photos
    x_star = blurry(clean)
    detail = DOT(codec="pixel", lowpass_sigma=4.0, split="gaussian").fit(source, target).transform(x_star)
    whole = DOT(codec="pixel", lowpass_sigma=None).fit(source, target).transform(x_star)

    def colour_shift(out):
        return (out.mean((-2, -1)) - clean.mean((-2, -1))).abs().max().item()

    def detail_energy(img):
        return (img - lowpass(img, 4.0)).pow(2).mean().item()

    assert colour_shift(whole) > 0.2      # pulled towards the target's cool tint
    assert colour_shift(detail) < 0.02    # kept from x*
    # ... and both put back the fine texture the restorer removed
    assert detail_energy(detail) > 2 * detail_energy(x_star)
    assert detail_energy(detail) == pytest.approx(detail_energy(clean), rel=0.35)


def test_lowpass_sigma_round_trips_through_the_operator_file(tmp_path):
    dot = DOT(codec="pixel", lowpass_sigma=2.5).fit(list(blurry(textured(2, seed=1))),
                                                                   list(textured(2, seed=2)))
    path = dot.save(tmp_path / "op.safetensors")
    loaded = DOT.load(path)
    assert loaded.lowpass_sigma == 2.5
    x = blurry(textured(1, seed=3))
    assert torch.allclose(loaded.transform(x), dot.transform(x), atol=1e-6)


def test_version_1_files_are_whole_image_operators(tmp_path):
    """Files written before lowpass_sigma existed hold whole-image statistics."""
    dot = DOT(codec="pixel", lowpass_sigma=None).fit(list(blurry(textured(2, seed=1))),
                                                                    list(textured(2, seed=2)))
    path = dot.save(tmp_path / "op.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header["dotrestore"])
    del meta["lowpass_sigma"]
    meta["format_version"] = 1
    header.update(format_version="1", dotrestore=json.dumps(meta))
    old = tmp_path / "v1.safetensors"
    save_file(tensors, str(old), metadata=header)
    loaded = DOT.load(old)
    assert loaded.lowpass_sigma == 0.0  # whole images: one spelling
    x = blurry(textured(1, seed=3))
    assert torch.allclose(loaded.transform(x), dot.transform(x), atol=1e-6)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "4"])
def test_bad_lowpass_sigma_is_refused(bad):
    with pytest.raises(InputError, match="lowpass_sigma"):
        DOT(codec="pixel", lowpass_sigma=bad).fit([textured(1)[0]], [textured(1)[0]])
