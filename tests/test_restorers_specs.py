"""Degradations and restorers: one spec registry, seeded noise, built-in and user restorers checked."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from dotrestore.errors import InputError
from dotrestore.experiment.degradations import parse_degradation
from dotrestore.io.images import quantize
from dotrestore.restorers import parse_restorer


def _smooth(h=128, w=128):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * torch.sin(3 * (xx + yy))])


# ---------------------------------------------------------------- listing and validation








# ---------------------------------------------------------------- reading and conversions










# ---------------------------------------------------------------- saving










# ---------------------------------------------------------------- degradations


def test_noise_statistics_and_seeding():
    gray = torch.full((3, 128, 128), 0.5)
    deg = parse_degradation("noise:sigma=25")
    out = deg(gray, torch.Generator().manual_seed(0))
    assert abs((out - gray).std().item() - 25 / 255) < 0.05 * 25 / 255
    assert abs((out - gray).mean().item()) < 0.003
    assert torch.equal(out, deg(gray, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, deg(gray, torch.Generator().manual_seed(1)))
    assert out.min() >= 0 and out.max() <= 1
    assert str(parse_degradation("noise:25")) == "noise:sigma=25"


def test_blur_down_jpeg():
    const = torch.full((3, 32, 48), 0.3)
    blurred = parse_degradation("blur:sigma=2")(const)
    assert torch.allclose(blurred, const, atol=1e-6)
    img = _smooth(64, 96)
    assert parse_degradation("down:scale=2")(img).shape == (3, 32, 48)
    assert parse_degradation("down:scale=3")(img).shape == (3, 21, 32)
    jpeg = parse_degradation("jpeg:quality=10")(img)
    assert jpeg.shape == img.shape and not torch.equal(jpeg, quantize(img))
    assert (jpeg - img).abs().mean() < 0.05
    impulse = torch.zeros(1, 3, 15, 15)
    impulse[..., 7, 7] = 1
    spread = parse_degradation("blur:sigma=1")(impulse)
    assert spread.shape == (1, 3, 15, 15) and spread[0, 0, 7, 7] < 0.2


def test_composition_is_left_to_right():
    img = torch.full((3, 64, 64), 0.5)
    spec = "noise:sigma=50+blur:sigma=2"
    deg = parse_degradation(spec)
    assert str(deg) == spec
    assert parse_degradation("noise:sigma=50") + parse_degradation("blur:sigma=2") == deg
    blurred_noise = deg(img, torch.Generator().manual_seed(0))
    noisy_blur = parse_degradation("blur:sigma=2+noise:sigma=50")(img, torch.Generator().manual_seed(0))
    assert blurred_noise.std() < 0.5 * noisy_blur.std()
    down_then_blur = parse_degradation("down:scale=2+blur:sigma=1")(img)
    assert down_then_blur.shape == (3, 32, 32)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("fog:sigma=1", "unknown degradation 'fog'"),
        ("noise", "needs sigma"),
        ("noise:sigma=-1", "sigma='-1' is invalid"),
        ("noise:amount=3", "no parameter 'amount'"),
        ("down:scale=1.5", "expected int"),
        ("jpeg:quality=101", "1..100"),
        ("noise:sigma=5+", "empty stage"),
        ("blur:sigma=abc", "invalid"),
    ],
)
def test_bad_degradation_specs(spec, fragment):
    with pytest.raises(InputError, match=fragment) as info:
        parse_degradation(spec)
    assert info.value.subject == "degradation spec"
    if "unknown" in fragment or "needs" in fragment:
        assert "noise:sigma" in str(info.value) and "jpeg:quality" in str(info.value)


# ---------------------------------------------------------------- restorers


def test_builtin_restorers_shapes_and_resize_back():
    img = _smooth(32, 48)
    small = parse_degradation("down:scale=2")(img)
    for spec in ["identity", "bicubic", "gaussian-blur:sigma=1", "nlmeans"]:
        res = parse_restorer(spec)
        assert str(res) == spec
        out = res(small, size=(32, 48))
        assert out.shape == (3, 32, 48) and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1
        assert res(img).shape == img.shape
    assert (parse_restorer("bicubic")(small, size=(32, 48)) - img).abs().mean() < 0.02
    assert str(parse_restorer("nlmeans:h=20,patch_size=3")) == "nlmeans:h=20,patch_size=3"


def test_nlmeans_lowers_mse_on_noisy_smooth_image():
    clean = _smooth(128, 128)
    noisy = parse_degradation("noise:sigma=25")(clean, torch.Generator().manual_seed(0))
    denoised = parse_restorer("nlmeans")(noisy)
    mse_noisy = ((noisy - clean) ** 2).mean()
    mse_denoised = ((denoised - clean) ** 2).mean()
    assert mse_denoised < 0.5 * mse_noisy
    blurred = parse_restorer("gaussian-blur:sigma=2")(noisy)
    assert ((blurred - clean) ** 2).mean() < 0.5 * mse_noisy


def _bm3d_case(kodak24_dir):
    pytest.importorskip("bm3d", reason="the optional bm3d package is not installed")
    from dotrestore.io.images import center_crop, read_image

    clean = center_crop(read_image(sorted(kodak24_dir.glob("*.png"))[0]), 64)
    return clean, parse_degradation("noise:sigma=25")(clean, torch.Generator().manual_seed(0))


@pytest.mark.slow  # the bm3d package takes ~10 s per call, whatever the image size
def test_bm3d_denoises_a_real_photograph_better_than_nlmeans(kodak24_dir):
    """One call (the bm3d package takes seconds even on a small image)."""
    clean, noisy = _bm3d_case(kodak24_dir)
    restorer = parse_restorer("bm3d:sigma=25")
    assert str(restorer) == "bm3d:sigma=25" and str(parse_restorer("bm3d")) == "bm3d"
    mse = lambda x: float(((x - clean) ** 2).mean())  # noqa: E731
    denoised = restorer(noisy)
    assert denoised.shape == clean.shape and denoised.dtype == torch.float32
    assert mse(denoised) < 0.3 * mse(noisy)
    assert mse(denoised) < 0.9 * mse(parse_restorer("nlmeans:sigma=25")(noisy))


@pytest.mark.slow
def test_bm3d_estimates_sigma_when_not_given(kodak24_dir):
    clean, noisy = _bm3d_case(kodak24_dir)
    mse = lambda x: float(((x - clean) ** 2).mean())  # noqa: E731
    assert mse(parse_restorer("bm3d")(noisy)) < 0.3 * mse(noisy)


def test_bm3d_without_its_package_names_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    with pytest.raises(InputError, match=r'pip install "dotrestore\[bm3d\]"') as info:
        parse_restorer("bm3d:sigma=25")
    assert info.value.path == "bm3d"
    with pytest.raises(InputError, match="sigma='0' is invalid"):
        parse_restorer("bm3d:sigma=0")


def test_user_callable_from_file(tmp_path):
    model = tmp_path / "my_model.py"
    model.write_text(textwrap.dedent("""
        import torch.nn.functional as F

        def upscale(x):
            return F.interpolate(x, scale_factor=2, mode="nearest") * 2  # out of [0, 1] on purpose

        def flat(x):
            return x[:, 0]

        def not_a_tensor(x):
            return x.numpy()

        def wrong_channels(x):
            return x[:, :1]

        CONSTANT = 3
    """))
    img = torch.full((3, 8, 10), 0.25)
    res = parse_restorer(f"{model}:upscale")
    out = res(img, size=(16, 20))
    assert out.shape == (3, 16, 20) and torch.allclose(out, torch.full_like(out, 0.5))
    assert str(res) == f"{model}:upscale"
    for name, shown in [("flat", r"\(1, 8, 10\)"), ("not_a_tensor", "ndarray"), ("wrong_channels", r"\(1, 1, 8, 10\)")]:
        with pytest.raises(InputError, match=shown) as info:
            parse_restorer(f"{model}:{name}")(img)
        assert info.value.path == f"{model}:{name}"
    with pytest.raises(InputError, match="not a callable"):
        parse_restorer(f"{model}:CONSTANT")
    with pytest.raises(InputError, match="no attribute 'missing'"):
        parse_restorer(f"{model}:missing")


def test_user_callable_import_errors(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    with pytest.raises(InputError, match="cannot import") as info:
        parse_restorer(f"{broken}:f")
    assert info.value.path == str(broken)
    with pytest.raises(InputError, match="no_such_module_xyz"):
        parse_restorer("no_such_module_xyz:restore")
    with pytest.raises(InputError, match="does not exist"):
        parse_restorer(f"{tmp_path / 'absent.py'}:f")
    assert parse_restorer("torch.nn.functional:relu")(torch.full((3, 4, 4), 0.5)).shape == (3, 4, 4)


@pytest.mark.parametrize("spec", ["", "median", "gaussian-blur", "gaussian-blur:sigma=0", "nlmeans:k=1", "foo:s=1"])
def test_bad_restorer_specs(spec):
    with pytest.raises(InputError) as info:
        parse_restorer(spec)
    assert info.value.subject == "restorer spec" and "restorer" in str(info.value)


def test_noise_level_estimate():
    from dotrestore.restorers.named import estimate_sigma

    noisy = 0.5 + 0.1 * np.random.default_rng(0).standard_normal((96, 80, 3))
    assert estimate_sigma(noisy) == pytest.approx(0.1, rel=0.05)


def test_batches_pass_through():
    batch = torch.full((2, 3, 16, 16), 0.5)
    assert parse_degradation("noise:5+down:scale=2")(batch, torch.Generator().manual_seed(0)).shape == (2, 3, 8, 8)
    assert parse_restorer("nlmeans")(batch[:, :, :8, :8], size=(16, 16)).shape == (2, 3, 16, 16)
