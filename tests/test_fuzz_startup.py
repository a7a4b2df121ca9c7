"""Fuzz suite, a clear line where a traceback or an internal error used to be: Ctrl-C while the
command starts, the environment variables we read, a torchrun peer that never comes, sizes an
experiment configuration would allocate, and α values sent to the explorer's API.
"""

from __future__ import annotations

import os
import subprocess
import sys

import fuzz_support
import pytest
import torch
from fuzz_support import assert_one_line_error, experiment_args, run

from serve_support import free_port

one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)
world = pytest.fixture(scope="module", name="world")(fuzz_support.world)
photos = pytest.fixture(scope="module", name="photos")(fuzz_support.photos)


def _command(*argv, env=None, code: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    for name in [k for k, v in environment.items() if v is None]:
        del environment[name]
    args = [sys.executable, "-c", code, *map(str, argv)] if code else [sys.executable, "-m", "dotrestore", *map(str, argv)]
    return subprocess.run(args, capture_output=True, text=True, env=environment, timeout=timeout)


#: Ctrl-C arriving while torch loads (the first import of it), the command's entry point running
INTERRUPT_WHILE_LOADING = """
import builtins, os, signal, sys
# as in a terminal: the test runner that started us may have left SIGINT ignored (inherited)
signal.signal(signal.SIGINT, signal.default_int_handler)
real = builtins.__import__
def interrupting(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        builtins.__import__ = real
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = interrupting
sys.argv = ["dotrestore", *sys.argv[1:]]
from dotrestore._entry import main
sys.exit(main())
"""


@pytest.mark.parametrize("argv", [["--version"], ["fit", "--help"], ["info", "missing.safetensors"]])
def test_ctrl_c_while_starting_is_one_line(argv):
    done = _command(*argv, code=INTERRUPT_WHILE_LOADING)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["dotrestore: interrupted (SIGINT)"]


def _interrupt(monkeypatch, point: str) -> None:
    """Raise KeyboardInterrupt at ``point`` of a command's start (see STARTUP_POINTS)."""
    import argparse
    import builtins

    import dotrestore.cli as cli
    import dotrestore.cli.apply as cli_apply
    import dotrestore.cli.info as cli_info

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if point == "setting up the arguments":
        monkeypatch.setattr(cli, "build_parser", interrupted)
    elif point == "parsing the arguments":
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", interrupted)
    elif point == "setting up the log":
        monkeypatch.setattr(cli.log, "install_default_handler", interrupted)
    elif point == "taking over the signals":
        monkeypatch.setattr(cli.signal, "signal", interrupted)
    elif point == "reading the operator":
        monkeypatch.setattr(cli_apply, "read_operator", interrupted)
        monkeypatch.setattr(cli_info, "read_operator_file", interrupted)
    elif point == "importing the estimator (torch)":
        real = builtins.__import__

        def importing(name, *args, **kwargs):
            if name.endswith("estimator"):
                raise KeyboardInterrupt
            return real(name, *args, **kwargs)
        monkeypatch.setattr(builtins, "__import__", importing)
    else:
        raise AssertionError(point)


#: where a Ctrl-C may land while a command starts, and the command the line then names
STARTUP_POINTS = {"setting up the arguments": "dotrestore", "parsing the arguments": "dotrestore",
                  "setting up the log": "dotrestore", "taking over the signals": "dotrestore apply",
                  "reading the operator": "dotrestore apply", "importing the estimator (torch)": "dotrestore apply"}


@pytest.mark.parametrize("entry", ["dotrestore.cli", "dotrestore._entry"])
@pytest.mark.parametrize("point", sorted(STARTUP_POINTS))
def test_ctrl_c_at_any_point_of_the_start_is_one_line(world, tmp_path, monkeypatch, capsys, point, entry):
    """cli.main (what scripts, the tests and ``_hooked.py`` call) and the command's entry point
    both end a Ctrl-C before the command's own handler is in place with one line and 130."""
    import importlib

    root, op, _, _ = world
    _interrupt(monkeypatch, point)
    out = tmp_path / "out"
    main = importlib.import_module(entry).main
    try:
        code = main(["apply", str(op), str(root / "restored"), "-o", str(out), "--no-progress"])
    except KeyboardInterrupt:  # escaping, it would end the whole test session
        pytest.fail(f"KeyboardInterrupt escaped {entry}.main while {point}")
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err, err
    assert err.splitlines() == [f"{STARTUP_POINTS[point]}: interrupted (SIGINT)"], err
    assert not out.exists()


#: a real SIGINT sent to the process right after ``MODULE:ATTR`` returns (the signal handler as in a terminal)
SIGINT_AFTER = """
import importlib, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # the test runner may have left it ignored
entry, after, *argv = sys.argv[1:]
module, attr = after.split(":")
owner = importlib.import_module(module)
real = getattr(owner, attr)
def hooked(*args, **kwargs):
    result = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)
    return result
setattr(owner, attr, hooked)
sys.exit(importlib.import_module(entry).main(argv))
"""


@pytest.mark.parametrize("entry, after, shown", [
    ("dotrestore.cli", "dotrestore.cli:build_parser", "dotrestore"),
    ("dotrestore._entry", "dotrestore.log:install_default_handler", "dotrestore"),
    ("dotrestore.cli", "dotrestore.cli.apply:read_operator", "dotrestore apply"),
])
def test_a_real_sigint_early_in_the_start_is_one_line(world, tmp_path, entry, after, shown):
    root, op, _, _ = world
    out = tmp_path / "out"
    done = _command(entry, after, "apply", op, root / "restored", "-o", out, "--no-progress", code=SIGINT_AFTER)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == [f"{shown}: interrupted (SIGINT)"], done.stderr
    assert not out.exists()


def test_the_command_and_python_m_share_the_entry_point():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "dotrestore"]
    assert script.value == "dotrestore._entry:main"


def test_import_dotrestore_does_not_load_torch():
    done = _command(code="import sys, dotrestore; print('torch' in sys.modules); print(dotrestore.DOT.__name__)")
    assert done.stdout.split() == ["False", "DOT"], done.stderr


def test_version_ignores_the_environment():
    done = _command("--version", env={"DOTRESTORE_DIST_TIMEOUT": "abc", "WORLD_SIZE": "abc", "LOCAL_RANK": "x"})
    assert done.returncode == 0 and "dotrestore" in done.stdout, done.stderr


@pytest.mark.parametrize("env, named", [
    ({"WORLD_SIZE": "abc"}, "environment variable WORLD_SIZE"),
    ({"WORLD_SIZE": "-2"}, "environment variable WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "0", "DOTRESTORE_DIST_TIMEOUT": "abc"}, "environment variable DOTRESTORE_DIST_TIMEOUT"),
    ({"WORLD_SIZE": "2", "RANK": "0", "DOTRESTORE_DIST_TIMEOUT": "inf"}, "environment variable DOTRESTORE_DIST_TIMEOUT"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x", "DOTRESTORE_DIST_TIMEOUT": "2"}, "torchrun"),
])
def test_bad_environment_is_one_line_naming_the_variable(world, tmp_path, monkeypatch, env, named):
    root, _, _, _ = world
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, err = run("fit", "--source", root / "restored", "--target", root / "clean", "--vae", "pixel",
                    "--device", "cpu", "-o", tmp_path / "op.safetensors", "--no-progress")
    assert_one_line_error(code, err, named)
    assert not (tmp_path / "op.safetensors").exists()


def test_a_torchrun_peer_that_never_comes_is_one_line(world, tmp_path):
    root, _, _, _ = world
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "DOTRESTORE_DIST_TIMEOUT": "2"}
    done = _command("fit", "--source", root / "restored", "--target", root / "clean", "--vae", "pixel", "--device",
                    "cpu", "-o", tmp_path / "op.safetensors", "--no-progress", env=env)
    assert_one_line_error(done.returncode, done.stderr, "torchrun (WORLD_SIZE=2)", says="DOTRESTORE_DIST_TIMEOUT")
    assert not (tmp_path / "op.safetensors").exists()


@pytest.mark.parametrize("option, value", [("--resize", "100000"), ("--crop", "100000")])
def test_experiment_sizes_over_the_pixel_limit_are_refused_before_work(photos, tmp_path, option, value):
    code, err = run(*experiment_args(photos, tmp_path / "ex", option, value))
    assert_one_line_error(code, err, option, says="over the limit")
    assert not (tmp_path / "ex").exists()


def test_a_resize_config_over_the_limit_names_the_file(photos, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"clean: {photos}\ndegrade: noise:sigma=10\nrestorer: identity\nvae: pixel\nresize: 100000\n"
                      f"out: {tmp_path / 'ex'}\n")
    code, err = run("experiment", "--config", config, "--no-progress")
    assert_one_line_error(code, err, config, says="resize")


def test_resize_within_the_limit_of_each_image(tmp_path):
    """--max-pixels bounds the resized image too (a wide panorama resized by its shorter side)."""
    from dotrestore.errors import InputError
    from dotrestore.io.images import load_images, save_image

    save_image(torch.rand(3, 8, 64), tmp_path / "wide.png")
    with pytest.raises(InputError, match="resized to 800x100 = 80,000 pixels, over the limit of 50,000"):
        load_images([tmp_path / "wide.png"], resize=100, max_pixels=50_000)
    assert load_images([tmp_path / "wide.png"], resize=16, max_pixels=50_000)[0].shape == (3, 16, 128)


@pytest.mark.parametrize("alpha", ["abc", None, [0.5], float("inf")])
def test_serve_transform_api_refuses_bad_alpha_naming_it(world, tmp_path, alpha):
    gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
    from dotrestore.serve import Explorer
    from dotrestore.serve.handlers import transform_api

    root, op, _, _ = world
    explorer = Explorer(op, work_dir=tmp_path / "scratch")
    with pytest.raises(gr.Error) as caught:
        transform_api(explorer, str(root / "restored" / "restored0.png"), alpha)
    assert "α" in str(caught.value) and "internal error" not in str(caught.value)
    assert str(transform_api(explorer, str(root / "restored" / "restored0.png"), "0.5")).endswith(".png")


def test_a_refused_upload_prints_no_traceback_on_the_server_console(world, tmp_path):
    gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
    from dotrestore.serve import Explorer
    from dotrestore.serve.handlers import transform_api

    _, op, _, _ = world
    corrupt = tmp_path / "upload.png"
    corrupt.write_bytes(b"not a picture")
    with pytest.raises(gr.Error) as caught:
        transform_api(Explorer(op, work_dir=tmp_path / "scratch"), str(corrupt), 0.0)
    assert "upload.png" in str(caught.value)
    assert caught.value.print_exception is False  # Gradio prints a traceback for every error unless told not to
