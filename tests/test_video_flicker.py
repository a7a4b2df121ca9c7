"""Video end to end, measured: the flicker ratio over a slow pan across a photograph (degraded and
restored frame by frame with fresh noise), and peak memory that does not grow with the clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

from video_clips import make_clip  # noqa: E402

from dotrestore.cli import main  # noqa: E402
from dotrestore.experiment.degradations import parse_degradation  # noqa: E402
from dotrestore.io import images as data  # noqa: E402
from dotrestore.io.video import read_frames  # noqa: E402
from dotrestore.metrics import flicker_ratio, temporal_change  # noqa: E402
from dotrestore.restorers.named import parse_restorer  # noqa: E402

import _torchrun  # noqa: E402

PAN, STILL, SIZE = 16, 8, 256


def pan_clip(photo: torch.Tensor, t: int) -> torch.Tensor:
    """Frame t: a window moving one pixel per frame across the photograph, then standing still."""
    x = 100 + min(t, PAN - 1)
    return photo[:, 100:100 + SIZE, x:x + SIZE]


def levels(image: torch.Tensor) -> np.ndarray:
    return data.quantize(image).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()


@pytest.mark.slow
def test_flicker_over_a_pan_of_a_photograph(kodak24_dir, tmp_path):
    """The classic experiment's degradation (σ = 50 noise, drawn anew for every frame) and restorer
    (Gaussian blur, σ = 2): DOT at α = 0 changes from frame to frame at most 1.15 times as much as x*."""
    photo = data.read_image(kodak24_dir / "kodim05.png")
    clean = [pan_clip(photo, t) for t in range(PAN + STILL)]
    degrade, restore = parse_degradation("noise:sigma=50"), parse_restorer("gaussian-blur:sigma=2")
    restored = [data.quantize(restore(degrade(c, torch.Generator().manual_seed(1000 + t)))) for t, c in enumerate(clean)]
    x_star = make_clip(tmp_path / "restored.mkv", frames=len(clean), codec="ffv1", pix_fmt="bgr0", audio="aac",
                       pictures=lambda t: levels(restored[t]))
    target = make_clip(tmp_path / "clean.mkv", frames=len(clean), codec="ffv1", pix_fmt="bgr0", audio=None,
                       pictures=lambda t: levels(clean[t]))
    op, out = tmp_path / "op.safetensors", tmp_path / "out.mkv"
    common = ["--device", "cpu", "--no-progress"]
    assert main(["fit", "--source", str(x_star), "--target", str(target), "-o", str(op), "--vae", "pixel", *common]) == 0
    assert main(["apply", str(op), str(x_star), "-o", str(out), "--alpha", "0", *common]) == 0
    outputs = [f.frame for f in read_frames(out)]
    inputs = [f.frame for f in read_frames(x_star)]
    assert all(torch.equal(a, b) for a, b in zip(inputs, restored))  # lossless: x* as made
    pan = flicker_ratio(outputs[:PAN], inputs[:PAN])
    still = flicker_ratio(outputs[PAN:], inputs[PAN:])
    print(f"flicker ratio: pan {pan:.3f}, still {still:.3f}")
    assert 0.9 <= pan <= 1.15 and still <= 1.15, (pan, still)
    # sharper frames differ more under motion: the clean clip changes far more than x* over the pan
    assert temporal_change(clean[:PAN]) / temporal_change(inputs[:PAN]) > 1.5


_PEAK = ("import resource, sys; from dotrestore.cli import main; code = main(sys.argv[1:]); "
         "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def _peak_kb(args: list) -> int:
    run = _torchrun.one(["-c", _PEAK, *args])
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split("peak_kb")[1].split()[0])


@pytest.mark.slow
def test_memory_does_not_grow_with_the_clip(files, tmp_path):
    """Peak RSS of a 96-frame clip ≤ 1.1× that of a 12-frame one (holding the clip would add ~280 MB),
    and ≤ 1.5× that of applying to one batch of its frames saved as PNGs."""
    op = files[2]
    frame = lambda t: np.roll(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8), t, 1)  # noqa: E731
    short = make_clip(tmp_path / "short.mkv", frames=12, codec="ffv1", pix_fmt="bgr0", audio="aac", size=480,
                      pictures=lambda t: frame(t)[:, :480])
    long = make_clip(tmp_path / "long.mkv", frames=96, codec="ffv1", pix_fmt="bgr0", audio="aac", size=480,
                     pictures=lambda t: frame(t)[:, :480])
    for t in range(4):  # one batch's worth of frames
        data.save_image(torch.from_numpy(frame(t)[:, :480]).permute(2, 0, 1) / 255, tmp_path / "png" / f"f{t}.png")
    common = ["--device", "cpu", "--no-progress", "--batch-size", "4", "--workers", "0", "--alpha", "0", "--alpha", "1"]
    peaks = {name: _peak_kb(["apply", op, source, "-o", tmp_path / f"out-{name}{suffix}", *common])
             for name, source, suffix in (("png", tmp_path / "png", ""), ("short", short, ".mkv"), ("long", long, ".mkv"))}
    assert peaks["long"] <= 1.1 * peaks["short"] and peaks["long"] <= 1.5 * peaks["png"], peaks
    print(peaks)

