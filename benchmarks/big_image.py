"""Peak resident memory and time of `dotrestore apply` on big photographs, tiled and untiled.

Each case runs `dotrestore apply` in a fresh subprocess and reads that process's own peak
RSS (``os.wait4``); the photograph is Kodak24 images tiled into one
big PNG (``--kodak DIR``, default ../shared/data/kodak24), the operator is fitted on 2 + 2
Kodak images. Cases (``--cases``):

* ``taef2-6000x4000``: TAEF2 on the CPU, ``--tile auto`` (target: peak RSS <= 4 GB,
  output of the input's size);
* ``sdvae-4096``: the sd-vae-ft-ema architecture, random init, 4096x4096 (target <= 10 GB);
* ``taef2-2048-ratio``: TAEF2 at 2048x2048 with ``--tile off`` and ``--tile 512``: the
  ratio of tiled to untiled time and memory.

    python benchmarks/big_image.py [--cases taef2-6000x4000 sdvae-4096 taef2-2048-ratio]
                                   [--threads 2] [--device cpu] [--work DIR]
                                   [--stat-passes P]

``--stat-passes`` overrides ``tiling.STAT_PASSES`` in the apply process: the SD VAE's
GroupNorm statistics at 4096² cost up to 2 extra passes of each network by default (over an
hour more on 2 CPU cores); they run the same tiles as the output pass and stop early, so a
memory check may shorten them (``--stat-passes 0.05``: one tile) without raising the peak.
The printed line says when they were overridden.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"


def big_photo(kodak: Path, height: int, width: int, path: Path) -> Path:
    """Kodak images laid side by side (mirrored at odd positions, so no hard seams) into one PNG."""
    from dotrestore.io.images import read_image, save_image

    tiles = [read_image(f) for f in sorted(kodak.glob("*.png"))]
    side = tiles[0].shape[-1]
    canvas = torch.empty(3, height, width)
    k = 0
    for r in range(0, height, side):
        for c in range(0, width, side):
            t = tiles[k % len(tiles)]
            k += 1
            h, w = min(side, height - r), min(side, width - c)
            canvas[:, r:r + h, c:c + w] = t[:, :h, :w]
    return save_image(canvas, path)


def fit_operator(codec_spec: str, kodak: Path, out: Path) -> Path:
    from dotrestore import DOT, Runtime

    files = sorted(kodak.glob("*.png"))
    dot = DOT(codec=codec_spec, shrinkage="oas", runtime=Runtime(device="cpu"))
    dot.fit(files[:2], files[2:4])
    return dot.save(out)


def run_apply(args: list[str], threads: int, stats: float | None = None) -> tuple[float, float, int]:
    """(seconds, peak RSS in GB, return code) of `dotrestore apply ARGS` in a subprocess."""
    code = f"import sys, torch; torch.set_num_threads({threads}); "
    if stats is not None:
        code += f"import dotrestore.codecs.tiling as t; t.STAT_PASSES = {stats!r}; "
    code += "from dotrestore.cli import main; sys.exit(main(sys.argv[1:]))"
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, "apply", *args])
    _pid, status, usage = os.wait4(process.pid, 0)  # this process's own peak, not other children's
    seconds = time.perf_counter() - start
    return seconds, usage.ru_maxrss / 1e6, os.waitstatus_to_exitcode(status)


def sd_vae_folder(work: Path) -> Path:
    """A diffusers folder holding a random-init AutoencoderKL with the sd-vae-ft-ema configuration."""
    from diffusers import AutoencoderKL

    from dotrestore.codecs import sd_vae_config

    folder = work / "sd-vae-random"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        AutoencoderKL(**sd_vae_config()).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["taef2-6000x4000", "sdvae-4096", "taef2-2048-ratio"])
    parser.add_argument("--kodak", type=Path, default=SHARED / "data" / "kodak24")
    parser.add_argument("--taesd", type=Path, default=SHARED / "weights" / "taef2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--stat-passes", type=float, default=None, help="override tiling.STAT_PASSES")
    args = parser.parse_args()
    stats = args.stat_passes
    if stats is not None:
        print(f"GroupNorm statistics overridden: tiling.STAT_PASSES = {stats}")
    work = args.work or Path(tempfile.mkdtemp(prefix="dotrestore-big-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; torch threads {args.threads}; device {args.device}")
    for case in args.cases:
        if case == "taef2-2048-ratio":
            op = fit_operator(str(args.taesd), args.kodak, work / "taef2.safetensors")
            photo = big_photo(args.kodak, 2048, 2048, work / "in2048" / "photo.png")
            results = {}
            for tile in ("off", "512"):
                out = work / f"out2048-{tile}"
                results[tile] = run_apply([str(op), str(photo), "-o", str(out), "--device", args.device,
                                           "--tile", tile, "--overwrite"], args.threads, stats)
                print(f"{case} --tile {tile}: {results[tile][0]:.1f} s, peak RSS {results[tile][1]:.2f} GB, "
                      f"rc {results[tile][2]}")
            print(f"{case}: tiled/untiled time ratio {results['512'][0] / results['off'][0]:.2f}")
        elif case == "taef2-6000x4000":
            op = fit_operator(str(args.taesd), args.kodak, work / "taef2.safetensors")
            photo = big_photo(args.kodak, 4000, 6000, work / "in6000" / "photo.png")
            seconds, peak, rc = run_apply([str(op), str(photo), "-o", str(work / "out6000"), "--device", args.device,
                                           "--overwrite"], args.threads, stats)
            from PIL import Image

            size = Image.open(work / "out6000" / "photo.png").size if rc == 0 else None
            print(f"{case}: {seconds:.1f} s, peak RSS {peak:.2f} GB (target <= 4), output size {size}, rc {rc}")
        elif case == "sdvae-4096":
            folder = sd_vae_folder(work)
            op = fit_operator(str(folder), args.kodak, work / "sdvae.safetensors")
            photo = big_photo(args.kodak, 4096, 4096, work / "in4096" / "photo.png")
            seconds, peak, rc = run_apply([str(op), str(photo), "-o", str(work / "out4096"), "--device", args.device,
                                           "--overwrite"], args.threads, stats)
            print(f"{case}: {seconds:.1f} s, peak RSS {peak:.2f} GB (target <= 10), rc {rc}")
        else:
            raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main()
