"""Image files: listing (skipped entries said), validation, reading (size limit, EXIF, modes), saving, pairing."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore import DOT
from dotrestore.errors import InputError
from dotrestore.io.images import list_images, load_images, pair_by_stem, quantize, read_image, save_image, validate_images

from support import write_images


def _rgb(path, h=8, w=12, seed=0):
    array = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(array, "RGB").save(path)
    return array



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


def test_max_pixels_in_the_python_api(tmp_path):
    from dotrestore.io import images as data

    path = write_images(tmp_path / "i", 1, seed=0, size=(20, 30)) / "img00.png"
    assert data.read_image(path, max_pixels=600).shape == (3, 20, 30)
    with pytest.raises(InputError, match="over the limit"):
        data.read_image(path, max_pixels=599)
    with pytest.raises(InputError, match="img00.png"):
        DOT(codec="pixel", runtime={"max_pixels": 100}).fit([path], [path])
    assert data.DEFAULT_MAX_PIXELS >= 6000 * 4000




def test_skipped_entries_of_a_folder_are_listed_in_one_line(tmp_path, caplog):
    import logging

    folder = tmp_path / "in"
    folder.mkdir()
    _rgb(folder / "a.png")
    (folder / "notes.txt").write_text("x")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "sub").mkdir()
    with caplog.at_level(logging.INFO, logger="dotrestore"):
        assert list_images(folder) == [folder / "a.png"]
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and "skipped 3 entries" in lines[0] and "notes.txt" in lines[0] and ".DS_Store" in lines[0]
