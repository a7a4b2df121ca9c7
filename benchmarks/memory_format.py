"""Which memory format the codecs' convolutions run fastest in, and what bfloat16 costs in fidelity.

For TAEF2 (bundled) and the SD VAE (diffusers ``AutoencoderKL`` built from the real
sd-vae-ft-ema configuration with random weights: the real cost, no download), encode + decode
one ``--size``² image, interleaved (A B A B ...), in float32 contiguous (NCHW), float32
channels_last (NHWC, what :class:`dotrestore.codecs.Codec` uses) and, where asked, bfloat16
autocast in both layouts. Prints wall and CPU seconds per round trip (median over
``--repeats``) and, for bf16, the PSNR (8-bit images) of its output against float32's.

On a CPU without native bfloat16 (no AMX-BF16 or AVX-512 BF16) bf16 is emulated and its times
say nothing about a CPU that has it; its fidelity still holds (same arithmetic).

    python benchmarks/memory_format.py [--size 256] [--repeats 3] [--threads 1] [--bf16] [--codecs taef2 sd-vae]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from dotrestore.codecs import codec_from_diffusers, load_codec, sd_vae_config
from dotrestore.io.images import read_image

SHARED = Path(os.environ.get("DOTRESTORE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def sd_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return codec_from_diffusers(AutoencoderKL(**sd_vae_config()), "sd-vae-ft-ema-random")


def round_trip(codec, x, layout, dtype):
    modules = list(codec._modules())
    for m in modules:
        m.to(memory_format=layout)
    xi = x.contiguous(memory_format=layout)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        y = codec._decode(codec._encode(xi).contiguous(memory_format=layout)).float().clamp(0, 1)
    return time.perf_counter() - wall, time.process_time() - cpu, y


def psnr8(a, b) -> float:
    mse = float(((a * 255).round() - (b * 255).round()).div(255).square().mean())
    return float("inf") if mse == 0 else -10 * torch.log10(torch.tensor(mse)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="also bfloat16 autocast")
    parser.add_argument("--codecs", nargs="+", default=["taef2", "sd-vae"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kodak = sorted((SHARED / "data" / "kodak24").glob("*.png"))
    x = (read_image(kodak[0])[None] if kodak else torch.rand(1, 3, 512, 512))[..., :args.size, :args.size]
    modes = [(torch.contiguous_format, torch.float32), (torch.channels_last, torch.float32)]
    if args.bf16:
        modes += [(torch.contiguous_format, torch.bfloat16), (torch.channels_last, torch.bfloat16)]
    print(f"{args.size}x{args.size}, {args.threads} thread(s), torch {torch.__version__}, "
          f"native bf16: {torch.cpu.get_capabilities().get('amx_bf16') or torch.cpu.get_capabilities().get('avx512_bf16')}")
    for name in args.codecs:
        codec = load_codec("taef2", dtype="float32") if name == "taef2" else sd_vae()
        times = {m: [] for m in modes}
        outputs = {}
        round_trip(codec, x, *modes[0])  # warm-up
        for _ in range(args.repeats):
            for mode in modes:
                wall, cpu, y = round_trip(codec, x, *mode)
                times[mode].append((wall, cpu))
                outputs[mode] = y
                print(f"  {name} {mode[0]} {mode[1]}: wall {wall:.2f} s, CPU {cpu:.2f} s", flush=True)
        reference = outputs[modes[1]]
        for (layout, dtype), runs in times.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            label = f"{'channels_last' if layout == torch.channels_last else 'contiguous':>13} {str(dtype)[6:]:>8}"
            fidelity = "" if dtype == torch.float32 else f", {psnr8(outputs[(layout, dtype)], reference):.1f} dB vs float32"
            print(f"{name:>7} {label}: wall {wall:6.2f} s, CPU {cpu:6.2f} s{fidelity}")


if __name__ == "__main__":
    main()
