"""What ``--dtype auto`` buys on the CPU: the CLI with the default against ``--dtype float32``.

Runs the real commands (``python -m dotrestore ...`` subprocesses, TAEF2, α = 0), interleaved
(A B A B ...), and prints wall and CPU seconds (children's user + system time) per run, the
ratio float32 ÷ arm, and how far the arm's outputs are from float32's:

- ``fit``: blurred Kodak images (source) against other sharp ones (target); moments compared
  (max relative difference of μ and Σ per side) and both operators applied in float32 to the
  same images (PSNR, 8-bit);
- ``apply`` over the Kodak images (PSNR of every output against float32's, 8-bit; the worst);
- ``experiment`` at the demo's settings (noise σ = 50, gaussian-blur σ = 2, 192² tiles of the
  scikit-image photographs, paired 24 + 6) unless ``--skip-experiment``;
- a synthetic 720p clip through ``apply`` (frames per second), unless ``--skip-video``.

``--arms auto bfloat16`` compares the default (and a forced bf16) with float32. On a CPU
without native bf16 (no AMX-BF16 or AVX-512 BF16) ``auto`` *is* float32 (ratio ~1, outputs
identical) and a forced ``bfloat16`` is emulated: its fidelity is what a native CPU gives, its
time is not.

    python benchmarks/cpu_speed.py [--images 24] [--repeats 2] [--arms auto] [--frames 24] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dotrestore.codecs.precision import resolve_precision

SHARED = Path(os.environ.get("DOTRESTORE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dotrestore", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"dotrestore {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def psnr8(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a - b).double().div(255).square().mean())
    return float("inf") if mse == 0 else -10 * torch.log10(torch.tensor(mse)).item()


def read8(path: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).float()


def interleaved(name: str, arms: list[str], repeats: int, make_argv, env) -> dict[str, list[tuple[float, float]]]:
    """Runs of every arm (plus float32), A B A B; ``make_argv(arm, out)`` gives the command."""
    runs: dict[str, list] = {arm: [] for arm in ["float32", *arms]}
    for rep in range(repeats):
        for arm in runs:
            wall, cpu = timed(make_argv(arm, rep), env)
            runs[arm].append((wall, cpu))
            print(f"  {name} {arm:>8} run {rep + 1}: wall {wall:7.1f} s, CPU {cpu:7.1f} s", flush=True)
    base = runs["float32"]
    for arm in arms:
        w = [b[0] / a[0] for a, b in zip(runs[arm], base)]
        c = [b[1] / a[1] for a, b in zip(runs[arm], base)]
        print(f"  {name}: float32 ÷ {arm}: wall {min(w):.2f}-{max(w):.2f}x, CPU {min(c):.2f}-{max(c):.2f}x")
    return runs


def outputs_apart(folders: dict[str, Path], arms: list[str]) -> None:
    for arm in arms:
        values = [psnr8(read8(p), read8(folders[arm] / p.name)) for p in sorted(folders["float32"].glob("*.png"))]
        print(f"  apply outputs, {arm} vs float32 (8-bit PSNR): mean {sum(values) / len(values):.1f} dB, "
              f"worst {min(values):.1f} dB over {len(values)} images")


def fit_and_apply(args, work: Path, env: dict) -> None:
    from dotrestore import DOT
    from dotrestore.experiment.degradations import gaussian_blur
    from dotrestore.io.images import read_image, save_image

    files = sorted((SHARED / "data" / "kodak24").glob("*.png"))[: args.images]
    source, target = work / "source", work / "target"
    source.mkdir(), target.mkdir()
    half = len(files) // 2
    for f in files[:half]:
        save_image(gaussian_blur(read_image(f)[None], 1.5)[0], source / f.name)
    for f in files[half:]:
        shutil.copy(f, target / f.name)
    arms = args.arms
    ops = {arm: work / f"op-{arm}.safetensors" for arm in ["float32", *arms]}
    print(f"fit: {half} blurred Kodak images (source) vs {len(files) - half} sharp ones (target)")
    interleaved("fit", arms, args.repeats, lambda arm, rep: [
        "fit", "--source", str(source), "--target", str(target), "--vae", "taef2", "--dtype", arm,
        "-o", str(ops[arm]), "--overwrite", "--no-progress"], env)
    reference = DOT.load(ops["float32"], runtime={"dtype": "float32", "progress": False})
    probe = torch.stack([read_image(f) for f in files[:4]])
    ref_out = (reference.transform(probe) * 255).round()
    for arm in arms:
        other = DOT.load(ops[arm], runtime={"dtype": "float32", "progress": False})
        rel = max(float((getattr(other, n) - getattr(reference, n)).norm() / getattr(reference, n).norm())
                  for n in ("mean_source_", "cov_source_", "mean_target_", "cov_target_"))
        out = (other.transform(probe) * 255).round()
        print(f"  fit {arm} vs float32: moments max relative difference {rel:.2e}; operator outputs "
              f"{psnr8(out, ref_out):.1f} dB apart (8-bit, both applied in float32)")
    print(f"apply: {len(files)} Kodak images, α = 0, operator fitted in float32")
    outs = {arm: work / f"apply-{arm}" for arm in ["float32", *arms]}
    interleaved("apply", arms, args.repeats, lambda arm, rep: [
        "apply", str(ops["float32"]), *map(str, files), "-o", str(outs[arm]), "--alpha", "0", "--dtype", arm,
        "--overwrite", "--no-progress"], env)
    outputs_apart(outs, arms)


def experiment(args, work: Path, env: dict) -> None:
    from dotrestore.experiment import demo

    data = work / "demo"
    paths, fit = demo.make_demo_images(data)  # the demo's 30 tiles of 192x192
    print(f"experiment at the demo's settings (TAEF2, {demo.DEGRADE}, {demo.RESTORER}, {fit} + {fit} paired, "
          f"{len(paths) - fit} tested)")
    interleaved("experiment", args.arms, args.repeats, lambda arm, rep: [
        "experiment", "--clean", str(data), "--degrade", demo.DEGRADE, "--restorer", demo.RESTORER, "--vae", "taef2",
        "--fit-source", str(fit), "--fit-target", str(fit), "--paired", "--collages", str(len(paths) - fit),
        "--dtype", arm, "--out", str(work / f"exp-{arm}-{rep}"), "--no-progress"], env)


def video(args, work: Path, env: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import av
    import numpy as np
    from video_clips import picture

    clip = work / "clip720.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for t in range(args.frames):
            frame = np.tile(picture(t, 720), (1, 2, 1))[:, :1280]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    op = work / "op-float32.safetensors"
    print(f"video: a 1280x720 clip of {args.frames} frames through apply (α = 0, FFV1 output)")
    runs = interleaved("video", args.arms, args.repeats, lambda arm, rep: [
        "apply", str(op), str(clip), "-o", str(work / f"clip-{arm}.mkv"), "--alpha", "0", "--dtype", arm,
        "--overwrite", "--no-progress"], env)
    for arm, values in runs.items():
        print(f"  video {arm}: {args.frames / min(w for w, _ in values):.3f} frames/s (best wall)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--arms", nargs="+", default=["auto"], choices=["auto", "bfloat16"])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the commands")
    parser.add_argument("--skip-experiment", action="store_true")
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args()
    if not (SHARED / "data" / "kodak24").is_dir():
        raise SystemExit(f"needs the Kodak images in {SHARED / 'data' / 'kodak24'}")

    print(f"torch {torch.__version__}; --dtype auto here: {resolve_precision('auto', 'cpu')}")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fit_and_apply(args, work, env)
        if not args.skip_video:
            video(args, work, env)
        if not args.skip_experiment:
            experiment(args, work, env)


if __name__ == "__main__":
    main()
