"""One syntax for a list of α on ``apply`` and ``experiment``: ``--alpha 0 --alpha 0.5``, ``--alpha 0,0.5``,
``--alphas 0 0.5`` (and an experiment's config file)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from dotrestore.cli import build_parser, main
from dotrestore.cli.experiment import config_from_args
from dotrestore.settings import DEFAULT_ALPHAS
from dotrestore.tasks.apply import alpha_dirname

from support import run_cli, write_images

SPELLINGS = [
    ["--alpha", "0", "--alpha", "0.5"],
    ["--alpha", "0,0.5"],
    ["--alpha", "0, 0.5"],
    ["--alphas", "0", "0.5"],
    ["--alphas", "0,0.5"],
    ["--alpha=0,0.5"],
    ["--alpha", "0", "--alphas", "0.5", "0"],  # mixed, a repeat dropped
]


@pytest.mark.parametrize("spelling", SPELLINGS, ids=" ".join)
@pytest.mark.parametrize("command, dest", [("apply", "alpha"), ("experiment", "alphas")])
def test_every_spelling_gives_the_same_list(command, dest, spelling):
    head = ["apply", "op", "img.png", "-o", "out"] if command == "apply" else ["experiment", "--clean", "c"]
    assert getattr(build_parser().parse_args([*head, *spelling]), dest) == [0.0, 0.5]


@pytest.mark.parametrize("spelling, expected", [
    (["--alpha", "-0.5,0"], [-0.5, 0.0]),
    (["--alpha", "-.5"], [-0.5]),
    (["--alphas", "-0.7", "-0.3", "1e-3"], [-0.7, -0.3, 0.001]),
    (["--alpha", "-1e-3"], [-0.001]),
])
def test_negative_values_are_values_not_flags(spelling, expected):
    args = build_parser().parse_args(["apply", "op", "img.png", "-o", "out", *spelling])
    assert args.alpha == expected and args.inputs == ["img.png"]


def test_alpha_takes_one_token_so_inputs_may_follow_it():
    args = build_parser().parse_args(["apply", "op", "--alpha", "0.5", "a.png", "b.png", "-o", "out"])
    assert args.alpha == [0.5] and args.inputs == ["a.png", "b.png"]


@pytest.mark.parametrize("text", ["0,x", "", "nan", "0,,2000"])
def test_bad_values_exit_2_naming_the_flag(text, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["apply", "op", "img.png", "-o", "out", "--alpha", text])
    assert stop.value.code == 2 and "argument --alpha" in capsys.readouterr().err


def test_experiment_flags_override_the_config_file_and_the_file_still_works(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"clean": "c", "degrade": "noise:sigma=5", "restorer": "identity",
                                      "alphas": "0, 0.25, 1"}))
    parser = build_parser()
    assert config_from_args(parser.parse_args(["experiment", "--config", str(config)])).alphas == [0.0, 0.25, 1.0]
    given = parser.parse_args(["experiment", "--config", str(config), "--alpha", "-0.5,0.5"])
    assert config_from_args(given).alphas == [-0.5, 0.5]
    config.write_text(yaml.safe_dump({"clean": "c", "degrade": "noise:sigma=5", "restorer": "identity",
                                      "alphas": [0, 1.5]}))
    assert config_from_args(parser.parse_args(["experiment", "--config", str(config)])).alphas == [0.0, 1.5]
    assert config_from_args(parser.parse_args(["experiment", "--clean", "c", "--restored", "r"])).alphas == list(DEFAULT_ALPHAS)


def test_apply_writes_every_alpha_of_a_comma_list(tmp_path, capsys):
    src, tgt = write_images(tmp_path / "restored", 3, seed=0), write_images(tmp_path / "clean", 3, seed=1)
    op = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "-o", str(op)]) == 0
    image = src / "img00.png"
    assert run_cli(capsys, "apply", op, image, "-o", tmp_path / "a", "--alpha", "-0.5,0,1")[0] == 0
    assert run_cli(capsys, "apply", op, image, "-o", tmp_path / "b", "--alphas", "-0.5", "0", "1")[0] == 0
    for a in (-0.5, 0, 1):
        one, other = (np.asarray(Image.open(tmp_path / d / alpha_dirname(a) / "img00.png")) for d in "ab")
        assert np.array_equal(one, other)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "alpha_1" / "img00.png")),
                          np.asarray(Image.open(image)))
