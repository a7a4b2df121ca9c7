"""Pictures of an experiment: the perception–distortion curve (matplotlib, Agg) and collages (PIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..io.files import atomic_write

_PANEL = 256      # longest side of a collage panel, pixels
_CAPTION_H = 40   # caption strip below each panel


_TITLES = {"latent_fd": "latent FD (codec patches)", "patch_fd": "patch FD (7×7 RGB patches)",
           "spectrum_distance": "high-frequency spectrum distance", "halo_measure": "halo measure (edge overshoot)"}
_COLOURS = ("tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:cyan")


def is_dot(method: str) -> bool:
    """True for the rows of a DOT variant (``dot-detail``, ``dot-whole``, ``dot-mix4``...)."""
    return method == "dot" or method.startswith("dot-")


def pd_curve(rows: list[dict], stem: Path, panels=("latent_fd", "patch_fd")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``: perception (y) against distortion (x = MSE).

    One panel per perception column in ``panels`` (those with values), against MSE. Each DOT
    variant is one curve, its points joined in α order and labelled with α; x* (α = 1 of the
    restorer) is a red star, y a black cross. An axis is logarithmic when its values span
    more than a decade.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    methods = list(dict.fromkeys(r["method"] for r in rows if is_dot(r["method"])))
    curves = {m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["alpha"]) for m in methods}
    others = {r["method"]: r for r in rows if not is_dot(r["method"])}
    panels = [k for k in panels if all(r.get(k) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), constrained_layout=True, squeeze=False)
    for ax, key in zip(axes[0], panels, strict=False):
        title = _TITLES.get(key, key)
        for colour, (method, dot) in zip(_COLOURS, curves.items(), strict=False):
            xs, ys = [r["mse"] for r in dot], [r[key] for r in dot]
            label = "DOT x̂α" if method == "dot" else f"DOT {method[4:]} x̂α"
            ax.plot(xs, ys, "-o", color=colour, label=label, zorder=2)
            for r in dot:
                ax.annotate(f"{r['alpha']:g}", (r["mse"], r[key]), textcoords="offset points", xytext=(5, 4),
                            fontsize=8)
        if "restored" in others:
            r = others["restored"]
            ax.plot([r["mse"]], [r[key]], "*", color="tab:red", markersize=16, label="restored x*", zorder=3)
        if "degraded" in others:
            r = others["degraded"]
            ax.plot([r["mse"]], [r[key]], "X", color="black", markersize=10, label="degraded y", zorder=3)
        # Log axes when the points span a decade (y's noise is usually far from the rest).
        for values, axis, set_scale in (([r[key] for r in rows], ax.yaxis, ax.set_yscale),
                                        ([r["mse"] for r in rows], ax.xaxis, ax.set_xscale)):
            if all(v is not None and v > 0 for v in values) and max(values) / min(values) > 10:
                set_scale("log")
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                # label only the 2·10^k and 5·10^k minor ticks: all of them overlap
                axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.set_xlabel("distortion: MSE (lower is better)")
        ax.set_ylabel(f"perception: {key} (lower is better)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Perception–distortion trade-off (points labelled by α)")
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    atomic_write(paths[0], lambda handle: fig.savefig(handle, format="png", dpi=120))  # a full disk names the file
    atomic_write(paths[1], lambda handle: fig.savefig(handle, format="svg"))
    plt.close(fig)
    return paths


def _font(size: int = 13):
    """DejaVu Sans from matplotlib's own data (has α); Pillow's default font otherwise."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size), True
    except Exception:
        try:
            return ImageFont.load_default(size=size), False
        except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
            return ImageFont.load_default(), False


def _to_pil(img: torch.Tensor, height: int) -> Image.Image:
    array = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(np.ascontiguousarray(array), "RGB")
    if pil.height != height:
        pil = pil.resize((max(1, round(pil.width * height / pil.height)), height), Image.LANCZOS)
    return pil


def collage(item: dict, path: Path) -> Path:
    """clean | degraded | restored | DOT at a few α, each captioned with MSE / PSNR vs clean.

    ``item`` holds ``stem``, ``clean``, ``degraded`` (or None), ``restored``, ``dot``
    {(method, α): image} (one column per DOT variant and α)
    and ``metrics`` {(method, α): {"mse", "psnr", ...}} computed on the same 8-bit images.
    """
    clean = item["clean"]
    h, w = clean.shape[-2:]
    height = min(_PANEL, h) if h >= w else max(1, round(min(_PANEL, w) * h / w))
    m = item["metrics"]
    panels: list[tuple[torch.Tensor, str, str]] = [(clean, "clean", "reference")]
    if item.get("degraded") is not None:
        d = m[("degraded", None)]
        panels.append((item["degraded"], "degraded y", f"MSE {d['mse']:.4f} | {d['psnr']:.2f} dB"))
    r = m[("restored", None)]
    panels.append((item["restored"], "restored x*", f"MSE {r['mse']:.4f} | {r['psnr']:.2f} dB"))
    for (method, alpha), img in item["dot"].items():
        d = m[(method, alpha)]
        name = "DOT" if method == "dot" else f"DOT {method[4:]}"
        panels.append((img, f"{name} α={alpha:g}", f"MSE {d['mse']:.4f} | {d['psnr']:.2f} dB"))
    pictures = [(_to_pil(img, height), title, caption) for img, title, caption in panels]
    gap = 4
    width = sum(p.width for p, _, _ in pictures) + gap * (len(pictures) - 1)
    canvas = Image.new("RGB", (width, height + _CAPTION_H), "white")
    draw, (font, has_greek) = ImageDraw.Draw(canvas), _font()
    x = 0
    for pic, title, caption in pictures:
        title = title if has_greek else title.replace("α", "alpha")
        canvas.paste(pic, (x, 0))
        draw.text((x + 4, height + 3), title, fill="black", font=font)
        draw.text((x + 4, height + 20), caption, fill=(60, 60, 60), font=font)
        x += pic.width + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: canvas.save(handle, format="PNG"))


__all__ = ["pd_curve", "collage", "is_dot"]
