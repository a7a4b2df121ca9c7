r"""Judge DOT's realism on real restorers: colour, halos, spectrum, pixel patches, over disjoint splits.

    # judge three folders (clean x, restored x*, DOT's α = 0), matched by file stem:
    python benchmarks/realism.py judge --clean C --restored R --alpha0 A [--json out.json]
    # run DOT over disjoint unpaired 5 + 5 splits of cached restorations and judge each split:
    python benchmarks/realism.py splits --root ROOT --restorer bm3d --set cbsd68 --out OUT.json
        [--splits 4] [--variant default] [--nfit 5] [--save-dir DIR]
    # tables (mean ± spread over splits) from several such JSON files:
    python benchmarks/realism.py table OUT1.json OUT2.json ...
    # a page of 2× crops, one row per restorer (clean | x* | α = 0 | α = 0.5):
    python benchmarks/realism.py crops --out page.png LABEL=CLEAN,STAR,A0,A05,STEM,TOP,LEFT ...

ROOT is the cache :mod:`real_restorers` writes (``ROOT/clean/<set>``, ``ROOT/<restorer>/<set>``).

Measures, per image, then the mean over the test images of a split:

- PSNR against the clean image x (dB);
- colour shift vs x*: the per-channel mean difference (x̂0 − x*) over the image, its absolute
  value averaged over the three channels, in levels of 255 (the mean over images and the
  largest image), and the low-pass shift: the RMS of L₄(x̂0) − L₄(x*) (Gaussian σ = 4 px), in
  levels — the colour of regions, not only of the whole image;
- halo: :func:`dotrestore.metrics.perception.halo_measure` (mean overshoot beyond the clean
  image's local range within 3 px of its strong edges), in levels of 255;
- high-frequency spectrum error: :func:`~dotrestore.metrics.perception.spectrum_distance`
  (mean |log10 P_x(k) − log10 P_clean(k)| over the upper half of the radial frequencies);
- pixel-patch FD: :func:`dotrestore.metrics.patch_fd` (7×7 RGB patches, stride 4) of the split's
  outputs against its clean test images (one number per split).

Splits: the sorted images are permuted (seed 0) and cut into ``--splits`` blocks; split s tests
on block s and fits DOT with the defaults of ``dotrestore experiment --restored`` (bundled TAEF2,
unpaired: x* of the first ``--nfit`` other images as source, the next ``--nfit`` clean images
as target), so test images are disjoint across splits and never seen in fitting. The spread is
the standard deviation of the split means.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dotrestore import DOT, metrics  # noqa: E402
from dotrestore.io import images as io  # noqa: E402
from dotrestore.metrics import perception  # noqa: E402
from dotrestore.ot.filters import gaussian_blur  # noqa: E402

LEVELS = 255.0
METRICS = ("psnr", "colour", "lowpass_shift", "halo", "spectrum")


# ----------------------------------------------------------------------------- per image
def colour_shift(image: torch.Tensor, x_star: torch.Tensor) -> float:
    """mean_c |mean_u (image − x*)_c| in levels of 255."""
    return float((image.double() - x_star.double()).mean(dim=(-2, -1)).abs().mean()) * LEVELS


def lowpass_shift(image: torch.Tensor, x_star: torch.Tensor, sigma: float = 4.0) -> float:
    """RMS of L_σ(image) − L_σ(x*) (Gaussian σ px) in levels of 255: regional colour changes."""
    diff = gaussian_blur((image.double() - x_star.double())[None], sigma)[0]
    return float(diff.square().mean().sqrt()) * LEVELS


def judge_image(image: torch.Tensor, clean: torch.Tensor, x_star: torch.Tensor) -> dict:
    return {
        "psnr": metrics.psnr(image, clean),
        "colour": colour_shift(image, x_star),
        "lowpass_shift": lowpass_shift(image, x_star),
        "halo": perception.halo_measure(image, clean) * LEVELS,
        "spectrum": perception.spectrum_distance(image, clean),
    }


def judge(cleans, stars, outputs: dict[str, list]) -> dict:
    """Per-image and mean measures of x* and of each output list (same order as ``cleans``)."""
    result = {"images": len(cleans)}
    for label, images in {"xstar": stars, **outputs}.items():
        rows = [judge_image(im, c, s) for im, c, s in zip(images, cleans, stars, strict=True)]
        result[label] = {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
        result[label]["colour_max"] = max(r["colour"] for r in rows)
        result[label]["patch_fd"] = metrics.patch_fd(list(images), list(cleans))
        result[label]["per_image"] = rows
    return result


def _read_folder(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff")}


def judge_folders(args) -> None:
    clean, star, a0 = (_read_folder(Path(f)) for f in (args.clean, args.restored, args.alpha0))
    stems = sorted(set(clean) & set(star) & set(a0))
    if not stems:
        raise SystemExit("no file stem is in all three folders")
    read = lambda paths: [io.read_image(paths[s]) for s in stems]  # noqa: E731
    result = judge(read(clean), read(star), {"a0": read(a0)})
    result["stems"] = stems
    print_summary(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result))


def print_summary(result: dict) -> None:
    for label in [k for k in result if isinstance(result[k], dict)]:
        r = result[label]
        print(f"{label:>6}: PSNR {r['psnr']:.2f}  colour {r['colour']:.2f} (max {r['colour_max']:.2f})  "
              f"lowpass {r['lowpass_shift']:.2f}  halo {r['halo']:.3f}  spectrum {r['spectrum']:.3f}  "
              f"patch_fd {r['patch_fd']:.4f}", flush=True)


# ----------------------------------------------------------------------------- splits
def split_indices(n: int, n_splits: int, nfit: int, seed: int = 0):
    """[(source, target, test)] index lists: disjoint test blocks, fits from the other blocks."""
    perm = np.random.default_rng(seed).permutation(n).tolist()
    block = n // n_splits
    out = []
    for s in range(n_splits):
        test = perm[s * block:(s + 1) * block]
        rest = perm[(s + 1) * block:] + perm[:s * block]
        if len(rest) < 2 * nfit:
            raise SystemExit(f"{n} images are too few for {n_splits} splits and {nfit} + {nfit} fit images")
        out.append((rest[:nfit], rest[nfit:2 * nfit], test))
    return out


def run_splits(args) -> None:
    import variants  # noqa: PLC0415  (benchmarks/variants.py: the configurations compared)

    torch.set_grad_enabled(False)
    root = Path(args.root)
    # the images restored so far (a slow restorer may cover part of a set)
    clean_paths = [p for p in sorted((root / "clean" / args.set).glob("*.png"))
                   if (root / args.restorer / args.set / p.name).exists()]
    star_paths = [root / args.restorer / args.set / p.name for p in clean_paths]
    print(f"{args.restorer} {args.set}: {len(clean_paths)} restored images", flush=True)
    rows = []
    out = Path(args.out)
    for s, (source, target, test) in enumerate(split_indices(len(clean_paths), args.splits, args.nfit)):
        if args.only_split is not None and s != args.only_split:
            continue
        started = time.perf_counter()
        fit = variants.fit_name(args.variant)
        name = f"{fit}-n{args.nfit}-of{len(clean_paths)}-split{s}"
        cache = Path(args.cache) / args.restorer / args.set / name if args.cache else None
        dot = variants.make_dot(args.variant, codec=args.codec)
        operator = cache / "operator.safetensors" if cache else None
        if operator is not None and operator.exists():
            dot = DOT.load(operator, codec=args.codec)
        else:
            dot.fit([star_paths[i] for i in source], [clean_paths[i] for i in target])
            if operator is not None:
                operator.parent.mkdir(parents=True, exist_ok=True)
                dot.save(operator)
        dot.prepare()
        stages = variants.Stages(dot, cache)
        test = test[: args.n_test] if args.n_test else test
        cleans = [io.read_image(clean_paths[i]) for i in test]
        stars = [io.read_image(star_paths[i]) for i in test]
        a0 = [io.quantize(variants.alpha0(args.variant, stages, x, clean_paths[i].stem))
              for x, i in zip(stars, test, strict=True)]
        a05 = [io.quantize(0.5 * x0 + 0.5 * x) for x0, x in zip(a0, stars, strict=True)]
        result = judge(cleans, stars, {"a0": a0, "a05": a05})
        result.update(split=s, set=args.set, restorer=args.restorer, variant=args.variant, nfit=args.nfit,
                      stems=[clean_paths[i].stem for i in test], seconds=time.perf_counter() - started)
        rows.append(result)
        print(f"split {s} ({len(test)} test images, {result['seconds']:.0f} s)", flush=True)
        print_summary(result)
        if args.save_dir:
            for label, images in (("alpha_0", a0), ("alpha_0.5", a05)):
                for i, im in zip(test, images, strict=True):
                    io.save_image(im, Path(args.save_dir) / label / f"{clean_paths[i].stem}.png")
        out.write_text(json.dumps(rows))


# ----------------------------------------------------------------------------- tables
def _cell(values, fmt) -> str:
    values = np.asarray(values, dtype=float)
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():{fmt}} ± {spread:{fmt.lstrip('+')}}"


def table(args) -> None:
    rows = [r for f in args.results for r in json.loads(Path(f).read_text())]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["restorer"], r["set"], r["variant"], r.get("nfit", 5)), []).append(r)
    print("| restorer | set | variant | PSNR x* → α=0 (Δ) | colour shift α=0 (max) | low-pass shift α=0 "
          "| halo x* → α=0 | spectrum x* → α=0 | patch FD x* → α=0 | splits |")
    print("|---|---|---|---|---|---|---|---|---|---:|")
    for (restorer, dataset, variant, nfit), g in groups.items():
        col = lambda label, m, g=g: [r[label][m] for r in g]  # noqa: E731
        label = variant + ("" if nfit == 5 else f", {nfit}+{nfit}")
        print(f"| {restorer} | {dataset} | {label} "
              f"| {np.mean(col('xstar', 'psnr')):.2f} → {np.mean(col('a0', 'psnr')):.2f} "
              f"({_cell(np.subtract(col('a0', 'psnr'), col('xstar', 'psnr')), '+.2f')}) "
              f"| {_cell(col('a0', 'colour'), '.2f')} ({max(col('a0', 'colour_max')):.1f}) "
              f"| {_cell(col('a0', 'lowpass_shift'), '.2f')} "
              f"| {np.mean(col('xstar', 'halo')):.2f} → {_cell(col('a0', 'halo'), '.2f')} "
              f"| {np.mean(col('xstar', 'spectrum')):.3f} → {_cell(col('a0', 'spectrum'), '.3f')} "
              f"| {np.mean(col('xstar', 'patch_fd')):.4f} → {_cell(col('a0', 'patch_fd'), '.4f')} | {len(g)} |")


def crops(args) -> None:
    """One PNG row per (label, folder-set): clean | x* | α = 0 | α = 0.5 crops, enlarged 2× (nearest)."""
    from PIL import Image, ImageDraw

    rows = []
    for spec in args.rows:  # LABEL=CLEAN_DIR,STAR_DIR,A0_DIR,A05_DIR,STEM,TOP,LEFT
        label, _, rest = spec.partition("=")
        *folders, stem, top, left = rest.split(",")
        size, top, left = args.size, int(top), int(left)
        tiles = []
        for folder in folders:
            image = Image.open(Path(folder) / f"{stem}.png").convert("RGB")
            tiles.append(image.crop((left, top, left + size, top + size)).resize((2 * size, 2 * size), Image.NEAREST))
        row = Image.new("RGB", (len(tiles) * (2 * size + 4) - 4, 2 * size + 18), "white")
        draw = ImageDraw.Draw(row)
        for i, (tile, name) in enumerate(zip(tiles, ("clean", "x*", "alpha = 0", "alpha = 0.5"), strict=False)):
            row.paste(tile, (i * (2 * size + 4), 18))
            draw.text((i * (2 * size + 4) + 4, 3), f"{label}: {name}" if i == 0 else name, fill="black")
        rows.append(row)
    page = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 6 for r in rows)), "white")
    y = 0
    for row in rows:
        page.paste(row, (0, y))
        y += row.height + 6
    page.save(args.out, optimize=True)
    print(f"{args.out}: {Path(args.out).stat().st_size // 1024} KB")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    j = sub.add_parser("judge")
    j.add_argument("--clean", required=True)
    j.add_argument("--restored", required=True)
    j.add_argument("--alpha0", required=True)
    j.add_argument("--json")
    s = sub.add_parser("splits")
    s.add_argument("--root", required=True)
    s.add_argument("--restorer", required=True)
    s.add_argument("--set", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--splits", type=int, default=4)
    s.add_argument("--only-split", type=int, default=None)
    s.add_argument("--nfit", type=int, default=5)
    s.add_argument("--variant", default="default")
    s.add_argument("--codec", default="taef2")
    s.add_argument("--save-dir")
    s.add_argument("--cache", help="folder for fitted operators, latents and decodings, reused across variants")
    s.add_argument("--n-test", type=int, default=None, help="test at most this many images of each block")
    t = sub.add_parser("table")
    t.add_argument("results", nargs="+")
    c = sub.add_parser("crops")
    c.add_argument("--out", required=True)
    c.add_argument("--size", type=int, default=96, help="crop side in pixels (shown at 2×)")
    c.add_argument("rows", nargs="+", help="LABEL=CLEAN_DIR,STAR_DIR,A0_DIR,A05_DIR,STEM,TOP,LEFT")
    args = parser.parse_args(argv)
    {"judge": judge_folders, "splits": run_splits, "table": table, "crops": crops}[args.command](args)


if __name__ == "__main__":
    main()
