"""``dotrestore experiment`` and ``dotrestore demo``: argument parsing only; the work is in dotrestore.experiment."""

from __future__ import annotations

import argparse

from .. import settings
from ..runtime import parallel
from . import options

#: the experiment's options, in --help order (every one a setting of the table)
EXPERIMENT_OPTIONS = ("clean", "restored", "degrade", "restorer", "test_clean", "codec", "fit_source", "fit_target",
                      "alphas", "seed", "crop", "resize", "save_outputs", "out", "overwrite", "patch_size",
                      "lowpass_sigma", "split", "shrinkage", "collages", "variants")


def register(subparsers) -> None:
    """Add the ``experiment`` and ``demo`` subcommands."""
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
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with any of these options (e.g. a previous "
                   "run's config.yaml)")
    # No parsed defaults: only flags actually given override the configuration file and the table.
    for name in EXPERIMENT_OPTIONS:
        if name == "alphas":
            options.add_alpha_list(p, name, "trade-off values (default: "
                                   f"{' '.join(f'{a:g}' for a in settings.default('alphas'))})")
        elif name == "paired":
            continue
        elif name in ("degrade", "restorer"):
            options.add(p, name, table_default=False, help=spec_help(name))
        else:
            options.add(p, name, table_default=False)
        if name == "fit_target":
            pairing = p.add_mutually_exclusive_group()
            pairing.add_argument("--paired", dest="paired", action="store_true", default=None,
                                 help="source and target statistics from the same images' restored and clean versions")
            pairing.add_argument("--unpaired", dest="paired", action="store_false", default=None,
                                 help="source and target statistics from disjoint images (default)")
    options.add_runtime(p, table_default=False)
    p.set_defaults(func=experiment_command)


def spec_help(name: str) -> str:
    """--degrade / --restorer help made from the registries: every name, its parameters and defaults."""
    from ..experiment.degradations import DEGRADATIONS
    from ..restorers import RESTORERS

    if name == "degrade":
        return ("degradation of the clean images, composed with +: " + "; ".join(_specs(DEGRADATIONS))
                + " (e.g. noise:sigma=50, or down:scale=4+noise:sigma=5)")
    return ("restorer x* = R(y): " + "; ".join(_specs(RESTORERS)) + "; or your own module:function or "
            "file.py:function on (B,3,H,W) tensors in [0,1]. bm3d needs pip install \"dotrestore[bm3d]\"")


def _specs(registry) -> list[str]:
    return [name + (":" + ",".join(p.describe() for p in cls.params) if cls.params else "")
            for name, cls in registry.items()]


def config_from_args(args: argparse.Namespace):
    """Defaults < --config file < flags given on the command line."""
    from ..experiment.config import ExperimentConfig, read_yaml

    values = read_yaml(args.config) if args.config else {}
    given = set()
    for name in ExperimentConfig.field_names():
        value = getattr(args, "codec" if name == "vae" else name, None)
        if value is not None:
            values[name] = value
            given.add(name)
    return ExperimentConfig.from_dict(values, source=args.config, flags=frozenset(given))


def experiment_command(args: argparse.Namespace) -> int:
    from ..experiment.report import summary_table
    from ..experiment.runner import run

    result = run(config_from_args(args), inputs=[args.config] if args.config else ())
    if parallel.is_main():  # every rank computed the same table; one prints it
        print(summary_table(result.rows))
        print(f"wall time {result.timings['total_s']:.1f} s; codec {result.codec_id}")
        print(f"report: {result.report}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the classic DOT experiment (Adrai et al., NeurIPS 2023) on photographs bundled with scikit-image "
        "(offline)",
        description="Cuts 30 tiles of 192x192 from the six colour photographs that ship with scikit-image "
        "(astronaut, coffee, chelsea, rocket and two motorcycle views), saves them to OUT/data/clean, then runs "
        "`dotrestore experiment` on them with noise:sigma=50 and a gaussian-blur:sigma=2 restorer, fitting on "
        "24 tiles (paired) and testing on 6, one per photograph; the report opens with a before/after of one of "
        "them. With --vae auto, uses sd-vae-ft-ema when it is cached, otherwise the bundled TAEF2 (and says "
        "which and why).",
    )
    p.add_argument("--out", default="dotrestore-demo", metavar="DIR",
                   help="output folder (default: dotrestore-demo); when it already holds files, the demo writes "
                   "DIR-2 (DIR-3, ...) instead and says so, leaving DIR as it was")
    options.add(p, "codec")
    p.add_argument("--overwrite", action="store_true", help="replace a previous demo in --out instead")
    options.add(p, "variants", help=f"DOT configurations, comma-separated (default: "
                f"{','.join(settings.DEMO_VARIANTS)}, our detail transport alone; detail,whole adds the paper's "
                "whole-image transport beside it, about twice the evaluation time)")
    options.add(p, "device")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    p.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from ..experiment.demo import demo
    from ..experiment.report import summary_table

    result = demo(out=args.out, vae=args.codec, overwrite=args.overwrite, device=args.device, progress=args.progress,
                  variants=args.variants)
    print(summary_table(result.rows))
    print(f"wall time {result.timings['total_s']:.1f} s; codec {result.codec_id}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"report: {result.report}")
    return 0
