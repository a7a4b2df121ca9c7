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


def lowest_mse_alpha(rows: list[dict], method: str) -> float | None:
    """The α of ``method``'s row with the lowest MSE: where the perception–distortion trade-off starts.

    For an MMSE restorer that is α = 1 (x* itself); from it towards α = 0 MSE rises while
    perception improves. None when the method has no rows.
    """
    dot = [r for r in rows if r["method"] == method and r.get("mse") is not None]
    return min(dot, key=lambda r: (r["mse"], -r["alpha"]))["alpha"] if dot else None


def _mark_points(ax, curves: dict, others: dict, key: str) -> None:
    """x* as a labelled red star, y as a black cross, and each curve's lowest-MSE α as a ring.

    Every mark carries an SVG id (``gid``: ``x-star-<panel>``, ``lowest-mse-<method>-<panel>``), so
    the vector file says what is marked where.
    """
    if "restored" in others:
        r = others["restored"]
        ax.plot([r["mse"]], [r[key]], "*", color="tab:red", markersize=16, label="restored x* (the restorer, α = 1)",
                zorder=4, gid=f"x-star-{key}")
        ax.annotate("x*", (r["mse"], r[key]), textcoords="offset points", xytext=(-14, -14), color="tab:red",
                    fontsize=11, fontweight="bold", gid=f"x-star-label-{key}")
    if "degraded" in others:
        r = others["degraded"]
        ax.plot([r["mse"]], [r[key]], "X", color="black", markersize=10, label="degraded y", zorder=3,
                gid=f"degraded-y-{key}")
    for colour, (method, dot) in zip(_COLOURS, curves.items(), strict=False):
        alpha = lowest_mse_alpha(dot, method)
        if alpha is None:
            continue
        r = next(r for r in dot if r["alpha"] == alpha)
        ax.plot([r["mse"]], [r[key]], "o", markersize=15, markerfacecolor="none", markeredgecolor=colour,
                markeredgewidth=2, zorder=3, gid=f"lowest-mse-{method}-{key}",
                label=f"lowest MSE ({'x*' if alpha == 1 else f'α = {alpha:g}'}): trade-off starts")
        ax.annotate("lowest MSE", (r["mse"], r[key]), textcoords="offset points", xytext=(8, -12), color=colour,
                    fontsize=8, gid=f"lowest-mse-label-{method}-{key}")


#: At most this many α are written beside a curve: more cannot be read, and each label costs text layout.
MAX_ALPHA_LABELS = 12


def labelled(points: list[dict], most: int = MAX_ALPHA_LABELS) -> list[dict]:
    """The points of a curve (sorted by α) whose α is written: all of a short curve; of a long one
    the ends, α = 0 and α = 1, and evenly spaced others, ``most`` in all."""
    if len(points) <= most:
        return points
    keep = {round(i * (len(points) - 1) / (most - 1)) for i in range(most - 2)} | {len(points) - 1}
    keep |= {i for i, r in enumerate(points) if r["alpha"] in (0.0, 1.0)}
    return [points[i] for i in sorted(keep)]


def pd_curve(rows: list[dict], stem: Path, panels=("latent_fd", "patch_fd")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``: perception (y) against distortion (x = MSE).

    One panel per perception column in ``panels`` (those with values), against MSE. Each DOT
    variant is one curve, its points joined in α order and labelled with α; x* (α = 1 of the
    restorer) is a labelled red star, y a black cross, and a ring marks each curve's lowest-MSE
    α, where the theory's trade-off starts (:func:`lowest_mse_alpha`). An axis is logarithmic
    when its values span more than a decade.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    methods = list(dict.fromkeys(r["method"] for r in rows if is_dot(r["method"])))
    curves = {m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["alpha"]) for m in methods}
    others = {r["method"]: r for r in rows if not is_dot(r["method"])}
    panels = [k for k in panels if all(r.get(k) is not None for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.8), constrained_layout=True, squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        title = _TITLES.get(key, key)
        for colour, (method, dot) in zip(_COLOURS, curves.items(), strict=False):
            xs, ys = [r["mse"] for r in dot], [r[key] for r in dot]
            label = "DOT x̂α" if method == "dot" else f"DOT {method[4:]} x̂α"
            ax.plot(xs, ys, "-o", color=colour, label=label, zorder=2, gid=f"curve-{method}-{key}")
            for r in labelled(dot):
                ax.annotate(f"{r['alpha']:g}", (r["mse"], r[key]), textcoords="offset points", xytext=(5, 4),
                            fontsize=8)
        _mark_points(ax, curves, others, key)
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
        ax.legend(fontsize=7)
    fig.suptitle("Perception–distortion trade-off (points labelled by α; from the ring towards α = 0, "
                 "MSE rises while perception improves)")
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


HERO_PANEL = 384    # least side of a before/after panel, pixels: small images are enlarged
HERO_CROP = 256     # largest side of the region shown: bigger images are cropped, not shrunk


def hero_alpha(alphas) -> float | None:
    """The α the before/after shows: 0 (perfect perception) when present, else the one nearest to 0."""
    alphas = [a for a in alphas if a != 1.0]
    return min(alphas, key=lambda a: (abs(a), a)) if alphas else None


def detail_window(clean: torch.Tensor, side: int) -> tuple[int, int]:
    """(top, left) of the side×side window where the clean image has the most detail.

    Detail = mean |Laplacian| of the grey image, searched on a grid of stride side/4: the
    region is chosen from the reference alone, never from the outputs being compared.
    """
    h, w = clean.shape[-2:]
    if side >= h and side >= w:
        return 0, 0
    grey = clean.float().mean(0, keepdim=True)[None]
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    energy = torch.nn.functional.conv2d(grey, kernel, padding=1).abs()[0, 0]
    step = max(1, side // 4)
    tops = sorted({*range(0, h - side + 1, step), h - side})
    lefts = sorted({*range(0, w - side + 1, step), w - side})
    return max(((t, x) for t in tops for x in lefts),
               key=lambda tl: (float(energy[tl[0]:tl[0] + side, tl[1]:tl[1] + side].mean()), -tl[0], -tl[1]))


def before_after(item: dict, folder: Path, name: str, method: str, alpha: float) -> dict:
    """The report's first picture, ``folder/name``: restored x* | DOT at ``alpha`` | clean, large.

    The same region of each (the most detailed :data:`HERO_CROP`-pixel window of the clean
    image, :func:`detail_window`) is enlarged by an integer factor with nearest-neighbour
    sampling, so every panel is at least :data:`HERO_PANEL` pixels and each source pixel is a
    visible block: nothing is smoothed by the display. ``item`` is a collage item (see
    :func:`collage`); captions give PSNR and SSIM of the whole image against the clean one.
    Returns what the report says about it: ``path`` (``name``), ``stem``, ``method``, ``alpha``,
    the region (``top``, ``left``, ``side``, of an ``height``×``width`` image) and ``scale``.
    """
    clean = item["clean"]
    h, w = clean.shape[-2:]
    side = min(HERO_CROP, h, w)
    top, left = detail_window(clean, side)
    scale = max(1, -(-HERO_PANEL // side))
    m = item["metrics"]
    x_star, dot = m[("restored", None)], m[(method, alpha)]
    label = "DOT" if method == "dot" else f"DOT {method[4:]}"
    panels = [(item["restored"], "restored input x* (the restorer's output)",
               f"PSNR {x_star['psnr']:.2f} dB | SSIM {x_star['ssim']:.3f}"),
              (item["dot"][(method, alpha)], f"{label} at α = {alpha:g}",
               f"PSNR {dot['psnr']:.2f} dB | SSIM {dot['ssim']:.3f}"),
              (clean, "clean (reference)", "what x* and DOT are measured against")]
    font, has_greek = _font(18)
    small, _ = _font(15)
    caption_h, gap = 56, 8
    crops = []
    for img, title, caption in panels:
        region = img[:, top:top + side, left:left + side]
        pil = _to_pil(region, region.shape[-2])
        crops.append((pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST), title, caption))
    width = sum(p.width for p, _, _ in crops) + gap * (len(crops) - 1)
    height = max(p.height for p, _, _ in crops)
    canvas = Image.new("RGB", (width, height + caption_h), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for pic, title, caption in crops:
        canvas.paste(pic, (x, 0))
        draw.text((x + 6, height + 4), title if has_greek else title.replace("α", "alpha"), fill="black", font=font)
        draw.text((x + 6, height + 30), caption, fill=(60, 60, 60), font=small)
        x += pic.width + gap
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / name, lambda handle: canvas.save(handle, format="PNG"))  # a full disk names the file
    return {"path": name, "stem": item["stem"], "method": method, "alpha": alpha, "top": top, "left": left,
            "side": side, "height": h, "width": w, "scale": scale}


__all__ = ["pd_curve", "collage", "is_dot", "before_after", "hero_alpha", "lowest_mse_alpha"]
