"""The explorer's event handlers: named functions over an :class:`~.session.Explorer`.

Each handler takes the explorer first (the app binds it) and the values of its Gradio inputs.
:func:`guarded` is the one error policy of the page, the command line's
(:func:`dotrestore.errors.user_message`): a user's mistake (corrupt upload, non-operator, codec
mismatch, oversized image, bad folder) becomes a visible message and the handler returns
normally; a bug becomes an "internal error" message, its traceback goes to the server's log,
and the server keeps answering. The API endpoint ``/transform`` raises ``gr.Error`` instead,
which ``gradio_client`` reports to the caller.
"""

from __future__ import annotations

import functools
import logging
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from .. import settings
from ..errors import DotRestoreError, user_message
from ..io.images import quantize
from ..metrics import mse
from . import brush
from .cache import Entry
from .jobs import batch_apply, collect_images, fit_operator, parse_alphas
from .paint import PaintedMap, Painting, parse_strokes
from .session import Explorer

logger = logging.getLogger(__name__)


def _message(exc: Exception) -> str:
    message = user_message(exc)
    if message is None:
        logger.error("internal error in the explorer", exc_info=exc)
        message = f"internal error: {type(exc).__name__}: {exc} (please report this; the log has the traceback)"
    return message


def guarded(fallback):
    """Decorator: run a handler; on an error return ``fallback(message)`` (the message is shown)."""
    def decorate(handler):
        @functools.wraps(handler)
        def run(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 (the one place the page turns errors into messages)
                return fallback(_message(exc))
        return run
    return decorate


def error_text(message: str) -> str:
    return f"**Error:** {message}"


def warned(skips: int, tail: tuple = ()):
    """A fallback: a toast, ``gr.skip()`` for the first ``skips`` outputs, the message in the status
    line, then the ``tail`` values (e.g. None to empty an upload box)."""
    def fallback(message: str):
        gr.Warning(message)
        return (*[gr.skip()] * skips, error_text(message), *tail)
    return fallback


def to_array(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → H×W×3 uint8 with the rounding ``save_image`` uses."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def mse_figure(entry: Entry, curve, alpha: float, current_mse: float):
    """MSE against α of this image, with the current α and x* (α = 1) marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 2.6), dpi=100, layout="tight")
    ax = fig.add_subplot()
    ax.plot([a for a, _ in curve], [m for _, m in curve], color="tab:blue", lw=1.5, label="MSE(x̂α, reference)")
    ax.plot([1.0], [dict(curve).get(1.0, float("nan"))], "*", color="tab:red", markersize=12, label="x* (α = 1)")
    ax.plot([alpha], [current_mse], "o", color="tab:green", label=f"α = {alpha:g}")
    ax.set_xlabel("α")
    ax.set_ylabel("MSE")
    ax.set_title(f"{entry.stem}: distortion along α", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------- explore
def current(ex: Explorer, state: dict | None) -> Entry:
    """The entry of the picked image (transported again from its file when evicted)."""
    if not state:
        raise DotRestoreError("pick an image from the gallery or upload one first")
    entry = ex.cache.get(state["key"])
    if entry is None:
        entry = ex.prepare(state["path"], state["stem"])
        if state.get("reference"):
            ex.attach_reference(entry, state["reference"])
        state["key"] = entry.key
    return entry


def painted(state, alpha) -> PaintedMap | None:
    """The α map the brush painted on the picked image, at the slider's α elsewhere; None before any paint."""
    painting = (state or {}).get("painting")
    return None if painting is None else PaintedMap.make(painting, alpha)


def render(ex: Explorer, state, entry: Entry, alpha, latent) -> torch.Tensor:
    """x̂α of the picked image, with the painted α map when there is one."""
    pm = painted(state, alpha)
    return ex.render(entry, alpha, "latent" if latent else "pixel", None if pm is None else pm.alpha)


def show(ex: Explorer, state, alpha, latent):
    """(before/after pair, x̂α, status line) of the picked image at α."""
    entry = current(ex, state)
    image = render(ex, state, entry, alpha, latent)
    where = f" against reference {entry.reference_name}" if entry.reference is not None else ""
    note = " with the painted α map" if (state or {}).get("painting") is not None else ""
    status = f"{entry.stem}: α = {alpha:g}{note} ({'latent' if latent else 'pixel'} interpolation){where}"
    return (to_array(entry.x_star), to_array(image)), to_array(image), status


@guarded(lambda message: ("", None))
def measures(ex: Explorer, state, alpha, latent):
    """PSNR/SSIM of x̂α beside x*'s own, and the MSE-against-α curve, when there is a reference."""
    entry = current(ex, state)
    if entry.reference is None:
        return "No clean reference: pick one from `--reference` (same file stem) or upload it for PSNR/SSIM.", None
    image = render(ex, state, entry, alpha, latent)
    at, own = ex.scores(entry, image), ex.scores(entry, entry.x_star)
    text = (f"**α = {alpha:g}:** PSNR {at['psnr']:.2f} dB · SSIM {at['ssim']:.4f} &nbsp;|&nbsp; "
            f"**x\\* (α = 1):** PSNR {own['psnr']:.2f} dB · SSIM {own['ssim']:.4f} (vs {entry.reference_name})")
    return text, mse_figure(entry, ex.mse_curve(entry), alpha, mse(quantize(image), entry.reference))


def _pick(ex: Explorer, path, stem, alpha, latent, progress):
    progress(0.1, desc="encoding, transporting and decoding x* (once per image)")
    entry = ex.prepare(path, stem)
    reference = ex.reference_for(entry.stem)
    if reference is not None and entry.reference is None:
        ex.attach_reference(entry, reference)
    # "pick": this pick of the image, which the brush's canvas and strokes belong to
    state = {"key": entry.key, "path": str(path), "stem": entry.stem, "pick": uuid.uuid4().hex,
             "reference": str(reference) if reference is not None else None}
    return (state, *show(ex, state, alpha, latent))


@guarded(warned(3))
def on_gallery(ex: Explorer, evt: gr.SelectData, state, alpha, latent, progress=gr.Progress()):
    path = ex.gallery()[evt.index]
    return _pick(ex, path, path.stem, alpha, latent, progress)


@guarded(warned(3, tail=(None,)))
def on_upload(ex: Explorer, file, state, alpha, latent, progress=gr.Progress()):
    # the upload box is emptied every time, so the next file can be dropped on it at once
    if file is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), None
    return (*_pick(ex, file, Path(file).stem, alpha, latent, progress), None)


@guarded(warned(3))
def on_reference(ex: Explorer, file, state, alpha, latent):
    ex.attach_reference(current(ex, state), file)
    state = {**state, "reference": file}
    return (state, *show(ex, state, alpha, latent))


@guarded(lambda message: (gr.skip(), gr.skip(), error_text(message)))
def on_alpha(ex: Explorer, state, alpha, latent, progress=gr.Progress()):
    if latent:
        progress(0.5, desc="decoding the blended latents")
    return show(ex, state, alpha, latent)


@guarded(lambda message: (None, None, error_text(message)))
def on_download(ex: Explorer, state, alpha, latent):
    entry = current(ex, state)
    pm = painted(state, alpha)
    if pm is None:
        path = ex.save_png(ex.render(entry, alpha, "latent" if latent else "pixel"), entry.stem, alpha, entry.source)
        return str(path), None, f"{path.name}: x̂α at α = {alpha:g}, the PNG `dotrestore apply OP IMG --alpha {alpha:g}` writes"
    path = ex.save_png(render(ex, state, entry, alpha, latent), f"{entry.stem}_painted", alpha, entry.source)
    map_path = ex.save_alpha_map(pm.levels, entry.stem)
    options = pm.command_options() + (" --interpolation latent" if latent else "")
    return str(path), str(map_path), (f"{path.name} and its α map {map_path.name}: the PNG `dotrestore apply OP IMG "
                                      f"--alpha-map {map_path.name}{options}` writes")


@guarded(lambda message: (gr.skip(), gr.skip(), gr.skip(), error_text(message)))
def on_strokes(ex: Explorer, data, state, alpha, latent):
    """The page's strokes (all of them, after a stroke, an undo or a clear) become the picked image's α map.

    Strokes painted on an image that is no longer the picked one (a pick while they were on their
    way) are left alone.
    """
    entry = current(ex, state)
    if (data or {}).get("pick") != state.get("pick"):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    size = tuple(entry.x_star.shape[-2:])
    painting = Painting.from_strokes(parse_strokes(data, size), size, previous=state.get("painting"))
    state = {**state, "painting": painting}
    return (state, *show(ex, state, alpha, latent))


def paint_canvas(ex: Explorer, state, shown_pick):
    """(the brush's value, the pick it shows) when an image was picked: x* to paint on, no strokes.

    Nothing changes while the pick is the one on the canvas (a refused upload keeps both).
    """
    if not state or state.get("pick") == shown_pick:
        return gr.skip(), gr.skip()
    return brush.canvas_value(current(ex, state).x_star, state["pick"]), state["pick"]


@guarded(warned(1, tail=(None,)))
def on_operator(ex: Explorer, file):
    if file is None:
        return gr.skip(), gr.skip(), None
    before = ex.operator_path.name if ex.dot is not None and ex.operator_path is not None else None
    text = ex.load_operator(file)
    return text, (f"Replaced the operator {before}. {text}" if before else text), None


def transform_api(ex: Explorer, file, alpha, alpha_map=None):
    """Image file + α (or a greyscale α map file) → lossless PNG of x̂α (pixel interpolation), as
    `dotrestore apply --alpha A` (or `--alpha-map MAP`) writes it."""
    if file is None:
        raise gr.Error("no image given", print_exception=False)
    try:  # α as the caller sent it ("abc", None, [0.5]): a SettingError naming α, never an internal error
        alpha = settings.check("alpha", alpha, "α", text=isinstance(alpha, str))
        return str(ex.transform_file(file, alpha, alpha_map=alpha_map))
    except Exception as exc:  # noqa: BLE001 (reported to the API caller)
        # the caller gets the line; the console no traceback per refused upload (a bug's is logged by _message)
        raise gr.Error(_message(exc), print_exception=False) from None


# ---------------------------------------------------------------------- fit / batch
@guarded(lambda message: (None, error_text(message), gr.skip()))
def on_fit(ex: Explorer, src_files, src_dirs, tgt_files, tgt_dirs, codec, patch_size, pairing, sigma,
           progress=gr.Progress()):
    source = collect_images(src_files, src_dirs, "restored (source) images", ex.max_pixels)
    target = collect_images(tgt_files, tgt_dirs, "clean (target) images", ex.max_pixels)
    path = fit_operator(ex, source, target, codec=(codec or "auto").strip(), patch_size=patch_size,
                        paired=pairing == "paired", lowpass_sigma=sigma or 0,
                        progress=lambda f, m: progress(f, desc=m))
    dot = ex.dot
    text = (f"Fitted on {len(source)} restored and {len(target)} clean images "
            f"({dot.n_source_patches_} + {dot.n_target_patches_} patches, D = {dot.dim_}); "
            f"latent W2² {dot.w2_squared_:.4g}. It is now the explorer's operator.")
    return str(path), text, ex.describe_operator()


@guarded(lambda message: (None, error_text(message)))
def on_batch(ex: Explorer, folder, alphas_text, out_dir, as_zip, progress=gr.Progress()):
    images = collect_images(None, folder, "batch images", ex.max_pixels)
    result, n = batch_apply(ex, images, parse_alphas(alphas_text), out_dir=(out_dir or "").strip() or None,
                            as_zip=bool(as_zip), progress=lambda f, m: progress(f, desc=m))
    return (str(result) if as_zip else None), f"Wrote {n} image{'' if n == 1 else 's'} to {result}."
