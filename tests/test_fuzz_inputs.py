"""Fuzz suite, hostile inputs: restorer outputs, non-regular files, full disks, hostile codec
configs, and blame (the error names the image, α or header at fault, not the operator).

Every case ends with exit 0 and valid output, or exit 2 with one line naming the file; no
traceback; inputs byte-identical; nothing left behind. Nothing may hang: FIFO cases run
under a deadline. The full disk is a small tmpfs filled up when it can be mounted (root on
Linux), else ENOSPC is emulated (``fuzz_support.full_disk``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil

import fuzz_support
import numpy as np
import pytest
import torch
from fuzz_support import (
    assert_one_line_error,
    deadline,
    entries,
    experiment_args,
    leftovers,
    run,
)
from PIL import Image
from safetensors.torch import save_file

from dotrestore.cli import main
from dotrestore.tasks import apply as applying

full_disk = pytest.fixture(fuzz_support.full_disk)
photos = pytest.fixture(scope="module", name="photos")(fuzz_support.photos)
restorers = pytest.fixture(scope="module", name="restorers")(fuzz_support.restorers)
world = pytest.fixture(scope="module", name="world")(fuzz_support.world)
one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)


def write_operator(path, header: dict, tensors: dict):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=header)
    return path


class TestRestorerOutputs:
    """A user's restorer returns something unusable: refused naming it and what it returned, with or
    without loading workers (the restorer runs in them)."""

    @pytest.mark.parametrize("workers", ["0", "2"])
    @pytest.mark.parametrize("name, says", [
        ("eight_bit", "uint8"), ("out_of_range", "[-500"), ("nan", "non-finite"), ("nothing", "NoneType"),
        ("listed", "returned a list"), ("two_channels", "(1, 2, 32, 32)"), ("crashes", "out of memory in my model"),
    ])
    def test_refused_naming_the_restorer(self, photos, restorers, tmp_path, name, says, workers):
        out, spec = tmp_path / "ex", f"{restorers}:{name}"
        args = experiment_args(photos, out, "--workers", workers)
        args[args.index("gaussian-blur:sigma=1")] = spec
        code, err = run(*args)
        assert_one_line_error(code, err, spec, says=says)
        assert not out.exists() and not leftovers(tmp_path)

    def test_rounding_outside_the_range_is_accepted(self, photos, restorers, tmp_path):
        args = experiment_args(photos, tmp_path / "ex", "--workers", "0")
        args[args.index("gaussian-blur:sigma=1")] = f"{restorers}:slightly_over"
        code, err = run(*args)
        assert code == 0, err


class TestNonRegularFiles:
    """FIFOs (and other non-regular files) are refused at once or skipped, never waited on."""

    @pytest.fixture
    def fifo(self, tmp_path):
        path = tmp_path / "in.png"
        os.mkfifo(path)
        return path

    def test_fifo_given_as_an_image(self, world, tmp_path, fifo):
        with deadline(60):
            for argv in (["apply", world[1], fifo, "-o", tmp_path / "out"],
                         ["fit", "--source", fifo, "--target", world[0] / "clean", "--vae", "pixel",
                          "-o", tmp_path / "op.safetensors"]):
                assert_one_line_error(*run(*argv), fifo, says="not a regular file")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]

    def test_fifo_inside_a_folder_is_skipped_and_named(self, world, tmp_path, caplog):
        folder = shutil.copytree(world[0] / "restored", tmp_path / "in")
        os.mkfifo(folder / "pipe.png")
        with deadline(60), caplog.at_level("INFO", logger="dotrestore"):
            code, err = run("apply", world[1], folder, "-o", tmp_path / "out")
        assert code == 0, err
        assert "pipe.png (not a regular file)" in caplog.text + err
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"restored{i}.png" for i in range(3)]

    def test_file_swapped_for_a_fifo_after_validation(self, world, tmp_path, monkeypatch):
        src = shutil.copytree(world[0] / "restored", tmp_path / "src")
        victim, real = src / "restored2.png", applying.check_images

        def check_then_swap(*args, **kwargs):
            records = real(*args, **kwargs)
            victim.unlink()
            os.mkfifo(victim)
            return records

        monkeypatch.setattr(applying, "check_images", check_then_swap)
        with deadline(60):
            code, err = run("apply", world[1], src, "-o", tmp_path / "out", "--workers", "0")
        assert_one_line_error(code, err, victim, says="not a regular file")
        assert not (tmp_path / "out").exists()

    def test_fifo_as_config_and_codec_files(self, world, photos, tmp_path):
        config = tmp_path / "config.yaml"
        os.mkfifo(config)
        taesd = tmp_path / "taesd"
        taesd.mkdir()
        os.mkfifo(taesd / "tiny_encoder.pth")
        os.mkfifo(taesd / "tiny_decoder.pth")
        diffusers = tmp_path / "kl"
        diffusers.mkdir()
        (diffusers / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
        os.mkfifo(diffusers / "diffusion_pytorch_model.safetensors")
        fit = ["fit", "--source", world[0] / "restored", "--target", world[0] / "clean", "-o", tmp_path / "op"]
        with deadline(120):
            assert_one_line_error(*run(*experiment_args(photos, tmp_path / "ex", "--config", config)), config,
                                  says="not a regular file")
            assert_one_line_error(*run(*fit, "--vae", taesd), taesd)
            assert_one_line_error(*run(*fit, "--vae", diffusers), diffusers / "diffusion_pytorch_model.safetensors",
                                  says="not a regular file")

    def test_serve_refuses_a_fifo_upload(self, world, tmp_path, fifo):
        from dotrestore.errors import InputError
        from dotrestore.serve import Explorer

        explorer = Explorer(world[1], work_dir=tmp_path / "scratch")
        try:
            with deadline(60), pytest.raises(InputError, match="not a regular file"):
                explorer.transform_file(fifo, 0.5)
        finally:
            explorer.close()


class TestFullDisk:
    """Writing onto a full filesystem: exit 2 naming the file being written, nothing left behind."""

    def test_apply(self, world, full_disk):
        out = full_disk.path / "out"
        code, err = run("apply", world[1], world[0] / "restored", "-o", out, "--alpha", "0", "--alpha", "1")
        line = assert_one_line_error(code, err, out, says="No space left on device")
        assert ".png" in line, (line, full_disk.how)
        assert entries(full_disk.path) == []

    def test_fit(self, world, full_disk):
        op = full_disk.path / "op.safetensors"
        code, err = run("fit", "--source", world[0] / "restored", "--target", world[0] / "clean", "--vae", "pixel",
                        "-o", op)
        assert_one_line_error(code, err, op, says="No space left on device")
        assert entries(full_disk.path) == []

    def test_experiment(self, photos, full_disk):
        code, err = run(*experiment_args(photos, full_disk.path / "ex", "--workers", "0"))
        line = assert_one_line_error(code, err, full_disk.path / "ex", says="No space left on device")
        assert ".partial" not in line and any(ext in line for ext in (".png", ".yaml", ".safetensors", ".svg")), line
        assert entries(full_disk.path) == []


class TestHostileCodecConfigs:
    """A --vae folder whose config.json is hostile: exit 2 naming the file, never a RecursionError."""

    @pytest.mark.parametrize("text", [
        "[" * 100_000 + "]" * 100_000,
        json.dumps(functools.reduce(lambda inner, _: {"a": inner}, range(200), {"_class_name": "AutoencoderKL"})),
        json.dumps({"_class_name": ["AutoencoderKL"]}),
        json.dumps({"_class_name": "UNet2DModel"}),
        "\xff\xfe not json",
    ], ids=["nested-lists", "nested-dicts", "class-list", "other-class", "binary"])
    def test_refused_naming_config_json(self, world, tmp_path, text):
        vae = tmp_path / "vae"
        vae.mkdir()
        (vae / "config.json").write_bytes(text.encode("utf-8", "surrogateescape") if text[0] != "\xff"
                                          else b"\xff\xfe not json")
        code, err = run("fit", "--source", world[0] / "restored", "--target", world[0] / "clean", "--vae", vae,
                        "-o", tmp_path / "op.safetensors")
        assert_one_line_error(code, err, vae / "config.json")


@pytest.fixture(scope="module")
def nan_tiff(tmp_path_factory):
    """A float TIFF with one NaN pixel."""
    array = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    array[5, 7] = np.nan
    path = tmp_path_factory.mktemp("nan") / "nan.tif"
    Image.fromarray(array, mode="F").save(path)
    return path


class TestBlame:
    """The error names what is wrong: the image, α, the header, not the operator."""

    def test_nan_pixel_is_the_images_fault_everywhere(self, world, photos, nan_tiff, tmp_path):
        clean = shutil.copytree(photos, tmp_path / "clean")
        shutil.copy(nan_tiff, clean)
        for argv in (["apply", world[1], nan_tiff, "-o", tmp_path / "out"],
                     ["fit", "--source", nan_tiff, "--target", world[0] / "clean", "--vae", "pixel",
                      "-o", tmp_path / "op.safetensors"],
                     experiment_args(clean, tmp_path / "ex", "--workers", "2")):
            code, err = run(*argv)
            line = assert_one_line_error(code, err, nan_tiff.name, says="NaN")
            assert "operator" not in line and str(world[1]) not in line

    def test_nan_pixel_in_serve(self, world, nan_tiff, tmp_path):
        from dotrestore.errors import InputError
        from dotrestore.serve import Explorer

        explorer = Explorer(world[1], work_dir=tmp_path / "scratch")
        try:
            with pytest.raises(InputError, match="NaN") as info:
                explorer.transform_file(nan_tiff, 0.0)
            assert info.value.subject == str(nan_tiff)
        finally:
            explorer.close()

    @pytest.mark.parametrize("alpha", [1e308, -1e308])
    def test_huge_alpha_is_refused_in_every_interface(self, world, tmp_path, alpha):
        from dotrestore import DOT
        from dotrestore.errors import SettingError
        from dotrestore.serve import Explorer

        with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()) as err:
            main(["apply", str(world[1]), str(world[0] / "restored"), "-o", str(tmp_path / "o"),
                  f"--alpha={alpha!r}"])
        assert exit_info.value.code == 2 and "--alpha" in err.getvalue() and "1000" in err.getvalue()
        dot, image = DOT.load(world[1]), torch.rand(3, 20, 24)
        for call in (lambda: dot.transform(image, alpha=alpha), lambda: list(dot.iter_alphas(image[None], [alpha]))):
            with pytest.raises(SettingError, match="alpha.*1000"):
                call()
        explorer = Explorer(world[1], work_dir=tmp_path / "scratch")
        try:
            with pytest.raises(SettingError, match="α.*1000"):
                explorer.transform_file(world[0] / "restored" / "restored0.png", alpha)
        finally:
            explorer.close()
        assert not (tmp_path / "o").exists()

    @pytest.mark.parametrize("key, value", [("format_version", "2.5"), ("patch_size", "three"),
                                            ("codec_id", "pixel:other:0"), ("codec_spec", "taef2")])
    def test_header_disagreeing_with_the_metadata_is_refused(self, world, tmp_path, key, value):
        _, op, header, tensors = world
        bad = write_operator(tmp_path / "bad.safetensors", dict(header, **{key: value}), tensors)
        for argv in (["info", bad], ["apply", bad, world[0] / "restored", "-o", tmp_path / "out"]):
            assert_one_line_error(*run(*argv), bad, says=f"header {key}")
        assert not (tmp_path / "out").exists()
