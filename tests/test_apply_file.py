"""``dotrestore apply OP IMG -o out.png``: one image at one α written to that file, with every output check."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from support import pixel_operator, run_cli, tree_digest, write_images


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    return pixel_operator(tmp_path_factory.mktemp("op"))


@pytest.fixture()
def image(tmp_path):
    return write_images(tmp_path / "in", 2, seed=3) / "img00.png"


def pixels(path):
    return np.asarray(Image.open(path))


def test_image_extension_writes_that_file_equal_to_the_folder_output(op, image, tmp_path, capsys):
    code, _ = run_cli(capsys, "apply", op, image, "-o", tmp_path / "out.png", "--alpha", "0.5")
    assert code == 0 and (tmp_path / "out.png").is_file()
    assert run_cli(capsys, "apply", op, image, "-o", tmp_path / "folder", "--alpha", "0.5")[0] == 0
    assert np.array_equal(pixels(tmp_path / "out.png"), pixels(tmp_path / "folder" / "img00.png"))
    assert not np.array_equal(pixels(tmp_path / "out.png"), pixels(image))  # α = 0.5 changed it
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left behind
    # missing folders are made
    code = run_cli(capsys, "apply", op, image, "-o", tmp_path / "a" / "b" / "x.png")[0]
    assert code == 0 and (tmp_path / "a" / "b" / "x.png").is_file()


def test_printed_line_names_the_file(op, image, tmp_path, capsys):
    from dotrestore.cli import main

    assert main(["apply", str(op), str(image), "-o", str(tmp_path / "out.png")]) == 0
    assert f"wrote 1 image to {tmp_path / 'out.png'} (alpha = 0)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, problem", [
    (["--alpha", "0", "--alpha", "1"], "is one image file, but this run writes 2 alphas"),
    (["SECOND"], "is one image file, but this run writes 2 images"),
])
def test_several_alphas_or_images_into_one_file_is_a_clear_error(op, image, tmp_path, capsys, extra, problem):
    extra = [str(image.with_name("img01.png")) if e == "SECOND" else e for e in extra]
    before = tree_digest(tmp_path, folders=True)
    code, err = run_cli(capsys, "apply", op, image, *extra, "-o", tmp_path / "new" / "out.png")
    assert code == 2 and problem in err and str(tmp_path / "new" / "out.png") in err
    assert tree_digest(tmp_path, folders=True) == before  # nothing made, not even the folder


def test_file_output_keeps_the_safety_rules(op, image, tmp_path, capsys):
    before = image.read_bytes()
    code, err = run_cli(capsys, "apply", op, image, "-o", image, "--overwrite")
    assert code == 2 and "is one of the inputs" in err and image.read_bytes() == before
    link = tmp_path / "link.png"
    link.symlink_to(image)
    code, err = run_cli(capsys, "apply", op, image, "-o", link, "--overwrite")
    assert code == 2 and "is one of the inputs" in err and image.read_bytes() == before
    out = tmp_path / "out.png"
    out.write_bytes(b"mine")
    code, err = run_cli(capsys, "apply", op, image, "-o", out)
    assert code == 2 and "already exists" in err and out.read_bytes() == b"mine"
    assert run_cli(capsys, "apply", op, image, "-o", out, "--overwrite")[0] == 0
    assert pixels(out).shape == pixels(image).shape
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    code, err = run_cli(capsys, "apply", op, image, "-o", blocker / "out.png")
    assert code == 2 and "not a folder" in err


def test_formats_follow_the_extension(op, image, tmp_path, capsys):
    for name, fmt in (("o.jpg", "JPEG"), ("o.tif", "TIFF"), ("o.webp", "WEBP"), ("o.bmp", "BMP")):
        assert run_cli(capsys, "apply", op, image, "-o", tmp_path / name, "--alpha", "1")[0] == 0
        with Image.open(tmp_path / name) as picture:
            assert picture.format == fmt and picture.size == Image.open(image).size
    # lossless ones give back the input at α = 1 exactly
    for name in ("o.tif", "o.webp", "o.bmp"):
        assert np.array_equal(pixels(tmp_path / name), pixels(image)), name
    assert np.abs(pixels(tmp_path / "o.jpg").astype(int) - pixels(image)).mean() < 20
    code, err = run_cli(capsys, "apply", op, image, "-o", tmp_path / "o.gif")
    assert code == 2 and "is not a format apply writes" in err and not (tmp_path / "o.gif").exists()


def test_an_existing_folder_with_an_image_extension_stays_a_folder(op, image, tmp_path, capsys):
    (tmp_path / "results.png").mkdir()
    assert run_cli(capsys, "apply", op, image, "-o", tmp_path / "results.png")[0] == 0
    assert (tmp_path / "results.png" / "img00.png").is_file()
