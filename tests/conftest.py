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
