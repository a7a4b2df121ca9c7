"""Tables and the Markdown report of an experiment: results.csv, results.json, report.md."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..ot.split import describe
from ..io.files import atomic_write

COLUMNS = ("method", "alpha", "mse", "psnr", "ssim", "latent_fd", "patch_fd", "lpips", "fid", "kid", "n_images")


def columns(rows: list[dict]) -> tuple[str, ...]:
    """results.csv's columns: the fixed ones, with any further per-image measures before n_images."""
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in COLUMNS]
    return COLUMNS[:-1] + tuple(extra) + COLUMNS[-1:]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if math.isinf(value) else f"{value:.10g}"
    return str(value)


def _json_safe(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_results(folder: Path, rows: list[dict], per_image: list[dict], config, info: dict) -> None:
    """results.csv (one row per method and α; empty alpha for x* and y; empty skipped metrics)
    and results.json (the same rows, per-image values, resolved config, skipped metrics with
    reasons, codec, data, timings and versions)."""
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    names = columns(rows)
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in names])
    atomic_write(folder / "results.csv", table.getvalue())
    payload = {"results": rows, "per_image": per_image, "config": config.to_dict(), **info}
    text = json.dumps(_json_safe(payload), indent=2)
    atomic_write(folder / "results.json", text + "\n")


def _dot_name(method: str) -> str:
    return "DOT" if method == "dot" else f"DOT {method[4:]}"


def _label(row: dict) -> str:
    if row["method"].startswith("dot"):
        return f"{_dot_name(row['method'])} α = {row['alpha']:g}"
    return {"restored": "restored x* (restorer output)", "degraded": "degraded y (input)"}[row["method"]]


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def summary_table(rows: list[dict]) -> str:
    """Plain-text table printed at the end of a run."""
    head = f"{'method':<32}{'PSNR dB':>9}{'SSIM':>8}{'MSE':>11}{'latent_fd':>12}{'patch_fd':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{_label(r):<32}{r['psnr']:>9.2f}{r['ssim']:>8.4f}{r['mse']:>11.3e}"
                     f"{r['latent_fd']:>12.4g}{r['patch_fd']:>11.4g}")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    perception = [m for m in ("spectrum_distance", "halo_measure") if any(r.get(m) is not None for r in rows)]
    extra = perception + [m for m in ("lpips", "fid", "kid") if any(r.get(m) is not None for r in rows)]
    header = ["method", "α", "PSNR (dB, data range 1.0)", "SSIM", "MSE", "latent_fd", "patch_fd"] + [
        m if m in perception else m.upper() for m in extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for r in rows:
        alpha = "" if r["alpha"] is None else f"{r['alpha']:g}"
        name = _dot_name(r["method"]) if r["method"].startswith("dot") else {
            "restored": "restored x*", "degraded": "degraded y"}[r["method"]]
        cells = [name, alpha, f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", _num(r["mse"]), _num(r["latent_fd"]),
                 _num(r["patch_fd"])] + [_num(r.get(m)) for m in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shrinkage(used) -> str:
    if isinstance(used, dict):  # one description per role
        return " / ".join(f"{role} {value}" for role, value in used.items())
    return str(used)


def write_report(folder: Path, rows: list[dict], config, info: dict) -> Path:
    """report.md: table, curve, collages, and everything needed to reproduce and read them.

    Every picture linked here is written before this is called; links are relative to
    report.md, so the folder can be moved or zipped as a whole.
    """
    codec, op, data, t = info["codec"], info["operator"], info["data"], info["timings"]
    counts = data["counts"]
    by = {(r["method"], r["alpha"]): r for r in rows}
    primary = next(r["method"] for r in rows if r["method"].startswith("dot"))
    dot0, xstar = by.get((primary, 0.0)), by[("restored", None)]
    lines = ["# DOT experiment report", ""]
    if info["notes"]:
        lines += ["> **Notes**", ">"] + [f"> - {n}" for n in info["notes"]] + [""]
    lines += ["Deep Optimal Transport (Adrai et al., NeurIPS 2023) applied to a restorer's outputs x*: "
              "x̂α = (1 − α)·x̂0 + α·x*, where x̂0 moves every latent "
              f"{config.patch_size}×{config.patch_size} patch of x* by the Gaussian optimal-transport map "
              "from restored to clean statistics. α = 1 is the restorer itself, α = 0 the "
              "perception-optimal end, α < 0 and α > 1 extrapolate."
              + (f" Only details are transported: the codec sees x − L(x) + ½, with L a Gaussian low-pass of "
                 f"σ = {op['lowpass_sigma']:g} px, and x*'s own L(x*) is added back to the decoded x̂0 "
                 "(`--lowpass-sigma 0` transports whole images, as in the paper)." if op.get("lowpass_sigma")
                 else " Whole images are transported, as in the paper (`--lowpass-sigma 0`)."), ""]
    if dot0 is not None:
        ratio = dot0["latent_fd"] / xstar["latent_fd"] if xstar["latent_fd"] > 0 else float("nan")
        lines += [f"**{_dot_name(primary)}: at α = 0, latent_fd is {_num(dot0['latent_fd'])} vs {_num(xstar['latent_fd'])} for x* "
                  f"({ratio:.2f}×), at a PSNR of {dot0['psnr']:.2f} dB vs {xstar['psnr']:.2f} dB.**", ""]
    variants = info.get("variants") or {}
    if len(variants) > 1:
        lines += ["Variants compared (each its own rows, curve and collage columns): " + "; ".join(
            f"`{m}` ({describe(v.get('lowpass_sigma'), v.get('split', 'gaussian'))}, operator `{v['operator']}`)" for m, v in variants.items()),
            ""]
    lines += ["## Results", "",
              f"Averages over the {counts['test']} test images (PSNR, SSIM and MSE: mean of per-image values on "
              "8-bit quantized images in [0, 1], i.e. exactly the saved PNGs; latent_fd and patch_fd: one "
              "Gaussian Fréchet distance (W2²) between the set of outputs and the set of clean test images; "
              "lower is better for every column except PSNR and SSIM).", "",
              markdown_table(rows), "",
              "- **latent_fd**: W2² between Gaussians fitted to the codec-latent "
              f"{config.patch_size}×{config.patch_size} patches of the outputs and of the clean test images "
              "(the seed paper's perceptual measure, in the same latent space DOT transports).",
              "- **patch_fd**: the same on 7×7 RGB pixel patches (stride 4), independent of the codec.", ""]
    skipped = info["skipped_metrics"]
    if skipped:
        lines += ["Skipped metrics:", ""] + [f"- {why}" if why.upper().startswith(name.upper()) else f"- {name.upper()}: {why}"
                                       for name, why in skipped.items()] + [""]
    lines += ["## Perception–distortion curve", "", "![perception-distortion curve](pd_curve.png)", "",
              "How to read it: each blue point is DOT at one α (labelled), distortion (MSE, lower is "
              "better) on the horizontal axis, perception (latent_fd and patch_fd, lower is better) on the "
              "vertical one. The restorer's output x* (α = 1, red star) sits at low distortion and high "
              "latent_fd; moving to α = 0 trades a bounded increase of MSE (at most 2× x*'s in theory, "
              "for an MMSE restorer) for a much lower latent_fd. α < 0 overshoots towards sharper, noisier "
              "images; α > 1 extrapolates past x*. The degraded input y (black cross) is shown for scale. "
              "Vector version: [pd_curve.svg](pd_curve.svg).", ""]
    if info["collages"]:
        alphas = ", ".join(f"{a:g}" for a in info["collage_alphas"])
        lines += ["## Examples", "",
                  f"Panels: clean | degraded | restored x* | DOT at α = {alphas}; each captioned with its "
                  "MSE and PSNR against the clean image.", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in info["collages"]] + [""]
    lines += ["## Set-up", "",
              f"- Codec: `{codec['id']}` (spec `{codec['spec']}`, {codec['latent_channels']} latent channels, "
              f"downscale {codec['downscale']}, device {codec['device']})",
              f"- Operator: patch {op['patch_size']}×{op['patch_size']} (D = {op['dim']}), "
              f"{describe(op.get('lowpass_sigma'), op.get('split', 'gaussian'))}, "
              f"{op['n_source_patches']} source / {op['n_target_patches']} target patches, shrinkage "
              f"{_shrinkage(op['shrinkage_used'])}, {'stochastic (singular Σs)' if op['stochastic'] else 'deterministic'} map, "
              f"W2²(source, target) = {_num(op['w2_squared'])}; saved as `operator.safetensors` "
              "(reuse it with `dotrestore apply`).",
              f"- Clean images: `{data['clean']}` ({counts['clean_images']} files)"
              + (f"; test images: `{data['test_clean']}` ({counts['test_clean_images']} files)" if data["test_clean"] else ""),
              (f"- Restored images: `{data['restored']}` ({counts['restored_images']} files, paired by stem)"
               if data["restored"] else f"- Degradation `{data['degradation']}`, restorer `{data['restorer']}`"),
              f"- Split ({data['split']}): {counts['source']} source (restored) images, {counts['target']} target "
              f"(clean) images, {counts['test']} test images",
              f"- Image sizes (H×W after crop/resize): {', '.join(data['image_sizes'])}"
              + (f"; crop {config.crop}" if config.crop else "") + (f"; resize {config.resize}" if config.resize else ""),
              f"- α: {', '.join(f'{a:g}' for a in config.alphas)}; seed {config.seed}",
              "- Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
              f"- Wall time: {t['total_s']:.1f} s (fit {t['fit_s']:.1f} s, evaluation {t['evaluate_s']:.1f} s)",
              "- Resolved configuration: [config.yaml](config.yaml) (rerun with "
              "`dotrestore experiment --config config.yaml`); all numbers: [results.csv](results.csv), "
              "[results.json](results.json)", ""]
    if config.save_outputs:
        lines += ["Outputs: `outputs/alpha_<A>/<stem>.png` per α, plus `outputs/restored`, `outputs/degraded`, "
                  "`outputs/clean` (the exact 8-bit images measured).", ""]
    path = folder / "report.md"
    return atomic_write(path, "\n".join(lines))
