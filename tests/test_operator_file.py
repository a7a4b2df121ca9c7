"""Operator files: every metadata field and tensor checked on load, old versions read, the file named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dotrestore import DOT

from support import rewrite, run_cli

# ---------------------------------------------------------------------- helpers
BAD_META = {
    "list": lambda m: [1, 2],
    "number": lambda m: 3,
    "null": lambda m: None,
    "version-text": lambda m: {**m, "format_version": "two"},
    "version-future": lambda m: {**m, "format_version": 99},
    "dim-missing": lambda m: {k: v for k, v in m.items() if k != "dim"},
    "dim-text": lambda m: {**m, "dim": "abc"},
    "dim-wrong": lambda m: {**m, "dim": 12, "latent_channels": 3, "patch_size": 3},
    "lowpass-nan": lambda m: json.dumps(m).replace('"lowpass_sigma": 0.0', '"lowpass_sigma": NaN'),
    "lowpass-negative": lambda m: {**m, "lowpass_sigma": -4},
    "patch-negative": lambda m: {**m, "patch_size": -3},
    "patch-even": lambda m: {**m, "patch_size": 2},
    "eps-zero": lambda m: {**m, "eps": 0},
    "shrinkage-bad": lambda m: {**m, "shrinkage": 2.5},
    "weighting-bad": lambda m: {**m, "weighting": "median"},
    "zero-shot-text": lambda m: {**m, "zero_shot": "yes"},
    "codec-id-missing": lambda m: {k: v for k, v in m.items() if k != "codec_id"},
    "seed-negative": lambda m: {**m, "seed": -1},
    "count-negative": lambda m: {**m, "n_source_images": -1},
}


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_malformed_metadata_is_refused_by_info_and_apply(files, tmp_path, capsys, case):
    src, _, op = files
    bad = rewrite(op, tmp_path / "bad.safetensors", meta=BAD_META[case])
    for argv in (["info", bad], ["apply", bad, src, "-o", tmp_path / "out"]):
        code, err = run_cli(capsys, *argv)
        assert code == 2, (case, err)
        assert str(bad) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["operator", "mean_source", "cov_target", "source.outer", "target.count"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_tensors_are_caught_at_load_naming_file_and_tensor(files, tmp_path, capsys, name, value):
    src, _, op = files

    def poison(t):
        t = dict(t)
        t[name] = t[name].clone().reshape(-1)
        t[name][0] = value
        t[name] = t[name].reshape(files_shape[name])
        return t

    with safe_open(str(op), framework="pt") as f:
        files_shape = {k: f.get_tensor(k).shape for k in f.keys()}
    bad = rewrite(op, tmp_path / "nan.safetensors", tensors=poison)
    code, err = run_cli(capsys, "apply", bad, src, "-o", tmp_path / "out")
    assert code == 2 and str(bad) in err and name in err and "non-finite" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mutate", [
    lambda t: {**t, "operator": t["operator"][:-1]},                       # wrong shape
    lambda t: {**t, "mean_target": t["mean_target"].to(torch.int64)},      # wrong dtype
    lambda t: {k: v for k, v in t.items() if k != "operator"},             # missing
    lambda t: {k: v for k, v in t.items() if k != "source.sum"},           # incomplete moments
    lambda t: {**t, "extra": torch.zeros(2, dtype=torch.float64)},         # unknown
    lambda t: {**t, "cov_source": t["cov_source"] + torch.triu(torch.ones_like(t["cov_source"]), 1)},  # asymmetric
])
def test_bad_tensors_are_refused(files, tmp_path, capsys, mutate):
    _, _, op = files
    bad = rewrite(op, tmp_path / "bad.safetensors", tensors=mutate)
    code, err = run_cli(capsys, "info", bad)
    assert code == 2 and str(bad) in err


def test_version_1_file_still_loads(files, tmp_path):
    _, _, op = files

    def v1(m):
        m = {k: v for k, v in m.items() if k not in ("lowpass_sigma",)}
        m["format_version"] = 1
        m["shrinkage_used"] = "none"
        return m

    old = rewrite(op, tmp_path / "v1.safetensors", meta=v1)
    dot = DOT.load(old)
    assert dot.lowpass_sigma == 0.0 and dot.shrinkage_used_ == {"source": "none", "target": "none"}




@pytest.mark.parametrize("key, value", [("format_version", "2.5"), ("patch_size", "three"), ("patch_size", "5"),
                                        ("codec_id", "pixel:other:000000000000")])
def test_header_copies_must_agree_with_the_metadata(files, tmp_path, capsys, key, value):
    _, _, op = files
    with safe_open(str(op), framework="pt") as f:
        header, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    header[key] = value
    bad = tmp_path / "edited.safetensors"
    save_file(tensors, str(bad), metadata=header)
    code, err = run_cli(capsys, "info", bad)
    assert code == 2 and str(bad) in err and f"header {key}" in err and "disagrees" in err
