"""Regression tests of issue 7: nothing lost, nothing crashes, every error names its file."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from dotrestore import DOT
from dotrestore.cli import main
from dotrestore.errors import InputError, OperatorFileError
from dotrestore.io.files import atomic_write, default_file_mode
from dotrestore.state import FittedState, validate


# ---------------------------------------------------------------------- helpers
def write_images(folder: Path, n: int, seed: int, size=(24, 28)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def rewrite(src: Path, dst: Path, meta=None, tensors=None, sync_header: bool = True) -> Path:
    """Copy an operator file, passing its JSON metadata / tensors through the given functions.

    The header's copies of metadata fields follow the new metadata, as a writer would keep them
    (``sync_header=False`` leaves them as they were).
    """
    with safe_open(str(src), framework="pt") as f:
        header = dict(f.metadata())
        data = {k: f.get_tensor(k) for k in f.keys()}
    if meta is not None:
        header["dotrestore"] = meta(json.loads(header["dotrestore"]))
        if isinstance(header["dotrestore"], dict) and sync_header:
            for key in ("format_version", "codec_id", "codec_spec", "patch_size"):
                if key in header["dotrestore"]:
                    header[key] = str(header["dotrestore"][key])
        if not isinstance(header["dotrestore"], str):
            header["dotrestore"] = json.dumps(header["dotrestore"])
    if tensors is not None:
        data = tensors(data)
    save_file(data, str(dst), metadata=header)
    return dst


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares width x height (the IDAT holds only a few rows)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (3 * width + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture()
def files(tmp_path):
    src = write_images(tmp_path / "restored", 3, seed=0)
    tgt = write_images(tmp_path / "clean", 3, seed=1)
    op = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "--lowpass-sigma", "0",
                 "--device", "cpu", "-o", str(op)]) == 0
    return src, tgt, op


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# ---------------------------------------------------------------------- 1. never write over an input
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "dotdot"])
def test_fit_never_overwrites_an_input(files, tmp_path, capsys, how):
    src, tgt, _ = files
    victim = src / "img00.png"
    before = tree_digest(tmp_path)
    output = {"same": victim, "dotdot": src / ".." / "restored" / "img00.png",
              "symlink": tmp_path / "link.png", "hardlink": tmp_path / "hard.png"}[how]
    if how == "symlink":
        output.symlink_to(victim)
    if how == "hardlink":
        os.link(victim, output)
    before = tree_digest(tmp_path)
    code, err = run_cli(capsys, "fit", "--source", victim, src / "img01.png", "--target", tgt, "--vae", "pixel",
                        "-o", output, "--overwrite")
    assert code == 2 and "is one of the inputs" in err and str(output) in err
    assert tree_digest(tmp_path) == before


def test_apply_refuses_output_onto_operator_and_inputs(files, tmp_path, capsys):
    src, _, op = files
    before = tree_digest(tmp_path)
    code, err = run_cli(capsys, "apply", op, src, "-o", src, "--overwrite")
    assert code == 2 and "is one of the inputs" in err
    assert tree_digest(tmp_path) == before


# ---------------------------------------------------------------------- 2, 3, 8. operator schema
BAD_META = {
    "list": lambda m: [1, 2],
    "number": lambda m: 3,
    "null": lambda m: None,
    "version-text": lambda m: {**m, "format_version": "two"},
    "version-future": lambda m: {**m, "format_version": 99},
    "dim-missing": lambda m: {k: v for k, v in m.items() if k != "dim"},
    "dim-text": lambda m: {**m, "dim": "abc"},
    "dim-wrong": lambda m: {**m, "dim": 12, "latent_channels": 3, "patch_size": 3},
    "lowpass-nan": lambda m: json.dumps(m).replace('"lowpass_sigma": 0', '"lowpass_sigma": NaN')
    .replace('"lowpass_sigma": null', '"lowpass_sigma": NaN'),
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


# ---------------------------------------------------------------------- typed state
def test_state_round_trip_keeps_both_roles_shrinkage(tmp_path):
    rng = np.random.default_rng(3)
    smooth = [torch.from_numpy(np.kron(rng.random((3, 6, 7)), np.ones((1, 4, 4)))).float() for _ in range(2)]
    tgt = write_images(tmp_path / "t", 2, seed=4)
    dot = DOT(codec="pixel", shrinkage="oas", lowpass_sigma=None).fit(smooth, tgt)
    used = dot.shrinkage_used_
    assert set(used) == {"source", "target"} and used["source"] != used["target"]
    tensors, meta = dot.state_.state_dict()
    again = FittedState.from_state_dict(tensors, meta)
    assert torch.equal(again.operator, dot.operator_) and again.source.n_patches == dot.n_source_patches_
    dot.save(tmp_path / "op.safetensors")
    assert DOT.load(tmp_path / "op.safetensors").shrinkage_used_ == used
    with pytest.raises(AttributeError):
        dot.operator_ = None  # read-only view of state_


def test_validate_names_the_file():
    with pytest.raises(OperatorFileError, match="x.safetensors.*format_version"):
        validate({"format_version": "2"}, {}, "x.safetensors")


# ---------------------------------------------------------------------- 4. unwritable outputs
@pytest.mark.parametrize("where", ["proc", "under-file", "existing-dir"])
def test_fit_unwritable_output_fails_before_work(files, tmp_path, capsys, where):
    src, tgt, _ = files
    output = {"proc": Path("/proc/dotrestore-x"), "under-file": src / "img00.png" / "sub",
              "existing-dir": tmp_path / "somedir"}[where]
    (tmp_path / "somedir").mkdir()
    before = tree_digest(tmp_path)
    code, err = run_cli(capsys, "fit", "--source", src, "--target", tgt, "--vae", "pixel", "-o", output, "--overwrite")
    assert code == 2 and str(output) in err
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("where", ["proc", "under-file"])
def test_apply_unwritable_output(files, tmp_path, capsys, where):
    src, _, op = files
    output = {"proc": Path("/proc/dotrestore-x"), "under-file": src / "img00.png" / "sub"}[where]
    code, err = run_cli(capsys, "apply", op, src, "-o", output)
    assert code == 2 and str(output) in err


def test_write_error_mid_apply_leaves_nothing(files, tmp_path, capsys, monkeypatch):
    src, _, op = files
    from dotrestore import data

    real, calls = data.save_image, []

    def failing(img, path, write_file=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real(img, path, write_file)

    monkeypatch.setattr("dotrestore.io.images.save_image", failing)
    code, err = run_cli(capsys, "apply", op, src, "-o", tmp_path / "out")
    assert code == 2 and "No space left" in err and str(calls[1]) in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- 5. α checked up front
@pytest.mark.parametrize("alpha", ["nan", "inf", "-inf", "abc"])
def test_apply_rejects_non_finite_alpha_before_writing(files, tmp_path, capsys, alpha):
    src, _, op = files
    with pytest.raises(SystemExit) as info:
        main(["apply", str(op), str(src), "-o", str(tmp_path / "out"), "--alpha", "0", "--alpha", alpha])
    assert info.value.code == 2 and "--alpha" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- 6. devices
@pytest.mark.parametrize("device", ["bogus", "meta", "cuda:99", "cuda:x"]
                         + ([] if torch.cuda.is_available() else ["cuda"]))
def test_bad_device_is_refused_at_argument_time(files, tmp_path, capsys, device):
    src, tgt, op = files
    for argv in (["fit", "--source", src, "--target", tgt, "-o", tmp_path / "x.st"],
                 ["apply", op, src, "-o", tmp_path / "out"]):
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in argv] + ["--device", device])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "available here: cpu" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.st").exists()


def test_library_refuses_bad_device():
    with pytest.raises(ValueError, match="available"):
        DOT(codec="pixel", runtime={"device": "meta"})


# ---------------------------------------------------------------------- 7. size limit
def test_declared_huge_image_is_refused_from_its_header(files, tmp_path, capsys):
    _, _, op = files
    bomb = png_declaring(tmp_path / "bomb.png", 10000, 10000)
    assert bomb.stat().st_size < 100_000
    code, err = run_cli(capsys, "apply", op, bomb, "-o", tmp_path / "out")
    assert code == 2 and str(bomb) in err and "over the limit" in err and "--max-pixels" in err
    small = files[0] / "img00.png"  # 24x28 = 672 pixels
    code, err = run_cli(capsys, "apply", op, small, "-o", tmp_path / "out", "--max-pixels", "600")
    assert code == 2 and "over the limit of 600" in err and str(small) in err
    assert not (tmp_path / "out").exists()


def test_max_pixels_in_the_python_api(tmp_path):
    from dotrestore import data

    path = write_images(tmp_path / "i", 1, seed=0, size=(20, 30)) / "img00.png"
    assert data.read_image(path, max_pixels=600).shape == (3, 20, 30)
    with pytest.raises(InputError, match="over the limit"):
        data.read_image(path, max_pixels=599)
    with pytest.raises(InputError, match="img00.png"):
        DOT(codec="pixel", runtime={"max_pixels": 100}).fit([path], [path])
    assert data.DEFAULT_MAX_PIXELS >= 6000 * 4000


# ---------------------------------------------------------------------- 8. too small, named
def test_image_too_small_for_a_patch_is_named_in_fit(files, tmp_path, capsys):
    _, tgt, _ = files
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2)).save(tiny)
    code, err = run_cli(capsys, "fit", "--source", tiny, "--target", tgt, "--vae", "pixel", "-o", tmp_path / "x.st")
    assert code == 2 and str(tiny) in err and "too small" in err


def test_image_too_small_is_named_in_experiment(tmp_path):
    from dotrestore.experiment import ExperimentConfig, run

    clean = write_images(tmp_path / "c", 4, seed=0, size=(24, 24))
    Image.new("RGB", (2, 2)).save(clean / "img00.png")
    config = ExperimentConfig(clean=str(clean), degrade="noise:sigma=10", restorer="identity", vae="pixel",
                              fit_source=1, fit_target=1, out=str(tmp_path / "o"), progress=False)
    with pytest.raises(InputError, match="img00.png.*too small"):
        run(config)
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


# ---------------------------------------------------------------------- 9. file modes
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_umask_mode(files, tmp_path, capsys, umask):
    src, tgt, _ = files
    old = os.umask(umask)
    try:
        assert default_file_mode() == 0o666 & ~umask
        assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "-o",
                     str(tmp_path / "m.safetensors")]) == 0
        assert main(["apply", str(tmp_path / "m.safetensors"), str(src), "-o", str(tmp_path / "out")]) == 0
        atomic_write(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    for path in [tmp_path / "m.safetensors", tmp_path / "out" / "img00.png", tmp_path / "t.txt"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


# ---------------------------------------------------------------------- 10. experiment.demo / --help
def test_demo_function_survives_importing_its_module():
    import importlib

    from dotrestore import experiment

    importlib.import_module("dotrestore.experiment.demo")
    from dotrestore.experiment import demo as again  # noqa: F401

    assert callable(experiment.demo) and experiment.demo.__module__ == "dotrestore.experiment.demo"


def test_experiment_help_shows_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    out = capsys.readouterr().out
    assert "(default: None)" not in out and "default: True" not in out
    assert "(default: 10)" in out and "(default: dotrestore-experiment)" in out and "40,000,000" in out


# ---------------------------------------------------------------------- error types and --debug
def test_library_internals_raise_value_errors_not_input_errors():
    from dotrestore.ot.gaussian import Moments
    from dotrestore.ot.patches import extract_patches

    for call in (lambda: Moments(3).update(torch.zeros(2, 2)), lambda: extract_patches(torch.zeros(3, 3), 3)):
        with pytest.raises(ValueError) as info:
            call()
        assert not isinstance(info.value, InputError)


def test_internal_error_is_one_line_exit_1_and_debug_shows_it(files, capsys, monkeypatch):
    _, _, op = files

    def boom(args):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr("dotrestore.cli.info.run", boom)
    code = main(["info", str(op)])
    err = capsys.readouterr().err
    assert code == 1 and "internal error" in err and "please report" in err and "--debug" in err
    assert "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(RuntimeError):
        main(["--debug", "info", str(op)])


def _with_func(parser, command, func):
    for action in parser._subparsers._group_actions:
        action.choices[command].set_defaults(func=func)
    return parser


def test_gaussian_kernel_is_shared():
    from dotrestore import metrics
    from dotrestore.data import degradations
    from dotrestore.ot import filters, patches

    assert degradations.gaussian_blur is filters.gaussian_blur
    assert torch.allclose(metrics.functional._gaussian_window(11, 1.5, torch.float64, "cpu"),
                          filters.gaussian_kernel1d(1.5, radius=5, dtype=torch.float64))
    g = filters.gaussian_kernel1d(0.75, radius=1, normalize=False, dtype=torch.float64)
    assert torch.allclose(patches.patch_weights(3, "gaussian", torch.float64), torch.outer(g, g))


def test_image_too_small_for_zero_shot_apply_is_named(files, tmp_path, capsys):
    _, tgt, _ = files
    op = tmp_path / "zs.safetensors"
    assert main(["fit", "--zero-shot", "--target", str(tgt), "--vae", "pixel", "-o", str(op)]) == 0
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2)).save(tiny)
    code, err = run_cli(capsys, "apply", op, tiny, "-o", tmp_path / "out")
    assert code == 2 and str(tiny) in err and "too small" in err
    assert not (tmp_path / "out").exists()


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
