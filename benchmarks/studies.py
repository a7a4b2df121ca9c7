"""Studies harness: many DOT configurations evaluated on cached restorations and TAEF2 latents.

Each image is degraded, restored and encoded once per (restorer, split kind, σ); every
configuration then only fits (moments or EM on cached patches), transports, decodes and
measures. Writes one JSON row per (configuration, dataset split) and renders the tables of
``docs/studies.md`` from them:

    python benchmarks/studies.py run --out results.json [--device cuda] [--workers 16]
        [--data ../shared/data] [--taef2 ../shared/weights/taef2] [--n-test 4] [--splits 3]
        [--tables split,mixture,patch,fit,blur] [--crop N]
    python benchmarks/studies.py report results.json > docs/studies.md-tables

Splits: the images of a dataset are permuted (seed 0) and cut into ``--splits`` blocks;
split s tests on the first ``--n-test`` images of block s and fits on images of the other
blocks (source restorations and clean targets disjoint when unpaired; the same images when
paired), so test sets are disjoint across splits and never seen in fitting.

Metrics per configuration, at α = 0 and α = 0.5 (pixel interpolation), over the test images:
latent_fd ratio (TAEF2, p = 3, ÷ x*'s), PSNR change (dB, vs x*), patch_fd (7×7 RGB patches),
spectrum distance and halo measure (:mod:`dotrestore.perception`, per-image means).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dotrestore import metrics
from dotrestore.codecs import load_codec
from dotrestore.experiment.degradations import parse_degradation
from dotrestore.io import images as io
from dotrestore.metrics import perception
from dotrestore.ot import gaussian
from dotrestore.ot import split as detail
from dotrestore.ot.mixture import MixtureTransport
from dotrestore.ot.patches import extract_patches, transport_latent
from dotrestore.restorers.named import parse_restorer

HERE = Path(__file__).resolve().parent
RESTORERS = {  # name: (degradation, restorer)
    "nlmeans": ("noise:sigma=25", "nlmeans"),
    "blur": ("noise:sigma=50", "gaussian-blur:sigma=2"),
}


# ----------------------------------------------------------------------------- configurations
def configurations(tables: list[str], kinds=("gaussian", "guided")) -> list[dict]:
    """The study grid, most decision-relevant first (split kind and K on unpaired 5+5 nlmeans)."""
    base = dict(restorer="nlmeans", kind="gaussian", sigma=4.0, p=3, k=1, nfit=5, paired=False)
    out = []

    def add(table, **changes):
        cfg = {**base, **changes, "table": table}
        if cfg not in out:
            out.append(cfg)

    if "split" in tables:
        add("split", sigma=None)
        for kind in ("gaussian", "guided"):
            for sigma in (2.0, 4.0, 8.0):
                add("split", kind=kind, sigma=sigma)
        for kind in ("gaussian+clamp", "guided+clamp"):
            add("split", kind=kind, sigma=4.0)
    if "mixture" in tables:
        for kind in ("gaussian", "guided"):
            for k in (1, 2, 4, 8):
                add("mixture", kind=kind, k=k)
        add("mixture", sigma=None, k=4)
    if "patch" in tables:
        for kind in kinds:
            for p in (1, 3, 5):
                add("patch", kind=kind, p=p)
    if "fit" in tables:
        for kind in kinds:
            for nfit in (5, 10, 20):
                for paired in (False, True):
                    add("fit", kind=kind, nfit=nfit, paired=paired)
    if "blur" in tables:
        add("blur", restorer="blur", sigma=None)
        for kind in ("gaussian", "guided"):
            add("blur", restorer="blur", kind=kind)
    order = {t: i for i, t in enumerate(tables)}
    return sorted(out, key=lambda c: order.get(c["table"], len(order)))


# ----------------------------------------------------------------------------- data
def _restore_one(args):
    path, restorer_name, index, crop = args
    deg_spec, res_spec = RESTORERS[restorer_name]
    x = io.read_image(path)
    x = io.quantize(io.center_crop(x, crop) if crop else x)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([0, index]).generate_state(1)[0]))
    y = io.quantize(parse_degradation(deg_spec)(x, generator))
    x_star = io.quantize(parse_restorer(res_spec)(y, size=tuple(x.shape[-2:])))
    return x, x_star


class Data:
    """Clean images and restorations (cached on disk), latents of their split images (in memory)."""

    def __init__(self, root: Path, cache: Path, codec, workers: int, crop: int | None):
        self.root, self.cache, self.codec, self.workers, self.crop = root, cache, codec, workers, crop
        self.images: dict[str, dict[str, torch.Tensor]] = {}
        self.latents: dict[tuple, torch.Tensor] = {}
        self.paths = {ds: sorted(p for p in (root / ds).iterdir() if p.suffix.lower() == ".png")
                      for ds in ("cbsd68", "kodak24")}

    def load(self, dataset: str, restorer: str) -> None:
        key = f"{dataset}-{restorer}-{self.crop}"
        if key in self.images:
            return
        file = self.cache / f"{key}.pt"
        if file.exists():
            self.images[key] = torch.load(file, weights_only=True)
            return
        jobs = [(str(p), restorer, i, self.crop) for i, p in enumerate(self.paths[dataset])]
        # spawn, not fork: a forked child can inherit a lock held by one of torch's threads and hang.
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_restore_one, jobs))
        self.images[key] = {"clean": [r[0] for r in results], "restored": [r[1] for r in results]}
        self.cache.mkdir(parents=True, exist_ok=True)
        torch.save(self.images[key], file)

    def image(self, dataset, restorer, role, i) -> torch.Tensor:
        return self.images[f"{dataset}-{restorer}-{self.crop}"][role][i]

    def latent(self, dataset, restorer, role, i, kind, sigma) -> torch.Tensor:
        """E(x − L(x) + ½) (or E(x) for σ None) of image i, as the DOT of that split kind encodes it."""
        base = kind.split("+")[0]
        key = (dataset, restorer if role == "restored" else "-", role, i, base if sigma else "-", sigma)
        if key not in self.latents:
            x = self.image(dataset, restorer, role, i)[None].to(self.codec.device)
            self.latents[key] = self.codec.encode(detail.split(x, sigma, base)[0])
        return self.latents[key]


def splits(n_images: int, n_splits: int, n_test: int, nfit: int, paired: bool, seed: int = 0):
    """[(source, target, test) index lists] for each split (see the module docstring)."""
    perm = np.random.default_rng(seed).permutation(n_images).tolist()
    block = n_images // n_splits
    out = []
    for s in range(n_splits):
        test = perm[s * block : s * block + n_test]
        rest = perm[(s + 1) * block :] + perm[: s * block]
        need = nfit if paired else 2 * nfit
        if len(rest) < need:
            return None
        source = rest[:nfit]
        target = source if paired else rest[nfit : 2 * nfit]
        out.append((source, target, test))
    return out


# ----------------------------------------------------------------------------- one configuration
def evaluate(data: Data, dataset: str, cfg: dict, idx, reference_latents, device) -> dict:
    source, target, test = idx
    r, kind, sigma, p, k = cfg["restorer"], cfg["kind"], cfg["sigma"], cfg["p"], cfg["k"]
    started = time.perf_counter()
    src = torch.cat([extract_patches(data.latent(dataset, r, "restored", i, kind, sigma), p) for i in source])
    tgt = torch.cat([extract_patches(data.latent(dataset, r, "clean", i, kind, sigma), p) for i in target])
    if k == 1:
        ms, mt = gaussian.Moments(src.shape[1]).update(src), gaussian.Moments(tgt.shape[1]).update(tgt)
        a = gaussian.transport_map(ms.covariance, mt.covariance).float()
        move = lambda z: transport_latent(z, a, ms.mean.float(), mt.mean.float(), p)  # noqa: E731
    else:
        mix = MixtureTransport.fit(src, tgt, k, seed=0)
        move = lambda z: mix.transport(z, p)  # noqa: E731
    fit_s = time.perf_counter() - started
    outs = {0.0: [], 0.5: []}
    for i in test:
        x_star = data.image(dataset, r, "restored", i)[None].to(device)
        z = data.latent(dataset, r, "restored", i, kind, sigma)
        _, low = detail.split(x_star, sigma, kind.split("+")[0]) if sigma else (None, None)
        decoded = data.codec.decode(move(z), size=tuple(x_star.shape[-2:]))
        x0 = detail.recombine(decoded, low, kind, reference=x_star, sigma=sigma).clamp(0, 1) if sigma else decoded.clamp(0, 1)
        outs[0.0].append(x0[0])
        outs[0.5].append((0.5 * x0 + 0.5 * x_star).clamp(0, 1)[0])
    row = {**cfg, "dataset": dataset, "fit_seconds": fit_s}
    cleans = [data.image(dataset, r, "clean", i).to(device) for i in test]
    stars = [data.image(dataset, r, "restored", i).to(device) for i in test]
    for label, images in (("xstar", stars), ("a0", outs[0.0]), ("a05", outs[0.5])):
        if label == "xstar":  # the same for every configuration: encoded once
            lat = [data.latent(dataset, r, "restored", i, "gaussian", None) for i in test]
        else:
            lat = [data.codec.encode(im[None]) for im in images]
        row[f"{label}_latent_fd"] = metrics.latent_fd(lat, reference_latents, 3)
        row[f"{label}_psnr"] = float(np.mean([metrics.psnr(a, b) for a, b in zip(images, cleans)]))
        row[f"{label}_patch_fd"] = metrics.patch_fd([im.cpu() for im in images], [c.cpu() for c in cleans])
        row[f"{label}_spectrum"] = float(np.mean([perception.spectrum_distance(a, b) for a, b in zip(images, cleans)]))
        row[f"{label}_halo"] = float(np.mean([perception.halo_measure(a, b) for a, b in zip(images, cleans)]))
    return row


def run(args) -> None:
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    codec = load_codec(str(args.taef2), device=device)
    data = Data(Path(args.data), Path(args.cache), codec, args.workers, args.crop)
    rows = []
    configs = configurations(args.tables.split(","), tuple(args.kinds.split(",")))
    out = Path(args.out)
    datasets = args.datasets.split(",")
    for dataset in datasets:
        for restorer in sorted({c["restorer"] for c in configs}):
            data.load(dataset, restorer)
    print(f"restorations ready after {time.perf_counter() - START:.0f} s", file=sys.stderr, flush=True)
    for cfg in configs:
        for dataset in datasets:
            n = len(data.paths[dataset])
            parts = splits(n, args.splits, args.n_test, cfg["nfit"], cfg["paired"])
            if parts is None:
                print(f"skip {dataset} {cfg}: too few images", file=sys.stderr)
                continue
            for s, idx in enumerate(parts):
                ref = [data.latent(dataset, cfg["restorer"], "clean", i, "gaussian", None) for i in idx[2]]
                row = evaluate(data, dataset, cfg, idx, ref, device)
                row["split"] = s
                rows.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
            out.write_text(json.dumps(rows))
            if args.budget and time.perf_counter() - START > args.budget:
                print("time budget reached", file=sys.stderr)
                return


# ----------------------------------------------------------------------------- report
def _label(cfg) -> str:
    if not cfg["sigma"]:
        what = "whole image"
    else:
        what = f"{cfg['kind']} σ={cfg['sigma']:g}"
    extra = []
    if cfg["k"] != 1:
        extra.append(f"K={cfg['k']}")
    if cfg["p"] != 3:
        extra.append(f"p={cfg['p']}")
    if cfg["nfit"] != 5 or cfg["paired"]:
        extra.append(f"{'paired' if cfg['paired'] else 'unpaired'} {cfg['nfit']}")
    return what + (", " + ", ".join(extra) if extra else "")


def report(rows: list[dict]) -> str:
    keys = ("restorer", "kind", "sigma", "p", "k", "nfit", "paired")
    lines = []
    for table in dict.fromkeys(r["table"] for r in rows):
        for dataset in dict.fromkeys(r["dataset"] for r in rows):
            sel = [r for r in rows if r["table"] == table and r["dataset"] == dataset]
            if not sel:
                continue
            groups = {}
            for r in sel:
                groups.setdefault(tuple(r[k] for k in keys), []).append(r)
            n_splits = max(len(g) for g in groups.values())
            lines += [f"### {table}: {dataset} ({sel[0]['restorer'] if len({r['restorer'] for r in sel}) == 1 else 'mixed'}, "
                      f"mean of {n_splits} splits)", "",
                      "| configuration | latent_fd ratio α=0 / 0.5 | ΔPSNR dB α=0 / 0.5 | patch_fd α=0 / 0.5 (x*) "
                      "| spectrum α=0 / 0.5 (x*) | halo ×1000 α=0 / 0.5 (x*) | splits |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for g in groups.values():
                m = lambda f: float(np.mean([f(r) for r in g]))  # noqa: E731, B023 - used at once
                ratio = [m(lambda r, a=a: r[f"{a}_latent_fd"] / r["xstar_latent_fd"]) for a in ("a0", "a05")]
                dpsnr = [m(lambda r, a=a: r[f"{a}_psnr"] - r["xstar_psnr"]) for a in ("a0", "a05")]
                cells = [f"{ratio[0]:.2f} / {ratio[1]:.2f}", f"{dpsnr[0]:+.1f} / {dpsnr[1]:+.1f}"]
                for name, scale, fmt in (("patch_fd", 1, ".3f"), ("spectrum", 1, ".3f"), ("halo", 1000, ".2f")):
                    v = [m(lambda r, a=a, name=name: r[f"{a}_{name}"]) * scale for a in ("a0", "a05", "xstar")]
                    cells.append(f"{v[0]:{fmt}} / {v[1]:{fmt}} ({v[2]:{fmt}})")
                lines.append(f"| {_label(g[0])} | " + " | ".join(cells) + f" | {len(g)} |")
            lines.append("")
    return "\n".join(lines)


def overhead(args) -> None:
    """Transport step alone ÷ TAEF2 encode+decode, one 512×512 image, K = 1 (conv form) and K > 1."""
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    codec = load_codec(str(args.taef2), device=device)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, args.size, args.size, generator=g).to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def timed(fn, repeats=args.repeats):
        fn()
        sync()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    z = codec.encode(image)
    base = timed(lambda: codec.decode(codec.encode(image), size=(args.size, args.size)))
    c, p = z.shape[1], 3
    d = c * p * p
    # Patches of smooth random images as source, of sharper ones as target: any full-rank fit costs the same.
    src = torch.randn(40000, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64) / d
    tgt = torch.randn(40000, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    ms, mt = gaussian.Moments(d).update(src), gaussian.Moments(d).update(tgt)
    a = gaussian.transport_map(ms.covariance, mt.covariance).float().to(device)
    mu_s, mu_t = ms.mean.float().to(device), mt.mean.float().to(device)
    rows = {"device": str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
            "size": args.size, "codec_seconds": base,
            "K=1": timed(lambda: transport_latent(z, a, mu_s, mu_t, p)) / base}
    for k in (2, 4, 8):
        mix = MixtureTransport.fit(src.to(device), tgt.to(device), k, max_iter=5, seed=0)
        rows[f"K={k}"] = timed(lambda mix=mix: mix.transport(z, p)) / base
        rows[f"K={k} pairs"] = len(mix.pairs)
    print(json.dumps(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows))


START = time.perf_counter()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    r.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data"))
    r.add_argument("--taef2", default=str(HERE.parents[1] / "shared" / "weights" / "taef2"))
    r.add_argument("--cache", default="/tmp/dotrestore-studies")
    r.add_argument("--datasets", default="cbsd68,kodak24")
    r.add_argument("--tables", default="split,mixture,patch,fit,blur")
    r.add_argument("--kinds", default="gaussian,guided", help="split kinds of the patch and fit tables")
    r.add_argument("--splits", type=int, default=3)
    r.add_argument("--n-test", type=int, default=4)
    r.add_argument("--crop", type=int, default=None, help="centre crop side (for quick smoke runs)")
    r.add_argument("--budget", type=float, default=None, help="stop after this many seconds")
    o = sub.add_parser("overhead")
    o.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    o.add_argument("--taef2", default=str(HERE.parents[1] / "shared" / "weights" / "taef2"))
    o.add_argument("--size", type=int, default=512)
    o.add_argument("--repeats", type=int, default=7)
    o.add_argument("--out", default=None)
    rep = sub.add_parser("report")
    rep.add_argument("results", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    elif args.command == "overhead":
        overhead(args)
    else:
        rows = [row for f in args.results for row in json.loads(Path(f).read_text())]
        print(report(rows))


if __name__ == "__main__":
    main()
