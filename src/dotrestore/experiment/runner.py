"""The α-sweep experiment of Adrai et al. (2023), end to end.

clean x → degradation y → restorer x* → one DOT per variant (``--variants``: whole images,
details, mixtures) fitted on (x* of ``fit_source`` images, x of ``fit_target`` images) →
x̂α = (1 − α)·x̂0 + α·x* for every α → distortion (MSE, PSNR, SSIM) and perception (latent_fd,
patch_fd, the per-image measures of :data:`dotrestore.metrics.PER_IMAGE_METRICS`, optional
LPIPS/FID/KID) over the test images → results.csv/json, the perception–distortion curve,
collages, the operators and report.md.

This module orchestrates only: images stream through :mod:`dotrestore.runtime.pipeline` (workers
read, degrade and restore), measurements are metric objects (:mod:`.evaluation`), fitting is
:mod:`.variants`, and :func:`_write` writes. Under ``torchrun`` every rank evaluates its shard
of the test images; the metric states are summed and only rank 0 writes.

Every metric is computed on 8-bit quantized images, exactly what ``--save-outputs`` writes,
so numbers recomputed from the saved files agree. Outputs are written into a hidden staging
folder beside ``--out`` and moved into place only when everything succeeded.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from .._version import __version__
from ..io import images as image_files
from ..io.images import header_size
from ..runtime import parallel, pipeline
from ..tasks.apply import alpha_dirname
from . import figures, report
from .config import ExperimentConfig
from .evaluation import Evaluation
from .inputs import Plan, degraded_for_metrics, load_clean, make_triple, plan_inputs
from .outputs import ExperimentOutput, check_inputs_kept, check_out
from .variants import Variant, fit_variants, variants_of

logger = logging.getLogger(__name__)

@dataclass
class ExperimentResult:
    """What :func:`run` returns: where the report is and the table rows (also in results.csv)."""

    out: Path
    report: Path
    rows: list[dict]
    timings: dict[str, float]
    codec_id: str
    notes: list[str] = field(default_factory=list)


def _validate_shard(paths: list[Path], limit: int | None) -> None:
    """Decode this rank's share of the files; every rank learns of any failure (collective)."""
    def check():
        mine = parallel.shard(paths)
        if mine:
            image_files.validate_images(mine, limit)

    parallel.run_checked(check)


def run(config: ExperimentConfig, *, codec=None, notes=(), reserved=(), inputs=()) -> ExperimentResult:
    """Run the experiment described by ``config``; returns an :class:`ExperimentResult`.

    ``codec`` (a loaded :class:`~dotrestore.codecs.Codec`) replaces ``config.vae``'s loading;
    ``notes`` are lines added to the report; ``reserved`` names entries of ``--out`` that may
    exist already (the demo keeps its generated ``data/`` there); ``inputs`` are further files
    the run reads (e.g. the --config file), which it must not replace.
    """
    config.validate()
    started = time.perf_counter()
    variants = variants_of(config)
    parallel.init(config.device)
    out = Path(config.out).expanduser().resolve()
    protected = check_inputs_kept(out, config, inputs, reserved)  # before anything slow: a refused --out fails at once
    check_out(out, config.overwrite, reserved)
    output = ExperimentOutput(out, protected, config.overwrite)  # --out as checked
    plan = plan_inputs(config, validate=_validate_shard)  # each rank decodes its share of the files
    main = parallel.is_main()
    if main:
        for note in plan.notes:
            logger.warning("%s", note)
    try:
        parallel.run_checked(output.open if main else lambda: None)  # --out locked before any rank writes
        staging = output.staging
        result = _run(config, variants, plan, staging, codec, list(notes) + plan.notes, started)
        parallel.barrier()
        if main:
            output.commit()
    except BaseException as exc:
        if main:
            output.discard()
        shown = output.renamed(exc)
        if shown is not exc:
            raise shown from None
        raise
    result.out, result.report = out, out / "report.md"
    return result


def _choose_collage_alphas(alphas: list[float]) -> list[float]:
    preferred = [a for a in (0.0, 0.5, -0.5, 1.5) if a in alphas]
    others = [a for a in alphas if a != 1.0 and a not in preferred]
    return (preferred + others)[:3]


def _test_sizes(plan: Plan, config: ExperimentConfig) -> list | None:
    """(H, W) of each test image after crop (headers only), or None when sizes are not known."""
    if config.batch_size == 1 or config.resize is not None:
        return None
    return [(config.crop, config.crop) if config.crop else header_size(item.clean) for item in plan.test]


def _loaded_triple(plan: Plan, config: ExperimentConfig):
    def load(item):  # runs in the pipeline's workers: read, degrade, restore
        t = make_triple(item, plan, config)
        return {"clean": t.clean, "degraded": t.degraded, "restored": t.restored}
    return load


def _run(config: ExperimentConfig, variants: list[Variant], plan: Plan, staging: Path, codec,
         notes: list[str], started: float) -> ExperimentResult:
    timings: dict[str, float] = {}
    main = parallel.is_main()
    t = time.perf_counter()
    roles = {"source": (parallel.shard(plan.source), lambda it: make_triple(it, plan, config).restored,
                        lambda it: it.restored or it.clean),
             "target": (parallel.shard(plan.target), lambda it: load_clean(it, config), lambda it: it.clean)}
    dots = fit_variants(variants, config, codec if codec is not None else config.vae, roles)
    timings["fit_s"] = time.perf_counter() - t
    codec = next(iter(dots.values())).codec_

    availability = metrics.perceptual_availability()
    perceptual = [n for n, why in availability.items() if why is None]
    skipped = {n: why for n, why in availability.items() if why is not None}
    alphas = list(config.alphas)
    keys = [(v.method, a) for v in variants for a in alphas] + [("restored", None)]
    if plan.degradation is not None:
        keys.append(("degraded", None))
    evaluation = Evaluation(keys, codec, perceptual)
    collage_alphas = _choose_collage_alphas(alphas)
    collage_items: list[dict] = []
    sizes: set[tuple[int, int]] = set()
    upsampled = False

    t = time.perf_counter()
    tests = parallel.shard(list(range(len(plan.test))))
    test_sizes = _test_sizes(plan, config)
    bar = config.runtime().progress_bar(len(plan.test), "testing · restoring, transporting, measuring")
    with bar, pipeline.ImageWriter() as writer:
        for loaded in pipeline.batches(
                [plan.test[i] for i in tests], _loaded_triple(plan, config), batch_size=config.batch_size,
                sizes=None if test_sizes is None else [test_sizes[i] for i in tests], workers=config.workers,
                name=lambda it: it.restored or it.clean):
            positions, batch = loaded.positions, loaded.data
            x_star = batch["restored"].to(codec.device)
            z_star = codec.encode(x_star)
            # every variant transports the same x*; whole-image transport reuses E(x*)
            latents: dict = {}  # variants with the same codec input share its encoding
            outputs = {v: dict(dots[v].iter_alphas(x_star, alphas, z=z_star, latents=latents)) for v in variants}
            for j, pos in enumerate(positions):
                index = tests[pos]
                item = plan.test[index]
                x, restored = batch["clean"][j], batch["restored"][j]
                degraded = None if batch["degraded"] is None else batch["degraded"][j]
                sizes.add(tuple(x.shape[-2:]))
                images = {(v.method, a): image_files.quantize(outputs[v][a][j].cpu()) for v in variants for a in alphas}
                images[("restored", None)] = restored
                if degraded is not None:
                    images[("degraded", None)], up = degraded_for_metrics(degraded, tuple(x.shape[-2:]))
                    upsampled |= up
                captions = evaluation.update(index, item.stem, x, images, {("restored", None): z_star[j:j + 1]})
                if config.save_outputs:
                    _save_outputs(writer, staging / "outputs", item.stem, images, degraded, x, variants[0])
                if index < config.collages:
                    collage_items.append({"index": index, "stem": item.stem, "clean": x,
                                          "degraded": images.get(("degraded", None)), "restored": restored,
                                          "dot": {(v.method, a): images[(v.method, a)]
                                                  for v in variants for a in collage_alphas},
                                          "metrics": captions})
            bar.update(len(positions) * parallel.world_size())
    timings["evaluate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rows, per_image, failed = evaluation.rows()
    skipped.update(failed)
    timings["perceptual_s"] = time.perf_counter() - t
    collage_items = sorted((c for part in parallel.gather_objects(collage_items) for c in part),
                           key=lambda c: c["index"])
    sizes = set().union(*parallel.gather_objects(sizes))
    if any(parallel.gather_objects(upsampled)):
        notes.append("the degraded images are smaller than the clean ones; for the `degraded` row they were "
                     "upsampled bicubically to the clean size before measuring")
    result = ExperimentResult(staging, staging / "report.md", rows, timings, codec.id, notes)
    if main:
        _write(staging, config, plan, variants, dots, codec, rows, per_image, skipped, notes, collage_items,
               collage_alphas, sizes, timings, started)
    return result


def _write(staging: Path, config, plan: Plan, variants, dots, codec, rows, per_image, skipped, notes,
           collage_items, collage_alphas, sizes, timings, started) -> None:
    """Everything rank 0 writes: operators, config, curve, collages, results and report."""
    t = time.perf_counter()
    for v in variants:
        dots[v].save(staging / operator_name(v, v == variants[0]))
    resolved_config(config).to_yaml(staging / "config.yaml")
    figures.pd_curve(rows, staging / "pd_curve", panels=metrics.PERCEPTION_METRICS)
    collage_paths = [figures.collage(c, staging / "collages" / f"{c['stem']}.png") for c in collage_items]
    hero_alpha = figures.hero_alpha(collage_alphas)  # the report's first picture: x* | DOT at α = 0 | clean
    hero = (figures.before_after(collage_items[0], staging, "before_after.png", variants[0].method, hero_alpha)
            if collage_items and hero_alpha is not None else None)
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started
    info = {
        "codec": {"id": codec.id, "spec": codec.spec, "latent_channels": codec.latent_channels,
                  "downscale": codec.downscale, "device": str(codec.device), "precision": str(codec.precision)},
        "operator": _operator_info(dots[variants[0]], config),
        "variants": {v.method: {"operator": operator_name(v, v == variants[0]), **_operator_info(dots[v], config)}
                     for v in variants},
        "data": {"clean": config.clean, "test_clean": config.test_clean, "restored": config.restored,
                 "degradation": str(plan.degradation) if plan.degradation is not None else None,
                 "restorer": config.restorer, "restorer_model": getattr(plan.restorer, "describe", lambda: None)(),
                 "split": "paired" if config.paired else "unpaired",
                 "counts": plan.counts,
                 "source_images": [it.stem for it in plan.source], "target_images": [it.stem for it in plan.target],
                 "test_images": [it.stem for it in plan.test],
                 "image_sizes": sorted(f"{h}x{w}" for h, w in sizes)},
        "skipped_metrics": skipped,
        "notes": notes,
        "collages": [p.relative_to(staging).as_posix() for p in collage_paths],
        "collage_alphas": collage_alphas,
        "before_after": hero,
        "versions": versions(),
        "processes": parallel.world_size(),
        "timings": timings,
    }
    report.write_results(staging, rows, per_image, config, info)
    report.write_report(staging, rows, config, info)


def operator_name(variant: Variant, primary: bool) -> str:
    """operator.safetensors for the first variant, operator-<variant>.safetensors for the others."""
    return "operator.safetensors" if primary else f"operator-{variant.name}.safetensors"


def _operator_info(dot, config) -> dict:
    state = dot.state_
    return {"w2_squared": state.w2_squared, "patch_size": config.patch_size, "lowpass_sigma": dot.resolved.lowpass_sigma,
            "split": dot.resolved.split, "mixture": dot.resolved.mixture,
            "dim": dot.dim_, "n_source_patches": state.source.n_patches, "n_target_patches": state.target.n_patches,
            "shrinkage_used": dot.shrinkage_used_, "stochastic": state.noise_cov is not None}


def resolved_config(config: ExperimentConfig) -> ExperimentConfig:
    """The configuration as written to config.yaml: folder paths made absolute (so the file
    reruns from any working directory), ``--vae`` too when it names an existing path."""
    def absolute(value):
        return None if value is None else str(Path(value).expanduser().resolve())

    vae = absolute(config.vae) if Path(config.vae).expanduser().exists() else config.vae
    return dataclasses.replace(config, clean=absolute(config.clean), restored=absolute(config.restored),
                               test_clean=absolute(config.test_clean), out=absolute(config.out), vae=vae)


def _save_outputs(writer, folder: Path, stem: str, images: dict, degraded, clean: torch.Tensor,
                  primary: Variant) -> None:
    """outputs/alpha_<A>/<stem>.png for every α of the first variant, outputs/<method>/alpha_<A>/
    for the others, plus outputs/{clean,restored,degraded}/ (written by the background writer)."""
    for (method, alpha), img in images.items():
        if alpha is None:
            name = method
        elif method == primary.method:
            name = alpha_dirname(alpha)
        else:
            name = f"{method}/{alpha_dirname(alpha)}"
        writer.submit(img, folder / name / f"{stem}.png")
    if degraded is not None and tuple(degraded.shape) != tuple(clean.shape):
        writer.submit(degraded, folder / "degraded_lowres" / f"{stem}.png")
    writer.submit(clean, folder / "clean" / f"{stem}.png")


def versions() -> dict[str, str]:
    import PIL

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "dotrestore": __version__, "platform": platform.platform(),
            "threads": str(torch.get_num_threads())}
