"""The Gradio layout of ``dotrestore serve``: tabs Explore / Fit / Batch wired to an :class:`Explorer`.

Every handler turns a user's mistake (corrupt upload, non-operator, codec mismatch, oversized
image, bad folder) into a visible message in the tab's status line and returns normally, so
the server keeps answering. The API endpoint ``/transform`` (image file + α → lossless PNG)
raises instead, which ``gradio_client`` reports as an error to the caller.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from ..errors import DotRestoreError
from .cache import Entry
from .jobs import batch_apply, collect_images, fit_operator, parse_alphas
from .session import ALPHA_MAX, ALPHA_MIN, ALPHA_STEP, Explorer

logger = logging.getLogger(__name__)

#: what a handler reports as the user's problem (anything else is a bug and propagates)
USER_ERRORS = (DotRestoreError, ValueError, OSError)
CODECS = ["auto", "taef2", "sd-vae-ft-ema", "sd-vae-ft-mse", "pixel"]


def to_array(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → H×W×3 uint8 with the rounding ``save_image`` uses."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def error_text(exc: BaseException) -> str:
    return f"**Error:** {exc}"


def mse_figure(entry: Entry, curve, alpha: float, current_mse: float):
    """MSE against α of this image, with the current α marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 2.6), dpi=100, layout="tight")
    ax = fig.add_subplot()
    ax.plot([a for a, _ in curve], [m for _, m in curve], color="tab:blue", lw=1.5, label="MSE(x̂α, reference)")
    ax.plot([alpha], [current_mse], "o", color="tab:red", label=f"α = {alpha:g}")
    ax.set_xlabel("α")
    ax.set_ylabel("MSE")
    ax.set_title(f"{entry.stem}: distortion along α", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def build_app(explorer: Explorer) -> gr.Blocks:
    """The Blocks app; ``launch`` it (see :func:`dotrestore.serve.serve`)."""
    ex = explorer
    gallery_paths = ex.gallery()

    # -------------------------------------------------------------- explore handlers
    def current(state: dict | None) -> Entry:
        if not state:
            raise DotRestoreError("pick an image from the gallery or upload one first")
        entry = ex.cache.get(state["key"])
        if entry is None:  # evicted or operator changed: transport again from the file
            entry = ex.prepare(state["path"], state["stem"])
            if state.get("reference"):
                ex.attach_reference(entry, state["reference"])
            state["key"] = entry.key
        return entry

    def show(state, alpha, latent):
        entry = current(state)
        image = ex.render(entry, alpha, "latent" if latent else "pixel")
        where = f" against reference {entry.reference_name}" if entry.reference is not None else ""
        status = f"{entry.stem}: α = {alpha:g} ({'latent' if latent else 'pixel'} interpolation){where}"
        return (to_array(entry.x_star), to_array(image)), to_array(image), status

    def measures(state, alpha, latent):
        try:
            entry = current(state)
        except USER_ERRORS:
            return "", None
        if entry.reference is None:
            return "No clean reference: pick one from `--reference` (same file stem) or upload it for PSNR/SSIM.", None
        image = ex.render(entry, alpha, "latent" if latent else "pixel")
        scores = ex.scores(entry, image)
        text = f"**PSNR** {scores['psnr']:.2f} dB · **SSIM** {scores['ssim']:.4f} (x̂α at α = {alpha:g} vs {entry.reference_name})"
        from .. import data, metrics

        current_mse = metrics.mse(data.quantize(image), entry.reference)
        return text, mse_figure(entry, ex.mse_curve(entry), alpha, current_mse)

    def pick(path, stem, alpha, latent, progress):
        progress(0.1, desc="encoding, transporting and decoding x* (once per image)")
        entry = ex.prepare(path, stem)
        reference = ex.reference_for(entry.stem)
        if reference is not None and entry.reference is None:
            ex.attach_reference(entry, reference)
        state = {"key": entry.key, "path": str(path), "stem": entry.stem,
                 "reference": str(reference) if reference is not None else None}
        return (state, *show(state, alpha, latent))

    def on_gallery(evt: gr.SelectData, state, alpha, latent, progress=gr.Progress()):
        try:
            path = gallery_paths[evt.index]
            return pick(path, path.stem, alpha, latent, progress)
        except USER_ERRORS as exc:
            gr.Warning(str(exc))
            return state, gr.skip(), gr.skip(), error_text(exc)

    def on_upload(file, state, alpha, latent, progress=gr.Progress()):
        # the upload box is emptied every time, so the next file can be dropped on it at once
        if file is None:
            return state, gr.skip(), gr.skip(), gr.skip(), None
        try:
            return (*pick(file, Path(file).stem, alpha, latent, progress), None)
        except USER_ERRORS as exc:
            gr.Warning(str(exc))
            return state, gr.skip(), gr.skip(), error_text(exc), None

    def on_reference(file, state, alpha, latent):
        try:
            entry = current(state)
            ex.attach_reference(entry, file)
            state = {**state, "reference": file}
            return (state, *show(state, alpha, latent))
        except USER_ERRORS as exc:
            gr.Warning(str(exc))
            return state, gr.skip(), gr.skip(), error_text(exc)

    def on_alpha(state, alpha, latent, progress=gr.Progress()):
        try:
            if latent:
                progress(0.5, desc="decoding the blended latents")
            return show(state, alpha, latent)
        except USER_ERRORS as exc:
            return gr.skip(), gr.skip(), error_text(exc)

    def on_download(state, alpha, latent):
        try:
            entry = current(state)
            path = ex.save_png(ex.render(entry, alpha, "latent" if latent else "pixel"), entry.stem, alpha)
            return str(path), f"{path.name}: x̂α at α = {alpha:g}, the PNG `dotrestore apply OP IMG --alpha {alpha:g}` writes"
        except USER_ERRORS as exc:
            return None, error_text(exc)

    def on_operator(file):
        if file is None:
            return gr.skip(), gr.skip(), None
        try:
            text = ex.load_operator(file)
            return text, text, None
        except USER_ERRORS as exc:
            gr.Warning(str(exc))
            return gr.skip(), error_text(exc), None

    def transform_api(file, alpha):
        """Image file + α → lossless PNG of x̂α (pixel interpolation), as `dotrestore apply` writes it."""
        if file is None:
            raise gr.Error("no image given")
        try:
            return str(ex.transform_file(file, float(alpha)))
        except USER_ERRORS as exc:
            raise gr.Error(str(exc)) from None

    # -------------------------------------------------------------- fit / batch handlers
    def on_fit(src_files, src_dirs, tgt_files, tgt_dirs, codec, patch_size, pairing, sigma, progress=gr.Progress()):
        try:
            source = collect_images(src_files, src_dirs, "restored (source) images", ex.max_pixels)
            target = collect_images(tgt_files, tgt_dirs, "clean (target) images", ex.max_pixels)
            path = fit_operator(ex, source, target, codec=(codec or "auto").strip(), patch_size=int(patch_size),
                                paired=pairing == "paired", lowpass_sigma=float(sigma or 0),
                                progress=lambda f, m: progress(f, desc=m))
            dot = ex.dot
            text = (f"Fitted on {len(source)} restored and {len(target)} clean images "
                    f"({dot.n_source_patches_} + {dot.n_target_patches_} patches, D = {dot.dim_}); "
                    f"latent W2² {dot.w2_squared_:.4g}. It is now the explorer's operator.")
            return str(path), text, ex.describe_operator()
        except USER_ERRORS as exc:
            return None, error_text(exc), gr.skip()

    def on_batch(folder, alphas_text, out_dir, as_zip, progress=gr.Progress()):
        try:
            images = collect_images(None, folder, "batch images", ex.max_pixels)
            result, n = batch_apply(ex, images, parse_alphas(alphas_text), out_dir=(out_dir or "").strip() or None,
                                    as_zip=bool(as_zip), progress=lambda f, m: progress(f, desc=m))
            return (str(result) if as_zip else None), f"Wrote {n} images to {result}."
        except USER_ERRORS as exc:
            return None, error_text(exc)

    # -------------------------------------------------------------- layout
    # Gradio's cache of the files handlers return: files older than an hour are dropped, hourly
    with gr.Blocks(title="dotrestore α explorer", delete_cache=(3600, 3600)) as app:
        gr.Markdown("# dotrestore · choose α by eye\n"
                    "x̂α = (1 − α)·x̂0 + α·x*: α = 1 is your restorer's output x*, α = 0 the perceptual "
                    "optimum x̂0 = T(x*), α < 0 and α > 1 extrapolate.")
        operator_info = gr.Markdown(ex.describe_operator(), elem_id="operator-info")
        state = gr.State(None)
        with gr.Tabs(selected="explore" if ex.dot is not None else "fit") as tabs:
            with gr.Tab("Explore", id="explore"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=280):
                        gallery = gr.Gallery([(str(p), p.stem) for p in gallery_paths], label="Images (--images)",
                                             columns=3, height=260, allow_preview=False, visible=bool(gallery_paths),
                                             elem_id="gallery")
                        upload = gr.File(label="Upload an image (x*: your restorer's output)", type="filepath",
                                         elem_id="upload")
                        reference = gr.File(label="Clean reference (optional)", type="filepath", elem_id="reference")
                        operator_file = gr.File(label="Operator (.safetensors)", type="filepath",
                                                elem_id="operator-upload")
                    with gr.Column(scale=2):
                        alpha = gr.Slider(ALPHA_MIN, ALPHA_MAX, value=0.0, step=ALPHA_STEP, label="α",
                                          info="0 = perceptual, 1 = the input; type a value in the box",
                                          elem_id="alpha")
                        latent = gr.Checkbox(False, label="Latent interpolation (decodes every α: slower)",
                                             elem_id="latent")
                        status = gr.Markdown("Pick an image." if gallery_paths else "Upload an image.",
                                             elem_id="status")
                        compare = gr.ImageSlider(label="before (x*) | after (x̂α)", format="png", max_height=640,
                                                 buttons=["fullscreen"], elem_id="compare")
                        output = gr.Image(label="x̂α at full resolution (fullscreen for 1:1 pixels)", format="png",
                                          interactive=False, buttons=["fullscreen"], elem_id="output")
                        scores = gr.Markdown(elem_id="scores")
                        curve = gr.Plot(label="MSE against α", elem_id="curve")
                        with gr.Row():
                            download = gr.Button("Download at this α", elem_id="download")
                            download_file = gr.File(label="PNG at this α", interactive=False, elem_id="download-file")
            with gr.Tab("Fit", id="fit"):
                gr.Markdown("Restored images (your model's outputs, source) and clean photographs (target); "
                            "unpaired is fine. Files on the server: one folder or file per line.")
                with gr.Row():
                    src_files = gr.File(file_count="multiple", type="filepath", label="Restored (source) images")
                    tgt_files = gr.File(file_count="multiple", type="filepath", label="Clean (target) images")
                with gr.Row():
                    src_dirs = gr.Textbox(label="…or restored folders on the server", lines=2)
                    tgt_dirs = gr.Textbox(label="…or clean folders on the server", lines=2)
                with gr.Row():
                    codec = gr.Dropdown(CODECS, value="auto", allow_custom_value=True, label="Codec (or a local path)")
                    patch_size = gr.Dropdown([1, 3, 5], value=3, label="Patch size")
                    pairing = gr.Radio(["unpaired", "paired"], value="unpaired", label="Images")
                    sigma = gr.Number(4.0, minimum=0, label="Low-pass σ (px, 0 = whole images)")
                fit_button = gr.Button("Fit", variant="primary", elem_id="fit")
                fit_status = gr.Markdown(elem_id="fit-status")
                fit_file = gr.File(label="Operator file", interactive=False)
            with gr.Tab("Batch", id="batch"):
                gr.Markdown("Apply the current operator to a folder on the server. One α → OUT/<stem>.png, "
                            "several → OUT/alpha_<A>/<stem>.png; existing files are never overwritten.")
                batch_folder = gr.Textbox(label="Folder of restored images")
                batch_alphas = gr.Textbox("0, 0.5, 1", label="α values")
                batch_out = gr.Textbox(label="Output folder (new or without these files; empty with zip)")
                batch_zip = gr.Checkbox(False, label="Return a zip")
                batch_button = gr.Button("Apply", variant="primary")
                batch_status = gr.Markdown(elem_id="batch-status")
                batch_file = gr.File(label="Zip", interactive=False)
        # the API: image file + α -> PNG; invisible in the page, listed in the API docs
        api_image = gr.File(type="filepath", visible=False)
        api_alpha = gr.Number(visible=False)
        api_result = gr.File(visible=False)
        api_button = gr.Button(visible=False)

        shown = [compare, output, status]
        gallery.select(on_gallery, [state, alpha, latent], [state, *shown], api_name=False).then(
            measures, [state, alpha, latent], [scores, curve], api_name=False)
        upload.upload(on_upload, [upload, state, alpha, latent], [state, *shown, upload], api_name=False).then(
            measures, [state, alpha, latent], [scores, curve], api_name=False)
        reference.upload(on_reference, [reference, state, alpha, latent], [state, *shown], api_name=False).then(
            measures, [state, alpha, latent], [scores, curve], api_name=False)
        # a pixel-interpolation α is a blend: no spinner; the latent toggle decodes, so it shows progress
        for event, spinner in ((alpha.change, "hidden"), (latent.change, "full")):
            event(on_alpha, [state, alpha, latent], shown, trigger_mode="always_last", show_progress=spinner,
                  api_name=False).then(measures, [state, alpha, latent], [scores, curve], api_name=False,
                                       show_progress="hidden")
        download.click(on_download, [state, alpha, latent], [download_file, status], api_name=False)
        operator_file.upload(on_operator, [operator_file], [operator_info, status, operator_file], api_name=False)
        fit_button.click(on_fit, [src_files, src_dirs, tgt_files, tgt_dirs, codec, patch_size, pairing, sigma],
                         [fit_file, fit_status, operator_info], api_name=False)
        batch_button.click(on_batch, [batch_folder, batch_alphas, batch_out, batch_zip], [batch_file, batch_status],
                           api_name=False)
        api_button.click(transform_api, [api_image, api_alpha], api_result, api_name="transform")
    app.explorer = ex
    app.tabs = tabs
    return app
