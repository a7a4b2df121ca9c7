"""Throughput of ``apply``: images/s over a folder of 512² PNGs, measured in one run.

For each codec (TAEF2 from ``--taesd DIR``; the SD-VAE architecture, random-initialised from
``dotrestore.codecs.sd_vae_config()``, no download), the same files go through the same
loader (:mod:`dotrestore.pipeline`: workers read, the main process batches, a writer thread
pool writes PNGs) twice, interleaved:

- codec only: x → D(E(x)) → PNG;
- full DOT:   x → D(T(E(H(x)))) + L(x) → PNG (``DOT.iter_alphas``, α = 0);

in 1 process and with ``torchrun --nproc_per_node 2`` (each rank a shard; CPU: gloo; CUDA:
only with 2 GPUs). Prints images/s and the ratios DOT ÷ codec and 2 processes ÷ 1.

    python benchmarks/throughput.py [--device cpu|cuda] [--batch-size 8] [--images 16]
                                    [--size 512] [--codecs taef2 sd-vae] [--taesd DIR]
                                    [--workers N] [--repeats 2] [--no-torchrun]
                                    [--images-from DIR]

``--images-from DIR`` uses the PNGs of DIR (e.g. ../shared/data/kodak24: 500×500 crops
of the Kodak scans, batched by size) instead of generated 512² images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dotrestore import DOT, Runtime
from dotrestore.codecs import codec_from_diffusers, load_codec, sd_vae_config
from dotrestore.experiment.degradations import gaussian_blur
from dotrestore.io import images as data
from dotrestore.runtime import parallel, pipeline

HERE = Path(__file__).resolve().parent
DEFAULT_TAESD = HERE.parents[1] / "shared" / "weights" / "taef2"


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    """Smooth random colour fields plus fine noise: image-like, no data files needed."""
    g = torch.Generator().manual_seed(0)
    paths = []
    for k in range(n):
        low = torch.rand(1, 3, 8, 8, generator=g)
        img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic")[0]
        img = (img + 0.05 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
        paths.append(data.save_image(img, folder / f"img{k:03d}.png"))
    return paths


def build_codec(name: str, device: torch.device, taesd: Path):
    if name == "taef2":
        return load_codec(str(taesd), device=device)
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return codec_from_diffusers(AutoencoderKL(**sd_vae_config()), device=device)


def fitted_dot(codec, device, paths: list[Path]) -> DOT:
    """Fit on blurred (source) vs sharp (target) crops of the benchmark images: any full-rank
    operator costs the same to apply."""
    images = [data.read_image(p)[:, :256, :256] for p in paths[:4]]
    source = [gaussian_blur(i[None], 2.0)[0] for i in images]
    return DOT(codec=codec, patch_size=3, runtime=Runtime(device=device)).fit(source, images)


def run_once(mode: str, dot: DOT, paths: list[Path], out: Path, batch_size: int, workers: int) -> float:
    """Seconds for this rank's shard, from the first read to the last PNG on disk."""
    codec = dot.codec_
    mine = parallel.shard(paths)
    sizes = data.validate_images(mine, None)  # before the clock starts, as the CLI validates first
    parallel.barrier()
    if codec.device.type == "cuda":
        torch.cuda.synchronize(codec.device)
    start = time.perf_counter()
    with pipeline.ImageWriter() as writer, torch.no_grad():
        for batch in pipeline.batches(mine, data.read_image, sizes=sizes, batch_size=batch_size, workers=workers):
            positions, x = batch.positions, batch.images.to(codec.device, non_blocking=True)
            if mode == "codec":
                y = codec.decode(codec.encode(x), size=tuple(x.shape[-2:]))
            else:
                y = dict(dot.iter_alphas(x, [0.0]))[0.0]
            for j, k in enumerate(positions):
                writer.submit(y[j], out / mode / mine[k].name)
    if codec.device.type == "cuda":
        torch.cuda.synchronize(codec.device)
    elapsed = time.perf_counter() - start
    return max(parallel.gather_objects(elapsed))  # the run ends when the slowest rank ends


def measure(args) -> dict:
    """images/s per codec and mode in this process group (1 process, or a torchrun rank)."""
    parallel.init(args.device)
    device = parallel.local_device(args.device)
    folder = Path(args.folder)
    paths = sorted(folder.glob("*.png"))
    results = {}
    for name in args.codecs:
        codec = build_codec(name, device, Path(args.taesd))
        dot = fitted_dot(codec, device, paths)
        with tempfile.TemporaryDirectory() as tmp:
            run_once("codec", dot, paths[:args.batch_size], Path(tmp), args.batch_size, args.workers)  # warm-up
            run_once("dot", dot, paths[:args.batch_size], Path(tmp), args.batch_size, args.workers)
            times = {"codec": [], "dot": []}
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                for mode in times:
                    times[mode].append(run_once(mode, dot, paths, Path(tmp), args.batch_size, args.workers))
        results[name] = {mode: len(paths) / min(t) for mode, t in times.items()}
    parallel.finish()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--codecs", nargs="+", default=None, help="taef2 and/or sd-vae (default: taef2 on the "
                        "CPU, both on CUDA)")
    parser.add_argument("--taesd", default=str(DEFAULT_TAESD))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-torchrun", action="store_true", help="skip the 2-process measurement")
    parser.add_argument("--images-from", default=None, metavar="DIR", help="the PNGs of DIR instead of generated ones")
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)  # set for the torchrun ranks
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workers = pipeline.default_workers() if args.workers is None else args.workers
    if args.codecs is None:
        args.codecs = ["taef2", "sd-vae"] if args.device.startswith("cuda") else ["taef2"]
    if args.inner:
        results = measure(args)
        if int(os.environ.get("RANK", "0")) == 0:
            print("RESULTS " + json.dumps(results))
        return

    with tempfile.TemporaryDirectory() as tmp:
        args.folder = tmp
        if args.images_from:
            args.folder = str(Path(args.images_from).resolve())
            args.images = len(list(Path(args.folder).glob("*.png")))
        else:
            make_images(Path(tmp), args.images, args.size)
        one = measure(args)
        two = None
        multi_gpu_ok = not args.device.startswith("cuda") or torch.cuda.device_count() >= 2
        if not args.no_torchrun and multi_gpu_ok:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(Path(__file__).resolve()), "--inner", "--folder", args.folder, "--device", args.device,
                   "--batch-size", str(args.batch_size), "--codecs", *args.codecs, "--taesd", args.taesd,
                   "--workers", str(max(0, args.workers // 2)), "--repeats", str(args.repeats)]
            run = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in run.stdout.splitlines() if ln.startswith("RESULTS ")), None)
            if line is None:
                print(run.stderr[-3000:], file=sys.stderr)
            else:
                two = json.loads(line[len("RESULTS "):])
    what = f"the PNGs of {args.images_from}" if args.images_from else f"{args.size}²"
    print(f"apply throughput, {args.images} images of {what}, device {args.device}, batch {args.batch_size}, "
          f"{args.workers} loader workers, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'codec':<8}{'procs':>6}{'codec img/s':>13}{'DOT img/s':>11}{'DOT/codec time':>16}{'2p/1p':>8}")
    for name, r in one.items():
        print(f"{name:<8}{1:>6}{r['codec']:>13.3f}{r['dot']:>11.3f}{r['codec'] / r['dot']:>16.4f}{'':>8}")
        if two is not None:
            t = two[name]
            print(f"{name:<8}{2:>6}{t['codec']:>13.3f}{t['dot']:>11.3f}{t['codec'] / t['dot']:>16.4f}"
                  f"{t['dot'] / r['dot']:>8.3f}")
    if two is None and not args.no_torchrun:
        print("2 processes: not measured (CUDA needs 2 GPUs; on the CPU see the error above)")


if __name__ == "__main__":
    main()
