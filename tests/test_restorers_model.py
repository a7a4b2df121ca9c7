"""Restorers from model files (spandrel): detection, scale, tiling, and every bad file named with exit 2.

spandrel is imported through ``model_support.import_spandrel``: the architectures loaded here
(ESRGAN, SwinIR, SCUNet) never call torchvision, so a stand-in is used where the real one
does not import (see that module); the tests skip when spandrel is not installed.
"""

from __future__ import annotations

import zipfile

import pytest
import torch
from model_support import REAL_ESRGAN, import_spandrel, save_model

from dotrestore.cli import main
from dotrestore.errors import InputError
from dotrestore.restorers import parse_restorer

import_spandrel()


@pytest.mark.parametrize("kind,scale,suffix", [("swinir", 2, ".safetensors"), ("swinir", 1, ".safetensors"),
                                               ("esrgan", 4, ".pth")])
def test_a_model_file_is_detected_and_runs_at_its_scale(tmp_path, kind, scale, suffix):
    path = save_model(tmp_path / f"net{suffix}", kind, scale)
    restorer = parse_restorer(str(path))
    assert restorer.architecture == {"swinir": "SwinIR", "esrgan": "ESRGAN"}[kind]
    assert restorer.scale == scale
    x = torch.rand(2, 3, 20, 28)
    out = restorer(x)
    assert out.shape == (2, 3, 20 * scale, 28 * scale) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    # batched equals one at a time; the single-image form drops the batch axis
    assert torch.allclose(restorer(x[1]), out[1], atol=1e-5)
    # ``size`` (the experiment's clean size) resizes the output
    assert restorer(x, size=(30, 30)).shape == (2, 3, 30, 30)


def test_scunet_safetensors_loads_through_the_same_path(tmp_path):
    restorer = parse_restorer(str(save_model(tmp_path / "scunet.safetensors", "scunet")))
    assert (restorer.architecture, restorer.scale) == ("SCUNet", 1)
    assert restorer(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_tiles_under_a_memory_budget_match_the_whole_image(tmp_path, caplog):
    restorer = parse_restorer(str(save_model(tmp_path / "net.pth", "esrgan", 2)))
    x = torch.rand(1, 3, 330, 300)
    whole = restorer(x)
    calls = []
    run = restorer._run_tile
    restorer._run_tile = lambda t: calls.append(t.shape) or run(t)
    restorer.configure(max_memory=int(restorer.bytes_per_pixel() * 256 * 256))  # tiles of 64 + 2 * 96 context
    tiled = restorer(x)
    assert len(calls) >= 4 and max(s[-1] * s[-2] for s in calls) <= 256 * 256
    assert float((tiled - whole).abs().max()) * 255 < 0.5
    assert "seams may show" not in caplog.text
    # a budget with no room for the whole context: less context, within the budget, said once
    calls.clear()
    restorer.configure(max_memory=int(restorer.bytes_per_pixel() * 128 * 128))
    restorer(x)
    restorer(x)
    assert max(s[-1] * s[-2] for s in calls) <= 128 * 128
    assert caplog.text.count("seams may show; raise --max-memory") == 1


def _esrgan(tmp_path):
    return save_model(tmp_path / "net.pth", "esrgan", 2)


def _not_a_model(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"these are not weights\n" * 10)
    return path


def _unknown_architecture(tmp_path):
    path = tmp_path / "mlp.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).state_dict(), path)
    return path


def _truncated(tmp_path):
    path = _esrgan(tmp_path)
    content = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(content[: len(content) // 2])
    return cut


def _truncated_safetensors(tmp_path):
    path = save_model(tmp_path / "net.safetensors", "swinir", 2)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    return cut


class Payload:  # a pickle that needs code run to be rebuilt: refused by weights-only loading
    def __reduce__(self):
        return (print, ("this must never run",))


def _code_pickle(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(2), "payload": Payload()}, path)
    return path


def _whole_module_pickle(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Conv2d(3, 3, 3), path)  # the module object, not its state dict
    return path


BAD = {"not a model": (_not_a_model, "not a"), "unknown architecture": (_unknown_architecture, "architecture"),
       "truncated pth": (_truncated, "truncated"), "truncated safetensors": (_truncated_safetensors, "truncated"),
       "a pickle of code": (_code_pickle, "only weights"), "a pickled module": (_whole_module_pickle, "only weights")}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_model_file_is_refused_naming_it(tmp_path, case, capsys):
    make, words = BAD[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        parse_restorer(str(path))
    assert str(path) in str(err.value) and words in str(err.value)
    # the command line: exit 2, the file named, nothing written
    clean = tmp_path / "clean"
    clean.mkdir()
    from support import write_images

    write_images(clean, 3, seed=0)
    out = tmp_path / "out"
    code = main(["experiment", "--clean", str(clean), "--degrade", "down:scale=2", "--restorer", str(path),
                 "--vae", "pixel", "--fit-source", "1", "--fit-target", "1", "--out", str(out)])
    assert code == 2 and str(path) in capsys.readouterr().err
    assert not out.exists()


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        parse_restorer(str(tmp_path / "absent.safetensors"))


def test_the_refused_pickle_is_one_a_plain_load_would_rebuild(tmp_path):
    """What protects is the weights-only loading: torch.load(weights_only=False) would rebuild it."""
    path = _whole_module_pickle(tmp_path)
    assert isinstance(torch.load(path, weights_only=False), torch.nn.Conv2d)
    with zipfile.ZipFile(path) as archive:
        assert any(name.endswith("data.pkl") for name in archive.namelist())


@pytest.mark.slow
def test_experiment_with_real_esrgan_names_architecture_and_scale(shared_dir, kodak24_dir, tmp_path):
    weights = shared_dir / REAL_ESRGAN
    if not weights.exists():
        pytest.skip(f"{weights} not present")
    clean = tmp_path / "clean"
    clean.mkdir()
    for path in sorted(kodak24_dir.glob("*.png"))[:5]:
        (clean / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "exp"
    assert main(["experiment", "--clean", str(clean), "--degrade", "down:scale=4", "--restorer", str(weights),
                 "--crop", "64", "--fit-source", "2", "--fit-target", "2", "--vae", "taef2", "--alphas", "0", "1",
                 "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "ESRGAN ×4" in report
    import json

    results = json.loads((out / "results.json").read_text())
    assert results["data"]["restorer_model"] == "ESRGAN ×4 (RealESRGAN_x4plus.pth)"


@pytest.mark.slow
def test_a_2000_pixel_input_runs_in_tiles_under_2gb_and_matches_untiled_on_a_crop(tmp_path):
    restorer = parse_restorer(str(save_model(tmp_path / "net.pth", "esrgan", 4)))
    restorer.configure(max_memory=2 * 1024 ** 3)
    generator = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 250, 250, generator=generator), size=(2000, 2000),
                                        mode="bilinear", align_corners=False)  # photo-like smoothness
    tiles = []
    run = restorer._run_tile
    restorer._run_tile = lambda t: tiles.append(t.shape) or run(t)
    tiled = restorer(x)
    assert tiled.shape == (1, 3, 8000, 8000) and len(tiles) >= 4
    assert max(s[-1] * s[-2] for s in tiles) * restorer.bytes_per_pixel() <= 2 * 1024 ** 3
    # untiled on a 256-pixel crop across a tile seam; its inner 128 pixels (64 of context each side,
    # more than the network's reach) must equal the tiled output there
    restorer._run_tile = run
    restorer.configure(max_memory=1 << 40)
    top = left = 900
    whole = restorer(x[..., top:top + 256, left:left + 256])
    inner = whole[..., 256:768, 256:768]
    assert float((tiled[..., 4 * top + 256:4 * top + 768, 4 * left + 256:4 * left + 768] - inner).abs().max()) * 255 < 0.5
