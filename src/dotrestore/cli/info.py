"""``dotrestore info``: what an operator file holds, in words (``--json`` for scripts)."""

from __future__ import annotations

import json

from .. import settings
from ..codecs.precision import Precision, resolve_precision
from ..errors import printable
from ..operator_file import read_operator_file
from ..ot.split import describe


def register(sub) -> None:
    p = sub.add_parser("info", help="describe an operator file (codec, patches, split, counts, W2^2, settings)",
                       description="Check an operator file and describe it: the codec it lives in, the patch size "
                       "and split, how many images and patches each side was fitted on, the latent W2^2 between the "
                       "two Gaussians, the settings and the dotrestore version that wrote it. A broken file is "
                       "reported as broken (exit 2).")
    p.add_argument("operator", metavar="OP.safetensors")
    p.add_argument("--json", action="store_true", help="print the file's metadata as JSON (for scripts)")
    p.set_defaults(func=run)


def run(args) -> int:
    meta, tensors = read_operator_file(args.operator)
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    print(printable_lines(summary(args.operator, meta, tensors)))
    return 0


def bundled_note(meta: dict, tensors: dict) -> str:
    """" (the bundled ...)" when the target statistics are the clean photographs shipped with dotrestore."""
    from ..errors import InputError
    from ..targets import read_bundled_target

    try:
        bundled = read_bundled_target()
    except InputError:  # a damaged installation must not stop info from describing the operator
        return ""
    mean = tensors.get("mean_target")
    if (meta.get("codec_id") != bundled.codec_id or mean is None or meta.get("n_target_patches") != int(bundled.moments.count)
            or not bool((mean.double() - bundled.moments.mean.cpu()).abs().max() < 1e-5)):
        return ""
    return f" (bundled: {bundled.n_images} clean photographs, {bundled.path.name})"

def printable_lines(text: str) -> str:
    """Each line escaped for the terminal (the file's name and metadata are the user's bytes)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def summary(path, meta: dict, tensors: dict) -> str:
    """A readable description of an operator file's metadata."""
    p, sigma = meta["patch_size"], meta.get("lowpass_sigma") or 0.0
    shrunk = meta.get("shrinkage_used") or {}
    mixture = meta.get("mixture", 1)
    lines = [
        f"{path}: dotrestore operator (format {meta['format_version']}, written by dotrestore "
        f"{meta.get('package_version', 'unknown')})",
        f"  codec        {meta['codec_id']} (spec {meta['codec_spec']!r}"
        + (f", {meta['latent_channels']} latent channels at 1/{meta.get('downscale', '?')}"
           if "latent_channels" in meta else "")
        + ")",
        f"  patches      {p}x{p}, D = {meta['dim']}, {meta.get('weighting', 'uniform')} overlap weighting",
        f"  transports   {describe(sigma, meta.get('split', 'gaussian'))}",
        "  map          " + ("zero-shot (source statistics from each image)" if meta.get("zero_shot") else
                              f"mixture of {mixture} Gaussians per side (MW2)" if mixture > 1 else
                              "stochastic (singular source covariance, eq. 19)" if meta.get("stochastic_map") else
                              "deterministic (eq. 17)"),
    ]
    for role in ("source", "target"):
        if f"cov_{role}" in tensors:
            used = shrunk.get(role) if isinstance(shrunk, dict) else shrunk
            lines.append(f"  {role:<12} {meta.get(f'n_{role}_images', 0)} images, {meta.get(f'n_{role}_patches', 0)} "
                         f"patches, shrinkage {used or 'none'}" + (bundled_note(meta, tensors) if role == "target" else ""))
    if meta.get("w2_squared") is not None:
        lines.append(f"  W2^2         {meta['w2_squared']:.6g} (latent Gaussians, source vs target)")
    precision = (Precision("float32", "the pixel codec has no network") if meta["codec_id"] == "pixel"
                 else resolve_precision(settings.default("dtype"), None))
    lines.append(f"  precision    here the codec runs in {precision} (statistics float64, operator float32)")
    lines.append(f"  settings     eps {meta.get('eps', 'n/a')}, shrinkage {meta.get('shrinkage')}, "
                 f"stochastic {meta.get('stochastic', 'auto')}, seed {meta.get('seed', 0)}")
    return "\n".join(lines)
