"""Fuzz suite, bad values never accepted silently and error lines that say the right thing:
float TIFFs with non-finite or out-of-range pixels, terminal escape codes in names and metadata,
long output names, serve flags, a picture beside a clip, and AVI timing.
"""

from __future__ import annotations

import os

import fuzz_support
import numpy as np
import pytest
from fuzz_support import assert_one_line_error, run
from PIL import Image

from dotrestore.errors import InputError, printable, user_message
from dotrestore.io.images import read_image

from support import rewrite

one_thread = pytest.fixture(autouse=True)(fuzz_support.one_thread)
world = pytest.fixture(scope="module", name="world")(fuzz_support.world)


def _float_tiff(path, value):
    array = np.full((16, 16), 0.5, np.float32)
    array[3, 4] = value
    Image.fromarray(array, mode="F").save(path)
    return path


@pytest.mark.parametrize("value, says", [(np.inf, "NaN or infinite"), (-np.inf, "NaN or infinite"),
                                         (np.nan, "NaN or infinite"), (255.0, "expected a float image in [0, 1]"),
                                         (-3.0, "expected a float image in [0, 1]")])
def test_float_tiff_with_bad_pixels_is_refused(tmp_path, value, says):
    path = _float_tiff(tmp_path / "bad.tif", value)
    with pytest.raises(InputError, match=r"bad\.tif") as caught:
        read_image(path)
    assert says in str(caught.value)


def test_float_tiff_within_the_rounding_slack_is_read(tmp_path):
    image = read_image(_float_tiff(tmp_path / "ok.tif", 1.0005))
    assert float(image.max()) == 1.0 and float(image.min()) == 0.5


def test_apply_names_the_tiff_with_inf(world, tmp_path):
    _, op, _, _ = world
    path = _float_tiff(tmp_path / "inf.tif", np.inf)
    code, err = run("apply", op, path, "-o", tmp_path / "out", "--no-progress")
    assert_one_line_error(code, err, path, says="infinite")


ESCAPES = ["\x1b[2J", "\x1b]0;owned\x07", "\r", "\u202e", "\x9b31m"]


@pytest.mark.parametrize("escape", ESCAPES, ids=["clear", "title", "cr", "bidi", "csi"])
def test_escape_codes_in_names_are_escaped_in_error_lines(world, tmp_path, escape):
    _, op, _, _ = world
    missing = tmp_path / f"pic{escape}x.png"
    code, err = run("apply", op, missing, "-o", tmp_path / "out", "--no-progress")
    assert code == 2
    assert escape not in err and "pic" in err
    if escape != "\r":  # whitespace is folded into a space
        assert escape.encode("unicode_escape").decode() in err


@pytest.mark.parametrize("escape", ESCAPES, ids=["clear", "title", "cr", "bidi", "csi"])
def test_escape_codes_in_operator_metadata_are_escaped_by_info(world, tmp_path, capsys, escape):
    _, op, header, tensors = world
    hostile = rewrite(op, tmp_path / f"hostile{escape}.safetensors",
                      meta=lambda m: {**m, "package_version": f"1{escape}2"})
    code, err = run("info", hostile)
    out = capsys.readouterr().out
    assert code == 0, err
    assert escape not in out + err


def test_printable_keeps_text_and_escapes_controls():
    assert printable("café 日本 a b") == "café 日本 a b"
    assert printable("a\x1b[31mb\tc\n") == "a\\x1b[31mb\\tc\\n"
    assert user_message(InputError("x\x1b[2J.png", "bad")) == "x\\x1b[2J.png: bad"
    assert user_message(FileNotFoundError(2, "No such file", "y\x07")) == "y\\x07: No such file"


@pytest.mark.parametrize("length", [240, 250, 255])
def test_long_output_names_the_file_system_allows_are_accepted(world, tmp_path, length):
    root, op, _, _ = world
    name = "o" * (length - len(".safetensors")) + ".safetensors"
    try:
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).unlink()
    except OSError:
        pytest.skip("this file system does not take names of that length")
    code, err = run("fit", "--source", root / "restored", "--target", root / "clean", "--vae", "pixel",
                    "-o", tmp_path / name, "--no-progress")
    assert code == 0, err
    assert os.path.getsize(tmp_path / name) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_long_names_for_apply_and_video_outputs(world, tmp_path):
    root, op, _, _ = world
    picture = tmp_path / ("p" * 251 + ".png")
    picture.write_bytes((root / "restored" / "restored0.png").read_bytes())
    code, err = run("apply", op, picture, "-o", tmp_path / "out", "--no-progress")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == [picture.name]
    av = pytest.importorskip("av")
    from video_clips import make_clip

    clip = make_clip(tmp_path / "clip.mkv", frames=3, size=32, audio=None)
    assert av is not None
    target = tmp_path / ("v" * 251 + ".mkv")
    code, err = run("apply", op, clip, "-o", target, "--no-progress")
    assert code == 0, err
    assert target.stat().st_size > 0


@pytest.mark.parametrize("flag, value, says", [("--host", "no.such.host.invalid", "not a known host"),
                                               ("--host", "203.0.113.7", "not an address of this machine"),
                                               ("--port", "busy", "already in use")])
def test_serve_names_its_flag_for_a_bad_address(flag, value, says):
    import socket

    from dotrestore.cli.serve import check_address

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        host, port = "127.0.0.1", busy.getsockname()[1]
        if flag == "--host":
            host, port = value, 0
        with pytest.raises(InputError, match=says) as caught:
            check_address(host, port)
    assert caught.value.subject == flag


def test_a_picture_beside_a_clip_is_not_called_the_video(world, tmp_path):
    av = pytest.importorskip("av")
    from video_clips import make_clip

    root, op, _, _ = world
    clip = make_clip(tmp_path / "clip.mkv", frames=3, size=32, audio=None)
    picture = root / "restored" / "restored0.png"
    assert av is not None
    for inputs in ([clip, picture], [picture, clip]):
        code, err = run("apply", op, *inputs, "-o", tmp_path / "out.mkv", "--no-progress")
        line = assert_one_line_error(code, err, picture, says="not a video clip")
        assert f"{picture}: is not a video clip, given beside the clip {clip}" in line
