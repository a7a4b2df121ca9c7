"""Tests of dotrestore.data: files, conversions, saving, degradations, restorers."""

from __future__ import annotations

import logging
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore.data import (
    list_images,
    load_images,
    pair_by_stem,
    parse_degradation,
    parse_restorer,
    quantize,
    read_image,
    save_image,
    validate_images,
)
from dotrestore.errors import InputError


def _rgb(path, h=8, w=12, seed=0):
    array = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(array, "RGB").save(path)
    return array


def _smooth(h=128, w=128):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * torch.sin(3 * (xx + yy))])


# ---------------------------------------------------------------- listing and validation


def test_list_images_sorted_folders_files_hidden_duplicates(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ["b.png", "a.jpg", "c.PNG", ".hidden.png"]:
        _rgb(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    _rgb(folder / "sub" / "deep.png")
    extra = tmp_path / "z.png"
    _rgb(extra)
    found = list_images([extra, folder, folder / "a.jpg"])
    assert [p.name for p in found] == ["z.png", "a.jpg", "b.png", "c.PNG"]
    assert list_images(str(folder)) == found[1:]


def test_list_images_errors_name_the_path(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        list_images(tmp_path / "missing.png")
    assert info.value.path.endswith("missing.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="empty"):
        list_images(empty)
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(InputError, match="notes.txt"):
        list_images([text])
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is not a png at all")
    with pytest.raises(InputError, match="fake.png"):
        list_images(fake)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_validate_images_names_the_corrupt_file(tmp_path, kind):
    good = tmp_path / "a_good.png"
    _rgb(good, 64, 64)
    bad = tmp_path / "b_bad.png"
    if kind == "truncated":
        _rgb(bad, 64, 64)
        bad.write_bytes(bad.read_bytes()[:-200])
    elif kind == "garbage":
        bad.write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    else:
        bad.write_bytes(b"")
    assert validate_images([good]) == [(64, 64)]
    with pytest.raises(InputError, match="b_bad.png"):
        validate_images(tmp_path)


# ---------------------------------------------------------------- reading and conversions


def test_exif_orientation_transposes(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif)
    assert read_image(path).shape == (3, 40, 20)
    assert validate_images(path) == [(40, 20)]


def test_rgb_read_exact_and_contiguous(tmp_path):
    array = _rgb(tmp_path / "x.png")
    img = read_image(tmp_path / "x.png")
    assert img.dtype == torch.float32 and img.is_contiguous() and img.shape == (3, 8, 12)
    assert torch.equal(img, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


def test_mode_conversions_with_notice(tmp_path, caplog):
    gray = np.array([[0, 128], [255, 64]], dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: alpha is dropped, not composited
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pal = Image.fromarray(np.full((2, 2, 3), (10, 20, 30), np.uint8), "RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "pal.png")
    Image.fromarray(np.array([[65535, 32768], [0, 1]], dtype=np.uint16)).save(tmp_path / "sixteen.png")

    with caplog.at_level(logging.WARNING, logger="dotrestore.io.images"):
        g = read_image(tmp_path / "gray.png")
        a = read_image(tmp_path / "rgba.png")
        p = read_image(tmp_path / "pal.png")
        s = read_image(tmp_path / "sixteen.png")
    assert torch.equal(g[0], g[2]) and g[0, 0, 1] == 128 / 255
    assert torch.allclose(a[:, 0, 0], torch.tensor([200 / 255, 0, 0]))
    assert torch.allclose(p[:, 0, 0], torch.tensor([10, 20, 30]) / 255)
    assert s[0, 0, 0] == 1.0 and abs(s[1, 0, 1] - 0.5) < 1e-4 and s[2, 1, 0] == 0 and s[0, 1, 1] == pytest.approx(1 / 65535)
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 4 and all("converted" in m and "to RGB" in m for m in notices)
    assert any("gray.png" in m and " L " in m for m in notices)


def test_load_images_resize_and_crop(tmp_path):
    _rgb(tmp_path / "wide.png", 40, 80)
    (img,) = load_images(tmp_path, resize=20)
    assert img.shape == (3, 20, 40)
    (img,) = load_images(tmp_path, crop=30)
    assert img.shape == (3, 30, 30)
    (img,) = load_images(tmp_path, resize=20, crop=16)
    assert img.shape == (3, 16, 16)
    with pytest.raises(InputError, match="wide.png"):
        load_images(tmp_path, crop=64)


# ---------------------------------------------------------------- saving


def test_save_quantize_round_trip_exact(tmp_path):
    img = torch.rand(3, 17, 23, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    path = save_image(img, tmp_path / "new" / "deep" / "out.png")
    assert path.exists()
    assert torch.equal(read_image(path), quantize(img))
    assert quantize(img).dtype == torch.float32
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]  # no temp file left


def test_save_refuses_bad_input_and_leaves_nothing(tmp_path):
    bad = torch.full((3, 4, 4), 0.5)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        save_image(bad, tmp_path / "nan.png")
    with pytest.raises(InputError, match="shape"):
        save_image(torch.zeros(4, 4), tmp_path / "flat.png")
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_atomically(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    save_image(torch.zeros(3, 4, 4), target)
    original = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.ones(3, 4, 4), target)
    assert target.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_pair_by_stem(tmp_path):
    restored = [tmp_path / "r" / n for n in ["b.png", "a.png"]]
    clean = [tmp_path / "c" / n for n in ["a.jpg", "b.png", "extra.png"]]
    assert pair_by_stem(restored, clean) == [(restored[1], clean[0]), (restored[0], clean[1])]
    with pytest.raises(InputError, match="orphan.png"):
        pair_by_stem(restored + [tmp_path / "r" / "orphan.png"], clean)


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
    assert info.value.path is None
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
    assert info.value.path is None and "restorer" in str(info.value)


def test_noise_level_estimate():
    from dotrestore.data.restorers import estimate_sigma

    noisy = 0.5 + 0.1 * np.random.default_rng(0).standard_normal((96, 80, 3))
    assert estimate_sigma(noisy) == pytest.approx(0.1, rel=0.05)


def test_batches_pass_through():
    batch = torch.full((2, 3, 16, 16), 0.5)
    assert parse_degradation("noise:5+down:scale=2")(batch, torch.Generator().manual_seed(0)).shape == (2, 3, 8, 8)
    assert parse_restorer("nlmeans")(batch[:, :, :8, :8], size=(16, 16)).shape == (2, 3, 16, 16)
