"""Shared by the serve tests: small generated photographs and a TAEF2 operator fitted on them.

Everything is made here with the bundled TAEF2, so the tests need neither ../shared nor a network.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch

from dotrestore.io import images as data
from dotrestore.ot.split import lowpass


def textured(k: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A colourful (3, size, size) image with stripes and grain; different for every k."""
    g = torch.Generator().manual_seed(seed * 1000 + k)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    f = 3 + k
    base = torch.stack([0.5 + 0.3 * torch.sin(f * 6 * xx + k), 0.5 + 0.3 * torch.cos(f * 5 * yy),
                        0.4 + 0.2 * torch.sin(f * 4 * (xx + yy))])
    return (base + 0.15 * torch.rand(3, size, size, generator=g)).clamp(0, 1)


def make_workspace(root: Path, n_fit: int = 4, size: int = 64) -> dict[str, Path]:
    """clean/ and restored/ (blurred) fit images, images/ + refs/ for exploring, a corrupt file, an operator."""
    from dotrestore import cli

    for k in range(n_fit):
        x = textured(k, size)
        data.save_image(x, root / "clean" / f"c{k}.png")
        data.save_image(lowpass(x[None], 1.5)[0], root / "restored" / f"r{k}.png")
    for k, side in ((10, 80), (11, 56)):
        x = textured(k, side)
        data.save_image(lowpass(x[None], 1.5)[0], root / "images" / f"test{k}.png")
        data.save_image(x, root / "refs" / f"test{k}.png")
    corrupt = root / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really a PNG")
    operator = root / "op.safetensors"
    code = cli.main(["fit", "--source", str(root / "restored"), "--target", str(root / "clean"), "--vae", "taef2",
                     "--shrinkage", "oas", "-o", str(operator)])
    assert code == 0
    return {"root": root, "operator": operator, "images": root / "images", "refs": root / "refs", "corrupt": corrupt,
            "clean": root / "clean", "restored": root / "restored"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
