"""Shared by the fuzz suite: deadlines, a full disk, hooked subprocesses, and the one-line-error check.

The fixture functions (``world``, ``photos``, ``restorers``, ``full_disk``) are registered by the
test modules that use them (``pytest.fixture(...)(function)``).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import support
from _torchrun import env

HOOKED = Path(__file__).resolve().parent / "_hooked.py"
STAGING = (".dotrestore-staging-", ".partial", ".tmp")


class Hung(BaseException):
    """Raised by :func:`deadline` (a BaseException: the CLI must not turn it into an exit status)."""


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail with :class:`Hung` instead of hanging: a FIFO read blocks forever otherwise."""
    def fire(signum, frame):
        raise Hung(f"still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (files by content, folders and others by name)."""
    return support.tree_digest(root, folders=True)


def leftovers(root: Path) -> list[str]:
    """Staging folders, partial folders and temporary files anywhere under ``root``."""
    return [str(p) for p in root.rglob("*") if any(mark in p.name for mark in STAGING)]


def assert_one_line_error(code: int, err: str, named, status: int = 2, says: str = "") -> str:
    """Exit ``status``, no traceback, exactly one error line, naming ``named`` (and saying ``says``)."""
    assert "Traceback" not in err, err
    assert code == status, (code, err)
    errors = [line for line in err.splitlines() if ": error: " in line or ": interrupted" in line
              or "internal error" in line]
    assert len(errors) == 1, err
    assert str(named) in errors[0], errors[0]
    assert says in errors[0], errors[0]
    return errors[0]


def write_images(folder: Path, n: int, size=(20, 24), seed: int = 0, name: str = "img") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"{name}{i}.png")
    return folder


def hooked(after: str, actions: dict[int, str], *argv, call: int = 1, torchrun: bool = False,
           timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m dotrestore ARGV`` (or 2 torchrun processes) with the hook of ``tests/_hooked.py``."""
    hook = [str(HOOKED), "--after", after, "--call", str(call), *[f"--do={r}={a}" for r, a in actions.items()],
            "--", *map(str, argv)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] \
        if torchrun else [sys.executable]
    return subprocess.run([*launcher, *hook], env=env(), capture_output=True, text=True, timeout=timeout)


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root on Linux): a real full disk."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if not can_mount():
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True, timeout=30)
    return result.returncode == 0


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for block in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)


def _emulate_enospc(monkeypatch) -> None:
    """Without a tmpfs: every content write fails as a full disk's does (an OSError naming no file).

    The tests using it write nothing but the outputs under test."""
    import dotrestore.io.files as files
    import dotrestore.io.outputs.folder as folder_module
    import dotrestore.io.outputs.staged as staged

    def write_content(handle, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    for module in (files, folder_module, staged):
        monkeypatch.setattr(module, "write_content", write_content)


@contextlib.contextmanager
def tmpfs(folder: Path, free: int = 0):
    """``folder``, a 256 KiB tmpfs filled up to ``free`` bytes (``filler``), unmounted after."""
    folder.mkdir()
    assert _mount_tmpfs(folder, "256k"), "mounting a tmpfs failed"
    try:
        with open(folder / "filler", "wb") as filler:
            filler.write(b"\0" * (256 * 1024 - free))
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


Disk = collections.namedtuple("Disk", "path how")


def full_disk(tmp_path, monkeypatch):
    """A folder on a full filesystem: a 256 KiB tmpfs filled up (as root on Linux), or else every
    write fails with ENOSPC by emulation. ``full_disk.how`` says which."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount_tmpfs(disk, "256k")
    if mounted:
        _fill(disk)
    else:
        _emulate_enospc(monkeypatch)
    try:
        yield Disk(disk, "tmpfs" if mounted else "emulated ENOSPC")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def entries(disk: Path) -> list[str]:
    """What is on the disk besides the filler."""
    return sorted(p.name for p in disk.iterdir() if p.name != "filler")


def run(*argv) -> tuple[int, str]:
    """cli.main in-process; (exit status, stderr). argparse exits count as their status."""
    from dotrestore.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def world(tmp_path_factory):
    """(root, operator, header, tensors): restored/ and clean/ (3 images each) and a pixel-codec operator."""
    from safetensors import safe_open

    root = tmp_path_factory.mktemp("fuzz")
    write_images(root / "restored", 3, seed=0, name="restored")
    write_images(root / "clean", 3, seed=1, name="clean")
    op = root / "op.safetensors"
    code, err = run("fit", "--source", root / "restored", "--target", root / "clean", "--vae", "pixel",
                    "--device", "cpu", "--lowpass-sigma", "2", "-o", op)
    assert code == 0, err
    with safe_open(str(op), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return root, op, header, tensors


def photos(tmp_path_factory):
    """Five 32×32 photographs for experiments."""
    return write_images(tmp_path_factory.mktemp("photos") / "photos", 5, size=(32, 32), seed=3)


def experiment_args(photos: Path, out: Path, *extra) -> list:
    """A small experiment (pixel codec, 2 + 2 fit images, 1 test image, --save-outputs)."""
    return ["experiment", "--clean", photos, "--degrade", "noise:sigma=10", "--restorer", "gaussian-blur:sigma=1",
            "--vae", "pixel", "--fit-source", "2", "--fit-target", "2", "--variants", "detail", "--save-outputs",
            "--alphas", "0", "1", "--no-progress", "--out", out, *extra]


RESTORERS = '''
import torch

def nan(x):
    return x * float("nan")

def nothing(x):
    return None

def listed(x):
    return [x]

def two_channels(x):
    return x[:, :2]

def eight_bit(x):
    return (x * 255).to(torch.uint8)

def out_of_range(x):
    return x * 1000 - 500

def slightly_over(x):
    return x * (1 + 5e-4)  # rounding in a last layer: clamped, accepted

def crashes(x):
    raise RuntimeError("out of memory in my model")
'''


def restorers(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "my_model.py"
    path.write_text(RESTORERS)
    return path


def one_thread():
    """In-process runs on one thread: small linear algebra on 2 busy cores is faster without the
    thread pool (and the subprocesses run so too, see ``_torchrun.env``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
