"""``dotrestore fit``: restored (source) and clean (target) images → an operator file."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import settings
from ..codecs import spec_files
from ..errors import InputError
from ..io.folder import file_ids
from ..io.guard import check_output_file
from ..operator_file import save_operator
from ..ot.split import describe
from ..runtime import parallel
from ..runtime.frames import TrainingInputs
from . import options
from .restorer import add_restorer_option, restored_batches, restorer_files, restorer_from

log = logging.getLogger("dotrestore")


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit a DOT operator from restored (source) and clean (target) images",
        description="Encode restored and clean images, fit Gaussians to their overlapping latent patches and "
        "write the closed-form optimal transport operator. Source and target need not be paired.",
    )
    p.add_argument("--source", nargs="+", metavar="PATH", help="restored images x* (files or folders) and video clips")
    p.add_argument("--target", nargs="+", metavar="PATH",
                   help="clean images (files or folders) and video clips; without it, the clean-photograph "
                   "statistics bundled for the TAEF2 codec at the default settings (24 Kodak images)")
    add_restorer_option(p, "the --source images are degraded: the source statistics come from x* = RESTORER(source)")
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
    if args.target is None and not source:
        raise InputError("--target", "fit needs clean images (--target), or --source to use the bundled target")
    target = TrainingInputs.from_paths(args.target or [], runtime.max_pixels)
    if args.frame_step is not None and not target.videos and not (source and source.videos):
        raise InputError("--frame-step", "applies to video inputs only")
    restorer = restorer_from(args.restorer, runtime)
    if restorer is not None and source is None:
        raise InputError("--restorer", "needs --source: the degraded images the restorer restores")
    inputs = (source.files if source else []) + target.files + spec_files(args.codec) + restorer_files(args.restorer)
    output = check_output_file(Path(args.output), inputs, args.overwrite)
    method = {name: getattr(args, name) for name in ("codec", *settings.METHOD) if hasattr(args, name)}
    dot = DOT(**method, runtime=runtime)
    if dot.mixture > 1 and parallel.requested():
        raise InputError("--mixture", "a mixture fits in one process only (EM needs the patches, not sums that "
                         "merge across processes): run without torchrun")
    parallel.init(runtime.device)
    # under torchrun: each process its share of the files and frames, sums added exactly
    source_data = source and source.source(runtime, "source images", args.frame_step)
    if restorer is not None:  # x* = R(y), a batch at a time, in this process (on the codec's device)
        log.info("source statistics from the outputs of %s", getattr(restorer, "describe", restorer.__str__)())
        source_data = restored_batches(source.batches(runtime, "source images", args.frame_step), restorer)
    if args.target is None:
        _fit_with_bundled_target(dot, source_data)
    else:
        dot.fit(source_data, target.source(runtime, "target images", args.frame_step))
    if parallel.is_main():  # through the folder's handle: never over an input, nor over a file that appeared
        save_operator(dot, output, protected=file_ids(inputs), overwrite=args.overwrite)
        _summary(dot, output, source is not None, bundled=args.target is None)
    parallel.barrier()  # every process exits after the file exists
    return 0


def _fit_with_bundled_target(dot, source_data) -> None:
    """Target = the clean-photograph moments shipped with dotrestore (TAEF2, default settings only)."""
    from ..targets import check_applies, read_bundled_target

    bundled = read_bundled_target()
    check_applies(dot, bundled)
    dot.set_target_moments(bundled.moments, bundled.n_images)
    check_applies(dot, bundled, dot.codec_.id)
    log.info("target: %s (no --target given)", bundled.describe())
    dot.partial_fit(source_data, role="source")


def _summary(dot, output: Path, has_source: bool, bundled: bool = False) -> None:
    print(f"codec: {dot.codec_.id}  patch {dot.patch_size}x{dot.patch_size}  D = {dot.dim_}  "
          f"transporting {describe(dot.lowpass_sigma, dot.split)}"
          + (f", mixture of {dot.mixture} Gaussians" if dot.mixture > 1 else ""))
    if has_source:
        print(f"source: {_count(dot.n_source_images_, 'image')}, {dot.n_source_patches_} patches")
    print(f"target: {_count(dot.n_target_images_, 'image')}, {dot.n_target_patches_} patches"
          + (" (the bundled clean-photograph statistics)" if bundled else ""))
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
