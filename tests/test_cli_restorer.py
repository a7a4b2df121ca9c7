"""``--restorer`` on ``fit`` and ``apply``: degraded images in, x* = model(y) transported, α = 1 is the model.

spandrel is imported through ``model_support.import_spandrel`` (ESRGAN and SwinIR never call
torchvision; a stand-in is used where the real one does not import).
"""

from __future__ import annotations

import numpy as np
import pytest
from model_support import REAL_ESRGAN, import_spandrel, save_model
from PIL import Image

from dotrestore.cli import main
from dotrestore.io.images import read_image
from dotrestore.restorers import parse_restorer

from support import write_images

import_spandrel()


def _levels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _fit_and_apply(tmp_path, model, lq, clean, vae="pixel"):
    op, out = tmp_path / "op.safetensors", tmp_path / "out"
    assert main(["fit", "--source", str(lq), "--restorer", str(model), "--target", str(clean), "--vae", vae,
                 "--device", "cpu", "--no-progress", "-o", str(op)]) == 0
    assert main(["apply", str(op), str(lq), "--restorer", str(model), "-o", str(out), "--alpha", "0",
                 "--alpha", "1", "--device", "cpu", "--no-progress"]) == 0
    return op, out


def _check_outputs(model, lq, out, scale):
    restorer = parse_restorer(str(model))
    for path in sorted(lq.glob("*.png")):
        y = read_image(path)
        alone = np.asarray((restorer(y).permute(1, 2, 0).numpy() * 255).round(), dtype=np.int16)
        one, zero = _levels(out / "alpha_1" / path.name), _levels(out / "alpha_0" / path.name)
        assert one.shape == zero.shape == (y.shape[1] * scale, y.shape[2] * scale, 3)
        assert np.abs(one - alone).max() <= 1  # α = 1 is the model alone
        assert np.abs(zero - one).mean() > 0.5  # α = 0 moved it


def test_fit_and_apply_with_a_model_file(tmp_path):
    model = save_model(tmp_path / "sr.safetensors", "swinir", 2)
    lq = write_images(tmp_path / "lq", 3, seed=0, size=(24, 28))
    clean = write_images(tmp_path / "clean", 3, seed=1, size=(48, 56))
    op, out = _fit_and_apply(tmp_path, model, lq, clean)
    _check_outputs(model, lq, out, 2)
    # one degraded image into one file of another format: x* = model(y) at α = 1, written as asked
    one = sorted(lq.glob("*.png"))[0]
    assert main(["apply", str(op), str(one), "--restorer", str(model), "-o", str(tmp_path / "one.tif"), "--alpha", "1",
                 "--device", "cpu", "--no-progress"]) == 0
    assert np.abs(_levels(tmp_path / "one.tif") - _levels(out / "alpha_1" / one.name)).max() == 0


def test_restorer_needs_source_and_refuses_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\0" * 64)
    lq = write_images(tmp_path / "lq", 2, seed=0)
    code = main(["fit", "--source", str(lq), "--restorer", str(bad), "--target", str(lq), "--vae", "pixel",
                 "-o", str(tmp_path / "op.safetensors")])
    assert code == 2 and str(bad) in capsys.readouterr().err and not (tmp_path / "op.safetensors").exists()


def test_apply_refuses_a_bad_model_file_before_writing(tmp_path, files, capsys):
    src, _, op = files
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"{}")
    out = tmp_path / "out"
    assert main(["apply", str(op), str(src), "--restorer", str(bad), "-o", str(out)]) == 2
    assert str(bad) in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_real_esrgan_alpha_one_is_the_model_alone(shared_dir, kodak24_dir, tmp_path):
    model = shared_dir / REAL_ESRGAN
    if not model.exists():
        pytest.skip(f"{model} not present")
    lq, clean = tmp_path / "lq", tmp_path / "clean"
    lq.mkdir()
    clean.mkdir()
    for i, path in enumerate(sorted(kodak24_dir.glob("*.png"))[:4]):
        image = Image.open(path).convert("RGB").crop((100, 100, 164, 164))
        if i < 2:
            image.resize((16, 16), Image.BICUBIC).save(lq / path.name)
        else:
            image.save(clean / path.name)
    _op, out = _fit_and_apply(tmp_path, model, lq, clean, vae="taef2")
    _check_outputs(model, lq, out, 4)


def test_the_explorer_restores_a_dropped_degraded_image_like_apply(tmp_path):
    from dotrestore.cli.restorer import restorer_from
    from dotrestore.runtime import Runtime
    from dotrestore.serve.session import Explorer

    model = save_model(tmp_path / "sr.safetensors", "swinir", 2)
    lq = write_images(tmp_path / "lq", 2, seed=0, size=(24, 28))
    clean = write_images(tmp_path / "clean", 2, seed=1, size=(48, 56))
    op, out = _fit_and_apply(tmp_path, model, lq, clean)
    runtime = Runtime(device="cpu", progress=False)
    explorer = Explorer(op, runtime=runtime, restorer=restorer_from(str(model), runtime), work_dir=tmp_path / "s")
    try:
        for alpha in (0, 1):
            png = explorer.transform_file(lq / "img00.png", alpha)
            assert np.array_equal(_levels(png), _levels(out / f"alpha_{alpha}" / "img00.png"))
    finally:
        explorer.close()
