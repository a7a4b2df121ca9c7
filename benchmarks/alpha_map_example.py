"""The README's α-map picture: a face kept as the restorer gave it (α = 1), the rest at α = 0.

Kodak24 (../shared/data/kodak24): σ = 50 noise then a Gaussian-blur restorer (σ = 2 px), the
classic DOT set-up. DOT (bundled TAEF2, OAS shrinkage) is fitted unpaired on the restored
kodim05-12 (source) and the clean kodim13-20 (target). kodim04's x* is then applied twice with
``dotrestore apply``: ``--alpha 0`` and ``--alpha-map`` with a hand-made map (a white ellipse
on the face, feathered by the default 4 px). Writes ``docs/alpha_map.png``: a 1:1 crop across
the map's edge of the map | x* | α = 0 everywhere | with the map; prints PSNR inside and outside
the face against the clean image.

    python benchmarks/alpha_map_example.py [--out docs/alpha_map.png] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

KODAK = Path(os.environ.get("DOTRESTORE_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "kodak24"
FACE = (250, 285, 135, 150)  # centre x, y and half-axes of the face's ellipse in kodim04 (500x500)


def kodak(k: int) -> torch.Tensor:
    from dotrestore.io import images as data

    return data.read_image(KODAK / f"kodim{k:02d}.png")


def restored(x: torch.Tensor, seed: int) -> torch.Tensor:
    from dotrestore.experiment.degradations import parse_degradation
    from dotrestore.restorers.named import parse_restorer

    y = parse_degradation("noise:sigma=50")(x, torch.Generator().manual_seed(seed))
    return parse_restorer("gaussian-blur:sigma=2")(y).clamp(0, 1)


def face_map(size=(500, 500)) -> np.ndarray:
    cx, cy, rx, ry = FACE
    levels = Image.new("L", size, 0)
    ImageDraw.Draw(levels).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    return np.asarray(levels)


def panel(images: list[np.ndarray], labels: list[str], side: int = 250) -> Image.Image:
    """The same 1:1 crop of each image (``side`` px, across the map's left edge), side by side, captioned."""
    caption, top = 18, FACE[1] - side // 2
    sheet = Image.new("RGB", (side * len(images), side + caption), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (array, label) in enumerate(zip(images, labels)):
        tile = Image.fromarray(array[top:top + side, :side]).convert("RGB")
        sheet.paste(tile, (i * side, caption))
        draw.text((i * side + 4, 3), label, fill="black")
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "alpha_map.png")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if not KODAK.is_dir():
        raise SystemExit(f"{KODAK} not found: this example needs ../shared/data/kodak24")
    from dotrestore import DOT, cli, metrics
    from dotrestore.io import images as data

    work = args.work or Path(tempfile.mkdtemp(prefix="alpha-map-example-"))
    operator = work / "op.safetensors"
    if not operator.exists():  # a --work folder of an earlier run keeps its operator
        dot = DOT(codec="taef2", shrinkage="oas")
        dot.fit([restored(kodak(k), k) for k in range(5, 13)], [kodak(k) for k in range(13, 21)])
        dot.save(operator)
    clean = kodak(4)
    x_star = data.save_image(restored(clean, 4), work / "x_star" / "kodim04.png")
    Image.fromarray(face_map()).save(work / "face_map.png")
    for name, extra in (("alpha0", ["--alpha", "0"]), ("mapped", ["--alpha-map", str(work / "face_map.png")])):
        assert cli.main(["apply", str(operator), str(x_star), "-o", str(work / name), "--overwrite", *extra]) == 0
    pictures = {name: data.read_image(work / name / "kodim04.png") for name in ("alpha0", "mapped")}
    pictures["x_star"] = data.read_image(x_star)
    face = face_map() > 0
    for name, image in pictures.items():
        inside = float(metrics.mse(image[:, face], clean[:, face]))
        outside = float(metrics.mse(image[:, ~face], clean[:, ~face]))
        print(f"{name}: PSNR face {-10 * np.log10(inside):.2f} dB, background {-10 * np.log10(outside):.2f} dB")

    def u8(image):
        return (image * 255).round().byte().permute(1, 2, 0).numpy()

    sheet = panel([face_map(), u8(pictures["x_star"]), u8(pictures["alpha0"]), u8(pictures["mapped"])],
                  ["alpha map (white = 1)", "x* (the restorer, alpha = 1)", "DOT, alpha = 0", "DOT with the map"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB); work files in {work}")


if __name__ == "__main__":
    main()
