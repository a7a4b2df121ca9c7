"""``dotrestore apply``: transport restored images with a fitted operator, at one or several α."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import settings
from ..codecs import spec_files
from ..errors import InputError
from ..io.alpha_maps import AlphaMaps, match_alpha_maps
from ..io.images import list_images
from ..io.video import is_video
from ..operator_file import read_operator
from ..runtime import parallel
from ..tasks import apply as applying
from ..tasks import apply_video
from . import options
from .restorer import add_restorer_option, restorer_files, restorer_from

logger = logging.getLogger(__name__)
#: the flags of per-pixel α (``--alpha-map`` and how a map is read)
ALPHA_MAP_OPTIONS = ("alpha_map", "alpha_map_range", "alpha_map_feather", "alpha_map_resize")

def register(sub) -> None:
    p = sub.add_parser(
        "apply",
        help="transport restored images with a fitted operator",
        description="Encode each input, transport its latent patches, decode and blend: "
        "x_alpha = (1 - alpha) * x0 + alpha * x*. One alpha writes OUTDIR/<stem>.png; several write "
        "OUTDIR/alpha_<A>/<stem>.png; one image at one alpha can go to -o NAME.png (.tif, .webp: lossless; "
        ".jpg: quality 95). Outputs keep what their input had: grey stays grey, an alpha channel is copied, "
        "16-bit grey stays 16-bit. A video clip (one per run) is written to the -o clip, frames in order, "
        "with its timing and sound; several alphas write OUT_alpha_<A>.EXT beside it. Inputs are never modified.",
    )
    p.add_argument("operator", metavar="OP.safetensors", help="operator written by `dotrestore fit`")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="restored images (files or folders), or one video clip")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder; for one image at one alpha, an image file (NAME.png, .tif, .webp, .jpg, .bmp); "
                   "for a video, the output clip (.mkv: lossless FFV1, .mp4: H.264, ...)")
    options.add_alpha_list(p, "alpha", "trade-off: 0 = perceptual (default), 1 = the input")
    options.add(p, "interpolation")
    add_restorer_option(p, "the inputs are degraded images: x* = RESTORER(input) is transported (alpha 1 writes x*)")
    options.add(p, "codec", table_default=False,
                help="codec to use instead of the one recorded in the operator (must be the same weights)")
    for name in ALPHA_MAP_OPTIONS:
        options.add(p, name)
    options.add(p, "video_codec")
    options.add(p, "crf")
    options.add(p, "temporal", table_default=False)
    options.add_runtime(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..estimator import DOT

    runtime = options.runtime(args)
    operator = read_operator(args.operator)  # read once, before any image work; DOT is built from it
    if any(is_video(p) and not Path(p).is_dir() for p in args.inputs):
        if args.alpha_map is not None:
            raise InputError("--alpha-map", "applies to images only, not to video clips")
        return _run_video(args, runtime, operator)
    for name in ("video_codec", "crf", "temporal"):
        if getattr(args, name) is not None:
            raise InputError(settings.SETTINGS[name].option, "applies to video inputs only")
    inputs = list_images(args.inputs, runtime.max_pixels, headers=False)  # opened by write_outputs, each rank its share
    if args.alpha_map is not None and args.restorer is not None:
        raise InputError("--alpha-map", "cannot be combined with --restorer yet (restore first, then apply the map)")
    maps = alpha_maps(args, inputs, runtime.max_pixels)
    restorer = restorer_from(args.restorer, runtime)
    plan = applying.plan_outputs(inputs, args.output, args.alpha or [0.0],
                                 protected=[args.operator, *spec_files(args.codec), *restorer_files(args.restorer),
                                            *(maps.maps.values() if maps else ())],
                                 overwrite=args.overwrite, file_ok=True)
    parallel.init(runtime.device)
    dot = DOT.load(operator, codec=args.codec, runtime=runtime)
    with runtime.progress_bar(len(inputs), "applying") as bar:
        count = applying.write_outputs(dot, plan, interpolation=args.interpolation, operator=args.operator,
                                       progress=lambda done: bar.update(done - bar.n), alpha_maps=maps,
                                       restorer=restorer)
    if parallel.is_main():
        alphas = ", ".join(f"{a:g}" for a in plan.alphas)
        print(f"wrote {count} image{'' if count == 1 else 's'} to {plan.file or plan.out} (alpha = {alphas})")
    return 0


def alpha_maps(args, inputs, max_pixels) -> AlphaMaps | None:
    """The --alpha-map of this run (None without one), its maps matched to ``inputs``."""
    if args.alpha_map is None:
        return None
    if len(args.alpha or []) > 1:
        raise InputError("--alpha-map", "takes at most one --alpha (the alpha of images without a map)")
    maps = match_alpha_maps(inputs, args.alpha_map, max_pixels)
    if Path(args.alpha_map).is_dir():
        missing = len(inputs) - len(maps)
        logger.info("%s: %d of %d images have an alpha map%s", args.alpha_map, len(maps), len(inputs),
                    f"; the other {missing} get --alpha {(args.alpha or [0.0])[0]:g}" if missing else "")
    return AlphaMaps(maps, args.alpha_map_range, args.alpha_map_feather, args.alpha_map_resize,
                     (args.alpha or [0.0])[0], max_pixels)


def _run_video(args, runtime, operator) -> int:
    from ..estimator import DOT

    if args.restorer is not None:
        raise InputError("--restorer", "applies to images only (restore the clip's frames as an image folder)")
    parallel.init(runtime.device)
    # rank 0 probes the clip (reading all of it) and checks the outputs; every rank gets the plan,
    # then reads only its own frames
    plan = parallel.on_main(apply_video.plan_video, args.inputs, args.output, args.alpha or [0.0],
                            max_pixels=runtime.max_pixels, codec=args.video_codec, crf=args.crf,
                            overwrite=args.overwrite, temporal=args.temporal or settings.default("temporal"),
                            protected=[args.operator, *spec_files(args.codec)])
    dot = DOT.load(operator, codec=args.codec, runtime=runtime)
    with runtime.progress_bar(plan.frame_count, "applying", unit="frame") as bar:
        frames = apply_video.write_video(dot, plan, interpolation=args.interpolation, operator=args.operator,
                                         progress=lambda done: bar.update(done - bar.n))
    if parallel.is_main():
        alphas = ", ".join(f"{a:g}" for a in plan.alphas)
        clips = ", ".join(str(t) for t in plan.targets.values())
        print(f"wrote {frames} frame{'' if frames == 1 else 's'} to {clips} (alpha = {alphas})")
    return 0
