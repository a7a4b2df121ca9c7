"""``dotrestore apply``: transport restored images with a fitted operator, at one or several α."""

from __future__ import annotations

from pathlib import Path

from .. import apply as applying
from .. import apply_video, settings
from ..codecs import spec_files
from ..errors import InputError
from ..io.images import list_images
from ..io.video import is_video
from ..operator_file import read_operator_file
from ..runtime import parallel
from . import options
from .restorer import add_restorer_option, restorer_files, restorer_from


def register(sub) -> None:
    p = sub.add_parser(
        "apply",
        help="transport restored images with a fitted operator",
        description="Encode each input, transport its latent patches, decode and blend: "
        "x_alpha = (1 - alpha) * x0 + alpha * x*. One alpha writes OUTDIR/<stem>.png; several write "
        "OUTDIR/alpha_<A>/<stem>.png. A video clip (one per run) is written to the -o clip, frames in order, "
        "with its timing and sound; several alphas write OUT_alpha_<A>.EXT beside it. Inputs are never modified.",
    )
    p.add_argument("operator", metavar="OP.safetensors", help="operator written by `dotrestore fit`")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="restored images (files or folders), or one video clip")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder; for a video, the output clip (.mkv: lossless FFV1, .mp4: H.264, ...)")
    options.add(p, "alpha", action="append", table_default=False,
                help="trade-off: 0 = perceptual (default), 1 = the input; repeat for several")
    options.add(p, "interpolation")
    add_restorer_option(p, "the inputs are degraded images: x* = RESTORER(input) is transported (alpha 1 writes x*)")
    options.add(p, "codec", table_default=False,
                help="codec to use instead of the one recorded in the operator (must be the same weights)")
    options.add(p, "video_codec")
    options.add(p, "crf")
    options.add_runtime(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..estimator import DOT

    runtime = options.runtime(args)
    read_operator_file(args.operator)  # the file's header first: fast, and before any image work
    if any(is_video(p) and not Path(p).is_dir() for p in args.inputs):
        return _run_video(args, runtime)
    for name in ("video_codec", "crf"):
        if getattr(args, name) is not None:
            raise InputError(settings.SETTINGS[name].option, "applies to video inputs only")
    inputs = list_images(args.inputs, runtime.max_pixels)
    restorer = restorer_from(args.restorer, runtime)
    plan = applying.plan_outputs(inputs, args.output, args.alpha or [0.0],
                                 protected=[args.operator, *spec_files(args.codec), *restorer_files(args.restorer)],
                                 overwrite=args.overwrite)
    parallel.init(runtime.device)
    dot = DOT.load(args.operator, codec=args.codec, runtime=runtime)
    with runtime.progress_bar(len(inputs), "applying") as bar:
        count = applying.write_outputs(dot, plan, interpolation=args.interpolation, operator=args.operator,
                                       progress=lambda done: bar.update(done - bar.n), restorer=restorer)
    if parallel.is_main():
        alphas = ", ".join(f"{a:g}" for a in plan.alphas)
        print(f"wrote {count} image{'' if count == 1 else 's'} to {plan.out} (alpha = {alphas})")
    return 0


def _run_video(args, runtime) -> int:
    from ..estimator import DOT

    if args.restorer is not None:
        raise InputError("--restorer", "applies to images only (restore the clip's frames as an image folder)")
    plan = apply_video.plan_video(args.inputs, args.output, args.alpha or [0.0], max_pixels=runtime.max_pixels,
                                  codec=args.video_codec, crf=args.crf, overwrite=args.overwrite,
                                  protected=[args.operator, *spec_files(args.codec)])
    parallel.init(runtime.device)
    dot = DOT.load(args.operator, codec=args.codec, runtime=runtime)
    with runtime.progress_bar(plan.frame_count, "applying", unit="frame") as bar:
        frames = apply_video.write_video(dot, plan, interpolation=args.interpolation, operator=args.operator,
                                         progress=lambda done: bar.update(done - bar.n))
    if parallel.is_main():
        alphas = ", ".join(f"{a:g}" for a in plan.alphas)
        clips = ", ".join(str(t) for t in plan.targets.values())
        print(f"wrote {frames} frame{'' if frames == 1 else 's'} to {clips} (alpha = {alphas})")
    return 0
