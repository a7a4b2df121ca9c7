"""The fit / apply / info commands: outputs, naming, and refusals that write nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dotrestore.cli import main
from dotrestore.tasks.apply import alpha_dirname


def write_images(folder, n, seed, size=(40, 52), blur=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.random((-(-size[0] // 4), -(-size[1] // 4), 3))
        img = np.kron(base, np.ones((4, 4, 1)))[: size[0], : size[1]] + 0.1 * rng.standard_normal((*size, 3))
        if blur:
            img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 0) + np.roll(img, -1, 1)) / 5
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture()
def op(tmp_path):
    src = write_images(tmp_path / "restored", 4, seed=0, blur=True)
    tgt = write_images(tmp_path / "clean", 4, seed=1)
    path = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "-o", str(path)]) == 0
    return path


def test_fit_prints_counts_and_w2(tmp_path, capsys):
    src = write_images(tmp_path / "restored", 3, seed=0, blur=True)
    tgt = write_images(tmp_path / "clean", 2, seed=1)
    path = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt / "img00.png"), str(tgt / "img01.png"),
                 "--vae", "pixel", "--patch-size", "5", "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert "source: 3 images" in out and "target: 2 images" in out and "W2^2" in out
    # pixel patches of 5x5: D = 3*25 = 75; a 40x52 image has 36*48 = 1728 patches
    assert "D = C*p^2 = 3*5^2 = 75" in out
    assert "source: 3 images, n = 5184 patches = 69.1 x D: enough for its dimension; shrinkage none" in out
    assert "target: 2 images, n = 3456 patches = 46.1 x D" in out
    assert "Frechet distance between the Gaussians of the restored and of the clean latent patches" in out
    assert path.exists()
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "-o", str(path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_apply_one_and_several_alphas_never_touching_inputs(op, tmp_path):
    inputs = write_images(tmp_path / "x_star", 3, seed=5, blur=True, size=(33, 47))
    before = digest(inputs)
    out1 = tmp_path / "out1"
    assert main(["apply", str(op), str(inputs), "-o", str(out1)]) == 0
    assert sorted(p.name for p in out1.iterdir()) == ["img00.png", "img01.png", "img02.png"]
    assert Image.open(out1 / "img00.png").size == (47, 33)
    out2 = tmp_path / "out2"
    assert main(["apply", str(op), str(inputs), "-o", str(out2), "--alpha", "0", "--alpha", "1", "--alpha", "-0.5"]) == 0
    assert sorted(p.name for p in out2.iterdir()) == sorted(alpha_dirname(a) for a in (0, 1, -0.5))
    # α = 1 reproduces the input within 1/255 (here exactly: 8-bit in, 8-bit out).
    same = np.asarray(Image.open(out2 / alpha_dirname(1) / "img01.png"), dtype=int)
    orig = np.asarray(Image.open(inputs / "img01.png"), dtype=int)
    assert np.abs(same - orig).max() <= 1
    assert digest(inputs) == before
    # Refuses to overwrite, unless asked.
    assert main(["apply", str(op), str(inputs), "-o", str(out1)]) == 2
    assert main(["apply", str(op), str(inputs), "-o", str(out1), "--overwrite"]) == 0


def test_apply_corrupt_input_writes_nothing(op, tmp_path, capsys):
    inputs = write_images(tmp_path / "x_star", 3, seed=5, blur=True)
    data = (inputs / "img01.png").read_bytes()
    (inputs / "img01.png").write_bytes(data[: len(data) // 2])  # truncated PNG
    out = tmp_path / "out"
    assert main(["apply", str(op), str(inputs), "-o", str(out), "--alpha", "0", "--alpha", "1"]) == 2
    err = capsys.readouterr().err
    assert "img01.png" in err
    assert not out.exists() or not any(out.rglob("*"))


@pytest.mark.parametrize("case", ["missing", "empty", "not_image", "not_operator"])
def test_bad_inputs_exit_2_naming_the_file(op, tmp_path, capsys, case):
    inputs = write_images(tmp_path / "x_star", 1, seed=5)
    operator = op
    if case == "missing":
        args = [str(tmp_path / "nope")]
        name = "nope"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args, name = [str(tmp_path / "empty")], "empty"
    elif case == "not_image":
        (tmp_path / "notes.txt").write_text("hello")
        args, name = [str(inputs), str(tmp_path / "notes.txt")], "notes.txt"
    else:
        operator = tmp_path / "fake.safetensors"
        operator.write_bytes(b"PK\x03\x04 not ours")
        args, name = [str(inputs)], "fake.safetensors"
    out = tmp_path / "out"
    assert main(["apply", str(operator), *args, "-o", str(out)]) == 2
    assert name in capsys.readouterr().err
    assert not out.exists()


def test_fit_says_when_the_patches_are_too_few_and_which_shrinkage_ran():
    from dotrestore.cli.fit import patch_budget

    lines = patch_budget([("source", 1, 400), ("target", 2, 1000)], 288, {"source": "oas(rho=0.41)"})
    assert lines[0] == "source: 1 image, n = 400 patches = 1.4 x D: too few for its dimension (n < 2*D); " \
        "shrinkage oas(rho=0.41)"
    assert lines[1] == "target: 2 images, n = 1000 patches = 3.5 x D: enough (n >= 2*D), though few; shrinkage none"


def test_fit_with_corrupt_target_writes_no_operator(tmp_path, capsys):
    src = write_images(tmp_path / "restored", 2, seed=0, blur=True)
    tgt = write_images(tmp_path / "clean", 2, seed=1)
    (tgt / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    path = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "-o", str(path)]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert not path.exists()


def test_info(op, capsys):
    assert main(["info", str(op)]) == 0
    out = capsys.readouterr().out
    assert "dotrestore operator" in out and "codec        pixel" in out and "patches      3x3, D = 27" in out
    assert "source       4 images" in out and "W2^2" in out and "guided filter of sigma 4" in out
    assert main(["info", str(op), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["n_source_images"] == 4 and meta["format"] == "dotrestore.operator"
    assert meta["lowpass_sigma"] == 4.0  # detail transport is the default


def test_fit_lowpass_sigma_zero_is_whole_image_transport(tmp_path, capsys):
    src = write_images(tmp_path / "restored", 2, seed=0, blur=True)
    tgt = write_images(tmp_path / "clean", 2, seed=1)
    path = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "--lowpass-sigma", "0",
                 "-o", str(path)]) == 0
    assert "whole images" in capsys.readouterr().out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lowpass_sigma"] == 0.0  # whole images: one spelling


@pytest.mark.parametrize("command", ["fit", "apply", "info", "experiment", "demo"])
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and f"usage: dotrestore {command}" in capsys.readouterr().out


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "dotrestore", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("dotrestore ")


def test_experiment_help_shows_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    out = capsys.readouterr().out
    assert "(default: None)" not in out and "default: True" not in out
    assert "(default: 10)" in out and "(default: dotrestore-experiment)" in out and "40,000,000" in out




def test_apply_counts_in_words(op, tmp_path, capsys):
    one = write_images(tmp_path / "one", 1, seed=9)
    assert main(["apply", str(op), str(one), "-o", str(tmp_path / "out")]) == 0
    assert "wrote 1 image to" in capsys.readouterr().out
