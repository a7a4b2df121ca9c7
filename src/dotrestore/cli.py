"""Command line: ``dotrestore fit | apply | info | experiment | demo``.

Thin by design: parse arguments, validate every input before the first output, call the
library. Errors a user can cause print one line naming the file and the problem and exit
with status 2; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from . import data
from ._version import __version__
from .detail import DEFAULT_SPLIT, SPLITS, describe
from .errors import DotRestoreError, InputError
from .experiment.report import alpha_dirname

log = logging.getLogger("dotrestore")


# ---------------------------------------------------------------------- fit
def _add_fit(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit a DOT operator from restored (source) and clean (target) images",
        description="Encode restored and clean images, fit Gaussians to their overlapping latent "
        "patches and write the closed-form optimal transport operator. Source and target need not be paired.",
    )
    p.add_argument("--source", nargs="+", metavar="PATH", help="restored images x* (files or folders)")
    p.add_argument("--target", nargs="+", metavar="PATH", required=True, help="clean images (files or folders)")
    p.add_argument("-o", "--output", required=True, metavar="OP.safetensors", help="operator file to write")
    p.add_argument("--vae", default="sd-vae-ft-ema", metavar="SPEC",
                   help="codec: sd-vae-ft-ema (default), sd-vae-ft-mse, pixel, a diffusers folder, "
                   "or a folder with a TAESD-family *_encoder.pth/*_decoder.pth pair")
    p.add_argument("--patch-size", type=int, default=3, metavar="P", help="odd latent patch side (default 3)")
    p.add_argument("--eps", type=float, default=1e-8, help="eigenvalue clamp in matrix square roots (default 1e-8)")
    p.add_argument("--shrinkage", default=None, metavar="oas|RHO",
                   help="covariance shrinkage: 'oas' or a ridge fraction in [0, 1] (default none)")
    p.add_argument("--lowpass-sigma", type=float, default=4.0, metavar="S",
                   help="transport only details finer than a Gaussian low-pass of std S pixels; the restorer's "
                   "low-pass is kept at apply time (default 4; 0 = whole images, as in the paper)")
    p.add_argument("--split", choices=SPLITS, default=DEFAULT_SPLIT,
                   help=f"how detail images are made: Gaussian or edge-preserving guided low-pass, optionally "
                   f"clamped to the restoration's local range (default {DEFAULT_SPLIT})")
    p.add_argument("--mixture", type=int, default=1, metavar="K",
                   help="Gaussian-mixture components per role (default 1: one Gaussian, the closed-form map)")
    p.add_argument("--weighting", choices=("uniform", "gaussian"), default="uniform",
                   help="how overlapping patches are averaged back (default uniform)")
    p.add_argument("--zero-shot", action="store_true",
                   help="fit target statistics only; source statistics come from each image at apply time")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_fit)


def _parse_shrinkage(value):
    if value is None or value == "oas":
        return value
    try:
        rho = float(value)
    except ValueError:
        raise InputError(None, f"--shrinkage must be 'oas' or a number in [0, 1], got {value!r}") from None
    if not 0 <= rho <= 1:
        raise InputError(None, f"--shrinkage ridge fraction must be in [0, 1], got {rho}")
    return rho


def _fit(args) -> int:
    from .estimator import DOT

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise InputError(output, "already exists (use --overwrite to replace it)")
    if not args.zero_shot and not args.source:
        raise InputError(None, "fit needs --source (restored images), or --zero-shot")
    # Validate every image before the (slow) codec is even loaded.
    source = data.list_images(args.source) if args.source and not args.zero_shot else None
    target = data.list_images(args.target)
    data.validate_images((source or []) + target)
    dot = DOT(
        codec=args.vae, patch_size=args.patch_size, eps=args.eps, shrinkage=_parse_shrinkage(args.shrinkage),
        weighting=args.weighting, lowpass_sigma=args.lowpass_sigma or None, zero_shot=args.zero_shot,
        device=args.device, progress=True, split=args.split, mixture=args.mixture,
    )
    dot.fit(source, target)
    dot.save(output)
    print(f"codec: {dot.codec_.id}  patch {dot.patch_size}x{dot.patch_size}  D = {dot.dim_}  "
          f"transporting {describe(dot.lowpass_sigma, dot.split)}"
          + (f", mixture of {dot.mixture} Gaussians" if dot.mixture > 1 else ""))
    if source is not None:
        print(f"source: {dot.n_source_images_} images, {dot.n_source_patches_} patches")
    print(f"target: {dot.n_target_images_} images, {dot.n_target_patches_} patches")
    if dot.n_target_patches_ < 2 * dot.dim_ or (source is not None and dot.n_source_patches_ < 2 * dot.dim_):
        log.warning("fewer than 2*D = %d patches per role: the covariances are ill-conditioned; "
                    "consider --shrinkage oas or more images", 2 * dot.dim_)
    if getattr(dot, "w2_squared_", None) is not None:
        print(f"latent W2^2 (source vs target Gaussians): {dot.w2_squared_:.6g}")
    if getattr(dot, "noise_cov_", None) is not None:
        print("source covariance is singular: using the stochastic map (Freirich et al. eq. 19)")
    print(f"wrote {output}")
    return 0


# ---------------------------------------------------------------------- apply
def _add_apply(sub) -> None:
    p = sub.add_parser(
        "apply",
        help="transport restored images with a fitted operator",
        description="Encode each input, transport its latent patches, decode and blend: "
        "x_alpha = (1 - alpha) * x0 + alpha * x*. One alpha writes OUTDIR/<stem>.png; several write "
        "OUTDIR/alpha_<A>/<stem>.png. Inputs are never modified.",
    )
    p.add_argument("operator", metavar="OP.safetensors", help="operator written by `dotrestore fit`")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="restored images (files or folders)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--alpha", type=float, action="append", metavar="A",
                   help="trade-off: 0 = perceptual (default), 1 = the input; repeat for several")
    p.add_argument("--interpolation", choices=("pixel", "latent"), default="pixel",
                   help="blend decoded images (pixel, default) or latents (latent)")
    p.add_argument("--vae", default=None, metavar="SPEC",
                   help="codec to use instead of the one recorded in the operator (must be the same weights)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=_apply)


def _apply(args) -> int:
    from .estimator import DOT
    from .operator_file import read_operator_file

    alphas = list(dict.fromkeys(args.alpha or [0.0]))
    read_operator_file(args.operator)  # header check first: fast, and before any image work
    inputs = data.list_images(args.inputs)
    data.validate_images(inputs)
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise InputError(path, f"has the same stem as {stems[path.stem]}: outputs would collide")
        stems[path.stem] = path
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    targets = {
        a: [(out if len(alphas) == 1 else out / alpha_dirname(a)) / f"{p.stem}.png" for p in inputs] for a in alphas
    }
    resolved_inputs = {p.resolve() for p in inputs}
    for paths in targets.values():
        for t in paths:
            if t.resolve() in resolved_inputs:
                raise InputError(t, "is one of the inputs: choose another output folder (inputs are never modified)")
            if t.exists() and not args.overwrite:
                raise InputError(t, "already exists (use --overwrite to replace it)")
    dot = DOT.load(args.operator, codec=args.vae, device=args.device)
    for i, path in enumerate(tqdm(inputs, desc="applying", unit="img", disable=len(inputs) < 2)):
        outs = dot.transform_alphas([data.read_image(path)], alphas, interpolation=args.interpolation)
        for a in alphas:
            data.save_image(outs[a][0].cpu(), targets[a][i])
    print(f"wrote {len(inputs) * len(alphas)} images to {out} (alpha = {', '.join(f'{a:g}' for a in alphas)})")
    return 0


# ---------------------------------------------------------------------- info
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print the metadata of an operator file")
    p.add_argument("operator", metavar="OP.safetensors")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(func=_info)


def _info(args) -> int:
    from .operator_file import read_operator_file

    meta, tensors = read_operator_file(args.operator)
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    print(f"{args.operator}")
    for key in sorted(meta):
        print(f"  {key}: {meta[key]}")
    print(f"  tensors: {', '.join(f'{k}{tuple(v.shape)}' for k, v in tensors.items() if '.' not in k)}")
    return 0


# ---------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dotrestore",
        description="Deep Optimal Transport image restoration: make a restoration model's outputs look real "
        "and choose a point on the perception-distortion trade-off at test time.",
    )
    parser.add_argument("--version", action="version", version=f"dotrestore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_fit(sub)
    _add_apply(sub)
    _add_info(sub)
    from .experiment.cli import register

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not log.handlers:  # our notices on stderr; third-party loggers keep their defaults
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except DotRestoreError as exc:
        print(f"dotrestore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
