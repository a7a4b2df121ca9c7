"""Fuzz suite, an operator whose codec cannot be loaded here: one line of ours, none of a library's.

An operator records the codec it was fitted in (a diffusers folder, a hub id). When that folder
is gone, its ``config.json`` is broken, its weights file is missing, cut or of another model, or
the hub model is not cached offline, ``apply`` must print exactly one line (``dotrestore apply:
error: ...`` naming the operator) and ``info`` (which never loads the codec) describes the file
with nothing on stderr. diffusers logs some of these problems itself ("An error occurred while
trying to fetch ...", "Some weights ... were not used"): those lines are held back (``-v`` shows
them). A folder that loads with a config key diffusers ignores prints nothing at all.

Each case runs in this process (nothing may reach the libraries' own log handlers), and all of
them in one real process (``python -c``), where stderr is the file descriptor those handlers
write to, not a stream a test swapped in.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import fuzz_support
import pytest

from support import rewrite

pytest.importorskip("diffusers")

one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)

MARK = "@@case "
#: runs ``dotrestore apply`` then ``info`` for each (name, operator, image, out) in argv's JSON, marking stderr
SCRIPT = f"""
import json, sys
from dotrestore.cli import main
for name, op, image, out, verbose in json.loads(sys.argv[1]):
    for argv in (["apply", op, image, "-o", out, "--no-progress"], ["info", op]):
        sys.stderr.write("{MARK}" + name + " " + argv[0] + "\\n"); sys.stderr.flush()
        code = main((["-v"] if verbose and argv[0] == "apply" else []) + argv)
        sys.stderr.write("{MARK}exit " + str(code) + "\\n"); sys.stderr.flush()
"""


def _tiny_kl():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
                         norm_num_groups=8, scaling_factor=0.5)


def _folder(root, name, vae, config=lambda c: c, weights=lambda w: w):
    """A copy of the diffusers folder ``vae`` with its config and weights passed through the functions."""
    folder = root / name
    folder.mkdir()
    text = config(json.loads((vae / "config.json").read_text()))
    (folder / "config.json").write_text(text if isinstance(text, str) else json.dumps(text))
    data = weights((vae / "diffusion_pytorch_model.safetensors").read_bytes())
    if data is not None:
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(data)
    return str(folder)


def _hub_cache_without_weights(root, vae):
    """A Hugging Face cache holding someone/tiny-vae's config.json only (its weights never came)."""
    snapshot = root / "hub" / "models--someone--tiny-vae" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(vae / "config.json", snapshot)
    (root / "hub" / "models--someone--tiny-vae" / "refs").mkdir()
    (root / "hub" / "models--someone--tiny-vae" / "refs" / "main").write_text("0" * 40)
    return root / "hub"


def _cases(root, vae) -> dict[str, str]:
    """Case -> the codec spec its operator records."""
    return {
        "folder gone": str(root / "gone"),
        "config.json not JSON": _folder(root, "not-json", vae, config=lambda c: "{not json"),
        "config.json of wrong types": _folder(root, "wrong-types", vae, config=lambda c: {**c, "block_out_channels": "x"}),
        "weights file missing": _folder(root, "no-weights", vae, weights=lambda w: None),
        "weights file cut": _folder(root, "cut", vae, weights=lambda w: w[: len(w) // 2]),
        "weights of another shape": _folder(root, "shape", vae, config=lambda c: {**c, "latent_channels": 8}),
        "weights of another class": _folder(root, "tiny", vae, config=lambda c: {**c, "_class_name": "AutoencoderTiny"}),
        "hub id offline": "someone-else/no-such-vae",
        "hub alias offline": "sd-vae-ft-mse",
        "hub cache without weights": "someone/tiny-vae",
        "config key diffusers ignores": _folder(root, "extra", vae, config=lambda c: {**c, "unknown_key": 3}),
    }


CASES = ["folder gone", "config.json not JSON", "config.json of wrong types", "weights file missing", "weights file cut",
         "weights of another shape", "weights of another class", "hub id offline", "hub alias offline",
         "hub cache without weights", "config key diffusers ignores"]


#: cases that load (the operator works): nothing on stderr at all
LOADS = {"config key diffusers ignores"}


@pytest.fixture(scope="module")
def operators(tmp_path_factory):
    """(case -> its operator file, an image, the environment of a child process)."""
    root = tmp_path_factory.mktemp("codec-lines")
    images = fuzz_support.write_images(root / "images", 2, size=(16, 16))
    _tiny_kl().save_pretrained(root / "vae")
    op = root / "op.safetensors"
    code, err = fuzz_support.run("fit", "--source", images, "--target", images, "--vae", root / "vae", "--device", "cpu",
                                 "-o", op, "--no-progress")
    assert code == 0, err
    table = {name: rewrite(op, root / f"case{i}.safetensors", meta=lambda m, spec=spec: {**m, "codec_spec": spec})
             for i, (name, spec) in enumerate(_cases(root, root / "vae").items())}
    hub = _hub_cache_without_weights(root, root / "vae")
    return table, images / "img0.png", {**fuzz_support.env(), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub)}


class Spy(logging.Handler):
    """What reaches a library logger's handlers (its own stderr handler among them)."""

    def __init__(self):
        super().__init__()
        self.said: list[str] = []

    def emit(self, record):
        self.said.append(record.getMessage())


@pytest.mark.parametrize("case", CASES)
def test_apply_prints_one_line_of_ours_and_info_none(operators, tmp_path, monkeypatch, case):
    """In this process: stderr holds our line only, and nothing reached the libraries' own handlers."""
    table, image, env = operators
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", env["HF_HUB_CACHE"])
    spies = {name: Spy() for name in ("diffusers", "huggingface_hub")}
    for name, spy in spies.items():
        logging.getLogger(name).addHandler(spy)
    try:
        code, err = fuzz_support.run("apply", table[case], image, "-o", tmp_path / "out", "--no-progress")
    finally:
        for name, spy in spies.items():
            logging.getLogger(name).removeHandler(spy)
    assert {name: spy.said for name, spy in spies.items()} == {"diffusers": [], "huggingface_hub": []}
    _assert_one_line(case, code, err.splitlines())
    assert fuzz_support.run("info", table[case]) == (0, "")  # info never loads the codec


def _assert_one_line(case, code, err):
    if case in LOADS:
        assert (code, err) == (0, []), err
    else:
        assert code == 2, err
        assert len(err) == 1 and err[0].startswith("dotrestore apply: error: "), err
        assert "case" in err[0] and ".safetensors" in err[0], err  # names the operator


def test_in_a_real_process_stderr_is_one_line_per_case(operators, tmp_path):
    """Every case in one ``python -c`` process: stderr is the file descriptor the libraries'
    own handlers write to. ``-v`` shows what the library said."""
    table, image, env = operators
    jobs = [[name, str(op), str(image), str(tmp_path / f"out{i}"), False] for i, (name, op) in enumerate(table.items())]
    jobs.append(["-v weights file missing", str(table["weights file missing"]), str(image), str(tmp_path / "v"), True])
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(jobs)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    lines = _parse(done.stderr)
    for case in CASES:
        _assert_one_line(case, *lines[(case, "apply")])
        assert lines[(case, "info")] == (0, [])
    code, err = lines[("-v weights file missing", "apply")]
    assert code == 2 and err[-1].startswith("dotrestore apply: error: "), err
    assert any(line.startswith("dotrestore: diffusers") for line in err[:-1]), err


def _parse(stderr: str) -> dict[tuple[str, str], tuple[int, list[str]]]:
    table, key, got = {}, None, []
    for line in stderr.splitlines():
        if line.startswith(MARK + "exit "):
            table[key] = (int(line[len(MARK) + 5:]), got)
        elif line.startswith(MARK):
            key, got = tuple(line[len(MARK):].rsplit(" ", 1)), []
        else:
            got.append(line)
    return table


def test_the_libraries_print_again_after_a_load(tmp_path):
    """The quiet block restores the libraries' own handlers: an application's diffusers logging still works."""
    import logging

    from dotrestore.codecs import diffusers_vae

    library = logging.getLogger("diffusers")
    before = (list(library.handlers), library.propagate, library.level)
    _tiny_kl().save_pretrained(tmp_path / "vae")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(Exception, match="cannot load diffusers"):
        diffusers_vae.load_diffusers_codec(str(tmp_path / "vae"))
    assert (list(library.handlers), library.propagate, library.level) == before
