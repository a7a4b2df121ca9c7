"""``dotrestore fit``: restored (source) and clean (target) images → an operator file."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import settings
from ..codecs import spec_files
from ..errors import InputError
from ..io.images import image_extensions
from ..io.outputs.folder import file_ids
from ..io.outputs.guard import check_apart, check_output_file
from ..ot.split import describe
from ..runtime import parallel
from ..runtime.frames import TrainingInputs
from ..tasks import fit as fitting
from . import options
from .restorer import add_restorer_option, restorer_files, restorer_from

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
    # images and clips are listed here; each is opened and checked once, after the process group starts
    source = TrainingInputs.from_paths(args.source, runtime.max_pixels) if args.source and not args.zero_shot else None
    if args.target is None and not source:
        raise InputError("--target", "fit needs clean images (--target), or --source to use the bundled target")
    target = TrainingInputs.from_paths(args.target or [], runtime.max_pixels)
    if args.frame_step is not None and not target.clips and not (source and source.clips):
        raise InputError("--frame-step", "applies to video inputs only")
    restorer = restorer_from(args.restorer, runtime)
    if restorer is not None and source is None:
        raise InputError("--restorer", "needs --source: the degraded images the restorer restores")
    inputs = (source.files if source else []) + target.files + spec_files(args.codec) + restorer_files(args.restorer)
    given = [("--source", p) for p in (args.source or []) if not args.zero_shot] + [("--target", p) for p in args.target or []]
    check_apart([("-o", args.output)], given + [("--vae", p) for p in spec_files(args.codec)]
                + [("--restorer", p) for p in restorer_files(args.restorer)])
    _check_not_listed(Path(args.output), given)
    output = check_output_file(Path(args.output), inputs, args.overwrite)
    method = {name: getattr(args, name) for name in ("codec", *settings.METHOD) if hasattr(args, name)}
    dot = DOT(**method, runtime=runtime)
    if dot.resolved.mixture > 1 and parallel.requested():
        raise InputError("--mixture", "a mixture fits in one process only (EM needs the patches, not sums that "
                         "merge across processes): run without torchrun")
    parallel.init(runtime.device)
    # each process opens and checks its own share of the images, rank 0 probes the clips for all, before any encoding
    source, target = source and source.checked(runtime.max_pixels), target.checked(runtime.max_pixels)
    # under torchrun: each process its share of the files and frames, sums added exactly
    fitting.fit(dot, source, target if args.target is not None else None, frame_step=args.frame_step,
                restorer=restorer)
    # through the folder's handle: never over an input, nor over a file that appeared
    fitting.save(dot, output, protected=file_ids(inputs), overwrite=args.overwrite)
    if parallel.is_main():
        _summary(dot, output, source is not None, bundled=args.target is None)
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


def _summary(dot, output: Path, has_source: bool, bundled: bool = False) -> None:
    r = dot.resolved
    print(f"codec: {dot.codec_.id}  patch {r.patch_size}x{r.patch_size}  "
          f"D = C*p^2 = {dot.codec_.latent_channels}*{r.patch_size}^2 = {dot.dim_}  "
          f"transporting {describe(r.lowpass_sigma, r.split)}"
          + (f", mixture of {r.mixture} Gaussians" if r.mixture > 1 else ""))
    sides = ([("source", dot.n_source_images_, dot.n_source_patches_)] if has_source else []) + [
        ("target", dot.n_target_images_, dot.n_target_patches_)]
    for line in patch_budget(sides, dot.dim_, dot.shrinkage_used_ or {}):
        print(line)
    if bundled:
        print("target: the clean-photograph statistics bundled with dotrestore (no --target given)")
    if any(n < 2 * dot.dim_ for _, _, n in sides) and r.shrinkage is None:
        log.warning("fewer than 2*D = %d patches per side: the covariances are ill-conditioned; "
                    "consider --shrinkage oas or more images", 2 * dot.dim_)
    if dot.w2_squared_ is not None:
        print(f"latent W2^2 (source vs target Gaussians): {dot.w2_squared_:.6g}: the Frechet distance between "
              "the Gaussians of the restored and of the clean latent patches, i.e. how far the restorer's outputs "
              "are from clean photographs in these statistics (0 = indistinguishable; it is the gap the operator "
              "closes, and what `dotrestore experiment` reports per image set as latent_fd)")
    if dot.noise_cov_ is not None:
        print("source covariance is singular: using the stochastic map (Freirich et al. eq. 19)")
    print(f"wrote {output}")


def patch_budget(sides, dim: int, shrinkage_used: dict) -> list[str]:
    """One line per side: images, patches n, n / D, whether that is enough, the shrinkage used.

    A covariance of dimension D estimated from n samples is well conditioned when n is many
    times D; below 2·D its small eigenvalues are mostly noise and shrinkage (``--shrinkage``)
    is needed (Ledoit & Wolf 2004; GUIDE: n < 2·D).
    """
    lines = []
    for role, images, n in sides:
        ratio = n / dim
        verdict = ("enough for its dimension" if ratio >= 10 else "enough (n >= 2*D), though few" if ratio >= 2
                   else "too few for its dimension (n < 2*D)")
        used = shrinkage_used.get(role) or "none"
        lines.append(f"{role}: {_count(images, 'image')}, n = {n} patches = {ratio:.1f} x D: {verdict}; "
                     f"shrinkage {used}")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
