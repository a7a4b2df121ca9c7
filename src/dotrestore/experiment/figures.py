"""Pictures of an experiment: collages and the before/after (PIL); the curve is in :mod:`.curve`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..io.files import atomic_write
from .curve import is_dot, lowest_mse_alpha, pd_curve

_PANEL = 256      # longest side of a collage panel, pixels
_CAPTION_H = 40   # caption strip below each panel


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


def _strip(pictures: list[tuple[Image.Image, str, str]], font, has_greek: bool, *, small=None, gap: int = 4,
           caption_h: int = _CAPTION_H, margin: int = 4, rows: tuple[int, int] = (3, 20)) -> Image.Image:
    """Pictures side by side, each with a title and a caption (in ``small``, default ``font``) below
    it, ``rows`` pixels under the pictures, ``margin`` from each picture's left edge."""
    height = max(p.height for p, _, _ in pictures)
    width = sum(p.width for p, _, _ in pictures) + gap * (len(pictures) - 1)
    canvas = Image.new("RGB", (width, height + caption_h), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for pic, title, caption in pictures:
        canvas.paste(pic, (x, 0))
        draw.text((x + margin, height + rows[0]), title if has_greek else title.replace("α", "alpha"), fill="black",
                  font=font)
        draw.text((x + margin, height + rows[1]), caption, fill=(60, 60, 60), font=small or font)
        x += pic.width + gap
    return canvas


#: 1:1 crops of a collage: the most detailed window of at most CROP_SIDE px, enlarged by an
#: integer factor (nearest neighbour: every pixel an exact block) up to CROP_SIDE when smaller
CROP_SIDE = 192
#: the α of the crops row, when present
CROP_ALPHAS = (0.0, 0.5)


def _crops(item: dict) -> list[tuple[Image.Image, str, str]]:
    """clean | x* | DOT at α = 0 and 0.5, the same most detailed window of each, pixel-exact."""
    clean = item["clean"]
    h, w = clean.shape[-2:]
    side = min(CROP_SIDE, max(8, min(h, w) // 2))
    top, left = detail_window(clean, side)
    scale = max(1, CROP_SIDE // side)
    zoom = "crop 1:1" if scale == 1 else f"crop ×{scale}"
    where = f"{side} px at y {top}, x {left}"
    panels = [(clean, f"clean, {zoom}", where), (item["restored"], f"restored x*, {zoom}", where)]
    panels += [(img, f"{_dot_label(method)} α={alpha:g}, {zoom}", where)
               for (method, alpha), img in item["dot"].items() if alpha in CROP_ALPHAS]
    out = []
    for img, title, caption in panels:
        region = _to_pil(img[:, top:top + side, left:left + side], side)
        out.append((region.resize((side * scale, side * scale), Image.NEAREST), title, caption))
    return out


def _dot_label(method: str) -> str:
    return "DOT" if method == "dot" else f"DOT {method[4:]}"


def collage(item: dict, path: Path) -> Path:
    """clean | degraded | restored | DOT at a few α, each captioned with MSE / PSNR vs clean; below,
    pixel-exact crops of the most detailed region: clean | x* | DOT at α = 0 and 0.5 (:func:`_crops`).

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
        panels.append((img, f"{_dot_label(method)} α={alpha:g}", f"MSE {d['mse']:.4f} | {d['psnr']:.2f} dB"))
    font, has_greek = _font()
    rows = [_strip([(_to_pil(img, height), title, caption) for img, title, caption in panels], font, has_greek),
            _strip(_crops(item), font, has_greek)]
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + 8), "white")
    canvas.paste(rows[0], (0, 0))
    canvas.paste(rows[1], (0, rows[0].height + 8))
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
    label = _dot_label(method)
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
    canvas = _strip(crops, font, has_greek, small=small, gap=gap, caption_h=caption_h, margin=6, rows=(4, 30))
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / name, lambda handle: canvas.save(handle, format="PNG"))  # a full disk names the file
    return {"path": name, "stem": item["stem"], "method": method, "alpha": alpha, "top": top, "left": left,
            "side": side, "height": h, "width": w, "scale": scale}


__all__ = ["pd_curve", "collage", "is_dot", "before_after", "hero_alpha", "lowest_mse_alpha"]
