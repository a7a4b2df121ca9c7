"""DOT(mixture=K, split=...): the estimator hook, operator format v3, older versions still load."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from dotrestore import DOT
from dotrestore.errors import InputError
from dotrestore.ot.split import EDGE_RANGE, GREY, clip_keeping_hue, guided_lowpass, keep_hue, local_range, lowpass, strong_edges


def textured(n: int, size: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, 3, 5, 5, generator=g), size=size, mode="bicubic", align_corners=False)
    edges = (torch.rand(n, 1, 4, 4, generator=g) > 0.5).float()
    edges = F.interpolate(edges, size=size, mode="nearest")
    return (0.2 + 0.3 * base + 0.4 * edges + 0.06 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def blurry(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(images, (2, 2, 2, 2), mode="replicate"), 5, stride=1)


@pytest.fixture(scope="module")
def fitted():
    return DOT(codec="pixel", mixture=2, lowpass_sigma=None).fit(
        list(blurry(textured(4, seed=1))), list(textured(4, seed=2)))


def test_mixture_transform_uses_the_mixture(fitted):
    assert fitted.mixture_.n_components == 2
    x = blurry(textured(1, seed=3))
    z = fitted.codec_.encode(x)
    expected = fitted.codec_.decode(fitted.mixture_.transport(z, 3), size=x.shape[-2:]).clamp(0, 1)
    assert torch.allclose(fitted.transform(x), expected, atol=1e-6)
    single = DOT(codec="pixel", lowpass_sigma=None).fit(
        list(blurry(textured(4, seed=1))), list(textured(4, seed=2)))
    assert not torch.allclose(fitted.transform(x), single.transform(x), atol=1e-3)
    # Restored images move towards the clean statistics: sharper (more high-frequency energy).
    hf = lambda t: (t - blurry(t)).square().mean()  # noqa: E731
    assert hf(fitted.transform(x)) > 1.5 * hf(x)


def test_operator_file_v3_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "mix.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["dotrestore"])
        keys = set(f.keys())
    assert meta["format_version"] == 3 and meta["mixture"] == 2 and meta["split"] == fitted.split
    assert {"mixture.plan", "mixture.source.means", "mixture.target.covariances"} <= keys
    loaded = DOT.load(path)
    x = blurry(textured(2, seed=4))
    assert torch.allclose(loaded.transform(x), fitted.transform(x), atol=1e-6)
    with pytest.raises(InputError, match="reservoir"):
        loaded.partial_fit(list(textured(1, seed=5)), role="target")


def test_version_2_file_loads_as_gaussian_single(tmp_path):
    # A version-2 file could only hold Gaussian-split statistics.
    dot = DOT(codec="pixel", lowpass_sigma=3.0, split="gaussian").fit(
        list(blurry(textured(3, seed=6))), list(textured(3, seed=7)))
    path = dot.save(tmp_path / "v3.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header["dotrestore"])
    meta["format_version"] = 2
    for key in ("mixture", "split", "max_patches"):
        meta.pop(key)
    header.update(format_version="2", dotrestore=json.dumps(meta))
    old = tmp_path / "v2.safetensors"
    save_file(tensors, str(old), metadata=header)
    loaded = DOT.load(old)
    assert loaded.mixture == 1 and loaded.split == "gaussian" and loaded.lowpass_sigma == 3.0
    x = blurry(textured(1, seed=8))
    assert torch.allclose(loaded.transform(x), DOT(codec="pixel", lowpass_sigma=3.0, split="gaussian").fit(
        list(blurry(textured(3, seed=6))), list(textured(3, seed=7))).transform(x), atol=1e-6)


def test_guided_split_formula():
    dot = DOT(codec="pixel", lowpass_sigma=3.0, split="guided").fit(
        list(blurry(textured(3, seed=9))), list(textured(3, seed=10)))
    x = blurry(textured(1, seed=11))
    low = guided_lowpass(x, 3.0)
    z = dot.codec_.encode(x - low + GREY)
    # the transported change Δ = d − (x − L(x)) projected onto the detail band (Gaussian σ),
    # then kept within x's local range next to x's strong edges
    change = dot.codec_.decode(dot.transport(z), size=x.shape[-2:]) - GREY - (x - low)
    out = x + change - lowpass(change, 3.0)
    lo, hi = local_range(x, EDGE_RANGE)
    clamped = torch.where(strong_edges(x), out.clamp(lo, hi), out)
    # last, near-saturated pixels keep x's hue, and values beyond [0, 1] go towards their grey
    expected = clip_keeping_hue(x + keep_hue(clamped - x, x))
    assert torch.allclose(dot.transform(x), expected, atol=1e-5)


def test_bad_parameters():
    for kwargs, match in ((dict(mixture=0), "mixture"), (dict(mixture=2, zero_shot=True), "zero-shot"),
                          (dict(split="box"), "split"), (dict(mixture=3, max_patches=4), "max_patches")):
        with pytest.raises(InputError, match=match):
            DOT(codec="pixel", **kwargs).fit(list(textured(2)), list(textured(2)))
