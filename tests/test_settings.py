"""The one settings table: every interface derives its checks, defaults and help from it."""

from __future__ import annotations

import argparse
import math

import pytest
import yaml

from dotrestore import DOT, Runtime, settings
from dotrestore.cli import build_parser, main
from dotrestore.errors import SettingError
from dotrestore.experiment import ExperimentConfig
from dotrestore.state import META_FIELDS


def test_every_setting_parses_its_own_default_and_has_help():
    for name, setting in settings.SETTINGS.items():
        assert setting.help and setting.group in ("method", "runtime", "experiment", "apply", "video", "serve"), name
        if setting.default is not None:
            assert setting.parse(setting.default) == setting.default, name


@pytest.mark.parametrize("name, text, value", [
    ("patch_size", "5", 5), ("lowpass_sigma", "0", 0.0), ("lowpass_sigma", None, 0.0), ("max_pixels", "1e8", 10**8),
    ("max_pixels", "100_000_000", 10**8), ("max_pixels", None, None), ("shrinkage", "oas", "oas"),
    ("shrinkage", "0.25", 0.25), ("tile", "OFF", "off"), ("tile", "256", 256), ("max_memory", "512MiB", 512 * 2**20),
    ("alphas", "0, 0.5 1", [0.0, 0.5, 1.0]), ("zero_shot", "true", True), ("split", "Guided", "guided"),
])
def test_text_and_python_values_become_one_canonical_value(name, text, value):
    assert settings.check(name, text, text=True) == value


@pytest.mark.parametrize("name, bad", [
    ("patch_size", 4), ("patch_size", "three"), ("patch_size", 17), ("lowpass_sigma", float("nan")),
    ("lowpass_sigma", "inf"), ("lowpass_sigma", -1), ("eps", 0), ("shrinkage", 1.5), ("max_pixels", 0),
    ("alpha", 1e308), ("alpha", float("nan")), ("tile", 8), ("dtype", "float64"), ("mixture", True),
    ("device", "meta"), ("batch_size", 0),
])
def test_bad_values_are_setting_errors_naming_the_setting(name, bad):
    with pytest.raises(SettingError, match=name) as info:
        settings.check(name, bad)
    assert isinstance(info.value, (ValueError, TypeError))


def test_dot_and_runtime_check_through_the_table():
    with pytest.raises(SettingError, match="lowpass_sigma"):
        DOT(lowpass_sigma=float("nan"))
    with pytest.raises(SettingError, match="dtype"):
        Runtime(device="cpu", dtype="float16")  # half precision needs CUDA: said in one place
    whole = DOT(lowpass_sigma=None)
    assert whole.lowpass_sigma is None and whole.resolved.lowpass_sigma == 0.0  # one spelling of "whole images"
    assert DOT().resolved.runtime == Runtime() and DOT(runtime={"batch_size": 2}).resolved.runtime.batch_size == 2


def test_operator_file_schema_accepts_what_dot_accepts():
    for name in settings.METHOD:
        _, accepts, _ = META_FIELDS[name]
        setting = settings.SETTINGS[name]
        assert accepts(setting.default) or setting.default is None and accepts(None), name
    _, accepts_patch, _ = META_FIELDS["patch_size"]
    assert not accepts_patch("3") and not accepts_patch(4) and accepts_patch(5)
    _, accepts_sigma, _ = META_FIELDS["lowpass_sigma"]
    assert accepts_sigma(None) and accepts_sigma(2) and not accepts_sigma(float("nan")) and not accepts_sigma("4")


def test_cli_defaults_and_help_come_from_the_table(capsys):
    fit = build_parser().parse_args(["fit", "--target", "t", "-o", "op.safetensors"])
    for name in settings.METHOD:
        assert getattr(fit, name) == settings.default(name), name
    assert fit.codec == "auto" and fit.max_pixels == settings.default("max_pixels")
    serve = build_parser().parse_args(["serve"])
    assert serve.max_pixels == settings.default("max_pixels") and serve.port == settings.default("port")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--help"])
    assert "default: 40,000,000" in " ".join(capsys.readouterr().out.split())


def test_experiment_config_defaults_are_the_tables():
    config = ExperimentConfig(clean="c", degrade="noise:sigma=5", restorer="identity").validate()
    assert config.patch_size == settings.default("patch_size") and config.alphas == list(settings.DEFAULT_ALPHAS)
    assert config.lowpass_sigma == settings.default("lowpass_sigma") and config.split == settings.default("split")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_non_finite_lowpass_sigma_is_refused_everywhere(tmp_path, capsys, value):
    for argv in (["fit", "--target", "t", "-o", "o.safetensors", "--lowpass-sigma", value],
                 ["experiment", "--clean", "c", "--lowpass-sigma", value]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2 and "--lowpass-sigma" in capsys.readouterr().err
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"clean": "c", "degrade": "noise:sigma=5", "restorer": "identity",
                                      "lowpass_sigma": float(value)}))
    assert main(["experiment", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "lowpass_sigma" in err and str(config) in err
    with pytest.raises(SettingError):
        DOT(lowpass_sigma=float(value))
    assert math.isnan(float("nan"))  # (the parametrisation covers NaN, both infinities and a negative)


def test_detail_variant_with_lowpass_zero_is_refused_with_a_message(capsys):
    with pytest.raises(SettingError, match="--variants.*lowpass-sigma > 0"):
        ExperimentConfig(clean="c", degrade="noise:sigma=5", restorer="identity", lowpass_sigma=0,
                         variants="detail").validate()
    assert main(["experiment", "--clean", "c", "--degrade", "noise:sigma=5", "--restorer", "identity",
                 "--lowpass-sigma", "0", "--variants", "detail,whole"]) == 2
    assert "--lowpass-sigma > 0" in capsys.readouterr().err
    whole = ExperimentConfig(clean="c", degrade="noise:sigma=5", restorer="identity", lowpass_sigma=0).validate()
    assert whole.variants is None  # the default with σ = 0: whole images only


def test_argparse_types_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["apply", "op", "x", "-o", "out", "--alpha", "1e308"])
    assert "--alpha" in capsys.readouterr().err
    assert isinstance(settings.SETTINGS["tile"].parse, type(lambda: 0))
    parser = argparse.ArgumentParser()
    from dotrestore.cli import options

    options.add(parser, "patch_size")
    assert parser.parse_args(["--patch-size", "5"]).patch_size == 5


def test_library_refuses_bad_device():
    with pytest.raises(ValueError, match="available"):
        DOT(codec="pixel", runtime={"device": "meta"})


@pytest.mark.parametrize("flag", [["--patch-size", "17"], ["--patch-size", "-3"], ["--eps", "inf"], ["--eps", "-1"],
                                  ["--lowpass-sigma", "nan"], ["--lowpass-sigma", "-4"], ["--lowpass-sigma", "1e9"]])
def test_fit_parameter_ranges_match_the_schema(files, tmp_path, capsys, flag):
    src, tgt, _ = files
    try:
        code = main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel",
                     "-o", str(tmp_path / "x.st"), *flag])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "x.st").exists()


