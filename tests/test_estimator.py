"""DOT estimator: fitting, transport, α, zero-shot, the stochastic map and operator files."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from dotrestore import DOT, NotFittedError, OperatorFileError
from dotrestore.codecs import load_codec
from dotrestore.io import images as data
from dotrestore.metrics import patch_fd


def textured(n: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    """Clean-like images: smooth colour fields plus fine texture."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=size, mode="bicubic", align_corners=False)
    return (base + 0.15 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def restored(images: torch.Tensor) -> torch.Tensor:
    """A blurry 'restoration': what an MMSE-like model outputs."""
    return F.avg_pool2d(F.pad(images, (2, 2, 2, 2), mode="replicate"), 5, stride=1)


@pytest.fixture(scope="module")
def fitted() -> DOT:
    return DOT(codec="pixel", patch_size=3, split="gaussian").fit(list(restored(textured(6, seed=1))), list(textured(6, seed=2)))


def test_fitted_attributes(fitted):
    D = 3 * 3 * 3
    assert fitted.dim_ == D
    assert fitted.operator_.shape == (D, D) and fitted.operator_.dtype == torch.float64
    assert fitted.mean_source_.shape == (D,) and fitted.cov_target_.shape == (D, D)
    assert fitted.n_source_images_ == 6 and fitted.n_target_images_ == 6
    assert fitted.n_source_patches_ == 6 * 46 * 46 == fitted.n_target_patches_
    assert fitted.w2_squared_ > 0
    assert fitted.noise_cov_ is None  # blurred images still have a full-rank patch covariance


def test_transport_moves_restorations_to_clean_statistics(fitted):
    clean = textured(4, seed=3)
    x_star = restored(clean)
    out = fitted.transform(x_star, alpha=0.0)
    before = patch_fd(list(x_star), list(clean), patch_size=3, stride=1)
    after = patch_fd(list(out), list(clean), patch_size=3, stride=1)
    assert after < 0.3 * before, (before, after)


def test_alpha_one_is_the_input_and_outputs_are_clipped(fitted):
    x = restored(textured(2, seed=4))
    assert torch.equal(fitted.transform(x, alpha=1.0), x)
    for alpha in (-0.7, 0.0, 0.5, 1.5):
        out = fitted.transform(x, alpha=alpha)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_pixel_blend_is_linear_in_alpha(fitted):
    x = restored(textured(1, seed=5))[0]
    outs = dict(fitted.iter_alphas(x[None], [0.0, 0.3, 1.0]))
    x0 = outs[0.0][0]
    expected = (0.7 * x0 + 0.3 * x).clamp(0, 1)
    assert torch.allclose(outs[0.3][0], expected, atol=1e-6)
    assert torch.equal(outs[1.0][0], x)


def test_latent_interpolation_endpoints(fitted):
    x = restored(textured(1, seed=6))
    # With the pixel codec, decode(encode(x)) == x, so latent α = 1 is the input too.
    assert torch.allclose(fitted.transform(x, alpha=1.0, interpolation="latent"), x, atol=1e-6)
    assert torch.allclose(
        fitted.transform(x, alpha=0.0, interpolation="latent"), fitted.transform(x, alpha=0.0), atol=1e-6
    )


def test_output_kind_follows_input(fitted):
    batch = restored(textured(2, seed=7))
    assert fitted.transform(batch[0]).shape == (3, 48, 48)
    assert fitted.transform(batch).shape == (2, 3, 48, 48)
    odd = torch.rand(3, 21, 34)
    out = fitted.transform([batch[0], odd])
    assert isinstance(out, list) and out[1].shape == (3, 21, 34)


def test_partial_fit_streams_to_the_same_operator(fitted):
    src, tgt = list(restored(textured(6, seed=1))), list(textured(6, seed=2))
    dot = DOT(codec="pixel", split="gaussian")
    for s, t in zip(src, tgt):
        dot.partial_fit([s], role="source").partial_fit([t], role="target")
    assert torch.allclose(dot.operator_, fitted.operator_, rtol=1e-9, atol=1e-10)
    assert dot.n_source_patches_ == fitted.n_source_patches_


def test_not_fitted_and_bad_parameters():
    dot = DOT(codec="pixel")
    with pytest.raises(NotFittedError, match="fit"):
        dot.transform(torch.rand(3, 8, 8))
    dot.partial_fit([torch.rand(3, 16, 16)], role="target")
    with pytest.raises(NotFittedError):  # target alone is not enough unless zero-shot
        dot.transform(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="patch_size"):
        DOT(codec="pixel", patch_size=4).fit([torch.rand(3, 8, 8)], [torch.rand(3, 8, 8)])
    with pytest.raises(ValueError, match="role"):
        DOT(codec="pixel").partial_fit([torch.rand(3, 8, 8)], role="clean")


def test_zero_shot_uses_the_image_itself():
    clean = textured(4, seed=8)
    dot = DOT(codec="pixel", zero_shot=True, split="gaussian").fit(target_images=list(clean))
    x_star = restored(textured(2, seed=9))
    assert torch.equal(dot.transform(x_star, alpha=1.0), x_star)
    out = dot.transform(x_star, alpha=0.0)
    before = patch_fd(list(x_star), list(clean), patch_size=3)
    after = patch_fd(list(out), list(clean), patch_size=3)
    assert after < 0.5 * before, (before, after)


def test_stochastic_map_is_seeded_and_adds_texture():
    # A constant-per-patch source has a singular covariance: eq. 19 applies.
    flat = F.interpolate(torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)), scale_factor=6, mode="nearest")
    src = F.avg_pool2d(flat, 9, 1, 4, count_include_pad=False)
    dot = DOT(codec="pixel", stochastic="always", seed=3).fit(list(src), list(textured(6, seed=10)))
    assert dot.noise_cov_ is not None and dot.noise_cov_.shape == (27, 27)
    a = dot.transform(src[0])
    assert torch.equal(a, dot.transform(src[0]))  # same seed, same draw
    dot.seed = 4
    assert not torch.equal(a, dot.transform(src[0]))


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "op.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert meta["codec_id"] == "pixel" and meta["patch_size"] == "3"
        assert {"operator", "mean_source", "cov_target"} <= set(f.keys())
    info = json.loads(meta["dotrestore"])
    assert info["format_version"] == 3 and info["n_source_patches"] == fitted.n_source_patches_
    loaded = DOT.load(path)
    x = restored(textured(1, seed=11))
    assert torch.equal(loaded.transform(x), fitted.transform(x))
    assert loaded.w2_squared_ == pytest.approx(fitted.w2_squared_)
    # Fitting can continue from the stored moments.
    loaded.partial_fit([textured(1, seed=12)[0]], role="target")
    assert loaded.n_target_images_ == fitted.n_target_images_ + 1


def test_load_refuses_other_codecs_and_foreign_files(fitted, tmp_path):
    path = fitted.save(tmp_path / "op.safetensors")
    from diffusers import AutoencoderKL

    from dotrestore.codecs import codec_from_diffusers

    torch.manual_seed(0)
    tiny = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), latent_channels=3, norm_num_groups=4)
    with pytest.raises(OperatorFileError, match="fitted with codec 'pixel'"):
        DOT.load(path, codec=codec_from_diffusers(tiny, name="tiny"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(OperatorFileError, match="garbage.safetensors"):
        DOT.load(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(OperatorFileError, match="not a dotrestore operator"):
        DOT.load(foreign)
    with pytest.raises(OperatorFileError, match="does not exist"):
        DOT.load(tmp_path / "missing.safetensors")


def test_codec_object_is_accepted():
    codec = load_codec("pixel")
    dot = DOT(codec=codec).fit([torch.rand(3, 12, 12)] * 2, [torch.rand(3, 12, 12)] * 2)
    assert dot.codec_ is codec


# ---------------------------------------------------------------------- what a Python user sees
def test_fit_shows_progress_and_auto_names_its_codec(tmp_path, capsys, caplog):
    import logging

    images = [data.save_image(textured(1, seed=s)[0], tmp_path / f"{s}.png") for s in range(3)]
    with caplog.at_level(logging.INFO, logger="dotrestore"):
        dot = DOT(codec="auto", lowpass_sigma=0).fit(images, images)
    assert any("--vae auto" in r.getMessage() and "taef2" in r.getMessage().lower() for r in caplog.records)
    err = capsys.readouterr().err
    assert "encoding source" in err and "encoding target" in err  # tqdm bars, on by default
    DOT(codec=dot.codec_, lowpass_sigma=0, runtime={"progress": False}).fit(images, images)
    assert "encoding" not in capsys.readouterr().err


def test_fitted_attributes_are_read_only_views_and_params_are_checked():
    dot = DOT(codec="pixel")
    with pytest.raises(NotFittedError, match="operator_"):
        dot.operator_
    assert not hasattr(dot, "mean_source_")
    assert dot.get_params()["patch_size"] == 3 and set(dot.get_params()) >= {"codec", "lowpass_sigma", "runtime"}
