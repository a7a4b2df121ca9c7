"""The α-sweep experiment of Adrai et al. (2023), end to end.

clean x → degradation y → restorer x* → DOT fitted on (x* of ``fit_source`` images, x of
``fit_target`` images) → x̂α = (1 − α)·x̂0 + α·x* for every α → distortion (MSE, PSNR, SSIM)
and perception (latent_fd, patch_fd, optional LPIPS/FID/KID) averaged over the test images →
results.csv/json, the perception–distortion curve, collages, the operator and report.md.

Every metric is computed on 8-bit quantized images, exactly what ``--save-outputs`` writes,
so numbers recomputed from the saved files agree. Outputs are written into a hidden staging
folder beside ``--out`` and moved into place only when everything succeeded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import data, metrics
from .._version import __version__
from ..errors import ImageTooSmallError, InputError
from ..guard import check_not_input, check_not_inside, check_output_folder, check_writable_folder
from ..estimator import DOT
from ..gaussian import Moments
from . import figures, report
from .config import ExperimentConfig
from .inputs import Plan, degraded_for_metrics, load_clean, make_triple, plan_inputs
from .report import alpha_dirname

logger = logging.getLogger(__name__)

#: Everything a run writes at the top of --out; --overwrite removes these (and only these).
OUTPUT_NAMES = ("results.csv", "results.json", "pd_curve.png", "pd_curve.svg", "collages", "outputs",
                "operator.safetensors", "config.yaml", "report.md")
#: latent_fd compares 3×3 latent patches whatever patch size the operator uses (the seed's measure).
LATENT_FD_PATCH = 3
_ENCODE_CHUNK = 4  # images encoded together: bounds activation memory of VAEs on big images


@dataclass
class ExperimentResult:
    """What :func:`run` returns: where the report is and the table rows (also in results.csv)."""

    out: Path
    report: Path
    rows: list[dict]
    timings: dict[str, float]
    codec_id: str
    notes: list[str] = field(default_factory=list)


class _Accumulator:
    """Per-row running sums of MSE/PSNR/SSIM and patch moments for the two FDs."""

    def __init__(self):
        self.sums = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0}
        self.n = 0
        self.latent: Moments | None = None
        self.pixel: Moments | None = None

    def add(self, values: dict, latent: Moments, pixel: Moments) -> None:
        """Add one image's metrics and its own patch moments (merged: exact, order-stable)."""
        for k, v in values.items():
            self.sums[k] += v
        self.n += 1
        self.latent = (Moments(latent.dim) if self.latent is None else self.latent).merge(latent)
        self.pixel = (Moments(pixel.dim) if self.pixel is None else self.pixel).merge(pixel)

    def means(self) -> dict:
        return {k: v / self.n for k, v in self.sums.items()}


def _measure(image: torch.Tensor, clean: torch.Tensor, latent: torch.Tensor, patch_size: int):
    """Per-image distortion values and the image's latent / 7×7-pixel patch moments."""
    values = {"mse": metrics.mse(image, clean), "psnr": metrics.psnr(image, clean), "ssim": metrics.ssim(image, clean)}
    return (values, metrics.patch_moments(latent, patch_size),
            metrics.patch_moments(image, 7, metrics.PATCH_FD_STRIDE))


def run(config: ExperimentConfig, *, codec=None, notes=(), reserved=(), inputs=()) -> ExperimentResult:
    """Run the experiment described by ``config``; returns an :class:`ExperimentResult`.

    ``codec`` (a loaded :class:`~dotrestore.codecs.Codec`) replaces ``config.vae``'s loading;
    ``notes`` are lines added to the report; ``reserved`` names entries of ``--out`` that may
    exist already (the demo keeps its generated ``data/`` there); ``inputs`` are further files
    the run reads (e.g. the --config file), which it must not replace.
    """
    config.validate()
    started = time.perf_counter()
    out = Path(config.out).expanduser().resolve()
    _check_out(out, config.overwrite, reserved)  # before anything slow: a refused --out fails at once
    _check_inputs_kept(out, config, inputs)
    plan = plan_inputs(config)                   # lists and decodes every input image
    for note in plan.notes:
        logger.warning("%s", note)
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)  # left over by an interrupted run of ours
    staging.mkdir(parents=True)
    try:
        result = _run(config, plan, staging, codec, list(notes) + plan.notes, started)
        _commit(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out, result.report = out, out / "report.md"
    return result


def _check_out(out: Path, overwrite: bool, reserved) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out exists and is not a folder")
    if out.is_dir() and not overwrite:
        existing = sorted(p.name for p in out.iterdir() if p.name not in set(reserved))
        if existing:
            shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
            raise InputError(out, f"--out folder is not empty ({shown}); pass --overwrite or choose another --out")


def _check_inputs_kept(out: Path, config: ExperimentConfig, inputs) -> None:
    """The shared output guard: --out (and the staging folder beside it) must be writable, and
    no input may be one of the entries a run replaces in --out (whatever path leads there)."""
    check_output_folder(out)
    check_writable_folder(out.parent, out)  # the staging folder lives beside --out
    given = [Path(p).expanduser() for p in (config.clean, config.test_clean, config.restored, *inputs) if p]
    if Path(config.vae).expanduser().exists():
        given.append(Path(config.vae).expanduser())
    replaced = [out / name for name in OUTPUT_NAMES]
    for path in given:
        files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
        for entry in replaced:
            check_not_inside(entry, [path])  # an input folder inside outputs/, collages/ ...
            check_not_input(entry, files)    # an input file that a run's output would replace


def _commit(staging: Path, out: Path) -> None:
    """Replace the previous run's outputs (only the names a run writes) with the staged ones."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_NAMES:
        old = out / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    for entry in staging.iterdir():
        os.replace(entry, out / entry.name)
    staging.rmdir()


def _choose_collage_alphas(alphas: list[float]) -> list[float]:
    preferred = [a for a in (0.0, 0.5, -0.5, 1.5) if a in alphas]
    others = [a for a in alphas if a != 1.0 and a not in preferred]
    return (preferred + others)[:3]


def _encode(codec, images: list[torch.Tensor]) -> list[torch.Tensor]:
    latents = []
    for i in range(0, len(images), _ENCODE_CHUNK):
        batch = torch.stack(images[i:i + _ENCODE_CHUNK]).to(codec.device)
        latents.extend(z[None].cpu() for z in codec.encode(batch))
    return latents


def _fit(dot: DOT, plan: Plan, config: ExperimentConfig) -> None:
    bar = dict(disable=not config.progress, leave=False, unit="img")
    source = [make_triple(it, plan, config).restored for it in tqdm(plan.source, desc="restoring source", **bar)]
    try:
        dot.partial_fit(source, role="source")
        del source
        target = [load_clean(it, config) for it in tqdm(plan.target, desc="loading target", **bar)]
        dot.partial_fit(target, role="target")
    except ImageTooSmallError as exc:  # name the file the tensor came from
        role = "target" if getattr(dot, "state_", None) and dot.state_.target.moments is not None else "source"
        item = (plan.target if role == "target" else plan.source)[exc.index]
        path = item.clean if role == "target" or item.restored is None else item.restored
        problem = exc.problem.split(": ", 1)[-1]
        raise InputError(path, f"{problem} (after --crop/--resize; {role} statistics)") from None


def _run(config: ExperimentConfig, plan: Plan, staging: Path, codec, notes: list[str], started: float) -> ExperimentResult:
    timings: dict[str, float] = {}
    dot = DOT(codec=codec if codec is not None else config.vae, patch_size=config.patch_size,
              shrinkage=config.shrinkage, lowpass_sigma=config.lowpass_sigma or None, device=config.device,
              progress=config.progress, seed=config.seed, tile=config.tile, tile_overlap=config.tile_overlap,
              dtype=config.dtype, max_memory=config.max_memory)
    t = time.perf_counter()
    _fit(dot, plan, config)
    timings["fit_s"] = time.perf_counter() - t
    codec = dot.codec_
    availability = metrics.perceptual_availability()
    keep_for_perceptual = any(v is None for v in availability.values())

    alphas = list(config.alphas)
    keys = [("dot", a) for a in alphas] + [("restored", None)]
    has_degraded = plan.degradation is not None
    if has_degraded:
        keys.append(("degraded", None))
    acc = {k: _Accumulator() for k in keys}
    clean_latent: Moments | None = None
    clean_pixel: Moments | None = None
    per_image: list[dict] = []
    collage_items: list[dict] = []
    collage_alphas = _choose_collage_alphas(alphas)
    kept: dict = {k: [] for k in keys}
    kept_clean: list[torch.Tensor] = []
    sizes: set[tuple[int, int]] = set()
    upsampled = False

    t = time.perf_counter()
    for k, item in enumerate(tqdm(plan.test, desc="evaluating", unit="img", disable=not config.progress)):
        triple = make_triple(item, plan, config)
        x, x_star = triple.clean, triple.restored
        sizes.add(tuple(x.shape[-2:]))
        z_star = _encode(codec, [x_star])[0]
        outputs = dot.transform_encoded(x_star[None], z_star, alphas)  # reuses E(x*) when it can
        images = {("dot", a): data.quantize(img[0].cpu()) for a, img in outputs.items()}
        images[("restored", None)] = x_star
        if has_degraded:
            images[("degraded", None)], up = degraded_for_metrics(triple.degraded, tuple(x.shape[-2:]))
            upsampled |= up
        # Encode each distinct picture once: α = 1 is x* itself (the same quantized pixels).
        distinct: list[torch.Tensor] = [x, x_star]
        slot = {}
        for key, img in images.items():
            same = next((j for j, d in enumerate(distinct) if d.shape == img.shape and torch.equal(d, img)), None)
            if same is None:
                distinct.append(img)
                same = len(distinct) - 1
            slot[key] = same
        latents = _encode(codec, distinct[:1]) + [z_star] + _encode(codec, distinct[2:])
        clean_latent = metrics.patch_moments(latents[0], LATENT_FD_PATCH, moments=clean_latent)
        clean_pixel = metrics.patch_moments(x, 7, metrics.PATCH_FD_STRIDE, moments=clean_pixel)
        captions, measured = {}, {}
        for key, img in images.items():
            if slot[key] not in measured:  # identical pictures (α = 1 and x*) are measured once
                measured[slot[key]] = _measure(img, x, latents[slot[key]], LATENT_FD_PATCH)
            values = measured[slot[key]][0]
            acc[key].add(*measured[slot[key]])
            per_image.append({"image": item.stem, "method": key[0], "alpha": key[1], **values})
            captions[key] = values
            if keep_for_perceptual:
                kept[key].append((img * 255).round().to(torch.uint8))
        if keep_for_perceptual:
            kept_clean.append((x * 255).round().to(torch.uint8))
        if config.save_outputs:
            _save_outputs(staging / "outputs", item.stem, images, triple, x)
        if k < config.collages:
            collage_items.append({"stem": item.stem, "clean": x, "degraded": images.get(("degraded", None)),
                                  "restored": x_star, "dot": {a: images[("dot", a)] for a in collage_alphas},
                                  "metrics": captions})
    timings["evaluate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = []
    perceptual_reasons: dict[str, str] = {}
    for key in keys:
        row = {"method": key[0], "alpha": key[1], **acc[key].means(),
               "latent_fd": metrics.gaussian_fd(acc[key].latent, clean_latent),
               "patch_fd": metrics.gaussian_fd(acc[key].pixel, clean_pixel),
               "lpips": None, "fid": None, "kid": None, "n_images": acc[key].n}
        if keep_for_perceptual:
            values, reasons = metrics.perceptual_metrics([i.float() / 255 for i in kept[key]],
                                                         [c.float() / 255 for c in kept_clean], device=codec.device)
            row.update(values)
            perceptual_reasons.update(reasons)
        rows.append(row)
    if not keep_for_perceptual:
        perceptual_reasons = {k: v for k, v in availability.items() if v is not None}
    timings["perceptual_s"] = time.perf_counter() - t
    if upsampled:
        notes.append("the degraded images are smaller than the clean ones; for the `degraded` row they were "
                     "upsampled bicubically to the clean size before measuring")

    t = time.perf_counter()
    dot.save(staging / "operator.safetensors")
    resolved_config(config).to_yaml(staging / "config.yaml")
    figures.pd_curve(rows, staging / "pd_curve")
    collage_paths = [figures.collage(c, staging / "collages" / f"{c['stem']}.png") for c in collage_items]
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started
    info = {
        "codec": {"id": codec.id, "spec": codec.spec, "latent_channels": codec.latent_channels,
                  "downscale": codec.downscale, "device": str(codec.device)},
        "operator": {"w2_squared": dot.state_.w2_squared, "patch_size": config.patch_size,
                     "lowpass_sigma": dot.lowpass_sigma,
                     "dim": dot.dim_, "n_source_patches": dot.state_.source.n_patches,
                     "n_target_patches": dot.state_.target.n_patches,
                     "shrinkage_used": dot.shrinkage_used_,
                     "stochastic": dot.state_.noise_cov is not None},
        "data": {"clean": config.clean, "test_clean": config.test_clean, "restored": config.restored,
                 "degradation": str(plan.degradation) if plan.degradation is not None else None,
                 "restorer": config.restorer, "split": "paired" if config.paired else "unpaired",
                 "counts": plan.counts,
                 "source_images": [it.stem for it in plan.source], "target_images": [it.stem for it in plan.target],
                 "test_images": [it.stem for it in plan.test],
                 "image_sizes": sorted(f"{h}x{w}" for h, w in sizes)},
        "skipped_metrics": perceptual_reasons,
        "notes": notes,
        "collages": [p.relative_to(staging).as_posix() for p in collage_paths],
        "collage_alphas": collage_alphas,
        "versions": versions(),
        "timings": timings,
    }
    report.write_results(staging, rows, per_image, config, info)
    report.write_report(staging, rows, config, info)
    return ExperimentResult(staging, staging / "report.md", rows, timings, codec.id, notes)


def resolved_config(config: ExperimentConfig) -> ExperimentConfig:
    """The configuration as written to config.yaml: folder paths made absolute (so the file
    reruns from any working directory), ``--vae`` too when it names an existing path."""
    def absolute(value):
        return None if value is None else str(Path(value).expanduser().resolve())

    vae = absolute(config.vae) if Path(config.vae).expanduser().exists() else config.vae
    return dataclasses.replace(config, clean=absolute(config.clean), restored=absolute(config.restored),
                               test_clean=absolute(config.test_clean), out=absolute(config.out), vae=vae)


def _save_outputs(folder: Path, stem: str, images: dict, triple, clean: torch.Tensor) -> None:
    """outputs/alpha_<A>/<stem>.png for every α, plus outputs/{clean,restored,degraded}/."""
    for (method, alpha), img in images.items():
        name = alpha_dirname(alpha) if method == "dot" else method
        data.save_image(img, folder / name / f"{stem}.png")
    if triple.degraded is not None and tuple(triple.degraded.shape) != tuple(clean.shape):
        data.save_image(triple.degraded, folder / "degraded_lowres" / f"{stem}.png")
    data.save_image(clean, folder / "clean" / f"{stem}.png")


def versions() -> dict[str, str]:
    import PIL

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "dotrestore": __version__, "platform": platform.platform(),
            "threads": str(torch.get_num_threads())}
