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
from dotrestore.ot.split import GREY, clip_keeping_hue, keep_hue, lowpass, recombine, split


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


def test_transform_is_decode_transport_of_the_detail_image_projected_onto_the_detail_band():
    dot = DOT(codec="pixel", lowpass_sigma=3.0, split="gaussian").fit(list(blurry(textured(4, seed=1))),
                                                                   list(textured(4, seed=2)))
    x = blurry(textured(1, seed=3))
    z = dot.codec_.encode(x - lowpass(x, 3.0) + GREY)
    # x̂0 = x* + (I − G_σ)Δ, Δ = d − H(x*): the change transport made, less its low-pass
    change = dot.codec_.decode(dot.transport(z), size=x.shape[-2:]) - GREY - (x - lowpass(x, 3.0))
    # ... then, at near-saturated pixels, the part of it that would turn a hue removed
    projected = change - lowpass(change, 3.0)
    expected = clip_keeping_hue(x + keep_hue(projected, x))
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


def _levels_shift(image: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(largest per-channel mean difference, RMS of the σ = 8 px low-pass difference), in levels of 255."""
    diff = (image - reference).double()
    return float(diff.mean(dim=(-2, -1)).abs().max()) * 255, float(lowpass(diff[None], 8.0).square().mean().sqrt()) * 255


@pytest.mark.slow  # tens of seconds on 2 cores
def test_lowpass_of_alpha0_is_the_restorations_on_real_photographs(kodak24_dir):
    """Bundled TAEF2, guided split, unpaired 3 + 3 Kodak crops, x* = a Gaussian blur (σ = 1.5 px).

    The decoded, transported detail carries colour back in; projected onto the detail band it
    does not: x̂0's mean colour within 0.5 levels of x*'s on every channel, its 8 px low-pass
    within 0.6 levels RMS (measured 0.04-0.05 and 0.24-0.28). The unprojected L(x*) + d moves
    both by more than 1 level on the same images (measured 2.7-3.6 and 2.7-4.5).
    """
    from dotrestore.experiment.degradations import gaussian_blur
    from dotrestore.io.images import center_crop, read_image

    paths = sorted(kodak24_dir.glob("*.png"))
    clean = [center_crop(read_image(p), 192) for p in paths[:8]]
    restored = [gaussian_blur(x[None], 1.5)[0] for x in clean]
    dot = DOT(codec="taef2").fit(restored[:3], clean[3:6])
    for x_star in restored[6:8]:
        x0 = dot.transform(x_star)
        mean_shift, regional = _levels_shift(x0, x_star)
        assert mean_shift <= 0.5 and regional <= 0.6, (mean_shift, regional)
        encoded, low = split(x_star[None], dot.lowpass_sigma, dot.split)
        decoded = dot.codec_.decode(dot.transport(dot.codec_.encode(encoded)), size=x_star.shape[-2:])
        legacy = (decoded - GREY + low).clamp(0, 1)[0]  # L(x*) + d, without the projection
        legacy_mean, legacy_regional = _levels_shift(legacy, x_star)
        assert legacy_mean > 1.0 and legacy_regional > 1.0, (legacy_mean, legacy_regional)
        assert regional < 0.2 * legacy_regional


def test_recombine_keeps_a_fringe_at_a_strong_edge_within_the_restorations_range():
    """x* a step 0.2 | 0.8; the decoded detail a +0.15 fringe beside the step and a ±0.05 checkerboard far from it."""
    from dotrestore.ot.split import strong_edges

    x_star = torch.full((1, 3, 32, 48), 0.2)
    x_star[..., 24:] = 0.8
    low = x_star.clone()  # an edge-preserving low-pass keeps the step: H(x*) = 0
    detail = torch.zeros_like(x_star)
    detail[..., 25:27] = 0.15  # a halo: brighter than either side of the edge
    checker = 0.05 * (1 - 2 * ((torch.arange(32)[:, None] + torch.arange(48)[None]) % 2)).float()
    detail[..., :, :12] += checker[:, :12]  # texture 12+ px from the edge
    out = recombine(detail + GREY, low, "guided", reference=x_star, sigma=4.0)
    band = strong_edges(x_star)[0, 0]
    assert band[:, 21:27].all() and not band[:, :18].any()
    assert float(out[..., 20:30].max()) <= 0.8 + 1e-6 and float(out[..., 20:30].min()) >= 0.2 - 1e-6
    unclamped = recombine(detail + GREY, low, "gaussian")  # L(x*) + d: the fringe overshoots
    assert float(unclamped[..., 25:27].min()) == pytest.approx(0.95)
    # texture away from edges keeps its amplitude (its Gaussian low-pass is ~0)
    texture = out[..., 4:28, 2:8] - 0.2
    assert float(texture.abs().mean()) == pytest.approx(0.05, rel=0.1)


@pytest.mark.parametrize("kind", ["guided", "gaussian", "guided+clamp"])
@pytest.mark.parametrize("sigma", [1.0, 4.0])
def test_recombine_in_bands_of_rows_equals_the_whole_image(monkeypatch, kind, sigma):
    """Large images are recombined band by band (bounded memory); the bands' margins make the
    result the whole-image one, strong edges and borders included."""
    import dotrestore.ot.split as detail

    g = torch.Generator().manual_seed(0)
    reference = F.interpolate(torch.rand(1, 3, 30, 20, generator=g), size=(301, 200), mode="nearest")  # edges
    decoded = (reference + 0.05 * torch.randn(1, 3, 301, 200, generator=g)).clamp(0, 1)
    low = lowpass(reference, 3.0)
    whole = recombine(decoded, low, kind, reference=reference, sigma=sigma)
    monkeypatch.setattr(detail, "BAND_PIXELS", 60 * 200)  # bands of 60 rows
    banded = recombine(decoded, low, kind, reference=reference, sigma=sigma)
    assert (banded - whole).abs().max() <= 1e-6
