"""Per-pixel α: ``DOT.transform(x, alpha=map)`` and ``dotrestore apply --alpha-map``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore import DOT
from dotrestore.errors import SettingError
from dotrestore.io import images as data
from dotrestore.ot.tradeoff import feather

from support import run_cli, tree_digest, write_images

H, W = 24, 32


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("alphamap")
    src = write_images(root / "src", 3, seed=1, size=(H, W))
    dot = DOT(codec="pixel", lowpass_sigma=0).fit(src, write_images(root / "tgt", 3, seed=2, size=(H, W)))
    operator = dot.save(root / "op.safetensors")
    return {"root": root, "dot": dot, "operator": operator, "inputs": sorted(src.iterdir())}


def grey_map(path, levels: np.ndarray, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(levels.astype(np.uint8 if mode == "L" else np.float32), mode=None if mode == "L" else "F").save(path)
    return path


def half_map(value_left=0, value_right=255):
    levels = np.full((H, W), value_left, dtype=np.uint8)
    levels[:, W // 2:] = value_right
    return levels


# ---------------------------------------------------------------------- Python API
def test_transform_with_a_map(fitted):
    dot = fitted["dot"]
    x = data.read_image(fitted["inputs"][0])
    for c in (0.0, 0.3, 128 / 255, 1.5):
        assert torch.equal(dot.transform(x, alpha=torch.full((H, W), c)), dot.transform(x, alpha=float(torch.tensor(c))))
    a = torch.zeros(H, W)
    a[:, W // 2:] = 1
    out, x0 = dot.transform(x, alpha=a), dot.transform(x, alpha=0.0)
    assert torch.equal(out[:, :, :W // 2], x0[:, :, :W // 2]) and torch.equal(out[:, :, W // 2:], x[:, :, W // 2:])
    batch = torch.stack([data.read_image(p) for p in fitted["inputs"][:2]])
    per_image = torch.stack([torch.zeros(1, H, W), torch.ones(1, H, W)])
    both = dot.transform(batch, alpha=per_image)
    assert torch.equal(both[0], dot.transform(batch[0], alpha=0.0)) and torch.equal(both[1], batch[1])
    with pytest.raises(SettingError, match="alpha: an α map must be"):
        dot.transform(x, alpha=torch.zeros(H, W + 1))
    with pytest.raises(SettingError, match="alpha: an α map's values must be within"):
        dot.transform(x, alpha=torch.full((H, W), 1e6))


def test_latent_interpolation_blends_latents_with_the_map(fitted):
    dot = fitted["dot"]
    x = data.read_image(fitted["inputs"][1])[None]
    constant = dict(dot.iter_alphas(x, [torch.full((H, W), 0.4)], "latent"))
    (key, with_map), = constant.items()
    assert torch.allclose(with_map, dict(dot.iter_alphas(x, [0.4], "latent"))[0.4], atol=1e-6)
    a = torch.zeros(H, W)
    a[:, W // 2:] = 1
    (_, halves), = dict(dot.iter_alphas(x, [a], "latent")).items()
    at_zero = dict(dot.iter_alphas(x, [0.0], "latent"))[0.0]
    # the pixel codec's latent is the image: left half x̂0, right half (nearly) x*
    assert torch.allclose(halves[..., :W // 2 - 2], at_zero[..., :W // 2 - 2], atol=1e-6)
    assert torch.allclose(halves[..., W // 2 + 2:], x[..., W // 2 + 2:], atol=1e-5)


# ---------------------------------------------------------------------- the command line
def apply(capsys, fitted, out, *args):
    return run_cli(capsys, "apply", fitted["operator"], *args, "-o", out, "--workers", 0, "--no-progress")


def test_a_constant_map_equals_the_same_alpha(fitted, tmp_path, capsys):
    image = fitted["inputs"][0]
    level = 128
    mapped = grey_map(tmp_path / "maps" / "m.png", np.full((H, W), level))
    assert apply(capsys, fitted, tmp_path / "a", image, "--alpha-map", mapped)[0] == 0
    assert apply(capsys, fitted, tmp_path / "b", image, "--alpha", repr(level / 255))[0] == 0
    assert (tmp_path / "a" / image.name).read_bytes() == (tmp_path / "b" / image.name).read_bytes()
    black = grey_map(tmp_path / "black.png", np.zeros((H, W)))
    assert apply(capsys, fitted, tmp_path / "c", image, "--alpha-map", black, "--alpha-map-range=-0.5,1.5")[0] == 0
    assert apply(capsys, fitted, tmp_path / "d", image, "--alpha", "-0.5")[0] == 0
    assert (tmp_path / "c" / image.name).read_bytes() == (tmp_path / "d" / image.name).read_bytes()


@pytest.mark.parametrize("width", [4, 7])
def test_a_half_map_gives_x0_then_a_smooth_ramp_then_x_star(fitted, tmp_path, capsys, width):
    image = fitted["inputs"][2]
    mapped = grey_map(tmp_path / "half.png", half_map())
    code, _ = apply(capsys, fitted, tmp_path / "out", image, "--alpha-map", mapped, "--alpha-map-feather", width)
    assert code == 0
    out = data.read_image(tmp_path / "out" / image.name)
    x_star = data.read_image(image)
    x0 = fitted["dot"].transform(x_star, alpha=0.0)
    edge, reach = W // 2, width // 2
    assert torch.equal(out[..., :edge - reach], data.quantize(x0)[..., :edge - reach])  # x̂0 on the black side
    assert torch.equal(out[..., edge + reach:], x_star[..., edge + reach:])  # x* on the white side
    ramp = feather(torch.from_numpy(half_map() / 255.0)[None, None], width)[0, 0]
    assert float(ramp.diff(dim=1).abs().max()) <= 1 / width + 1e-12  # α rises one level (1/width) per pixel
    assert torch.equal(out, data.quantize(fitted["dot"].transform(x_star, alpha=ramp)))
    # no seam: across the ramp the output steps no more than x̂0 or x* themselves plus one α level of their gap
    band = slice(edge - reach - 1, edge + reach + 1)
    step = (out[..., band].diff(dim=-1)).abs()
    bound = torch.maximum(x0[..., band].diff(dim=-1).abs(), x_star[..., band].diff(dim=-1).abs())
    gap = (x_star - x0)[..., band].abs()
    assert bool((step <= bound + torch.maximum(gap[..., 1:], gap[..., :-1]) / width + 2 / 255).all())


def test_a_folder_of_maps_matched_by_stem(fitted, tmp_path, capsys):
    maps = tmp_path / "maps"
    first, second, third = fitted["inputs"]
    grey_map(maps / f"{first.stem}.png", np.full((H, W), 255))
    grey_map(maps / f"{second.stem}.tif", np.full((H, W), 0.5), mode="F")
    code, err = apply(capsys, fitted, tmp_path / "out", first.parent, "--alpha-map", maps, "--alpha", "0.25")
    assert code == 0 and "2 of 3 images have an alpha map; the other 1 get --alpha 0.25" in err
    assert torch.equal(data.read_image(tmp_path / "out" / first.name), data.read_image(first))  # white: x*
    x = data.read_image(second)
    assert torch.equal(data.read_image(tmp_path / "out" / second.name),
                       data.quantize(fitted["dot"].transform(x, alpha=0.5)))  # a float map, as stored
    assert apply(capsys, fitted, tmp_path / "plain", third, "--alpha", "0.25")[0] == 0
    assert (tmp_path / "out" / third.name).read_bytes() == (tmp_path / "plain" / third.name).read_bytes()


def test_resize_is_asked_for_and_said(fitted, tmp_path, capsys):
    image = fitted["inputs"][0]
    small = grey_map(tmp_path / "small.png", np.full((H // 2, W // 2), 255))
    code, err = apply(capsys, fitted, tmp_path / "no", image, "--alpha-map", small)
    assert code == 2 and "small.png: α map is 16x12 but its image is 32x24" in err and "--alpha-map-resize" in err
    assert not (tmp_path / "no").exists()
    code, err = apply(capsys, fitted, tmp_path / "yes", image, "--alpha-map", small, "--alpha-map-resize")
    assert code == 0 and "small.png: α map resized from 16x12 to the image's 32x24" in err
    assert torch.equal(data.read_image(tmp_path / "yes" / image.name), data.read_image(image))


def bad_maps(tmp_path, inputs):
    """(name, how to make it, the words of the message)."""
    nan = np.full((H, W), 0.5, dtype=np.float32)
    nan[3, 3] = np.nan
    colour = np.zeros((H, W, 3), dtype=np.uint8)
    colour[..., 0] = 255
    stem = inputs[0].stem
    return [
        ("garbage", lambda d: (d / f"{stem}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a PNG"), "α map cannot be read"),
        ("nan", lambda d: grey_map(d / f"{stem}.tif", nan, mode="F"), "NaN or infinite"),
        ("colour", lambda d: Image.fromarray(colour).save(d / f"{stem}.png"), "colour image"),
        ("size", lambda d: grey_map(d / f"{stem}.png", np.zeros((H, W + 8))), "α map is 40x24"),
        ("orphan", lambda d: grey_map(d / "no_such_image.png", np.zeros((H, W))), "matches no input image"),
    ]


def test_bad_maps_stop_before_anything_is_written(fitted, tmp_path, capsys):
    for name, make, words in bad_maps(tmp_path, fitted["inputs"]):
        maps = tmp_path / name
        maps.mkdir()
        make(maps)
        before = tree_digest(tmp_path)
        code, err = apply(capsys, fitted, tmp_path / f"out_{name}", fitted["inputs"][0].parent, "--alpha-map", maps)
        assert code == 2, (name, err)
        assert str(maps) in err and words in err, (name, err)
        assert tree_digest(tmp_path) == before and not (tmp_path / f"out_{name}").exists()
    code, err = apply(capsys, fitted, tmp_path / "two", fitted["inputs"][0], "--alpha-map", tmp_path / "size",
                      "--alpha", "0", "--alpha", "1")
    assert code == 2 and "--alpha-map: takes at most one --alpha" in err
    code, err = apply(capsys, fitted, tmp_path / "missing", fitted["inputs"][0], "--alpha-map", tmp_path / "nope.png")
    assert code == 2 and "nope.png: α map does not exist" in err
    with pytest.raises(SystemExit) as exited:  # refused when the flags are parsed
        apply(capsys, fitted, tmp_path / "range", fitted["inputs"][0], "--alpha-map", tmp_path / "size",
              "--alpha-map-range", "0")
    assert exited.value.code == 2 and "--alpha-map-range: must be two numbers LO,HI" in capsys.readouterr().err
