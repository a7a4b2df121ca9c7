"""``dotrestore fit``: restored (source) and clean (target) images → an operator file."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import settings
from ..codecs import spec_files
from ..errors import InputError
from ..io.folder import file_ids
from ..io.guard import check_apart, check_output_file
from ..io.images import image_extensions
from ..operator_file import save_operator
from ..ot.split import describe
from ..runtime import parallel
from ..runtime.frames import TrainingInputs
from . import options

log = logging.getLogger("dotrestore")


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit a DOT operator from restored (source) and clean (target) images",
        description="Encode restored and clean images, fit Gaussians to their overlapping latent patches and "
        "write the closed-form optimal transport operator. Source and target need not be paired.",
    )
    p.add_argument("--source", nargs="+", metavar="PATH", help="restored images x* (files or folders) and video clips")
    p.add_argument("--target", nargs="+", metavar="PATH", required=True,
                   help="clean images (files or folders) and video clips")
    p.add_argument("-o", "--output", required=True, metavar="OP.safetensors", help="operator file to write")
    for name in ("codec", *settings.METHOD):
        options.add(p, name)
    options.add(p, "frame_step")
    options.add_runtime(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..estimator import DOT

    runtime = options.runtime(args)
    if not args.zero_shot and not args.source:
        raise InputError("--source", "fit needs the restored images (or --zero-shot)")
    # images are listed and clips probed (checked) before any work
    source = TrainingInputs.from_paths(args.source, runtime.max_pixels) if args.source and not args.zero_shot else None
    target = TrainingInputs.from_paths(args.target, runtime.max_pixels)
    if args.frame_step is not None and not target.videos and not (source and source.videos):
        raise InputError("--frame-step", "applies to video inputs only")
    inputs = (source.files if source else []) + target.files + spec_files(args.codec)
    given = [("--source", p) for p in (args.source or []) if not args.zero_shot] + [("--target", p) for p in args.target]
    check_apart([("-o", args.output)], given + [("--vae", p) for p in spec_files(args.codec)])
    _check_not_listed(Path(args.output), given)
    output = check_output_file(Path(args.output), inputs, args.overwrite)
    method = {name: getattr(args, name) for name in ("codec", *settings.METHOD) if hasattr(args, name)}
    dot = DOT(**method, runtime=runtime)
    if dot.mixture > 1 and parallel.requested():
        raise InputError("--mixture", "a mixture fits in one process only (EM needs the patches, not sums that "
                         "merge across processes): run without torchrun")
    parallel.init(runtime.device)
    # under torchrun: each process its share of the files and frames, sums added exactly
    dot.fit(source and source.source(runtime, "source images", args.frame_step),
            target.source(runtime, "target images", args.frame_step))
    if parallel.is_main():  # through the folder's handle: never over an input, nor over a file that appeared
        save_operator(dot, output, protected=file_ids(inputs), overwrite=args.overwrite)
        _summary(dot, output, source is not None)
    parallel.barrier()  # every process exits after the file exists
    return 0


def _check_not_listed(output: Path, given) -> None:
    """An operator written into an input folder under an image's extension would be listed (and
    fail) as an image by the next run over that folder: refused."""
    if output.suffix.lower() not in image_extensions():
        return
    for flag, folder in given:
        if Path(folder).is_dir() and Path(folder).resolve() == output.parent.resolve():
            raise InputError(output, f"is in the input folder {flag} {folder} with an image's extension: the next "
                             "run would read it as an image (use .safetensors, or write it elsewhere)")


def _summary(dot, output: Path, has_source: bool) -> None:
    print(f"codec: {dot.codec_.id}  patch {dot.patch_size}x{dot.patch_size}  D = {dot.dim_}  "
          f"transporting {describe(dot.lowpass_sigma, dot.split)}"
          + (f", mixture of {dot.mixture} Gaussians" if dot.mixture > 1 else ""))
    if has_source:
        print(f"source: {_count(dot.n_source_images_, 'image')}, {dot.n_source_patches_} patches")
    print(f"target: {_count(dot.n_target_images_, 'image')}, {dot.n_target_patches_} patches")
    if dot.n_target_patches_ < 2 * dot.dim_ or (has_source and dot.n_source_patches_ < 2 * dot.dim_):
        log.warning("fewer than 2*D = %d patches per side: the covariances are ill-conditioned; "
                    "consider --shrinkage oas or more images", 2 * dot.dim_)
    if dot.w2_squared_ is not None:
        print(f"latent W2^2 (source vs target Gaussians): {dot.w2_squared_:.6g}")
    if dot.noise_cov_ is not None:
        print("source covariance is singular: using the stochastic map (Freirich et al. eq. 19)")
    print(f"wrote {output}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
