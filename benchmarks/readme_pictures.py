"""The README's before/after pictures: real restorers, real photographs, crops at 1:1.

    python benchmarks/readme_pictures.py [--data ../shared/data] [--out docs] [--fit 6] [--crop 256] [--task sr4]

Two pictures, each x* | DOT at α = 0 | clean, the same most detailed window of a Kodak24
photograph (a 320-px centre crop) at 1:1 (no resampling), captioned with PSNR of the whole test crop:

- ``readme_denoise.png``: BM3D (``bm3d`` package, σ = 25 known) on y = x + 25/255·ε;
- ``readme_sr4.png``: bicubic ×4 of y = ↓4(x) (antialiased bicubic).

DOT (defaults: TAEF2, p = 3, detail transport) is fitted unpaired: restorations of ``--fit``
CBSD68 crops (source) and ``--fit`` *other* CBSD68 crops, clean (target); the test photograph
is a Kodak24 image never seen by the fit. Degradations are seeded per image as in
``dotrestore experiment``. The numbers printed (PSNR, latent FD over the Kodak test images)
say what the picture cannot.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dotrestore import DOT
from dotrestore.experiment.degradations import parse_degradation
from dotrestore.experiment.figures import _font, detail_window
from dotrestore.io import images as io
from dotrestore.metrics import functional as metrics
from dotrestore.restorers.named import parse_restorer

HERE = Path(__file__).resolve().parent
TASKS = {"denoise": ("noise:sigma=25", "bm3d:sigma=25", "BM3D, σ = 25"),
         "sr4": ("down:scale=4", "bicubic", "bicubic ×4")}


def centre_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = min(side, h, w) // 4 * 4
    top, left = (h - side) // 2, (w - side) // 2
    return x[..., top:top + side, left:left + side]


def restore(task: str, x: torch.Tensor, index: int) -> torch.Tensor:
    degradation, restorer, _ = TASKS[task]
    seed = int(np.random.SeedSequence([0, index]).generate_state(1)[0])
    y = io.quantize(parse_degradation(degradation)(x, torch.Generator().manual_seed(seed)))
    return io.quantize(parse_restorer(restorer)(y, size=tuple(x.shape[-2:])))


def picture(x_star: torch.Tensor, x0: torch.Tensor, clean: torch.Tensor, title: str, side: int, path: Path) -> None:
    top, left = detail_window(clean, side)
    font, _ = _font(15)
    gap, caption = 6, 44
    canvas = Image.new("RGB", (3 * side + 2 * gap, side + caption), "white")
    draw = ImageDraw.Draw(canvas)
    panels = ((x_star, f"x* ({title})"), (x0, "DOT, α = 0"), (clean, "clean"))
    for k, (img, name) in enumerate(panels):
        crop = (img[:, top:top + side, left:left + side] * 255).round().byte().permute(1, 2, 0).numpy()
        canvas.paste(Image.fromarray(np.ascontiguousarray(crop)), (k * (side + gap), 0))
        text = name if img is clean else f"{name}: {metrics.psnr(img, clean):.2f} dB"
        draw.text((k * (side + gap) + 4, side + 4), text, fill="black", font=font)
    draw.text((4, side + 24), "1:1 crops; PSNR of the whole image", fill=(90, 90, 90), font=font)
    canvas.save(path, optimize=True)


def run_task(task: str, fit_images: list[torch.Tensor], tests: list[tuple[str, torch.Tensor]], n_fit: int,
             side: int, out: Path) -> None:
    started = time.perf_counter()
    source = [restore(task, x, i) for i, x in enumerate(fit_images[:n_fit])]
    target = fit_images[n_fit:2 * n_fit]
    dot = DOT(codec="taef2", runtime={"progress": False, "workers": 0}).fit(source, target)
    rows = []
    for k, (stem, clean) in enumerate(tests):
        x_star = restore(task, clean, 1000 + k)
        x0 = io.quantize(dot.transform(x_star[None], alpha=0.0)[0])
        rows.append((stem, clean, x_star, x0))
    codec = dot.codec_
    latents = {name: [codec.encode(r[i][None]) for r in rows] for i, name in ((1, "clean"), (2, "x*"), (3, "x0"))}
    fd = {name: metrics.latent_fd(latents[name], latents["clean"]) for name in ("x*", "x0")}
    psnr = {name: np.mean([metrics.psnr(r[i], r[1]) for r in rows]) for i, name in ((2, "x*"), (3, "x0"))}
    print(f"{task}: {len(rows)} Kodak test images, PSNR x* {psnr['x*']:.2f} dB, α = 0 {psnr['x0']:.2f} dB; "
          f"latent_fd x* {fd['x*']:.2f}, α = 0 {fd['x0']:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)
    stem, clean, x_star, x0 = rows[0]
    path = out / f"readme_{task}.png"
    picture(x_star, x0, clean, TASKS[task][2], side, path)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB, test image {stem})", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("DOTRESTORE_SHARED", str(HERE.parents[1] / "shared")) + "/data")
    parser.add_argument("--out", default=str(HERE.parent / "docs"))
    parser.add_argument("--fit", type=int, default=6, help="CBSD68 crops per side (unpaired)")
    parser.add_argument("--crop", type=int, default=256, help="side of the centre crops used for fitting")
    parser.add_argument("--side", type=int, default=224, help="side of the 1:1 crops shown")
    parser.add_argument("--tests", default="kodim05,kodim13,kodim08", help="Kodak24 test images")
    parser.add_argument("--test-crop", type=int, default=320, help="side of the test images' centre crops")
    parser.add_argument("--task", action="append", choices=sorted(TASKS))
    args = parser.parse_args(argv)
    data = Path(args.data)
    fit_paths = sorted((data / "cbsd68").glob("*.png"))[: 2 * args.fit]
    fit_images = [centre_crop(io.read_image(p), args.crop) for p in fit_paths]
    tests = [(stem, centre_crop(io.read_image(data / "kodak24" / f"{stem}.png"), args.test_crop))
             for stem in args.tests.split(",")]
    for task in args.task or sorted(TASKS):
        run_task(task, fit_images, tests, args.fit, args.side, Path(args.out))


if __name__ == "__main__":
    main()
