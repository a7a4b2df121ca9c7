"""``dotrestore experiment`` and ``dotrestore demo``: argument parsing only; the work is in runner/demo."""

from __future__ import annotations

import argparse

import dataclasses

from .options import device_arg, max_pixels_arg
from ..experiment.config import DEFAULT_ALPHAS, ExperimentConfig, read_yaml


def register(subparsers) -> None:
    """Add the ``experiment`` and ``demo`` subcommands to the top-level CLI's subparsers."""
    _add_experiment(subparsers)
    _add_demo(subparsers)


def _add_experiment(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="sweep alpha on a test set: metrics, perception-distortion curve, collages, report",
        description="clean images -> degradation -> restorer (or your --restored folder) -> DOT fitted on "
        "a few images -> outputs at every alpha -> MSE/PSNR/SSIM, latent_fd, patch_fd (and LPIPS/FID/KID "
        "when available offline) -> results.csv, results.json, pd_curve.png/.svg, collages/, "
        "operator.safetensors, config.yaml and report.md in --out. Every option can also come from "
        "--config FILE.yaml (keys as the long option names); flags given on the command line win.",
    )
    # default=None everywhere: only flags actually given override the config file / defaults.
    a = p.add_argument
    a("--config", metavar="FILE.yaml", help="YAML file with any of these options (e.g. a previous run's config.yaml)")
    a("--clean", metavar="DIR", default=None, help="folder of clean images (sorted by name)")
    a("--restored", metavar="DIR", default=None, help="folder of your restored images, paired with --clean by file stem")
    a("--degrade", metavar="SPEC", default=None,
      help="degradation: noise:sigma=S (0-255 units), blur:sigma=S, down:scale=K, jpeg:quality=Q; compose with +")
    a("--restorer", metavar="SPEC", default=None,
      help="gaussian-blur:sigma=S, nlmeans, bicubic, identity, or module:function on (B,3,H,W) tensors in [0,1]")
    a("--test-clean", metavar="DIR", default=None, help="test images (default: the clean images not used for fitting)")
    a("--vae", metavar="SPEC", default=None,
      help="codec: auto (default: sd-vae-ft-ema when cached, else the bundled taef2), taef2, sd-vae-ft-ema, "
      "sd-vae-ft-mse, pixel, a local diffusers folder, or a TAESD-family folder holding *_encoder.pth and *_decoder.pth")
    a("--fit-source", type=int, metavar="N", default=None, help="restored images for the source statistics (default 10)")
    a("--fit-target", type=int, metavar="N", default=None, help="clean images for the target statistics")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--paired", dest="paired", action="store_true", default=None,
                       help="source and target statistics from the same images' restored and clean versions")
    split.add_argument("--unpaired", dest="paired", action="store_false", default=None,
                       help="source and target statistics from disjoint images (default)")
    a("--alphas", type=float, nargs="+", metavar="A", default=None,
      help="trade-off values (default: " + " ".join(f"{x:g}" for x in DEFAULT_ALPHAS) + ")")
    a("--seed", type=int, default=None, help="seed of the degradations and of the stochastic map ")
    a("--crop", type=int, metavar="N", default=None, help="centre-crop every clean image to N x N")
    a("--resize", type=int, metavar="N", default=None, help="resize every clean image to shorter side N")
    a("--save-outputs", action="store_true", default=None, help="write outputs/alpha_<A>/<stem>.png for every alpha")
    a("--out", metavar="DIR", default=None, help="output folder")
    a("--overwrite", action="store_true", default=None, help="replace the results of a previous run in --out")
    a("--patch-size", type=int, metavar="P", default=None, help="odd latent patch side")
    a("--lowpass-sigma", type=float, metavar="S", default=None,
      help="transport only details finer than a Gaussian low-pass of std S pixels, keeping the restorer's "
      "low-pass; 0 transports whole images as in the paper")
    a("--shrinkage", metavar="oas|RHO", default=None, help="covariance shrinkage (default: none)")
    a("--device", type=device_arg, default=None, help="cpu, cuda, ... (default: cuda when available)")
    a("--max-pixels", type=max_pixels_arg, metavar="N", default=None,
      help="refuse images whose header declares more than N pixels, before decoding them")
    from .commands import add_codec_options

    add_codec_options(p)
    a("--collages", type=int, metavar="K", default=None, help="collages for the first K test images")
    a("--no-progress", dest="progress", action="store_false", default=None, help="hide progress bars")
    a("--variants", metavar="LIST", default=None,
      help="DOT configurations compared, comma-separated: whole (the paper), detail (--lowpass-sigma), mix<K> "
      "(the first one is operator.safetensors and the headline)")
    a("--workers", type=int, metavar="N", default=None,
      help="processes that read, degrade and restore images (none given: min(4, CPU cores); 0 = main process)")
    a("--batch-size", type=int, metavar="B", default=None,
      help="test images of the same size transported together")
    _show_config_defaults(p)
    p.set_defaults(func=experiment_command)


def _show_config_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ExperimentConfig's real default to each option's help that does not state one.

    The parser's own defaults are None (so that only given flags override a --config file);
    printing those would be wrong.
    """
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(ExperimentConfig)}
    for action in parser._actions:
        if action.dest not in defaults or not action.help or "default" in action.help:
            continue
        value = defaults[action.dest]
        if value is None or isinstance(value, bool):
            continue  # nothing given means nothing done (no crop, ...); flags are off unless given
        if isinstance(value, (list, tuple)):
            value = " ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in value)
        elif isinstance(value, int) and value >= 10_000:
            value = f"{value:,}"
        action.help += f" (default: {value:g})" if isinstance(value, float) else f" (default: {value})"


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """Defaults < --config file < flags given on the command line."""
    values = read_yaml(args.config) if args.config else {}
    names = [f for f in ExperimentConfig.__dataclass_fields__]
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return ExperimentConfig.from_dict(values, source=args.config)


def experiment_command(args: argparse.Namespace) -> int:
    from ..experiment.report import summary_table
    from ..experiment.runner import run

    from ..runtime import parallel

    result = run(config_from_args(args), inputs=[args.config] if args.config else ())
    if parallel.is_main():  # every rank computed the same table; one prints it
        print(summary_table(result.rows))
        print(f"wall time {result.timings['total_s']:.1f} s; codec {result.codec_id}")
        print(f"report: {result.report}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the classic DOT experiment on photographs bundled with scikit-image (offline)",
        description="Cuts 30 tiles of 192x192 from the six colour photographs that ship with scikit-image "
        "(astronaut, coffee, chelsea, rocket and two motorcycle views), saves them to OUT/data/clean, then runs "
        "`dotrestore experiment` on them with noise:sigma=50 and a gaussian-blur:sigma=2 restorer, fitting on "
        "24 tiles (paired) and testing on 6, one per photograph; the report opens with a before/after of one of "
        "them. With --vae auto, uses sd-vae-ft-ema when it is cached, otherwise the bundled TAEF2 (and says "
        "which and why).",
    )
    p.add_argument("--out", default="dotrestore-demo", metavar="DIR", help="output folder (default: dotrestore-demo)")
    p.add_argument("--vae", default="auto", metavar="SPEC",
                   help="auto, taef2, pixel, sd-vae-ft-ema, a local diffusers folder or a TAESD-family .pth folder "
                   "(default: auto)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous demo in --out")
    p.add_argument("--device", type=device_arg, default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from ..experiment.demo import demo
    from ..experiment.report import summary_table

    result = demo(out=args.out, vae=args.vae, overwrite=args.overwrite, device=args.device)
    print(summary_table(result.rows))
    print(f"wall time {result.timings['total_s']:.1f} s; codec {result.codec_id}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"report: {result.report}")
    return 0
