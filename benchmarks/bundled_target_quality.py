"""How close a fit with the bundled target comes to one with the user's own clean photographs.

Held-out data: CBSD68 (not in the bundle, which is Kodak24). Centre crops of CROP pixels;
restorer: ×4 bicubic down-sampling then bicubic up-sampling (x* blurry, like an MMSE
super-resolver). Operator A: source x* of images [0, N), target = the bundled Kodak moments.
Operator B: same source, target = clean images [N, 2N) of CBSD68 (same kind as the test set).
Test: images [2N, 3N). Reported: latent FD(x̂0, clean) / latent FD(x*, clean) for A and B,
with the same TAEF2 codec and default settings, and the ratio A/B.

    python benchmarks/bundled_target_quality.py [CBSD68_FOLDER] [N] [CROP]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from dotrestore import DOT, Runtime
from dotrestore.experiment.degradations import parse_degradation
from dotrestore.io.images import list_images, load_images, quantize
from dotrestore.metrics import latent_fd
from dotrestore.restorers import parse_restorer
from dotrestore.targets import read_bundled_target


def restored(clean: list[torch.Tensor]) -> list[torch.Tensor]:
    down, up = parse_degradation("down:scale=4"), parse_restorer("bicubic")
    return [quantize(up(quantize(down(x, torch.Generator().manual_seed(0))), size=tuple(x.shape[-2:]))) for x in clean]


def main(folder: str, n: int, crop: int) -> None:
    paths = list_images([folder], None)[: 3 * n]
    clean = load_images(paths, crop=crop)
    source, target, test = clean[:n], clean[n:2 * n], clean[2 * n:]
    runtime = Runtime(device="cpu", dtype="float32", progress=False)
    started = time.perf_counter()
    bundled_dot = DOT(codec="taef2", runtime=runtime)
    bundled = read_bundled_target()
    bundled_dot.set_target_moments(bundled.moments, bundled.n_images)
    bundled_dot.partial_fit(restored(source), role="source")
    own_dot = DOT(codec="taef2", runtime=runtime).fit(restored(source), target)
    x_star = restored(test)
    codec = bundled_dot.codec_

    def latents(images):  # whole images, as the experiment's latent_fd measures them
        with torch.no_grad():
            return [codec.encode(x[None]) for x in images]

    clean_latents = latents(test)
    base = latent_fd(latents(x_star), clean_latents)
    ratios = {}
    for name, dot in (("bundled target", bundled_dot), ("own clean target", own_dot)):
        x0 = [quantize(dot.transform(x[None], alpha=0.0)[0]) for x in x_star]
        ratios[name] = latent_fd(latents(x0), clean_latents) / base
    print(f"CBSD68 {n} source / {n} target / {n} test, crop {crop}, TAEF2, default settings; "
          f"x* latent FD {base:.4g}; {time.perf_counter() - started:.0f} s")
    for name, ratio in ratios.items():
        print(f"  {name:<18} latent FD(x0) / latent FD(x*) = {ratio:.3f}")
    print(f"  bundled / own = {ratios['bundled target'] / ratios['own clean target']:.3f}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cbsd68"
    args = sys.argv[1:]
    main(args[0] if args else str(default), int(args[1]) if len(args) > 1 else 8,
         int(args[2]) if len(args) > 2 else 192)
