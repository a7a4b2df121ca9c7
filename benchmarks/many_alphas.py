"""How an experiment's cost grows with the number of α (issue: a 2,000-α sweep must not be quadratic).

x̂0 is decoded once per test image; each further α should cost only its blend and its metrics
(MSE/PSNR/SSIM, the latent FD's encode, the halo measure). This runs the same small experiment
(pixel codec, 6 photographs of 64x64, 2 test images) with few and with many α, interleaved
(A B A B), and prints wall and CPU seconds and the cost per extra α.

    python benchmarks/many_alphas.py [--alphas 50 400] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dotrestore.cli import main


def photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def one_run(clean: Path, out: Path, n: int) -> tuple[float, float]:
    alphas = [f"{a:.6g}" for a in np.linspace(-1, 2, n)]
    wall, cpu = time.perf_counter(), time.process_time()
    code = main(["experiment", "--clean", str(clean), "--degrade", "noise:sigma=10", "--restorer",
                 "gaussian-blur:sigma=1", "--vae", "pixel", "--fit-source", "2", "--fit-target", "2", "--variants",
                 "detail", "--no-progress", "--collages", "0", "--alphas", *alphas, "--out", str(out), "--overwrite"])
    assert code == 0
    return time.perf_counter() - wall, time.process_time() - cpu


def run(counts: list[int], repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clean = photos(Path(tmp) / "photos")
        times: dict[int, list[tuple[float, float]]] = {n: [] for n in counts}
        for _ in range(repeats):
            for n in counts:  # interleaved
                times[n].append(one_run(clean, Path(tmp) / f"out{n}", n))
        best = {n: min(t for t in times[n]) for n in counts}
        for n in counts:
            print(f"{n:5d} alphas: wall {best[n][0]:7.2f} s  cpu {best[n][1]:7.2f} s")
        low, high = min(counts), max(counts)
        per = [(best[high][k] - best[low][k]) / (high - low) for k in (0, 1)]
        print(f"per extra alpha (2 test images): wall {per[0] * 1000:.1f} ms, cpu {per[1] * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alphas", type=int, nargs="+", default=[50, 400])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    run(args.alphas, args.repeats)
