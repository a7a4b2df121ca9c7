"""The codec's precision: ``--dtype auto`` on CPUs with and without native bfloat16, the one warning
for emulated bf16, the words ``info``/log/report use, and the activation estimate per dtype.

Whether this CPU has native bf16 is simulated both ways by replacing the capability check."""

from __future__ import annotations

import logging

import pytest
import torch

from dotrestore import DOT, Runtime, settings
from dotrestore.codecs import load_codec, precision, tiling
from dotrestore.errors import SettingError


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    monkeypatch.setattr(precision, "_warned", set())


def test_the_default_is_auto():
    assert settings.default("dtype") == "auto" and Runtime().dtype == "auto"
    assert settings.dtype(None) == "auto" and settings.dtype(torch.bfloat16) == "bfloat16"


def test_auto_is_bfloat16_on_a_cpu_with_native_bf16(native_bf16):
    chosen = precision.resolve_precision("auto", "cpu")
    assert chosen.name == "bfloat16" and chosen.dtype is torch.bfloat16 and "natively" in chosen.reason
    codec = load_codec("taef2", device="cpu")
    assert codec.dtype is torch.bfloat16 and codec.precision == chosen
    assert Runtime(device="cpu").precision() == chosen


def test_auto_is_float32_on_a_cpu_without_it_and_runs_exactly_float32(no_native_bf16):
    chosen = precision.resolve_precision("auto", "cpu")
    assert chosen.name == "float32" and "no native bfloat16" in chosen.reason
    auto, full = load_codec("taef2", device="cpu"), load_codec("taef2", device="cpu", dtype="float32")
    assert auto.dtype is torch.float32
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(auto.encode(x), full.encode(x))  # nothing changes on such a CPU


def test_bfloat16_on_a_cpu_without_it_runs_with_one_warning(no_native_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="dotrestore"):
        Runtime(device="cpu", dtype="bfloat16")
        codec = load_codec("taef2", device="cpu", dtype="bfloat16")
        codec.to("cpu")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "emulated" in warnings[0].getMessage()
    assert codec.dtype is torch.bfloat16 and "emulates" in codec.precision.reason
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    z16, z32 = codec.encode(x), load_codec("taef2", dtype="float32").encode(x)
    assert z16.dtype == torch.float32 and not torch.equal(z16, z32)  # it really ran in bf16 ...
    assert (z16 - z32).abs().max() < 0.05 * z32.abs().max()  # ... and stayed close


def test_float16_still_needs_cuda():
    with pytest.raises(SettingError, match="float16 needs a CUDA device"):
        Runtime(device="cpu", dtype="float16")


def test_cuda_auto_stays_float32():
    chosen = precision.resolve_precision("auto", "cuda")
    assert chosen.name == "float32" and "cuda" in chosen.reason


def test_pixel_codec_stays_exact(native_bf16):
    codec = load_codec("pixel")
    assert codec.dtype is torch.float32 and "no network" in codec.precision.reason


@pytest.mark.parametrize("dtype, element", [("float32", 4), ("bfloat16", 2)])
def test_activation_estimate_knows_the_dtype(dtype, element, native_bf16):
    codec = load_codec("taef2", dtype=dtype)
    # TAEF2's largest activation is a 64-channel map at full resolution, 4x for what lives beside it
    for role in ("encode", "decode"):
        assert codec.bytes_per_pixel(role) == pytest.approx(tiling.ACTIVATION_FACTOR * 64 * element)
    side = codec._tile_plan(6000, 4000, "encode")[0]
    budget = tiling.CPU_BUDGET
    assert side == tiling.auto_tile(6000 * 4000, codec.bytes_per_pixel("encode"), budget)
    assert side * side * codec.bytes_per_pixel("encode") <= budget


def test_bf16_tiles_are_larger_under_one_budget(native_bf16):
    sides = {d: load_codec("taef2", dtype=d, max_memory=512 * 2**20)._tile_plan(4096, 4096, "decode")[0]
             for d in ("float32", "bfloat16")}
    assert sides["bfloat16"] > sides["float32"]
    assert sides["bfloat16"] == pytest.approx(sides["float32"] * 2**0.5, abs=tiling.AUTO_TILE_STEP)


def test_info_and_the_log_say_which_precision_runs_and_why(native_bf16, tmp_path, caplog, capsys):
    from dotrestore.cli import main

    x = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with caplog.at_level(logging.INFO, logger="dotrestore"):
        dot = DOT(codec="taef2", runtime={"device": "cpu", "progress": False}).fit(x[:2], x[2:])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("codec ")]
    assert lines == [f"codec {dot.codec_.id} on cpu in bfloat16 (--dtype auto: this CPU computes bfloat16 "
                     "natively (AMX-BF16 or AVX-512 BF16))"]
    dot.save(tmp_path / "op.safetensors")
    assert main(["info", str(tmp_path / "op.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "precision    here the codec runs in bfloat16 (--dtype auto: this CPU computes bfloat16 natively" in out


def test_auto_fits_statistics_in_float32_and_applies_in_bf16(native_bf16):
    """bf16 moved TAEF2's patch moments by 2-5 % relative: under auto a fit encodes in float32."""
    g = torch.Generator().manual_seed(0)
    x = [torch.rand(3, 32, 32, generator=g) for _ in range(4)]
    auto = DOT(codec="taef2", runtime={"progress": False}).fit(x[:2], x[2:])
    full = DOT(codec="taef2", runtime={"dtype": "float32", "progress": False}).fit(x[:2], x[2:])
    assert torch.equal(auto.cov_source_, full.cov_source_) and torch.equal(auto.mean_target_, full.mean_target_)
    assert auto.codec_.precision.name == "bfloat16"  # transform runs in bf16
    asked = DOT(codec="taef2", runtime={"dtype": "bfloat16", "progress": False}).fit(x[:2], x[2:])
    assert not torch.equal(asked.cov_source_, full.cov_source_)  # an explicit bfloat16 is kept
