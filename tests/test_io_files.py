"""Atomic writes and staged outputs: files get the mode the umask gives, nothing partial is left."""

from __future__ import annotations

import os

import pytest

from dotrestore.cli import main
from dotrestore.io.files import atomic_write, default_file_mode


# ---------------------------------------------------------------------- helpers
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


