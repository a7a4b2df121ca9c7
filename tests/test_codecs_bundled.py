"""The bundled TAEF2 weights and the ``auto`` codec: offline, no ../shared needed."""

from __future__ import annotations

import logging

import pytest
import torch

from dotrestore import DOT
from dotrestore.codecs import BUNDLED_TAEF2, load_codec
from dotrestore.codecs.bundled import hub_model_cached


def test_bundled_files_ship_with_licence_and_attribution():
    names = {p.name for p in BUNDLED_TAEF2.iterdir()}
    assert {"taef2_encoder.pth", "taef2_decoder.pth", "LICENSE", "README.md"} <= names
    assert "MIT" in (BUNDLED_TAEF2 / "LICENSE").read_text()
    assert "madebyollin/taesd" in (BUNDLED_TAEF2 / "README.md").read_text()


def test_taef2_spec_loads_bundled_weights_and_reconstructs():
    codec = load_codec("taef2")
    assert codec.spec == "taef2" and codec.id.startswith("taesd:taef2:")
    assert (codec.latent_channels, codec.downscale) == (32, 8)
    # a smooth image with some texture: reconstruction must be close (a wrong architecture is not)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    image = torch.stack([0.5 + 0.3 * torch.sin(6 * xx), 0.5 + 0.3 * torch.cos(5 * yy), 0.4 + 0.2 * xx * yy])[None]
    out = codec.decode(codec.encode(image), size=(64, 64))
    psnr = -10 * torch.log10(((out - image) ** 2).mean())
    assert psnr > 25, psnr


def test_taef2_id_equals_the_shared_copy(taef2_dir):
    assert load_codec("taef2").id == load_codec(taef2_dir).id


def test_auto_never_picks_pixel_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="dotrestore"):
        codec = load_codec("auto")
    assert codec.family != "pixel"
    expected = "sd-vae-ft-ema" if hub_model_cached() else "taef2"
    assert codec.spec == expected  # the concrete spec, so operator files record the real codec
    assert any("--vae auto" in r.message and expected.split("-")[0] in r.message.lower() for r in caplog.records)


def test_dot_defaults_to_auto():
    assert DOT().codec == "auto"


def test_operator_fitted_with_taef2_round_trips(tmp_path):
    torch.manual_seed(0)
    images = [torch.rand(3, 48, 48) * 0.5 + 0.25 for _ in range(4)]
    dot = DOT(codec="taef2", lowpass_sigma=None, shrinkage="oas").fit(images[:2], images[2:])
    path = dot.save(tmp_path / "op.safetensors")
    loaded = DOT.load(path)
    assert loaded.codec_.id == dot.codec_.id and loaded.codec_.spec == "taef2"
    assert torch.equal(loaded.transform(images[0]), dot.transform(images[0]))


def test_cli_fit_defaults_to_auto():
    from dotrestore.cli import build_parser

    args = build_parser().parse_args(["fit", "--source", "a", "--target", "b", "-o", "op.safetensors"])
    assert args.codec == "auto"


@pytest.mark.slow
def test_demo_offline_runs_a_learned_codec_and_names_it(tmp_path, capsys):
    from dotrestore import cli

    if hub_model_cached():
        pytest.skip("sd-vae-ft-ema is cached here: auto would pick it, not TAEF2")
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 0
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "taesd:taef2:" in report and "bundled TAEF2" in report


def test_operator_from_a_missing_taef2_folder_falls_back_to_the_bundled_weights(tmp_path):
    import shutil

    folder = tmp_path / "my-taef2"
    shutil.copytree(BUNDLED_TAEF2, folder)
    torch.manual_seed(0)
    images = [torch.rand(3, 48, 48) for _ in range(4)]
    dot = DOT(codec=str(folder), patch_size=1, lowpass_sigma=None).fit(images[:2], images[2:])
    path = dot.save(tmp_path / "op.safetensors")
    shutil.rmtree(folder)  # the operator records a folder that no longer exists
    loaded = DOT.load(path)
    assert loaded.codec_.id == dot.codec_.id and loaded.codec_.spec == "taef2"
    assert torch.equal(loaded.transform(images[0]), dot.transform(images[0]))
