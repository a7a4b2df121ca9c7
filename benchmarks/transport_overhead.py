"""Transport overhead: (DOT.transform − codec encode+decode) ÷ codec encode+decode.

Measured in one run, for one 512×512 image, with
- TAEF2 (TAESD family, 32 latent channels) and p = 3 (D = 288), when its weights are
  found (``--taesd DIR``, default ../shared/weights/taef2);
- a random-init AutoencoderKL with the sd-vae-ft-ema configuration and p = 5 (D = 100);
on the CPU, and on CUDA when present. Also prints the transport step alone
(``DOT.transport`` on the latent) ÷ encode+decode, and transport plus the detail split and
recombination (``ot.split.split`` + ``ot.split.recombine``) ÷ encode+decode, timed directly:
what the subtraction estimates with less noise. Target: ≤ 1 % for the transport, ≤ 2 % for transport plus the
default guided detail split.

    python benchmarks/transport_overhead.py [--repeats 7] [--taesd DIR] [--size 512]
                                            [--batch 1] [--devices cpu cuda] [--mixture K]
                                            [--codecs taef2 kl] [--clock wall|cpu] [--threads N]

``--clock cpu`` times the CPU work of this process (with ``--threads 1``: a measure that other
programs sharing the machine barely disturb; CPU devices only).

Also prints throughput (images per second through ``DOT.transform``) for the batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from dotrestore import DOT, Runtime
from dotrestore.codecs import codec_from_diffusers, load_codec, sd_vae_config
from dotrestore.ot import split as detail

HERE = Path(__file__).resolve().parent
DEFAULT_TAESD = HERE.parents[1] / "shared" / "weights" / "taef2"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter


def _time(fn, device) -> float:
    _sync(device)
    start = CLOCK()
    fn()
    _sync(device)
    return CLOCK() - start


def _fitted(codec, patch_size: int, device, batch: int, mixture: int = 1) -> DOT:
    """A DOT fitted on smooth (source) and textured (target) synthetic images: any
    full-rank operator costs the same to apply, and this needs no data files."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(6, 3, 32, 32, generator=g)
    target = torch.nn.functional.interpolate(base, size=256, mode="bicubic").clamp(0, 1)
    target = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    source = torch.nn.functional.avg_pool2d(target, 5, 1, 2)
    return DOT(codec=codec, patch_size=patch_size, mixture=mixture, runtime=Runtime(device=device, batch_size=batch)).fit(
        list(source), list(target))


def measure(name: str, codec, patch_size: int, device: torch.device, size: int, repeats: int, batch: int = 1,
            mixture: int = 1) -> dict:
    dot = _fitted(codec, patch_size, device, batch, mixture)
    image = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    z = codec.encode(image)

    def codec_only():
        codec.decode(codec.encode(image), size=(size, size))

    def transform():
        dot.transform(image, alpha=0.0)

    def transport():
        dot.transport(z)

    decoded = codec.decode(z, size=(size, size))

    def split():  # the detail split of x* and the recombination of x̂0, as transform runs them
        _, low = detail.split(image, dot.lowpass_sigma, dot.split)
        detail.recombine(decoded, low, dot.split, reference=image, sigma=dot.lowpass_sigma)

    for fn in (codec_only, transform, transport, split):  # warm-up (allocations, cuDNN autotune)
        fn()
    runs = {"codec": [], "transform": [], "transport": [], "split": []}
    for _ in range(repeats):  # interleaved, so drift hits all alike
        runs["codec"].append(_time(codec_only, device))
        runs["transform"].append(_time(transform, device))
        runs["transport"].append(_time(transport, device))
        runs["split"].append(_time(split, device))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "name": name, "device": str(device), "D": dot.dim_, "codec_s": med["codec"],
        "transform_s": med["transform"], "transport_s": med["transport"],
        "overhead": (med["transform"] - med["codec"]) / med["codec"],
        "transport_ratio": med["transport"] / med["codec"],
        "split_ratio": (med["transport"] + med["split"]) / med["codec"],
        "images_per_s": batch / med["transform"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--taesd", type=Path, default=DEFAULT_TAESD)
    parser.add_argument("--batch", type=int, default=1, help="images per transform call (default 1)")
    parser.add_argument("--mixture", type=int, default=1, metavar="K",
                        help="Gaussian-mixture components (DOT(mixture=K)); default 1")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="devices to measure (default: cpu, and cuda when present)")
    parser.add_argument("--codecs", nargs="+", choices=("taef2", "kl"), default=("taef2", "kl"),
                        help="codecs to measure (default both)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock time (default) or this process's CPU time")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)

    names = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    devices = [torch.device(n) for n in names]
    rows = []
    for device in devices:
        if "taef2" in args.codecs and args.taesd.exists():
            rows.append(measure(f"TAEF2 p=3 K={args.mixture}", load_codec(str(args.taesd), device=device), 3, device,
                                args.size, args.repeats, args.batch, args.mixture))
        elif "taef2" in args.codecs:
            print(f"skipping TAEF2: {args.taesd} not found (pass --taesd DIR)")
        if "kl" not in args.codecs:
            continue
        from diffusers import AutoencoderKL

        torch.manual_seed(0)
        vae = AutoencoderKL(**sd_vae_config()).eval()
        codec = codec_from_diffusers(vae, name="sd-vae-ft-ema-architecture-random-init").to(device)
        rows.append(measure(f"AutoencoderKL(sd-vae-ft-ema config) p=5 K={args.mixture}", codec, 5, device, args.size,
                            args.repeats, args.batch, args.mixture))

    if any(d.type == "cuda" for d in devices):
        print(f"\nCUDA device: {torch.cuda.get_device_name()}")
    print(f"\n{args.batch} image(s) of {args.size}x{args.size}, median of {args.repeats}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {args.clock} clock")
    print(f"{'codec':42s} {'device':6s} {'D':>4s} {'enc+dec s':>10s} {'transform s':>12s} "
          f"{'(transform-codec)/codec':>24s} {'transport/codec':>16s} {'+split/codec':>13s} {'images/s':>9s}")
    for r in rows:
        print(f"{r['name']:42s} {r['device']:6s} {r['D']:4d} {r['codec_s']:10.4f} {r['transform_s']:12.4f} "
              f"{100 * r['overhead']:23.2f}% {100 * r['transport_ratio']:15.2f}% {100 * r['split_ratio']:12.2f}% "
              f"{r['images_per_s']:9.2f}")


if __name__ == "__main__":
    main()
