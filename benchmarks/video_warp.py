"""The warp study of ``benchmarks/video_flicker.py``: does the detail DOT adds move with the scene?

An operator is fitted with the defaults and TAEF2 (source: six Kodak photographs blurred by
σ = 2; target: six others, clean; none of them in the clips). Two FFV1 clips of x* (320x240,
:mod:`video_scenes`) go through ``dotrestore apply --alpha 0`` with ``--temporal off`` and ``on``:

- the pan (3 px/frame, then still frames): warp error under the known motion and with flow from
  the clean frames;
- the non-rigid clip (rotation + zoom, a sliding rectangle from another photograph): warp error
  with flow from the clean frames (DIS, forward–backward masked) and under the known motion;

beside x*'s and a TAEF2 round trip's (encode, decode) of the same frames; the change of the
still frames; per frame the spectrum distance and pixel-patch FD to the clean frame (mean over
frames); and, at 1280x720, the temporal step's time against TAEF2 encode + decode of the frame
(interleaved, wall and CPU).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from video_flicker import write_clip
from video_io import panorama
from video_scenes import nonrigid, pan

from dotrestore import DOT
from dotrestore.cli import main
from dotrestore.codecs import load_codec
from dotrestore.io.images import quantize, read_image
from dotrestore.io.video import read_frames
from dotrestore.metrics import patch_fd, spectrum_distance, temporal_change, warp_error
from dotrestore.runtime import Runtime
from dotrestore.temporal import TemporalDetail

FIT_SOURCE, FIT_TARGET = range(1, 7), range(7, 13)  # kodim01-06 blurred, kodim07-12 clean
PAN_PHOTO, SPIN_PHOTO, CUTOUT_PHOTO = 13, 23, 5


def kodak(kodak_dir: Path, k: int) -> torch.Tensor:
    return read_image(kodak_dir / f"kodim{k:02d}.png")


def fit(args, work: Path) -> Path:
    from video_scenes import _blur

    op = work / "op.safetensors"
    dot = DOT(codec="taef2", runtime={"device": "cpu", "progress": False, "batch_size": 2})
    dot.fit([_blur(kodak(args.kodak, k)) for k in FIT_SOURCE], [kodak(args.kodak, k) for k in FIT_TARGET])
    dot.save(op)
    return op


def round_trip(frames: list[torch.Tensor]) -> list[torch.Tensor]:
    runtime = Runtime(device="cpu", progress=False)
    codec = load_codec("taef2", device=runtime.torch_device, **runtime.codec_options())
    with torch.no_grad():
        return [quantize(codec.decode(codec.encode(f[None]), size=tuple(f.shape[-2:]))[0]) for f in frames]


def apply(op: Path, clip: Path, out: Path, temporal: str) -> list[torch.Tensor]:
    code = main(["apply", str(op), str(clip), "-o", str(out), "--alpha", "0", "--temporal", temporal,
                 "--device", "cpu", "--no-progress", "--batch-size", "4"])
    assert code == 0, f"apply --temporal {temporal} failed"
    return [f.frame for f in read_frames(out)]


def detail(frames, clean) -> tuple[float, float]:
    """Mean over frames of (spectrum distance, pixel-patch FD) to the clean frame."""
    pairs = list(zip(frames, clean, strict=True))
    return (float(np.mean([spectrum_distance(f, c) for f, c in pairs])),
            float(np.mean([patch_fd(f[None], c[None]) for f, c in pairs])))


def scene(name: str, op: Path, work: Path, clean, restored, known, moving: int) -> dict:
    clip = work / f"{name}.mkv"
    write_clip(clip, restored)
    runs = {"x*": restored, "round trip": round_trip(restored),
            "DOT, off": apply(op, clip, work / f"{name}-off.mkv", "off"),
            "DOT, on": apply(op, clip, work / f"{name}-on.mkv", "on")}
    moving_clean = clean[:moving]
    rows = {}
    for label, frames in runs.items():
        rows[label] = {"known": warp_error(frames[:moving], motion=known),
                       "clean flow": warp_error(frames[:moving], moving_clean),
                       "still": temporal_change(frames[moving - 1:]) * 255 if len(frames) > moving else float("nan"),
                       "detail": detail(frames[:moving], moving_clean)}
    print(f"\n{name}: {len(clean)} frames of {clean[0].shape[2]}x{clean[0].shape[1]} ({moving} moving)")
    print(f"  {'':<12s} {'warp (known)':>13s} {'warp (clean flow)':>18s} {'still change':>13s} "
          f"{'spectrum':>9s} {'patch FD':>9s}")
    for label, r in rows.items():
        print(f"  {label:<12s} {r['known']:13.2f} {r['clean flow']:18.2f} {r['still']:13.3f} "
              f"{r['detail'][0]:9.4f} {r['detail'][1]:9.4f}")
    rt, on, off = rows["round trip"], rows["DOT, on"], rows["DOT, off"]
    print(f"  DOT on / round trip: known {on['known'] / rt['known']:.2f}, clean flow "
          f"{on['clean flow'] / rt['clean flow']:.2f} (goal <= 1.25); detail on / off: spectrum "
          f"{on['detail'][0] / off['detail'][0]:.3f}, patch FD {on['detail'][1] / off['detail'][1]:.3f} (goal <= 1.10)")
    return rows


def cost(args, op: Path) -> None:
    """Temporal step vs TAEF2 encode + decode per 1280x720 frame, interleaved (A B A B)."""
    picture = panorama(720, 1280 + 3 * args.cost_frames, args.kodak)
    frames = [picture[:, :, 3 * t:3 * t + 1280].contiguous() for t in range(args.cost_frames)]
    dot = DOT.load(op, runtime={"device": "cpu", "progress": False})
    codec = load_codec("taef2", device=dot.resolved.runtime.torch_device, **dot.resolved.runtime.codec_options())
    temporal = TemporalDetail()
    times = {"codec": np.zeros(2), "temporal": np.zeros(2)}
    for t, x in enumerate(frames):
        x0 = dict(dot.iter_alphas(x[None], [0.0]))[0.0][0]
        for name in ("codec", "temporal"):
            wall, cpu = time.perf_counter(), time.process_time()
            if name == "codec":
                with torch.no_grad():
                    codec.decode(codec.encode(x[None]), size=(720, 1280))
            else:
                temporal(t, x, {0.0: x0})
            times[name] += (time.perf_counter() - wall, time.process_time() - cpu)
    c, tm = times["codec"] / len(frames), times["temporal"] / len(frames)
    print(f"\ncost at 1280x720 ({len(frames)} frames, {torch.get_num_threads()} threads): TAEF2 encode + decode "
          f"{c[0]:.2f} s wall, {c[1]:.2f} s CPU; temporal step {tm[0]:.3f} s wall, {tm[1]:.3f} s CPU per frame")
    print(f"  temporal / codec: wall {tm[0] / c[0]:.3f}, CPU {tm[1] / c[1]:.3f} (goal <= 0.10)")


def study(args, work: Path) -> None:
    started = time.perf_counter()
    op = fit(args, work)
    print(f"fitted TAEF2, defaults, in {time.perf_counter() - started:.0f} s")
    clean, restored, motion = pan(kodak(args.kodak, PAN_PHOTO), args.frames, still=args.still)
    scene("pan", op, work, clean, restored, motion, args.frames)
    clean, restored, flows = nonrigid(kodak(args.kodak, SPIN_PHOTO), kodak(args.kodak, CUTOUT_PHOTO), args.frames,
                                      still=args.still)
    scene("non-rigid", op, work, clean, restored, flows, args.frames)
    if args.cost_frames:
        cost(args, op)
