"""Outputs keep what their input had: grey stays grey, alpha is copied, 16-bit grey stays 16-bit
(``dotrestore apply`` into folders and files; :mod:`dotrestore.io.image_formats`)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore.io import image_formats

from support import pixel_operator, run_cli


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    return pixel_operator(tmp_path_factory.mktemp("op"))


def apply(capsys, op, image, out, alpha="0", said=None):
    code, err = run_cli(capsys, "apply", op, image, "-o", out, "--alpha", alpha, "--workers", "0")
    assert code == 0, err
    if said is not None:
        said.append(err)
    return out if out.suffix else out / f"{image.stem}.png"


def rng_image(shape, dtype=np.uint8, seed=0):
    top = np.iinfo(dtype).max
    return (np.random.default_rng(seed).random(shape) * top).round().astype(dtype)


def png16_rgb(path, array):
    """A 16-bit RGB PNG (Pillow writes none) from an (H, W, 3) uint16 array."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_grey_comes_back_grey(op, tmp_path, capsys):
    image = tmp_path / "grey.png"
    Image.fromarray(rng_image((20, 24))).save(image)
    for out in (tmp_path / "folder", tmp_path / "file.png", tmp_path / "file.tif", tmp_path / "file.jpg"):
        with Image.open(apply(capsys, op, image, out)) as result:
            assert result.mode == "L" and result.size == (24, 20), out
    # α = 1 is the input itself, sample for sample
    same = apply(capsys, op, image, tmp_path / "one.png", alpha="1")
    assert np.array_equal(np.asarray(Image.open(same)), np.asarray(Image.open(image)))


def test_grey_is_the_luma_of_the_transported_rgb(op, tmp_path, capsys):
    image = tmp_path / "grey.png"
    Image.fromarray(rng_image((20, 24), seed=4)).save(image)
    from dotrestore import DOT
    from dotrestore.io import images as data

    dot = DOT.load(op)
    rgb = dot.transform(data.read_image(image), alpha=0.0)
    expected = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).clamp(0, 1).mul(255).round().numpy()
    got = np.asarray(Image.open(apply(capsys, op, image, tmp_path / "out.png")), dtype=np.float64)
    assert np.abs(got - expected).max() <= 1 and not np.array_equal(got, np.asarray(Image.open(image)))


@pytest.mark.parametrize("mode, channels", [("RGBA", 4), ("LA", 2)])
def test_alpha_channel_is_copied_unchanged(op, tmp_path, capsys, mode, channels):
    array = rng_image((20, 24, channels), seed=2)
    array[:5, :, -1] = 0  # fully transparent rows, then everything in between
    image = tmp_path / "alpha.png"
    Image.fromarray(array).save(image)
    assert Image.open(image).mode == mode
    for out in (tmp_path / "folder", tmp_path / "file.png", tmp_path / "file.webp", tmp_path / "file.tif"):
        with Image.open(apply(capsys, op, image, out)) as result:
            expected_mode = mode if out.suffix != ".webp" else "RGBA"  # WebP has no grey
            assert result.mode == expected_mode, out
            assert np.array_equal(np.asarray(result.getchannel("A")), array[..., -1]), out
    at_zero = np.asarray(Image.open(tmp_path / "file.png"))
    at_one = np.asarray(Image.open(apply(capsys, op, image, tmp_path / "one.png", alpha="1")))
    assert np.array_equal(at_one, array)  # RGB (or L) at α = 1 is the input's, A copied
    assert not np.array_equal(at_zero[..., :-1], array[..., :-1])  # the colour channels were transported


def test_palette_transparency_becomes_an_alpha_channel(op, tmp_path, capsys):
    image = tmp_path / "pal.png"
    picture = Image.fromarray(rng_image((16, 16, 3), seed=3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    picture.info["transparency"] = 0
    picture.save(image, transparency=0)
    expected = np.asarray(Image.open(image).convert("RGBA").getchannel("A"))
    assert (expected == 0).any()
    with Image.open(apply(capsys, op, image, tmp_path / "out.png")) as result:
        assert result.mode == "RGBA" and np.array_equal(np.asarray(result.getchannel("A")), expected)


def test_sixteen_bit_grey_comes_back_sixteen_bit(op, tmp_path, capsys):
    array = rng_image((20, 24), np.uint16, seed=5)
    image = tmp_path / "deep.png"
    Image.fromarray(array).save(image)  # uint16: I;16
    for out in (tmp_path / "folder", tmp_path / "file.png", tmp_path / "file.tif"):
        with Image.open(apply(capsys, op, image, out)) as result:
            assert result.mode.startswith("I;16"), (out, result.mode)
            values = np.asarray(result)
            assert values.max() > 255 and len(np.unique(values)) > 256  # really 16-bit samples
    same = np.asarray(Image.open(apply(capsys, op, image, tmp_path / "one.png", alpha="1")))
    assert np.array_equal(same, array)  # all 16 bits back at α = 1


def test_sixteen_bit_colour_is_said_to_be_written_eight_bit(op, tmp_path, capsys):
    image = png16_rgb(tmp_path / "deep_rgb.png", rng_image((12, 10, 3), np.uint16, seed=6))
    said = []
    out = apply(capsys, op, image, tmp_path / "out.png", said=said)
    assert f"{image}: 16-bit colour image: Pillow decodes it to 8 bits per channel" in said[0]
    assert "written with 8 bits" in said[0]
    with Image.open(out) as result:
        assert result.mode == "RGB"


def test_formats_that_cannot_hold_it_say_so(op, tmp_path, capsys):
    image = tmp_path / "alpha.png"
    Image.fromarray(rng_image((12, 10, 4))).save(image)
    said = []
    out = apply(capsys, op, image, tmp_path / "out.jpg", said=said)
    assert f"{out}: this format has no alpha channel" in said[0]
    with Image.open(out) as result:
        assert result.mode == "RGB" and result.format == "JPEG"


def test_plain_rgb_png_is_exactly_the_png_writer(tmp_path):
    from dotrestore.io.images import png_writer

    img = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(0))
    for writer, name in ((image_formats.image_writer(img, tmp_path / "a.png"), "a.png"),
                         (png_writer(img, tmp_path / "b.png"), "b.png")):
        with open(tmp_path / name, "wb") as handle:
            writer(handle)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_the_explorers_download_keeps_it_too(op, tmp_path, capsys, mode):
    from dotrestore.serve.session import Explorer

    image = tmp_path / "in.png"
    Image.fromarray(rng_image((20, 24) if mode == "L" else (20, 24, 4), seed=7)).save(image)
    explorer = Explorer(op, work_dir=tmp_path / "scratch")
    try:
        entry = explorer.prepare(image)
        downloaded = explorer.save_png(explorer.render(entry, 0.5), entry.stem, 0.5, entry.source)
        applied = apply(capsys, op, image, tmp_path / "applied.png", alpha="0.5")
        with Image.open(downloaded) as one, Image.open(applied) as other:
            assert one.mode == other.mode == mode
            assert np.array_equal(np.asarray(one), np.asarray(other))
    finally:
        explorer.close()


def test_kept_through_loading_workers_and_batches(op, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    arrays = {"a": rng_image((16, 20, 4), seed=8), "b": rng_image((16, 20), seed=9), "c": rng_image((16, 20, 3), seed=10)}
    for stem, array in arrays.items():
        Image.fromarray(array).save(folder / f"{stem}.png")
    code, err = run_cli(capsys, "apply", op, folder, "-o", tmp_path / "out", "--alpha", "1", "--workers", "2",
                        "--batch-size", "3")
    assert code == 0, err
    for stem, array in arrays.items():  # one batch of three: each output keeps its own input's kind
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{stem}.png")), array), stem
