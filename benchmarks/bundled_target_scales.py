"""Would a bundled target made of Kodak at several scales generalise better? (A study.)

As :mod:`bundled_target_quality` (CBSD68 held out, ×4 bicubic x*, TAEF2, default settings), but
the target moments are computed here from the 24 Kodak photographs resampled to each set of
scales (bicubic with antialiasing, 8-bit), and each is compared with the user's own clean
target: latent FD(x̂0) ÷ latent FD(x*), and that ratio ÷ the own target's. The Kodak images
are 500×500 crops of 768×512 scans (the scans' pixel scale), the BSD photographs 481×321
(downscaled photographs, more detail per pixel), so the scale of the bundle's detail matters.

Measured (22 + 22 + 22 images, 192² crops): own 0.280; scales {1} ×1.29 (the shipped bundle),
{1, 0.5} ×1.24, {1, 0.75, 0.5} ×1.23, {0.75, 0.5} ×1.19, {0.5} ×1.16.

    python benchmarks/bundled_target_scales.py [N] [CROP] [KODAK_FOLDER] [CBSD68_FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from bundled_target_quality import restored

from dotrestore import DOT, Runtime
from dotrestore.io.images import list_images, load_images, quantize
from dotrestore.metrics import latent_fd

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCALE_SETS = ([1], [1, 0.5], [1, 0.75, 0.5], [0.75, 0.5], [0.5])


def scaled(x: torch.Tensor, s: float) -> torch.Tensor:
    """(3, H, W) resampled by ``s`` (antialiased bicubic), rounded to 8 bits."""
    if s == 1:
        return x
    size = (round(x.shape[-2] * s), round(x.shape[-1] * s))
    return quantize(F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1))


def main(n: int, crop: int, kodak_folder: str, cbsd_folder: str) -> None:
    runtime = Runtime(device="cpu", dtype="float32", progress=False)
    kodak = load_images(list_images([kodak_folder], None))
    clean = load_images(list_images([cbsd_folder], None)[: 3 * n], crop=crop)
    source, target, test = restored(clean[:n]), clean[n:2 * n], clean[2 * n:]
    x_star = restored(test)
    own = DOT(codec="taef2", runtime=runtime).fit(source, target)
    codec = own.codec_

    def latents(images):
        return [codec.encode(x[None]) for x in images]

    with torch.no_grad():
        clean_latents = latents(test)
        base = latent_fd(latents(x_star), clean_latents)

        def ratio(dot: DOT) -> float:
            x0 = [quantize(dot.transform(x[None], alpha=0.0)[0]) for x in x_star]
            return latent_fd(latents(x0), clean_latents) / base

        own_ratio = ratio(own)
        print(f"CBSD68 {n} + {n} + {n}, crop {crop}: own clean target {own_ratio:.3f}", flush=True)
        for scales in SCALE_SETS:
            bundle = DOT(codec="taef2", runtime=runtime)
            for s in scales:
                bundle.partial_fit([scaled(x, s) for x in kodak], role="target")
            dot = DOT(codec="taef2", runtime=runtime)
            dot.set_target_moments(bundle.state_.target.moments, bundle.state_.target.n_images)
            dot.partial_fit(source, role="source")
            r = ratio(dot)
            print(f"  Kodak at scales {scales}: {r:.3f}, ÷ own {r / own_ratio:.3f}", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 22, int(args[1]) if len(args) > 1 else 192,
         args[2] if len(args) > 2 else str(SHARED / "kodak24"), args[3] if len(args) > 3 else str(SHARED / "cbsd68"))
