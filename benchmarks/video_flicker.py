"""DOT on a video clip, measured in one run: temporal consistency (warp error), detail, cost, memory.

By default (``--study warp``, :mod:`video_warp`): the warp error (Lai et al. 2018,
:func:`dotrestore.metrics.warp_error`) of x*, of a TAEF2 round trip of x*, and of DOT at α = 0
frame by frame (``--temporal off``) and with temporal consistency (the default), on a pan and on
a clip with non-rigid motion (:mod:`video_scenes`); the detail kept; and the temporal step's
cost against the codec's at 1280x720. ``--study clip`` measures the following instead.

The clip is the classic experiment frame by frame: a window panning ``PAN`` pixels per frame over
Kodak photographs (:func:`video_io.panorama`) for ``--frames`` frames, then standing still for
``--still`` more; each clean frame gets Gaussian noise (σ = 50 levels, drawn anew for every frame)
and is restored by a Gaussian blur (σ = 2). The restorations x* are written losslessly (FFV1 in
.mkv, with an AAC tone) and, the same frames, as a PNG folder. An operator is fitted by the CLI
from the clip's sampled frames (source) and clean frames (target), then applied at α = 0:

- **flicker ratio** F = mean |x̂_t − x̂_{t−1}| ÷ mean |x*_t − x*_{t−1}| over the pan, and over the
  still frames (there x* changes only by its fresh noise), beside the clean clip's own ratio
  (sharper frames differ more under motion);
- **cost**: wall and CPU time of ``apply`` on the clip ÷ ``apply`` on the PNG folder (same frames,
  same settings, each in its own process);
- **memory**: peak resident memory (the process's own rusage, by ``os.wait4``) of ``apply`` on the
  clip ÷ ``apply`` on one batch of its frames as PNGs (one frame's worth of images plus the codec).

    python benchmarks/video_flicker.py [--frames 16] [--still 4] [--cost-frames 3]     (the warp study)
    python benchmarks/video_flicker.py --study clip [--size 1920x1080] [--frames 120] [--still 12]
                                       [--vae taef2] [--batch-size 2] [--kodak DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from dotrestore.experiment.degradations import parse_degradation
from dotrestore.io import images as data
from dotrestore.io.video import import_av, read_frames
from dotrestore.metrics import flicker_ratio
from dotrestore.restorers.named import parse_restorer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video_io import DEFAULT_KODAK, PAN, panorama  # noqa: E402

_CHILD = ("import os, resource, sys, time; from dotrestore.cli import main; t = time.perf_counter(); "
          "code = main(sys.argv[1:]); print('timing', time.perf_counter() - t, time.process_time()); sys.exit(code)")


def run_cli(args: list) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS GB) of ``dotrestore ARGS`` in a process of its own."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, *map(str, args)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"dotrestore {' '.join(map(str, args))} failed")
    wall, cpu = (float(v) for v in out.split("timing")[1].split()[:2])
    return wall, cpu, usage.ru_maxrss / 1e6


def levels(image: torch.Tensor) -> np.ndarray:
    return data.quantize(image).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()


def write_clip(path: Path, frames: list[torch.Tensor], fps: int = 25) -> None:
    """Lossless RGB frames (FFV1, bgr0) at ``fps`` with a 440 Hz AAC tone as long as the clip."""
    av = import_av(path)
    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("ffv1", rate=fps)
        video.height, video.width = frames[0].shape[1:]
        video.pix_fmt = "bgr0"
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "mono"
        for t, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(levels(frame), format="rgb24")
            picture.pts, picture.time_base = t, Fraction(1, fps)
            container.mux(video.encode(picture))
        container.mux(video.encode(None))
        size, done, total = audio.codec_context.frame_size or 1024, 0, 48000 * len(frames) // fps
        while done < total:
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(done, done + size) / 48000)
            sound = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="flt", layout="mono")
            sound.sample_rate, sound.pts = 48000, done
            container.mux(audio.encode(sound))
            done += size
        container.mux(audio.encode(None))


def make_frames(args, width: int, height: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(clean, restored) frames of the pan then the still segment."""
    picture = panorama(height, width + PAN * args.frames, args.kodak)
    degrade, restore = parse_degradation("noise:sigma=50"), parse_restorer("gaussian-blur:sigma=2")
    clean, restored = [], []
    for t in range(args.frames + args.still):
        x = PAN * min(t, args.frames - 1)
        clean.append(picture[:, :, x:x + width].clone())
        noisy = degrade(clean[-1], torch.Generator().manual_seed(1000 + t))
        restored.append(data.quantize(restore(noisy)))
    return clean, restored


def make_inputs(args, work: Path) -> None:
    """The clip, its frames as PNGs, one batch of them, and clean frames to fit to."""
    width, height = (int(v) for v in args.size.lower().split("x"))
    clean, restored = make_frames(args, width, height)
    clip = work / "restored.mkv"
    write_clip(clip, restored)
    for t, frame in enumerate(restored):
        data.save_image(frame, work / "png" / f"frame{t:04d}.png")
    for t in range(args.batch_size):
        data.save_image(restored[t], work / "batch" / f"frame{t:04d}.png")
    for t in range(0, len(clean), args.fit_step):
        data.save_image(clean[t], work / "clean" / f"frame{t:04d}.png")


def measure(args, work: Path) -> None:
    width, height = (int(v) for v in args.size.lower().split("x"))
    started = time.perf_counter()
    # made in a process of its own: a child's peak RSS (wait4) counts its parent's at fork, and
    # this process would otherwise hold every frame of the clip
    subprocess.run([sys.executable, __file__, *sys.argv[1:], "--make-inputs", work], check=True)
    clip = work / "restored.mkv"
    print(f"made the clip in {time.perf_counter() - started:.0f} s")
    common = ["--device", "cpu", "--no-progress", "--batch-size", args.batch_size]
    op = work / "op.safetensors"
    fit = run_cli(["fit", "--source", clip, "--frame-step", args.fit_step, "--target", work / "clean", "-o", op,
                   "--vae", args.vae, *common])
    apply = ["--alpha", "0", *common]
    runs = {"clip": run_cli(["apply", op, clip, "-o", work / "out.mkv", *apply]),
            "png": run_cli(["apply", op, work / "png", "-o", work / "out-png", *apply]),
            "batch": run_cli(["apply", op, work / "batch", "-o", work / "out-batch", *apply])}
    outputs = [f.frame for f in read_frames(work / "out.mkv")]
    inputs = [f.frame for f in read_frames(clip)]
    clean, restored = make_frames(args, width, height)
    assert all(torch.equal(a, b) for a, b in zip(inputs, restored)), "the FFV1 clip is not lossless"
    png_first = data.read_image(work / "out-png" / "frame0000.png")
    pan = flicker_ratio(outputs[:args.frames], inputs[:args.frames])
    still = flicker_ratio(outputs[args.frames:], inputs[args.frames:])
    clean_pan = flicker_ratio(clean[:args.frames], inputs[:args.frames])
    frames = len(outputs)
    print(f"{width}x{height}, {args.frames} frames panning {PAN} px/frame + {args.still} still, codec {args.vae}, "
          f"batch {args.batch_size}, fit from every {args.fit_step}th frame ({fit[0]:.0f} s)")
    print(f"  flicker ratio over the pan  {pan:.3f}   (the clean clip's: {clean_pan:.3f})")
    print(f"  flicker ratio, still frames {still:.3f}")
    print(f"  clip frame 0 vs PNG frame 0: max |diff| {float((outputs[0] - png_first).abs().max()) * 255:.2f} levels")
    for name, (wall, cpu, peak) in runs.items():
        count = frames if name != "batch" else args.batch_size
        print(f"  apply {name:<6s} {wall:8.1f} s wall ({count / wall:5.2f} frames/s)  {cpu:8.1f} s CPU  "
              f"peak {peak:5.2f} GB")
    clip_run, png_run, batch_run = runs["clip"], runs["png"], runs["batch"]
    print(f"  clip / PNG folder: wall {clip_run[0] / png_run[0]:.3f}, CPU {clip_run[1] / png_run[1]:.3f}  (goal <= 1.10)")
    print(f"  peak memory, clip / one batch of PNGs: {clip_run[2] / batch_run[2]:.3f}  (goal <= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", choices=("warp", "clip"), default="warp")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--frames", type=int, default=None, help="frames of the pan (default 16; clip: 120)")
    parser.add_argument("--still", type=int, default=None, help="still frames after the pan (default 4; clip: 12)")
    parser.add_argument("--cost-frames", type=int, default=3, help="warp study: 1280x720 frames timed")
    parser.add_argument("--vae", default="taef2", help="codec to fit with (taef2, pixel, a folder)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--fit-step", type=int, default=12, help="fit from every N-th frame")
    parser.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--make-inputs", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    clip = args.study == "clip"
    args.frames = args.frames or (120 if clip else 16)
    args.still = args.still if args.still is not None else (12 if clip else 4)
    if not clip:
        import video_warp

        with tempfile.TemporaryDirectory(dir=args.work) as work:
            video_warp.study(args, Path(work))
        return
    if args.make_inputs:
        make_inputs(args, args.make_inputs)
        return
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        measure(args, Path(work))


if __name__ == "__main__":
    main()
