"""Applying an operator to files: the output layout, every check before the work, staged writing."""

from __future__ import annotations

import os

import pytest
import torch

from dotrestore import DOT
from dotrestore.errors import InputError
from dotrestore.io import images as data
from dotrestore.tasks.apply import alpha_dirname, plan_outputs, write_outputs

from support import write_images


def test_alpha_dirname_has_one_name_per_alpha():
    assert [alpha_dirname(a) for a in (-0.7, -0.0, 0, 1.0, 1.3, 1e-7)] == [
        "alpha_-0.7", "alpha_0", "alpha_0", "alpha_1", "alpha_1.3", "alpha_1e-07"]


def test_plan_layout_and_refusals(tmp_path):
    inputs = sorted(write_images(tmp_path / "in", 2, seed=0).iterdir())
    one = plan_outputs(inputs, tmp_path / "out", [0.5])
    assert one.targets[0.5] == [tmp_path / "out" / "img00.png", tmp_path / "out" / "img01.png"] and one.count == 2
    several = plan_outputs(inputs, tmp_path / "out", [0, 1, 0.0])
    assert several.alphas == [0.0, 1.0] and several.targets[1.0][0] == tmp_path / "out" / "alpha_1" / "img00.png"
    twin = tmp_path / "other" / "img00.jpg"
    twin.parent.mkdir()
    data.save_image(torch.rand(3, 8, 8), twin.with_suffix(".png")).rename(twin)
    with pytest.raises(InputError, match="same stem"):
        plan_outputs([*inputs, twin], tmp_path / "out", [0.0])
    with pytest.raises(InputError, match="contains the input"):
        plan_outputs(inputs, tmp_path / "in", [0.0], overwrite=True)  # one α writes OUT/<stem>.png: the inputs
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "img01.png").write_bytes(b"old")
    with pytest.raises(InputError, match="img01.png: already exists"):
        plan_outputs(inputs, tmp_path / "out", [0.0])
    assert plan_outputs(inputs, tmp_path / "out", [0.0], overwrite=True).count == 2


def test_write_outputs_matches_transform_and_stages(tmp_path):
    src = write_images(tmp_path / "src", 3, seed=1)
    dot = DOT(codec="pixel", lowpass_sigma=0).fit(src, write_images(tmp_path / "tgt", 3, seed=2))
    inputs = sorted(src.iterdir())
    done = []
    plan = plan_outputs(inputs, tmp_path / "out", [0.0, 1.0])
    assert write_outputs(dot, plan, progress=done.append) == 6 and done[-1] == 3
    for path in inputs:
        expected = data.quantize(dot.transform(data.read_image(path), alpha=0.0))
        assert torch.equal(data.read_image(tmp_path / "out" / "alpha_0" / path.name), expected)
        assert torch.equal(data.read_image(tmp_path / "out" / "alpha_1" / path.name), data.read_image(path))
    assert not [p for p in os.listdir(tmp_path / "out") if p.startswith(".")]  # no staging left behind
