"""The bundled target on held-out Kodak photographs, by folds (the check issue 23 asks for).

The shipped bundle holds all 24 Kodak photographs, so a held-out Kodak test needs bundles made
without the test images. The 24 are split into four groups of six (kodim01-06, 07-12, ...). In
fold k: test T = group k, source S = group k + 1 (their x*: ×4 bicubic down, then bicubic up, as
in :mod:`bundled_target_quality`), the user's own clean target O = group k + 2, and the bundle
B = groups k + 2 and k + 3 (twelve photographs, made exactly as the shipped one: latent-patch
moments of whole images; it holds neither test nor source photographs). Reported per fold and
over the 24 test images: latent FD(x̂0, clean) ÷ latent FD(x*, clean) with the target B and with
the target O, and B's ÷ O's (issue 23: within 15 %).

    python benchmarks/bundled_target_kodak_folds.py [KODAK_FOLDER]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from bundled_target_quality import restored

from dotrestore import DOT, Runtime
from dotrestore.codecs import load_codec
from dotrestore.io.images import list_images, load_images, quantize
from dotrestore.metrics import latent_fd

GROUPS = 4


def fold(images: list[torch.Tensor], k: int, runtime: Runtime) -> tuple[list, list, list, list]:
    """(x̂0 with the bundle B, x̂0 with the own target O, x*, clean) of fold k's test images."""
    size = len(images) // GROUPS
    group = lambda g: images[(g % GROUPS) * size:(g % GROUPS + 1) * size]  # noqa: E731
    test, source, own = group(k), group(k + 1), group(k + 2)
    bundle = group(k + 2) + group(k + 3)
    bundled_dot = DOT(codec="taef2", runtime=runtime)
    bundled_dot.partial_fit(bundle, role="target")  # as benchmarks/bundled_target.py makes the shipped one
    bundled_dot.partial_fit(restored(source), role="source")
    own_dot = DOT(codec="taef2", runtime=runtime).fit(restored(source), own)
    x_star = restored(test)
    outputs = [[quantize(dot.transform(x[None], alpha=0.0)[0]) for x in x_star] for dot in (bundled_dot, own_dot)]
    return outputs[0], outputs[1], x_star, test


def main(folder: str) -> None:
    images = load_images(list_images([folder], None))
    if len(images) % GROUPS:
        raise SystemExit(f"{folder}: {len(images)} images do not split into {GROUPS} groups")
    runtime = Runtime(device="cpu", dtype="float32", progress=False)
    codec = load_codec("taef2", device=runtime.torch_device, **runtime.codec_options())

    def latents(batch):  # whole images, as the experiment's latent_fd measures them
        with torch.no_grad():
            return [codec.encode(x[None]) for x in batch]

    started, pooled = time.perf_counter(), {"bundle": [], "own": [], "x*": [], "clean": []}
    print(f"Kodak, {GROUPS} folds; TAEF2, default settings, ×4 bicubic x*; latent FD(x0) / latent FD(x*)")
    for k in range(GROUPS):
        with_bundle, with_own, x_star, clean = fold(images, k, runtime)
        for name, batch in zip(pooled, (with_bundle, with_own, x_star, clean), strict=True):
            pooled[name] += latents(batch)
        fd = {name: latent_fd(pooled[name][-len(clean):], pooled["clean"][-len(clean):])
              for name in ("bundle", "own", "x*")}
        print(f"  fold {k}: bundle {fd['bundle'] / fd['x*']:.3f}, own {fd['own'] / fd['x*']:.3f}, "
              f"bundle / own {fd['bundle'] / fd['own']:.3f}")
    fd = {name: latent_fd(pooled[name], pooled["clean"]) for name in ("bundle", "own", "x*")}
    print(f"  all {len(pooled['clean'])} test images: bundle {fd['bundle'] / fd['x*']:.3f}, own "
          f"{fd['own'] / fd['x*']:.3f}, bundle / own {fd['bundle'] / fd['own']:.3f} (goal <= 1.15); "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak24"
    main(sys.argv[1] if len(sys.argv) > 1 else str(default))
