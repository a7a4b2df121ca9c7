"""Codec throughput per compute dtype on CUDA (images/s through DOT.transform) and bf16/fp16 fidelity.

For TAEF2 (``--taesd DIR``) on Kodak24 (``--kodak DIR``): fits once in float32, then
transforms the Kodak images with ``dtype`` float32, bfloat16 and float16 and prints images
per second and the PSNR of each against the float32 output.

    python benchmarks/dtype.py [--repeats 3] [--size 512]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dotrestore import DOT
from dotrestore.data import read_image

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--taesd", type=Path, default=SHARED / "weights" / "taef2")
    parser.add_argument("--kodak", type=Path, default=SHARED / "data" / "kodak24")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    files = sorted(args.kodak.glob("*.png"))
    dot = DOT(codec=str(args.taesd), device="cuda", shrinkage="oas").fit(files[:5], files[5:10])
    images = torch.stack([read_image(f) for f in files[10:]]).cuda()
    reference = None
    for name in ("float32", "bfloat16", "float16"):
        dot.set_codec_options(dtype=name)
        out = dot.transform(images, alpha=0.0)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeats):
            out = dot.transform(images, alpha=0.0)
        torch.cuda.synchronize()
        rate = args.repeats * len(images) / (time.perf_counter() - start)
        reference = out if reference is None else reference
        psnr = float(-10 * torch.log10(((out - reference) ** 2).mean()))
        print(f"{name}: {rate:.1f} images/s ({images.shape[-2]}x{images.shape[-1]}), PSNR vs float32 {psnr:.1f} dB")


if __name__ == "__main__":
    main()
