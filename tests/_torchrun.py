"""Helpers for the tests that launch several processes with torchrun (gloo on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def env() -> dict:
    """The environment of a child: this checkout's sources first, one thread per process (as
    torchrun sets it, so 1-process references round the same way), never the network."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "DOTRESTORE_DIST_TIMEOUT": "30",
            "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)}


def one(args: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python ARGS`` in one process."""
    return subprocess.run([sys.executable, *map(str, args)], env=env(), capture_output=True, text=True, timeout=timeout, **kw)


def two(args: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (a free local port each time)."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], env=env(), capture_output=True, text=True, timeout=timeout, **kw)


def one_and_two(args) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """``args(name)`` run in one process and under torchrun with two; both must succeed."""
    first, second = one(args("one")), two(args("two"))
    assert first.returncode == 0 and second.returncode == 0, (first.stderr + second.stderr)[-3000:]
    return first, second


def assert_same_operator(a_path: Path, b_path: Path, rtol: float = 1e-9) -> None:
    """Every tensor of two operator files equal within ``rtol`` of its largest magnitude."""
    from safetensors.torch import load_file

    a, b = load_file(a_path), load_file(b_path)
    assert a.keys() == b.keys()
    for key in a:
        scale = a[key].double().abs().max().clamp_min(1e-300)
        assert float((a[key].double() - b[key].double()).abs().max() / scale) <= rtol, key
