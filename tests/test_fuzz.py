"""Fuzz suite: every hostile input, across the interfaces (hostile operator files, images, flags,
output locations that collide with inputs or cannot be written, images too small to fit).

Every case must end in exit 0 with valid output, or exit 2 with the offending file named;
never a traceback; inputs byte-identical; nothing left behind by a failed run.
Runs in-process (``cli.main``) for speed, plus a few subprocess runs for the real stderr.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_support import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from dotrestore.cli import main
from dotrestore.errors import InputError
from dotrestore.state import META_FIELDS, TENSORS

from support import png_declaring, run_cli, tree_digest, write_images

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SIZE = (20, 24)


def check_outcome(code: int, err: str, named: Path, out: Path | None, expected_outputs=()):
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert str(named) in err, err
        if out is not None:
            assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))
    else:
        for path in expected_outputs:
            with Image.open(path) as image:
                # RGB, or what the input had beyond it (grey, alpha, 16-bit grey: io.image_formats)
                assert image.mode in ("RGB", "RGBA", "L", "LA", "I;16") and image.format == "PNG"
                image.load()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    for role in ("restored", "clean"):
        (root / role).mkdir()
        for i in range(3):
            Image.fromarray((rng.random((*SIZE, 3)) * 255).astype(np.uint8)).save(root / role / f"{role}{i}.png")
    op = root / "op.safetensors"
    code, err = run("fit", "--source", root / "restored", "--target", root / "clean", "--vae", "pixel",
                    "--device", "cpu", "--lowpass-sigma", "2", "-o", op)
    assert code == 0, err
    with safe_open(str(op), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return root, op, header, tensors


# ---------------------------------------------------------------------- operator mutations
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from(["oas", "gaussian", "uniform", "auto", "pixel", "dotrestore.operator"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
field_names = st.sampled_from(sorted(META_FIELDS) + ["unknown_key"])


@st.composite
def metadata_mutation(draw):
    kind = draw(st.sampled_from(["set", "delete", "replace-whole", "perturb-number"]))
    name = draw(field_names)
    value = draw(json_values)
    factor = draw(st.sampled_from([-1, 0, 0.5, 2, 1e300, -1e-300]))
    return kind, name, value, factor


def mutate_meta(meta: dict, mutation) -> str:
    kind, name, value, factor = mutation
    if kind == "replace-whole":
        return json.dumps(value)
    meta = dict(meta)
    if kind == "delete":
        meta.pop(name, None)
    elif kind == "set":
        meta[name] = value
    elif isinstance(meta.get(name), (int, float)) and not isinstance(meta.get(name), bool):
        meta[name] = meta[name] * factor
    return json.dumps(meta)  # json.dumps writes NaN/Infinity: the reader must refuse them


@st.composite
def tensor_mutation(draw):
    kind = draw(st.sampled_from(["drop", "nan", "inf", "huge", "truncate", "dtype", "transpose-vector",
                                 "extra", "scalar", "negative-count"]))
    name = draw(st.sampled_from(sorted(TENSORS)))
    index = draw(st.integers(0, 10_000))
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.int32, torch.uint8, torch.bool, torch.bfloat16]))
    return kind, name, index, dtype


def mutate_tensors(tensors: dict, mutation) -> dict:
    kind, name, index, dtype = mutation
    tensors = dict(tensors)
    if name not in tensors:
        return tensors
    t = tensors[name].clone()
    flat = t.reshape(-1)
    i = index % max(flat.numel(), 1)
    if kind == "drop":
        del tensors[name]
    elif kind in ("nan", "inf", "huge") and flat.numel():
        flat[i] = {"nan": math.nan, "inf": -math.inf, "huge": 1e300}[kind]
        tensors[name] = flat.reshape(t.shape)
    elif kind == "truncate" and flat.numel() > 1:
        tensors[name] = flat[:-1].clone()
    elif kind == "dtype":
        tensors[name] = t.to(dtype)
    elif kind == "transpose-vector":
        tensors[name] = t.reshape(-1, 1) if t.dim() == 1 else t.reshape(1, -1)
    elif kind == "extra":
        tensors[f"{name}_copy"] = t
    elif kind == "scalar":
        tensors[name] = torch.tensor(float(index), dtype=torch.float64)
    elif kind == "negative-count":
        tensors[name] = -t.abs() - 1
    return tensors


def write_operator(path: Path, header: dict, tensors: dict) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=header)
    return path


def exercise(world, bad: Path, tmp: Path):
    root = world[0]
    before = tree_digest(root)
    code, err = run("info", bad)
    check_outcome(code, err, bad, None)
    out = tmp / "out"
    code, err = run("apply", bad, root / "restored", "-o", out, "--alpha", "0", "--alpha", "0.5")
    check_outcome(code, err, bad, out,
                  [out / f"alpha_{a}" / f"restored{i}.png" for a in ("0", "0.5") for i in range(3)])
    assert tree_digest(root) == before
    shutil.rmtree(out, ignore_errors=True)


@FUZZ
@given(mutation=metadata_mutation())
def test_fuzz_operator_metadata(world, tmp_path, mutation):
    _, op, header, tensors = world
    bad_header = dict(header, dotrestore=mutate_meta(json.loads(header["dotrestore"]), mutation))
    bad = write_operator(tmp_path / "bad.safetensors", bad_header, tensors)
    exercise(world, bad, tmp_path)


@FUZZ
@given(mutations=st.lists(tensor_mutation(), min_size=1, max_size=2))
def test_fuzz_operator_tensors(world, tmp_path, mutations):
    _, op, header, tensors = world
    for mutation in mutations:
        tensors = mutate_tensors(tensors, mutation)
    bad = write_operator(tmp_path / "bad.safetensors", header, tensors)
    exercise(world, bad, tmp_path)


@pytest.mark.parametrize("damage", ["empty", "half", "garbage-header", "not-json", "text"])
def test_damaged_operator_bytes(world, tmp_path, damage):
    _, op, _, _ = world
    raw = op.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes({"empty": b"", "half": raw[: len(raw) // 2], "garbage-header": b"\xff" * 8 + raw[8:],
                     "not-json": raw.replace(b'"dotrestore":"{', b'"dotrestore":"[', 1),
                     "text": b"hello world\n"}[damage])
    exercise(world, bad, tmp_path)


# ---------------------------------------------------------------------- hostile images
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def make_hostile(kind: str, folder: Path) -> Path:
    rng = np.random.default_rng(1)
    rgb = (rng.random((*SIZE, 3)) * 255).astype(np.uint8)
    if kind == "zero-byte":
        path = folder / "zero.png"
        path.write_bytes(b"")
    elif kind == "truncated":
        path = folder / "truncated.png"
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "wrong-extension":
        path = folder / "really_png.jpg"
        Image.fromarray(rgb).save(path, format="PNG")
    elif kind == "text-as-png":
        path = folder / "notes.png"
        path.write_text("not an image\n")
    elif kind == "16-bit":
        path = folder / "sixteen.png"
        Image.fromarray((rng.random(SIZE) * 65535).astype(np.uint16)).save(path)
    elif kind == "palette":
        path = folder / "palette.png"
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif kind == "cmyk":
        path = folder / "cmyk.jpg"
        Image.fromarray(rgb).convert("CMYK").save(path)
    elif kind == "rgba":
        path = folder / "alpha.png"
        Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(path)
    elif kind == "animated":
        path = folder / "animated.gif"
        frames = [Image.fromarray(np.roll(rgb, k, 0)) for k in range(3)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    elif kind == "declared-huge":
        path = folder / "huge.png"
        ihdr = struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                         + _png_chunk(b"IDAT", zlib.compress(b"\0" * 30001 * 2)) + _png_chunk(b"IEND", b""))
    elif kind == "1x1":
        path = folder / "one.png"
        Image.fromarray(rgb[:1, :1]).save(path)
    elif kind == "newline-name":
        path = folder / "new\nline.png"
        Image.fromarray(rgb).save(path, format="PNG")
    elif kind == "folder-named-png":
        path = folder / "dir.png"
        path.mkdir()
    elif kind == "symlink-loop":
        path = folder / "loop.png"
        path.symlink_to(path)
    else:
        raise AssertionError(kind)
    return path


HOSTILE = ["zero-byte", "truncated", "wrong-extension", "text-as-png", "16-bit", "palette", "cmyk", "rgba",
           "animated", "declared-huge", "1x1", "newline-name", "folder-named-png", "symlink-loop"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_image_in_apply(world, tmp_path, kind):
    _, op, _, _ = world
    folder = tmp_path / "in"
    folder.mkdir()
    path = make_hostile(kind, folder)
    before = tree_digest(folder)
    out = tmp_path / "out"
    code, err = run("apply", op, path, "-o", out)
    stem = path.stem
    check_outcome(code, err, path, out, [out / f"{stem}.png"])
    if code == 0:
        with Image.open(out / f"{stem}.png") as image, Image.open(path) as original:
            assert image.size == original.size
    assert tree_digest(folder) == before


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "declared-huge", "1x1", "cmyk", "newline-name"])
def test_hostile_image_in_fit(world, tmp_path, kind):
    root = world[0]
    folder = tmp_path / "in"
    folder.mkdir()
    path = make_hostile(kind, folder)
    before = tree_digest(folder)
    output = tmp_path / "op.safetensors"
    code, err = run("fit", "--source", path, "--target", root / "clean", "--vae", "pixel", "-o", output)
    check_outcome(code, err, path, None)
    assert output.exists() == (code == 0)
    assert tree_digest(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in"] + (["op.safetensors"] if code == 0 else []))


# ---------------------------------------------------------------------- real processes
def _subprocess(*argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "dotrestore", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_subprocess_broken_operator_and_hostile_image(world, tmp_path):
    root, op, header, tensors = world
    bad = write_operator(tmp_path / "bad.safetensors", dict(header, dotrestore="[1, 2]"), tensors)
    result = _subprocess("info", bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr and str(bad) in result.stderr
    huge = make_hostile("declared-huge", tmp_path)
    result = _subprocess("apply", op, huge, "-o", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr and str(huge) in result.stderr
    assert not (tmp_path / "out").exists()


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
    assert code == 2 and "contains the input" in err
    assert tree_digest(tmp_path) == before


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
    from dotrestore.io import images as data

    real, calls = data.save_image, []

    def failing(img, path, write_file=None, encode=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real(img, path, write_file, encode)

    monkeypatch.setattr("dotrestore.io.images.save_image", failing)
    code, err = run_cli(capsys, "apply", op, src, "-o", tmp_path / "out")
    assert code == 2 and "No space left" in err and str(calls[1]) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("alpha", ["nan", "inf", "-inf", "abc"])
def test_apply_rejects_non_finite_alpha_before_writing(files, tmp_path, capsys, alpha):
    src, _, op = files
    with pytest.raises(SystemExit) as info:
        main(["apply", str(op), str(src), "-o", str(tmp_path / "out"), "--alpha", "0", "--alpha", alpha])
    assert info.value.code == 2 and "--alpha" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


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


def test_image_too_small_for_zero_shot_apply_is_named(files, tmp_path, capsys):
    _, tgt, _ = files
    op = tmp_path / "zs.safetensors"
    assert main(["fit", "--zero-shot", "--target", str(tgt), "--vae", "pixel", "-o", str(op)]) == 0
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2)).save(tiny)
    code, err = run_cli(capsys, "apply", op, tiny, "-o", tmp_path / "out")
    assert code == 2 and str(tiny) in err and "too small" in err
    assert not (tmp_path / "out").exists()


