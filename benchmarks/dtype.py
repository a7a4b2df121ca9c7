"""Codec throughput per compute dtype (images/s through DOT.transform) and bf16/fp16 fidelity.

For TAEF2 (``--taesd DIR``) on the 24 Kodak images (``--kodak DIR``; in the shared
data 500×500 crops of the 768×512 scans, batched by size): fits once in float32 (blurred Kodak
1–5 against sharp 6–10), then transforms all 24 with the codec's ``dtype`` float32, bfloat16
and float16 and prints images per second and the PSNR of each output against the float32
output (target: bf16 ≥ 40 dB).

float16 is a CUDA feature (the codec refuses it on the CPU; bfloat16 runs there, natively on
CPUs with AMX-BF16 or AVX-512 BF16, see ``benchmarks/cpu_speed.py``). ``--device cpu`` lifts
that refusal inside this script only, to measure the fidelity of the same arithmetic (autocast:
bf16/fp16 convolutions, float32 accumulation and normalisations) where no GPU is lent; its
images/s then say nothing about a GPU.

    python benchmarks/dtype.py [--device cuda|cpu] [--repeats 3] [--dtypes float32 bfloat16 float16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dotrestore import DOT, Runtime
from dotrestore.codecs import precision as codec_precision
from dotrestore.experiment.degradations import gaussian_blur
from dotrestore.io.images import read_image

SHARED = Path(__file__).resolve().parents[2] / "shared"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taesd", type=Path, default=SHARED / "weights" / "taef2")
    parser.add_argument("--kodak", type=Path, default=SHARED / "data" / "kodak24")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device (or --device cpu for the fidelity alone)")
    if not args.device.startswith("cuda"):
        codec_precision.check_precision = lambda precision, where: None  # this script only: see the docstring
        print("CPU: reduced precision emulated for its fidelity; images/s are not meaningful")
    files = sorted(args.kodak.glob("*.png"))
    source = [gaussian_blur(read_image(f)[None], 1.5)[0] for f in files[:5]]
    dot = DOT(codec=str(args.taesd), shrinkage="oas", runtime=Runtime(device=args.device, progress=False))
    dot.fit(source, files[5:10])
    by_size: dict[tuple, list[torch.Tensor]] = {}
    for f in files:
        image = read_image(f)
        by_size.setdefault(tuple(image.shape[-2:]), []).append(image)
    batches = [torch.stack(group).to(args.device) for group in by_size.values()]
    reference = None
    print(f"TAEF2, {len(files)} Kodak images ({', '.join(f'{len(b)} of {h}x{w}' for b, (h, w) in zip(batches, by_size))}), "
          f"device {args.device}, torch {torch.__version__}")
    for name in args.dtypes:
        dot.codec_.configure(dtype=name)
        outs = [dot.transform(b, alpha=0.0) for b in batches]  # warm-up (and the output compared)
        sync(args.device)
        start = time.perf_counter()
        for _ in range(args.repeats):
            for b in batches:
                dot.transform(b, alpha=0.0)
        sync(args.device)
        rate = args.repeats * len(files) / (time.perf_counter() - start)
        reference = outs if reference is None else reference
        errors = torch.cat([((o - r) ** 2).flatten(1).mean(1) for o, r in zip(outs, reference)])  # per image
        mse = float(errors.mean())  # all images have the same number of pixels
        psnr = float("inf") if mse == 0 else -10 * torch.log10(torch.tensor(mse)).item()
        worst = float("inf") if float(errors.max()) == 0 else -10 * torch.log10(errors.max()).item()
        print(f"{name:>9}: {rate:8.2f} images/s, PSNR vs float32 {psnr:.1f} dB (worst image {worst:.1f} dB)")


if __name__ == "__main__":
    main()
