"""Tables and the Markdown report of an experiment: results.csv, results.json, report.md."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..io.files import atomic_write
from ..ot.split import describe
from .curve import lowest_mse_alpha
from .glossary import bound_notes, definitions

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
    """Plain-text table printed at the end of a run; ΔPSNR is each row's PSNR minus x*'s."""
    ref = next((r for r in rows if r["method"] == "restored"), None)
    head = f"{'method':<32}{'PSNR dB':>9}{'ΔPSNR':>8}{'SSIM':>8}{'MSE':>11}{'latent_fd':>12}{'patch_fd':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        delta = "" if ref is None or r is ref else f"{r['psnr'] - ref['psnr']:+.2f}"
        lines.append(f"{_label(r):<32}{r['psnr']:>9.2f}{delta:>8}{r['ssim']:>8.4f}{r['mse']:>11.3e}"
                     f"{r['latent_fd']:>12.4g}{r['patch_fd']:>11.4g}")
    return "\n".join(lines)


def _with_delta(key: str, value, ref) -> str:
    """A DOT row's cell: its value and, in brackets, how it compares with x*'s value ``ref``.

    PSNR and SSIM: the difference (+ is better); every other column: the ratio (below ×1 is
    better, e.g. ×0.40 = 40 % of x*'s distance).
    """
    if key == "psnr":
        return f"{value:.2f} ({value - ref:+.2f})"
    if key == "ssim":
        return f"{value:.4f} ({value - ref:+.4f})"
    if value is None or ref is None or not ref > 0 or math.isinf(ref):
        return _num(value)
    return f"{_num(value)} (×{value / ref:.2f})"


def _plain_cell(key: str, value) -> str:
    return {"psnr": lambda v: f"{v:.2f}", "ssim": lambda v: f"{v:.4f}"}.get(key, _num)(value)


def shown_columns(rows: list[dict]) -> list[str]:
    """The measures the report's table shows, in order: the fixed ones, then those with values."""
    optional = ("spectrum_distance", "halo_measure", "lpips", "fid", "kid")
    return ["psnr", "ssim", "mse", "latent_fd", "patch_fd"] + [
        m for m in optional if any(r.get(m) is not None for r in rows)]


def markdown_table(rows: list[dict]) -> str:
    """The report's table: x* first (the reference), then every DOT row with x*'s value beside it
    (a difference or ratio in brackets, see :func:`_with_delta`), then y."""
    keys = shown_columns(rows)
    extra = keys[5:]
    perception = [m for m in extra if m in ("spectrum_distance", "halo_measure")]
    header = ["method", "α", "PSNR (dB, data range 1.0)", "SSIM", "MSE", "latent_fd", "patch_fd"] + [
        m if m in perception else m.upper() for m in extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    ref = next((r for r in rows if r["method"] == "restored"), None)
    ordered = ([ref] if ref else []) + [r for r in rows if r["method"].startswith("dot")] + [
        r for r in rows if r["method"] == "degraded"]
    for r in ordered:
        alpha = "" if r["alpha"] is None else f"{r['alpha']:g}"
        if r["method"].startswith("dot"):
            name = _dot_name(r["method"])
            cells = [_with_delta(k, r.get(k), None if ref is None else ref.get(k)) if ref else _plain_cell(k, r.get(k))
                     for k in keys]
        else:
            name = "**restored x\\* (reference)**" if r is ref else "degraded y"
            cells = [_plain_cell(k, r.get(k)) for k in keys]
        lines.append("| " + " | ".join([name, alpha] + cells) + " |")
    return "\n".join(lines)


def _moves(name: str, start: float, end: float) -> str:
    """"latent_fd falls from a to b" (or rises, or stays): the direction read off the numbers."""
    verb = "falls" if end < start else "rises" if end > start else "stays"
    return f"{name} stays at {_num(start)}" if verb == "stays" else f"{name} {verb} from {_num(start)} to {_num(end)}"


def tradeoff_reading(rows: list[dict], method: str) -> dict | None:
    """What the numbers say about the trade-off along ``method``'s α: None without x* or rows.

    ``lowest`` is the α of lowest MSE, where the trade-off starts; ``non_mmse`` is True when
    the numbers show that x* is not the MMSE estimator: α = 0 has a higher PSNR than x*, or
    some α ≠ 1 has a lower MSE than x* (the MMSE estimator has the lowest MSE of all, so on the
    line x̂α its MSE is lowest at α = 1; Freirich et al., NeurIPS 2021).
    """
    ref = next((r for r in rows if r["method"] == "restored"), None)
    dot = {r["alpha"]: r for r in rows if r["method"] == method}
    lowest = lowest_mse_alpha(rows, method)
    if ref is None or lowest is None:
        return None
    zero = dot.get(0.0)
    psnr_beats = zero is not None and zero["psnr"] > ref["psnr"]
    mse_beats = dot[lowest]["mse"] < ref["mse"] and lowest != 1.0
    return {"x_star": ref, "zero": zero, "lowest": lowest, "lowest_row": dot[lowest],
            "psnr_beats": psnr_beats, "mse_beats": mse_beats, "non_mmse": psnr_beats or mse_beats}


def tradeoff_text(rows: list[dict], method: str, restorer: str | None) -> str:
    """One paragraph reading the trade-off off the numbers, in plain words (see :func:`tradeoff_reading`)."""
    reading = tradeoff_reading(rows, method)
    if reading is None:
        return ""
    ref, zero, lowest, low = reading["x_star"], reading["zero"], reading["lowest"], reading["lowest_row"]
    name = _dot_name(method)
    if not reading["non_mmse"]:
        if zero is None:
            return (f"{name}: x* (α = 1) has the lowest MSE of every α, as the theory expects of an MMSE restorer; "
                    "moving α towards 0 raises MSE while perception improves.")
        return (f"{name}: x* (α = 1) has the lowest MSE of every α, as the theory expects of an MMSE restorer. "
                f"From x* to α = 0, MSE rises from {_num(ref['mse'])} to {_num(zero['mse'])} "
                f"(×{zero['mse'] / ref['mse']:.2f}; at most ×2 for an MMSE restorer, Freirich et al. 2021) "
                f"while {_moves('latent_fd', ref['latent_fd'], zero['latent_fd'])}: the perception–distortion "
                "trade-off.")
    facts = []
    if reading["psnr_beats"]:
        facts.append(f"α = 0 has a higher PSNR than x* ({zero['psnr']:.2f} vs {ref['psnr']:.2f} dB)")
    if reading["mse_beats"]:
        facts.append(f"the MSE is lowest at α = {lowest:g} ({_num(low['mse'])}), not at x* (α = 1, {_num(ref['mse'])})")
    who = f"This restorer (`{restorer}`)" if restorer else "This restorer"
    text = (f"**Why DOT beats x* on distortion here.** For {name}, " + " and ".join(facts) + ". "
            "That happens when the restorer is not the MMSE estimator (the one with the lowest possible MSE): "
            "the theory's trade-off — MSE rising from x* to α = 0 by at most 2× while perception improves — "
            f"is for an MMSE restorer. {who} is far from one: it loses detail that a better estimator keeps, "
            "so moving towards the clean images' statistics also corrects part of its error. ")
    if zero is not None and lowest != 0.0:
        where = "x* itself (α = 1)" if lowest == 1 else f"α = {lowest:g}"
        text += (f"The trade-off itself starts at the lowest-MSE point, {where}, ringed on the curve: from there to "
                 f"α = 0, {_moves('MSE', low['mse'], zero['mse'])} while "
                 f"{_moves('latent_fd', low['latent_fd'], zero['latent_fd'])}.")
    return text.strip()


def _shrinkage(used) -> str:
    if isinstance(used, dict):  # one description per role
        return " / ".join(f"{role} {value}" for role, value in used.items())
    return str(used)


def _lowpass_words(op: dict) -> str:
    """The introduction's sentence on what is transported; the low-pass named as everywhere else."""
    sigma = op.get("lowpass_sigma")
    if not sigma:
        return " Whole images are transported, as in the paper (`--lowpass-sigma 0`)."
    kind = op.get("split", "gaussian")
    low = (f"an edge-preserving guided filter (radius ⌈2σ⌉, σ = {sigma:g} px)" if kind.startswith("guided")
           else f"a Gaussian low-pass of σ = {sigma:g} px")
    return (f" Only details are transported: the codec sees x − L(x) + ½, with L {low}, and x*'s own L(x*) "
            "is added back to the decoded x̂0 (`--lowpass-sigma 0` transports whole images, as in the paper).")


def _hero_section(hero: dict | None, data: dict, by: dict) -> list[str]:
    """The first picture: x* and DOT at α = 0 side by side, enlarged, with what is shown in words."""
    if not hero:
        return []
    x_star, dot = by[("restored", None)], by.get((hero["method"], hero["alpha"]))
    restorer = (f"restorer `{data['restorer']}` on `{data['degradation']}`" if data.get("degradation")
                else "your restorer")
    region = ("the whole image" if hero["side"] >= max(hero["height"], hero["width"]) else
              f"its most detailed {hero['side']}×{hero['side']} px region (of {hero['height']}×{hero['width']})")
    zoom = f", enlarged {hero['scale']}× with nearest-neighbour pixels" if hero["scale"] > 1 else ""
    lines = [f"![before and after: restored x* | {_dot_name(hero['method'])} at α = {hero['alpha']:g} | clean]"
             f"({hero['path']})", "",
             f"**Before → after.** Test image `{hero['stem']}`, {region}{zoom}. Left: the restored input x* "
             f"({restorer}). Middle: {_dot_name(hero['method'])} at α = {hero['alpha']:g}, x* moved to the clean "
             "images' latent patch statistics. Right: the clean photograph, for reference (never seen by DOT at "
             "test time). The captions give each whole image's PSNR and SSIM against the clean one."]
    if dot is not None:
        lines[-1] += (f" Over all {dot['n_images']} test images: x* {x_star['psnr']:.2f} dB, latent_fd "
                      f"{_num(x_star['latent_fd'])}; DOT {dot['psnr']:.2f} dB, latent_fd {_num(dot['latent_fd'])}.")
    return lines + [""]


def _results_section(rows: list[dict], config, counts: dict) -> list[str]:
    return ["## Results", "",
            f"Averages over the {counts['test']} test images (PSNR, SSIM and MSE: mean of per-image values on "
            "8-bit quantized images in [0, 1], i.e. exactly the saved PNGs; latent_fd and patch_fd: one "
            "Gaussian Fréchet distance (W2²) between the set of outputs and the set of clean test images; "
            "lower is better for every column except PSNR and SSIM). The restored input x* comes first; "
            "beside each DOT value, in brackets, is how it compares with x*'s: the difference for PSNR and "
            "SSIM (+ is better), the ratio for every other column (below ×1 is better).", "",
            markdown_table(rows), "", "What each column is:", "",
            *definitions(shown_columns(rows), config.patch_size), ""]


def _variants_words(variants: dict) -> list[str]:
    """Which DOT variants ran, and (with one) how to add the paper's whole-image transport beside it."""
    if len(variants) > 1:
        return ["Variants compared (each its own rows, curve and collage columns): " + "; ".join(
            f"`{m}` ({describe(v.get('lowpass_sigma'), v.get('split', 'gaussian'))}, operator `{v['operator']}`)"
            for m, v in variants.items()), ""]
    if not variants or not next(iter(variants.values())).get("lowpass_sigma"):
        return []
    return ["Only details are transported here. To see the paper's whole-image transport beside it, run "
            "`dotrestore experiment --config config.yaml --variants detail,whole --out NEW_FOLDER` in this folder "
            "(each variant gets its own rows, curve and collage columns).", ""]


def _curve_section(reading: dict | None, method: str) -> list[str]:
    start = ""
    if reading is not None:
        where = "x* itself" if reading["lowest"] == 1 else f"α = {reading['lowest']:g}"
        start = (f" A ring marks each curve's lowest-MSE α ({_dot_name(method)}: {where}): the theory's trade-off "
                 "starts there, and from it towards α = 0 MSE rises while perception improves.")
    return ["## Perception–distortion curve", "", "![perception-distortion curve](pd_curve.png)", "",
            "How to read it: each coloured point is DOT at one α (labelled), distortion (MSE, lower is "
            "better) on the horizontal axis, perception (lower is better) on the vertical one. The restorer's "
            "output x* (α = 1) is the red star labelled x*." + start + " For an MMSE restorer the ring is on x* "
            "and MSE at α = 0 is at most 2× x*'s (Freirich et al., NeurIPS 2021). α < 0 overshoots towards "
            "sharper, noisier images; α > 1 extrapolates past x*. The frame is x* and the DOT points; the "
            "degraded input y is a black cross when it falls inside, otherwise an arrow at the edge points "
            "towards it, with its numbers. The large panel is the first perception column; the small ones "
            "beside it are the others, against the same MSE. Vector version: [pd_curve.svg](pd_curve.svg).", ""]


def _setup_section(config, info: dict) -> list[str]:
    codec, op, data, t = info["codec"], info["operator"], info["data"], info["timings"]
    counts = data["counts"]
    kind = "stochastic (singular Σs)" if op["stochastic"] else "deterministic"
    tests = f"; test images: `{data['test_clean']}` ({counts['test_clean_images']} files)" if data["test_clean"] else ""
    lines = ["## Set-up", "",
             f"- Codec: `{codec['id']}` (spec `{codec['spec']}`, {codec['latent_channels']} latent channels, "
             f"downscale {codec['downscale']}, device {codec['device']}, precision {codec.get('precision', 'float32')})",
             f"- Operator: patch {op['patch_size']}×{op['patch_size']} (D = {op['dim']}), "
             f"{describe(op.get('lowpass_sigma'), op.get('split', 'gaussian'))}, "
             f"{op['n_source_patches']} source / {op['n_target_patches']} target patches, shrinkage "
             f"{_shrinkage(op['shrinkage_used'])}, {kind} map, "
             f"W2²(source, target) = {_num(op['w2_squared'])}; saved as `operator.safetensors` "
             "(reuse it with `dotrestore apply`).",
             f"- Clean images: `{data['clean']}` ({counts['clean_images']} files){tests}",
             (f"- Restored images: `{data['restored']}` ({counts['restored_images']} files, paired by stem)"
              if data["restored"] else f"- Degradation `{data['degradation']}`, restorer `{data['restorer']}`"
              + (f" (model: {data['restorer_model']}, read by spandrel)" if data.get("restorer_model") else "")),
             f"- Split ({data['split']}): {counts['source']} source (restored) images, {counts['target']} target "
             f"(clean) images, {counts['test']} test images",
             f"- Image sizes (H×W after crop/resize): {', '.join(data['image_sizes'])}"
             + (f"; crop {config.crop}" if config.crop else "")
             + (f"; resize {config.resize}" if config.resize else ""),
             f"- α: {', '.join(f'{a:g}' for a in config.alphas)}; seed {config.seed}",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
             f"- Wall time: {t['total_s']:.1f} s (fit {t['fit_s']:.1f} s, evaluation {t['evaluate_s']:.1f} s)",
             "- Resolved configuration: [config.yaml](config.yaml) (rerun with "
             "`dotrestore experiment --config config.yaml`); all numbers: [results.csv](results.csv), "
             "[results.json](results.json)", ""]
    if config.save_outputs:
        lines += ["Outputs: `outputs/alpha_<A>/<stem>.png` per α, plus `outputs/restored`, `outputs/degraded`, "
                  "`outputs/clean` (the exact 8-bit images measured).", ""]
    return lines


def write_report(folder: Path, rows: list[dict], config, info: dict) -> Path:
    """report.md: before/after, table, curve, collages, and everything needed to reproduce and read them.

    Every picture linked here is written before this is called; links are relative to
    report.md, so the folder can be moved or zipped as a whole. The first picture is the
    before/after of ``info["before_after"]`` when there is one.
    """
    op, data = info["operator"], info["data"]
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
              "perception-optimal end, α < 0 and α > 1 extrapolate." + _lowpass_words(op), ""]
    lines += _hero_section(info.get("before_after"), data, by)
    if dot0 is not None:
        ratio = dot0["latent_fd"] / xstar["latent_fd"] if xstar["latent_fd"] > 0 else float("nan")
        lines += [f"**{_dot_name(primary)}: at α = 0, latent_fd is {_num(dot0['latent_fd'])} vs "
                  f"{_num(xstar['latent_fd'])} for x* ({ratio:.2f}×), at a PSNR of {dot0['psnr']:.2f} dB vs "
                  f"{xstar['psnr']:.2f} dB.**", ""]
    reading = tradeoff_reading(rows, primary)
    text = tradeoff_text(rows, primary, data.get("restorer") if not data.get("restored") else None)
    if text:
        lines += [text, ""]
    variants = info.get("variants") or {}
    for note in bound_notes(rows, variants, data):
        lines += [note, ""]
    lines += _variants_words(variants)
    lines += _results_section(rows, config, data["counts"])
    skipped = info["skipped_metrics"]
    if skipped:
        lines += ["Skipped metrics:", ""] + [
            f"- {why}" if why.upper().startswith(name.upper()) else f"- {name.upper()}: {why}"
            for name, why in skipped.items()] + [""]
    lines += _curve_section(reading, primary)
    if info["collages"]:
        alphas = ", ".join(f"{a:g}" for a in info["collage_alphas"])
        lines += ["## Examples", "",
                  f"Top row: clean | degraded | restored x* | DOT at α = {alphas}, whole images (shrunk to at "
                  "most 256 px), each captioned with its MSE and PSNR against the clean image. Bottom row: the same "
                  "most detailed window of each (chosen on the clean image) at 1:1, or enlarged by a whole factor "
                  "with nearest-neighbour pixels when the image is small: clean | x* | DOT at α = 0 and 0.5, "
                  "where texture can be judged.", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in info["collages"]] + [""]
    lines += _setup_section(config, info)
    return atomic_write(folder / "report.md", "\n".join(lines))
