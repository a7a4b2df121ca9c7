"""Helpers shared by the tests: small image folders, file digests, operator files rewritten by hand, the CLI in-process."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from dotrestore.cli import main


# ---------------------------------------------------------------------- helpers
def write_images(folder: Path, n: int, seed: int, size=(24, 28)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def tree_digest(root: Path, folders: bool = False) -> dict[str, str]:
    """Every file under ``root`` by content (and, with ``folders``, every other entry by name)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "-"
            for p in sorted(root.rglob("*")) if folders or p.is_file()}


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


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def pixel_operator(root: Path) -> Path:
    """An operator fitted with the pixel codec on 3 + 3 textured images, written in ``root``."""
    from dotrestore.cli import main

    src, tgt = write_images(root / "restored", 3, seed=0), write_images(root / "clean", 3, seed=1)
    path = root / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "-o", str(path)]) == 0
    return path
