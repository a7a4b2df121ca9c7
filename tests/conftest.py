"""Shared fixtures: where the third-party data in ../shared lives, and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may touch the network; hub look-ups must fail fast from the cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(os.environ.get("DOTRESTORE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present: these tests need the third-party data in ../shared")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def cbsd68_dir(shared_dir) -> Path:
    return _need(shared_dir / "data" / "cbsd68")


@pytest.fixture(scope="session")
def kodak24_dir(shared_dir) -> Path:
    return _need(shared_dir / "data" / "kodak24")


@pytest.fixture(scope="session")
def taef2_dir(shared_dir) -> Path:
    return _need(shared_dir / "weights" / "taef2")


@pytest.fixture()
def files(tmp_path):
    """(restored folder, clean folder, operator fitted on them with the pixel codec, whole images)."""
    from dotrestore.cli import main

    from support import write_images

    src = write_images(tmp_path / "restored", 3, seed=0)
    tgt = write_images(tmp_path / "clean", 3, seed=1)
    op = tmp_path / "op.safetensors"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", "pixel", "--lowpass-sigma", "0",
                 "--device", "cpu", "-o", str(op)]) == 0
    return src, tgt, op


