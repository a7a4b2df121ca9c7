"""Real-ESRGAN x4plus in tiles against untiled: how much context a deep restorer's tiles need.

The tiled path of a model-file restorer (``--restorer model.pth``, tiles when ``--max-memory``
is exceeded) on the real, pretrained network (``../shared/weights/realesrgan-x4plus``): a
SIZE×SIZE photo-like input restored whole, then in tiles of a 160-pixel core with CONTEXT pixels
of context on each side (the budget set to fit exactly one such tile), and the largest, 99.9th
percentile and mean difference from the untiled output in 0–255 levels.

Measured (400×400, one run, 2-core CPU): context 32 px: max 27.9, p99.9 6.02, mean 0.19 levels;
64 px: 1.14, 0.19, 0.005; 96 px (the default, ``restorers.model.TILE_CONTEXT``): 0.015, 0.003,
0.0002. Untiled 73 s; tiled 113, 161, 240 s. The default test suite checks the same path with a
small random-initialised ESRGAN (tests/test_restorers_model.py), whose reach is far shorter.

spandrel imports torchvision; where it does not import (the local CPU torch build), the tests'
stand-in is used: ESRGAN never calls it.

    python benchmarks/real_esrgan_tiles.py [--weights PTH] [--size 400] [--contexts 32 64 96]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from model_support import import_spandrel  # noqa: E402

import dotrestore.restorers.model as model_restorer  # noqa: E402
from dotrestore.restorers import parse_restorer  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORE = 160


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(SHARED / "weights" / "realesrgan-x4plus" / "RealESRGAN_x4plus.pth"))
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--contexts", type=int, nargs="+", default=[32, 64, 96])
    args = parser.parse_args()
    import_spandrel()
    restorer = parse_restorer(args.weights)
    generator = torch.Generator().manual_seed(0)
    size = args.size
    x = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=generator), size=(size, size),
                                        mode="bilinear", align_corners=False)  # photo-like smoothness
    restorer.configure(max_memory=1 << 40)
    started = time.perf_counter()
    whole = restorer(x)
    print(f"{Path(args.weights).name} ({restorer.architecture} ×{restorer.scale}): {size}x{size} untiled "
          f"in {time.perf_counter() - started:.0f} s")
    for context in args.contexts:
        model_restorer.TILE_CONTEXT = context
        side = CORE + 2 * context
        restorer.configure(max_memory=side * side * restorer.bytes_per_pixel() + 1)
        started = time.perf_counter()
        tiled = restorer(x)
        d = ((tiled - whole).abs() * 255).flatten()
        print(f"  context {context:3d} px (tiles {side}²): max {float(d.max()):.3f}, "
              f"p99.9 {float(d.kthvalue(int(d.numel() * 0.999)).values):.3f}, mean {float(d.mean()):.4f} levels; "
              f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
