"""Codecs: real TAEF2 weights on Kodak (when ../shared exists), tiny random diffusers models, errors."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore.codecs import Codec, codec_from_diffusers, diffusers_vae, load_codec, pad_to_multiple, sd_vae_config
from dotrestore.codecs.taesd import Block, Clamp, conv
from dotrestore.errors import CodecUnavailableError, InputError


def _read_png(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return 10.0 * math.log10(1.0 / torch.mean((x - y) ** 2).item())


# ---- shared behaviour -------------------------------------------------------------------
def test_pad_to_multiple_reflects_and_replicates_when_too_small():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    padded = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (8, 8)
    assert padded[0, 0, 0, 5:].tolist() == [3.0, 2.0, 1.0]  # reflect: mirrors without the edge
    tiny = torch.tensor([[[[1.0, 2.0]]]])
    assert pad_to_multiple(tiny, 4)[0, 0].tolist() == [[1.0, 2.0, 2.0, 2.0]] * 4  # replicate


def test_pixel_codec_round_trip_is_exact():
    codec = load_codec("pixel")
    assert (codec.id, codec.spec, codec.latent_channels, codec.downscale) == ("pixel", "pixel", 3, 1)
    images = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    latents = codec.encode(images)
    assert torch.equal(latents, images)
    assert torch.equal(codec.decode(latents, size=(7, 9)), images)
    assert load_codec(codec) is codec
    latents.add_(1.0)  # outputs are ordinary tensors, not inference tensors


# ---- diffusers, tiny random configs -----------------------------------------------------
def _tiny_kl():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        scaling_factor=0.5,
    )


def test_autoencoder_kl_shapes_odd_sizes_and_batches():
    codec = codec_from_diffusers(_tiny_kl(), name="tiny-kl")
    assert isinstance(codec, Codec)
    assert (codec.latent_channels, codec.downscale) == (4, 2)
    assert codec.id.startswith("autoencoderkl:tiny-kl:") and len(codec.id.rsplit(":", 1)[1]) == 12
    images = torch.rand(3, 3, 37, 50, generator=torch.Generator().manual_seed(1))
    latents = codec.encode(images)
    assert latents.shape == (3, 4, math.ceil(37 / 2), math.ceil(50 / 2)) and latents.dtype == torch.float32
    decoded = codec.decode(latents, size=(37, 50))
    assert decoded.shape == (3, 3, 37, 50)
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0
    assert codec.decode(latents).shape == (3, 3, 38, 50)


def test_autoencoder_kl_scaling_and_mean_convention():
    model = _tiny_kl()
    codec = codec_from_diffusers(model, name="tiny-kl")
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model.encode(images * 2 - 1).latent_dist.mean * 0.5
        expected_images = ((model.decode(expected / 0.5).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(codec.encode(images), expected)
    torch.testing.assert_close(codec.decode(expected), expected_images)
    sampled = codec_from_diffusers(model, name="tiny-kl", sample=True, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(sampled.encode(images), expected)


def test_autoencoder_tiny_shapes():
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    model = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8),
        decoder_block_out_channels=(8, 8, 8),
        num_encoder_blocks=(1, 1, 1),
        num_decoder_blocks=(1, 1, 1),
        latent_channels=4,
    )
    codec = codec_from_diffusers(model, name="tiny-tae")
    assert (codec.latent_channels, codec.downscale) == (4, 4)
    latents = codec.encode(torch.rand(2, 3, 37, 50))
    assert latents.shape == (2, 4, 10, 13)
    assert codec.decode(latents, size=(37, 50)).shape == (2, 3, 37, 50)


def test_local_diffusers_folder_loads_with_stable_id(tmp_path):
    model = _tiny_kl()
    model.save_pretrained(tmp_path / "tiny-vae")
    codec = load_codec(str(tmp_path / "tiny-vae"))
    assert codec.spec == str((tmp_path / "tiny-vae").resolve())
    assert codec.id == codec_from_diffusers(model, name="tiny-vae").id


def test_sd_vae_config_builds_the_real_architecture():
    from diffusers import AutoencoderKL

    model = AutoencoderKL(**sd_vae_config())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(83.65e6, rel=0.01)
    assert model.config.scaling_factor == 0.18215


# ---- hub models without network -----------------------------------------------------------
def test_offline_hub_model_fails_fast_with_advice(monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if isinstance(try_to_load_from_cache("stabilityai/sd-vae-ft-ema", "config.json"), str):
        pytest.skip("sd-vae-ft-ema is in this machine's Hugging Face cache")
    start = time.perf_counter()
    with pytest.raises(CodecUnavailableError) as info:
        load_codec("sd-vae-ft-ema")
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 3.0, elapsed
    assert "sd-vae-ft-ema" in message and "pixel" in message and "HF_HUB_OFFLINE" in message
    assert "`hf download stabilityai/sd-vae-ft-ema --local-dir" in message and "huggingface-cli" not in message
    assert "`--vae taef2`" in message


def test_offline_with_empty_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    with pytest.raises(CodecUnavailableError, match="sd-vae-ft-mse"):
        diffusers_vae.load_diffusers_codec("sd-vae-ft-mse", cache_dir=tmp_path)


def test_cached_hub_model_loads_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0" * 40  # a hand-made Hugging Face cache entry for "someone/tiny-vae"
    snapshot = tmp_path / "models--someone--tiny-vae" / "snapshots" / commit
    _tiny_kl().save_pretrained(snapshot)
    (tmp_path / "models--someone--tiny-vae" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-vae" / "refs" / "main").write_text(commit)
    codec = diffusers_vae.load_diffusers_codec("someone/tiny-vae", cache_dir=tmp_path)
    assert codec.spec == "someone/tiny-vae" and codec.id.startswith("autoencoderkl:tiny-vae:")
    assert codec.id.rsplit(":", 1)[1] == codec_from_diffusers(_tiny_kl()).id.rsplit(":", 1)[1]


def test_uncached_hub_id_names_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CodecUnavailableError, match="someone-else/no-such-vae") as info:
        load_codec("someone-else/no-such-vae")
    assert "No local path" in str(info.value)


def test_unreachable_hub_is_detected_by_a_quick_probe(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens locally
    start = time.perf_counter()
    reason = diffusers_vae.hub_unreachable_reason(timeout=1.0)
    assert reason is not None and "127.0.0.1:9" in reason
    assert time.perf_counter() - start < 2.0


# ---- errors a user can cause ------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["not-a-codec", "sd-vae", "a b c"])
def test_unknown_spec_is_an_input_error(spec):
    with pytest.raises(InputError, match="Accepted"):
        load_codec(spec)


@pytest.mark.parametrize("spec", ["./missing/vae", "/no/such/taef2_encoder.pth", "~/nowhere/a/b"])
def test_missing_path_is_an_input_error(spec):
    with pytest.raises(InputError, match="does not exist") as info:
        load_codec(spec)
    assert Path(spec).name in str(info.value)


def test_corrupt_pth_is_an_input_error_naming_the_file(tmp_path):
    (tmp_path / "bad_encoder.pth").write_bytes(b"this is not a checkpoint")
    (tmp_path / "bad_decoder.pth").write_bytes(b"neither is this")
    with pytest.raises(InputError) as info:
        load_codec(str(tmp_path))
    assert "bad_encoder.pth" in str(info.value)


def test_unsupported_key_layout_is_an_input_error(tmp_path):
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "odd_encoder.pth")
    torch.save({"0.weight": torch.zeros(3, 4, 3, 3)}, tmp_path / "odd_decoder.pth")
    with pytest.raises(InputError, match="odd_encoder.pth"):
        load_codec(str(tmp_path / "odd_encoder.pth"))


# ---- TAESD family: a random pair written here, then the real TAEF2 ---------------------------
def test_taesd_architecture_is_read_off_the_keys(tmp_path):
    torch.manual_seed(0)
    gn = dict(use_midblock_gn=True)
    encoder = torch.nn.Sequential(
        conv(3, 16), Block(16, 16), conv(16, 16, stride=2, bias=False), Block(16, 24),
        conv(24, 24, stride=2, bias=False), Block(24, 24, **gn), conv(24, 6),
    )
    decoder = torch.nn.Sequential(
        Clamp(), conv(6, 24), torch.nn.ReLU(), Block(24, 24, **gn), torch.nn.Upsample(scale_factor=2),
        conv(24, 16, bias=False), Block(16, 16), torch.nn.Upsample(scale_factor=2), conv(16, 16, bias=False),
        Block(16, 16), conv(16, 3),
    )
    torch.save({k: v.half() for k, v in encoder.state_dict().items()}, tmp_path / "toy_encoder.pth")
    torch.save({k: v.half() for k, v in decoder.state_dict().items()}, tmp_path / "toy_decoder.pth")
    codec = load_codec(str(tmp_path))
    assert (codec.latent_channels, codec.downscale) == (6, 4)
    assert codec.id.startswith("taesd:toy:")
    images = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        reference = encoder.half().float()(images)
    torch.testing.assert_close(codec.encode(images), reference)
    assert codec.decode(codec.encode(torch.rand(1, 3, 13, 9)), size=(13, 9)).shape == (1, 3, 13, 9)


def test_taef2_id_is_stable_and_independent_of_the_path(taef2_dir, tmp_path):
    first, second = load_codec(str(taef2_dir)), load_codec(taef2_dir / "taef2_encoder.pth")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("taef2_encoder.pth", "taef2_decoder.pth"):
        shutil.copy(taef2_dir / name, copy / name)
    link = tmp_path / "link"
    link.symlink_to(taef2_dir, target_is_directory=True)
    ids = {first.id, second.id, load_codec(str(copy)).id, load_codec(str(link)).id}
    assert len(ids) == 1 and first.id.startswith("taesd:taef2:")
    assert (first.latent_channels, first.downscale) == (32, 8)
    assert load_codec(first.spec).id == first.id


def test_taef2_reconstructs_kodak(taef2_dir, kodak24_dir):
    codec = load_codec(taef2_dir)
    paths = sorted(kodak24_dir.glob("*.png"))
    assert len(paths) == 24
    start = time.perf_counter()
    scores = []
    for path in paths:
        image = _read_png(path)[None]
        latents = codec.encode(image)
        assert latents.shape[1:] == (32, math.ceil(image.shape[-2] / 8), math.ceil(image.shape[-1] / 8))
        scores.append(_psnr(codec.decode(latents, size=image.shape[-2:]), image))
    elapsed = time.perf_counter() - start
    mean = sum(scores) / len(scores)
    print(f"TAEF2 Kodak24: mean PSNR {mean:.2f} dB (min {min(scores):.2f}), {elapsed:.1f} s on "
          f"{torch.get_num_threads()} threads")
    assert mean >= 29.0


# ---- the codec contract, run on every family (as diffusers' ModelTesterMixin) ------------------
def _toy_taesd(folder: Path):
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(conv(3, 8), Block(8, 8), conv(8, 8, stride=2, bias=False),
                                  Block(8, 8, use_midblock_gn=True), conv(8, 4))
    decoder = torch.nn.Sequential(Clamp(), conv(4, 8), torch.nn.ReLU(), Block(8, 8, use_midblock_gn=True),
                                  torch.nn.Upsample(scale_factor=2), conv(8, 8, bias=False), Block(8, 8), conv(8, 3))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(encoder.state_dict(), folder / "toy_encoder.pth")
    torch.save(decoder.state_dict(), folder / "toy_decoder.pth")
    return load_codec(str(folder))


def _tiny_tae():
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                           num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1), latent_channels=4)


CODEC_FAMILIES = {
    "pixel": lambda tmp: load_codec("pixel"),
    "autoencoder-kl": lambda tmp: codec_from_diffusers(_tiny_kl(), name="tiny-kl"),
    "autoencoder-tiny": lambda tmp: codec_from_diffusers(_tiny_tae(), name="tiny-tae"),
    "taesd-family": lambda tmp: _toy_taesd(tmp / "toy"),
    "taef2-bundled": lambda tmp: load_codec("taef2"),
}


@pytest.fixture(params=sorted(CODEC_FAMILIES))
def family(request, tmp_path):
    return request.param, CODEC_FAMILIES[request.param](tmp_path)


def test_codec_contract_shapes_dtypes_range_and_size_restoration(family):
    name, codec = family
    f, c = codec.downscale, codec.latent_channels
    for h, w in ((37, 50), (16, 16), (5, 3)):  # odd sizes, a multiple of every f, smaller than f
        images = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        latents = codec.encode(images)
        assert latents.shape == (2, c, math.ceil(h / f), math.ceil(w / f)) and latents.dtype == torch.float32, name
        decoded = codec.decode(latents, size=(h, w))
        assert decoded.shape == (2, 3, h, w) and decoded.dtype == torch.float32, name
        assert float(decoded.min()) >= 0 and float(decoded.max()) <= 1, name
        assert codec.decode(latents).shape == (2, 3, latents.shape[-2] * f, latents.shape[-1] * f), name
    latents.add_(1)  # outputs are ordinary tensors a caller may modify in place


def test_codec_contract_determinism_and_batch_independence(family):
    name, codec = family
    images = torch.rand(3, 3, 32, 40, generator=torch.Generator().manual_seed(7))
    latents = codec.encode(images)
    assert torch.equal(codec.encode(images), latents), name
    assert torch.equal(codec.decode(latents, size=(32, 40)), codec.decode(latents, size=(32, 40))), name
    alone = torch.cat([codec.encode(images[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(alone, latents, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("side", [256, pytest.param(1024, marks=pytest.mark.slow)])
def test_codec_contract_images_up_to_1024_are_never_tiled(family, side):
    """tile="auto" leaves images up to 1024² untiled: exactly the result of tile="off"."""
    name, codec = family
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
    auto = codec.configure(tile="auto").decode(codec.encode(image), size=(side, side))
    off = codec.configure(tile="off").decode(codec.encode(image), size=(side, side))
    assert torch.equal(auto, off), name
