"""Command line: ``dotrestore fit | apply | info | experiment | demo | serve``.

Thin by design: parse arguments, validate every input before the first output, call the
library. Errors a user can cause print one line naming the file and the problem and exit
with status 2; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import data
from .._version import __version__
from ..ot.split import DEFAULT_SPLIT, SPLITS, describe
from ..errors import DotRestoreError, InputError, OperatorFileError
from ..experiment.report import alpha_dirname
from ..io.files import StagedFiles
from .options import device_arg, finite_float, max_pixels_arg
from ..io.guard import check_not_input, check_output_file, check_output_folder

log = logging.getLogger("dotrestore")


# ---------------------------------------------------------------------- shared options
def add_max_pixels(parser) -> None:
    parser.add_argument("--max-pixels", type=max_pixels_arg, default=data.DEFAULT_MAX_PIXELS, metavar="N",
                        help="refuse images whose header declares more than N pixels, before decoding them "
                        f"(default {data.DEFAULT_MAX_PIXELS:,})")


def codec_inputs(spec) -> list[Path]:
    """Files a ``--vae`` folder or file spec reads: outputs must never replace them."""
    if spec is None:
        return []
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        return [p for p in path.iterdir() if p.is_file()]
    return [path] if path.is_file() else []
# ---------------------------------------------------------------------- codec options (tiling, dtype)
def add_codec_options(p) -> None:
    """--tile, --tile-overlap, --dtype, --max-memory (default None: the codec's defaults)."""
    p.add_argument("--tile", default=None, metavar="auto|off|N",
                   help="encode/decode big images in overlapping tiles of N pixels; auto (default) tiles only "
                   "images above 1024x1024 whose codec activations would exceed --max-memory")
    p.add_argument("--tile-overlap", type=int, default=None, metavar="N",
                   help="pixels shared by neighbouring tiles, blended (default 64, at most a quarter tile)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="codec compute precision (reduced precision needs a CUDA device; statistics stay "
                   "float64, the operator float32; default float32)")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory for the codec's activations, e.g. 8GB, that picks the tile size under --tile auto "
                   "(default: the free memory of the GPU; 1GiB on the CPU)")


def codec_options(args) -> dict:
    """Validated codec options from parsed arguments; bad values are InputErrors naming the flag."""
    import torch

    from ..codecs import tiling

    try:
        tile = None if args.tile is None else tiling.parse_tile(args.tile)
        overlap = tiling.parse_overlap(args.tile_overlap)
        memory = tiling.parse_memory(args.max_memory)
    except ValueError as exc:
        raise InputError(None, f"--{str(exc).split(' must')[0].replace('_', '-')}: {exc}") from None
    if args.dtype not in (None, "float32"):
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if not str(device).startswith("cuda"):
            raise InputError(None, f"--dtype {args.dtype} needs a CUDA device (the codec would run on {device}); "
                             "on the CPU use float32")
    return {"tile": tile, "tile_overlap": overlap, "dtype": args.dtype, "max_memory": memory}


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
    p.add_argument("--vae", default="auto", metavar="SPEC",
                   help="codec: auto (default: sd-vae-ft-ema when cached, else the bundled taef2), taef2, "
                   "sd-vae-ft-ema, sd-vae-ft-mse, pixel, a diffusers folder, "
                   "or a folder with a TAESD-family *_encoder.pth/*_decoder.pth pair")
    p.add_argument("--patch-size", type=int, default=3, metavar="P", help="odd latent patch side (default 3)")
    p.add_argument("--eps", type=finite_float, default=1e-8, help="eigenvalue clamp in matrix square roots (default 1e-8)")
    p.add_argument("--shrinkage", default=None, metavar="oas|RHO",
                   help="covariance shrinkage: 'oas' or a ridge fraction in [0, 1] (default none)")
    p.add_argument("--lowpass-sigma", type=finite_float, default=4.0, metavar="S",
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
    p.add_argument("--device", type=device_arg, default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_max_pixels(p)
    add_codec_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    add_pipeline_flags(p)
    p.set_defaults(func=_fit)


def add_pipeline_flags(p) -> None:
    """--workers / --batch-size of the data pipeline (fit, apply, experiment)."""
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes that read (and degrade/restore) images; 0 = in the main process "
                   "(default min(4, CPU cores))")
    p.add_argument("--batch-size", type=int, default=1, metavar="B",
                   help="images of the same size encoded/transported/decoded together (default 1)")


def _check_pipeline_flags(args) -> None:
    if args.workers is not None and args.workers < 0:
        raise InputError(None, f"--workers must be 0 or more, got {args.workers}")
    if args.batch_size < 1:
        raise InputError(None, f"--batch-size must be at least 1, got {args.batch_size}")


def _parse_shrinkage(value):
    from ..ot.gaussian import parse_shrinkage

    try:
        return parse_shrinkage(value)
    except ValueError as exc:
        raise InputError(None, f"--{exc}") from None


def _fit(args) -> int:
    from ..runtime import parallel, pipeline
    from ..estimator import DOT

    output = Path(args.output)
    _check_pipeline_flags(args)
    if not args.zero_shot and not args.source:
        raise InputError(None, "fit needs --source (restored images), or --zero-shot")
    options = codec_options(args)
    source = data.list_images(args.source, args.max_pixels) if args.source and not args.zero_shot else None
    target = data.list_images(args.target, args.max_pixels)
    check_output_file(output, (source or []) + target + codec_inputs(args.vae), args.overwrite)
    parallel.init(args.device)
    # Each rank validates (and later reads) only its own shard, before the codec is loaded;
    # a bad file anywhere stops every rank with its name.
    shards = {"source": parallel.shard(source or []), "target": parallel.shard(target)}
    sizes = parallel.run_checked(lambda: {r: _validate(p, args.max_pixels) for r, p in shards.items()})
    dot = DOT(
        codec=args.vae, patch_size=args.patch_size, eps=args.eps, shrinkage=_parse_shrinkage(args.shrinkage),
        weighting=args.weighting, lowpass_sigma=args.lowpass_sigma or None, zero_shot=args.zero_shot,
        device=parallel.local_device(args.device), progress=False, max_pixels=args.max_pixels, **options,
        split=args.split, mixture=args.mixture,
    )
    if args.mixture > 1 and parallel.active():
        raise InputError(None, "--mixture > 1 fits in one process only (EM needs the patches, not moments "
                         "that merge across processes): run without torchrun")
    for role, paths in (("source", source), ("target", target)):
        if paths is None:
            continue
        with tqdm(total=len(shards[role]), desc=f"encoding {role}", unit="img", leave=False,
                  disable=not parallel.is_main() or len(paths) < 2) as bar:
            if args.mixture > 1:  # EM needs a reservoir of the patches themselves
                for path in shards[role]:
                    dot.partial_fit([path], role=role)
                    bar.update(1)
                continue
            moments, count = pipeline.latent_moments(dot, shards[role], sizes=sizes[role], batch_size=args.batch_size,
                                                     workers=args.workers, progress=bar)
        moments = moments if moments is not None else _empty_moments(dot)
        count = int(parallel.all_reduce_sum(torch.tensor(float(count), dtype=torch.float64)).item())
        dot.partial_fit_moments(parallel.all_reduce_moments(moments), role, n_images=count)
    if not parallel.is_main():
        parallel.barrier()  # rank 0 writes; the others wait so that every rank exits after the file exists
        return 0
    dot.save(output)
    parallel.barrier()
    print(f"codec: {dot.codec_.id}  patch {dot.patch_size}x{dot.patch_size}  D = {dot.dim_}  "
          f"transporting {describe(dot.lowpass_sigma, dot.split)}"
          + (f", mixture of {dot.mixture} Gaussians" if dot.mixture > 1 else ""))
    if source is not None:
        print(f"source: {dot.n_source_images_} images, {dot.n_source_patches_} patches")
    print(f"target: {dot.n_target_images_} images, {dot.n_target_patches_} patches")
    if dot.n_target_patches_ < 2 * dot.dim_ or (source is not None and dot.n_source_patches_ < 2 * dot.dim_):
        log.warning("fewer than 2*D = %d patches per role: the covariances are ill-conditioned; "
                    "consider --shrinkage oas or more images", 2 * dot.dim_)
    if dot.state_.w2_squared is not None:
        print(f"latent W2^2 (source vs target Gaussians): {dot.state_.w2_squared:.6g}")
    if dot.state_.noise_cov is not None:
        print("source covariance is singular: using the stochastic map (Freirich et al. eq. 19)")
    print(f"wrote {output}")
    return 0


def _validate(paths: list[Path], max_pixels) -> list[tuple[int, int]]:
    """Decode every file of this rank's shard (sizes, for batching); a rank may have none."""
    return data.validate_images(paths, max_pixels) if paths else []


def _empty_moments(dot):
    from ..ot.gaussian import Moments

    return Moments(dot.dim_)


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
    p.add_argument("--alpha", type=finite_float, action="append", metavar="A",
                   help="trade-off: 0 = perceptual (default), 1 = the input; repeat for several")
    p.add_argument("--interpolation", choices=("pixel", "latent"), default="pixel",
                   help="blend decoded images (pixel, default) or latents (latent)")
    p.add_argument("--vae", default=None, metavar="SPEC",
                   help="codec to use instead of the one recorded in the operator (must be the same weights)")
    p.add_argument("--device", type=device_arg, default=None, help="cpu, cuda, ... (default: cuda when available)")
    add_max_pixels(p)
    add_codec_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    add_pipeline_flags(p)
    p.set_defaults(func=_apply)


def _apply(args) -> int:
    from ..runtime import parallel, pipeline
    from ..estimator import DOT
    from ..operator_file import read_operator_file

    alphas = list(dict.fromkeys(args.alpha or [0.0]))
    _check_pipeline_flags(args)
    options = codec_options(args)
    read_operator_file(args.operator)  # header check first: fast, and before any image work
    inputs = data.list_images(args.inputs, args.max_pixels)
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise InputError(path, f"has the same stem as {stems[path.stem]}: outputs would collide")
        stems[path.stem] = path
    protected = inputs + [Path(args.operator)] + codec_inputs(args.vae)
    out = check_output_folder(args.output, protected)
    targets = {
        a: [(out if len(alphas) == 1 else out / alpha_dirname(a)) / f"{p.stem}.png" for p in inputs] for a in alphas
    }
    for paths in targets.values():
        for t in paths:
            check_not_input(t, protected)
            if t.is_dir():
                raise InputError(t, "is a folder; it would be replaced by an output image")
            if t.exists() and not args.overwrite:
                raise InputError(t, "already exists (use --overwrite to replace it)")
    parallel.init(args.device)
    # Rank r owns inputs r, r + W, ...: it validates, reads and writes only those.
    mine = parallel.shard(list(range(len(inputs))))
    sizes = parallel.run_checked(_validate, [inputs[i] for i in mine], args.max_pixels)
    dot = DOT.load(args.operator, codec=args.vae, device=parallel.local_device(args.device), **options)
    device = dot.codec_.device
    read = functools.partial(data.read_image, max_pixels=args.max_pixels)
    bar = tqdm(total=len(inputs), desc="applying", unit="img", disable=len(inputs) < 2 or not parallel.is_main())

    def transport_and_write(staged: StagedFiles) -> None:
        with bar, pipeline.ImageWriter() as writer:
            for positions, batch in pipeline.batches([inputs[i] for i in mine], read, sizes=sizes,
                                                     batch_size=args.batch_size, workers=args.workers):
                paths = [inputs[mine[k]] for k in positions]
                try:
                    # One α at a time (a big photograph holds one output, not one per α); a fresh
                    # generator per batch, so an image's output does not depend on its rank.
                    for a, result in dot.iter_alphas(batch.to(device), alphas, interpolation=args.interpolation):
                        if not bool(result.isfinite().all()):
                            raise OperatorFileError(args.operator, f"gave non-finite values when transporting "
                                                    f"{paths[0]}: its statistics are unusable")
                        for j, k in enumerate(positions):
                            writer.submit(result[j], staged.path(targets[a][mine[k]]))
                        del result
                except InputError as exc:  # a problem of this image (e.g. too small): name it
                    if exc.path is not None:
                        raise
                    raise InputError(paths[0], exc.problem) from None
                bar.update(len(positions) * parallel.world_size())

    # Outputs are staged and moved into place together, on every rank only once all succeeded:
    # a failure anywhere leaves no partial set.
    with StagedFiles(out) as staged:
        parallel.run_checked(transport_and_write, staged)
        staged.commit()
    parallel.barrier()
    if parallel.is_main():
        print(f"wrote {len(inputs) * len(alphas)} images to {out} (alpha = {', '.join(f'{a:g}' for a in alphas)})")
    return 0


# ---------------------------------------------------------------------- info
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print the metadata of an operator file")
    p.add_argument("operator", metavar="OP.safetensors")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(func=_info)


def _info(args) -> int:
    from ..operator_file import read_operator_file

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
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks of unexpected errors (to report them)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_fit(sub)
    _add_apply(sub)
    _add_info(sub)
    from .experiment import register

    register(sub)
    from .serve import register as register_serve

    register_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0 (done), 2 (a problem with the input, named), 1 (a bug)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not log.handlers:  # our notices on stderr; third-party loggers keep their defaults
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from ..runtime import parallel

    command = f"dotrestore {args.command}"
    try:
        return int(args.func(args) or 0)
    except DotRestoreError as exc:
        if args.debug:
            raise
        print(f"{command}: error: {exc}", file=sys.stderr)  # names the file as given, verbatim
        if parallel.active():  # every rank agreed on this error: leave together, now
            parallel.exit_now(2)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file could not be read or written: the user's to fix, and named
        if args.debug:
            raise
        where = exc.filename if exc.filename is not None else "(unknown file)"
        print(f"{command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line, never a bare traceback unless asked for
        if args.debug:
            raise
        print(f"{command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(please report this; rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        parallel.finish()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the stream of the
    first call): main() may run many times in one process, with stderr redirected in between."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
