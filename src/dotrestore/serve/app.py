"""The Gradio page of ``dotrestore serve``: tabs Explore / Fit / Batch, wired to the handlers.

Layout only: each tab is built by its own function and returns its components; the handlers
(:mod:`.handlers`) get the :class:`~.session.Explorer` bound as their first argument.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import gradio as gr

from . import brush, paint
from . import handlers as h
from .session import ALPHA_MAX, ALPHA_MIN, ALPHA_STEP, Explorer

CODECS = ["auto", "taef2", "sd-vae-ft-ema", "sd-vae-ft-mse", "pixel"]

#: the full-resolution view at 1:1: natural size, never scaled to the column; the frame scrolls
PAGE_CSS = """
#output .image-container, #output .image-frame, #output button { overflow: auto; max-height: 85vh; }
#output .image-frame { display: block; }
#output img { object-fit: none !important; max-width: none !important; max-height: none !important;
              width: auto; height: auto; image-rendering: pixelated; }
"""

#: one image pixel per device pixel also on high-density screens (CSS pixels are then smaller
#: than the image's); ``load`` does not bubble, so it is caught on its way down
PAGE_JS = """() => {
  document.addEventListener('load', (event) => {
    const img = event.target;
    if (img.tagName === 'IMG' && img.closest('#output')) {
      img.style.width = (img.naturalWidth / window.devicePixelRatio) + 'px';
      img.style.height = (img.naturalHeight / window.devicePixelRatio) + 'px';
    }
  }, true);
}"""

#: "Download at this α" in one click: once the PNG is written, the browser saves it
DOWNLOAD_JS = """(file) => {
  if (file && file.url) {
    const link = document.createElement('a');
    link.href = file.url;
    link.download = file.orig_name || '';
    document.body.appendChild(link);
    link.click();
    link.remove();
  }
  return [];
}"""


def _explore_tab(ex: Explorer) -> SimpleNamespace:
    gallery_paths = ex.gallery()
    c = SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            c.gallery = gr.Gallery([(str(p), p.stem) for p in gallery_paths], label="Images (--images)", columns=3,
                                   height=260, allow_preview=False, visible=bool(gallery_paths), elem_id="gallery")
            c.upload = gr.File(label="Upload an image (x*: your restorer's output)", type="filepath",
                               elem_id="upload")
            c.reference = gr.File(label="Clean reference (optional)", type="filepath", elem_id="reference")
            c.operator_file = _operator_upload(ex)
        with gr.Column(scale=2):
            c.alpha = gr.Slider(ALPHA_MIN, ALPHA_MAX, value=0.0, step=ALPHA_STEP, label="α",
                                info="0 = perceptual, 1 = the input; type a value in the box", elem_id="alpha")
            c.latent = gr.Checkbox(False, label="Latent interpolation (decodes every α: slower)", elem_id="latent")
            c.status = gr.Markdown("Pick an image." if gallery_paths else "Upload an image.", elem_id="status")
            c.compare = gr.ImageSlider(label="before (x*) | after (x̂α)", format="png", max_height=640,
                                       buttons=["fullscreen"], elem_id="compare")
            c.output = gr.Image(label="x̂α at 1:1 (one image pixel per screen pixel; scroll to pan)", format="png",
                                interactive=False, buttons=["fullscreen"], elem_id="output")
            c.scores = gr.Markdown(elem_id="scores")
            c.curve = gr.Plot(label="MSE against α", elem_id="curve")
            with gr.Row():
                c.download = gr.Button("Download at this α", elem_id="download")
                c.download_file = gr.File(label="PNG at this α", interactive=False, elem_id="download-file")
            _paint_box(c)
    return c


def _paint_box(c: SimpleNamespace) -> None:
    """The brush: paint α on x* (colour = α), the eraser goes back to the slider's α."""
    with gr.Accordion("Paint α with a brush", open=True):
        gr.Markdown("Brush colours are α: 0 (black, perceptual x̂0), 0.25 · 0.5 · 0.75, 1 (white, your "
                    "restorer's x*); unpainted pixels and the eraser follow the slider. Edges are feathered over "
                    f"{paint.FEATHER} px, as `dotrestore apply --alpha-map` does; Download also writes the α map.")
        c.paint = brush.brush_component()
        c.download_map = gr.File(label="α map of the download (16-bit greyscale PNG)", interactive=False,
                                 elem_id="download-map")


def _operator_upload(ex: Explorer):
    """The operator upload: open when there is no operator; with one from the command line, folded
    away under a label that says it replaces that one (for every tab)."""
    name = ex.operator_path.name if ex.dot is not None and ex.operator_path is not None else None
    title = f"Replace the operator ({name}, from the command line)" if name else "Operator"
    with gr.Accordion(title, open=name is None, elem_id="operator-replace"):
        label = (f"Another operator (.safetensors): replaces {name} in every tab" if name
                 else "Operator (.safetensors)")
        return gr.File(label=label, type="filepath", elem_id="operator-upload")


def _fit_tab() -> SimpleNamespace:
    c = SimpleNamespace()
    gr.Markdown("Restored images (your model's outputs, source) and clean photographs (target); "
                "unpaired is fine. Files on the server: one folder or file per line.")
    with gr.Row():
        c.src_files = gr.File(file_count="multiple", type="filepath", label="Restored (source) images")
        c.tgt_files = gr.File(file_count="multiple", type="filepath", label="Clean (target) images")
    with gr.Row():
        c.src_dirs = gr.Textbox(label="…or restored folders on the server", lines=2)
        c.tgt_dirs = gr.Textbox(label="…or clean folders on the server", lines=2)
    with gr.Row():
        c.codec = gr.Dropdown(CODECS, value="auto", allow_custom_value=True, label="Codec (or a local path)")
        c.patch_size = gr.Dropdown([1, 3, 5], value=3, label="Patch size")
        c.pairing = gr.Radio(["unpaired", "paired"], value="unpaired", label="Images")
        c.sigma = gr.Number(4.0, minimum=0, label="Low-pass scale (px; 0 = whole images)")
    c.button = gr.Button("Fit", variant="primary", elem_id="fit")
    c.status = gr.Markdown(elem_id="fit-status")
    c.file = gr.File(label="Operator file", interactive=False)
    return c


def _batch_tab() -> SimpleNamespace:
    c = SimpleNamespace()
    # code spans: "<stem>" would otherwise be read as an HTML tag and cut the sentence
    gr.Markdown("Apply the current operator to a folder on the server. One α → `OUT/<stem>.png`, "
                "several → `OUT/alpha_<A>/<stem>.png`; existing files are never overwritten.", elem_id="batch-help")
    c.folder = gr.Textbox(label="Folder of restored images")
    c.alphas = gr.Textbox("0", label="α values (from Explore's α until you type here; several: 0, 0.5, 1)",
                          elem_id="batch-alphas")
    c.out = gr.Textbox(label="Output folder (new or without these files; empty with zip)")
    c.zip = gr.Checkbox(False, label="Return a zip")
    c.button = gr.Button("Apply", variant="primary")
    c.status = gr.Markdown(elem_id="batch-status")
    c.file = gr.File(label="Zip", interactive=False)
    return c


def _wire_explore(ex: Explorer, e: SimpleNamespace, state, operator_info) -> None:
    shown = [e.compare, e.output, e.status]
    measures = (partial(h.measures, ex), [state, e.alpha, e.latent], [e.scores, e.curve])
    def on_gallery(evt: gr.SelectData, state, alpha, latent, progress=gr.Progress()):
        # a function of its own, not a partial: Gradio finds the SelectData parameter by its type
        # hint, which it cannot read through functools.partial (evt would be None)
        return h.on_gallery(ex, evt, state, alpha, latent, progress)

    def on_stroke(evt: gr.EventData, state, alpha, latent):
        return h.on_strokes(ex, evt._data, state, alpha, latent)  # the strokes come as the event's data

    canvas_pick = gr.State(None)  # the pick shown on the brush's canvas
    canvas = (partial(h.paint_canvas, ex), [state, canvas_pick], [e.paint, canvas_pick])
    picked = e.gallery.select(on_gallery, [state, e.alpha, e.latent], [state, *shown], api_name=False)
    picked.then(*measures, api_name=False).then(*canvas, api_name=False)
    uploaded = e.upload.upload(partial(h.on_upload, ex), [e.upload, state, e.alpha, e.latent], [state, *shown, e.upload],
                               api_name=False)
    uploaded.then(*measures, api_name=False).then(*canvas, api_name=False)
    # each message holds every stroke: when strokes come faster than pictures, only the last matters
    e.paint.stroke(on_stroke, [state, e.alpha, e.latent], [state, *shown], trigger_mode="always_last",
                   show_progress="hidden", api_name=False).then(*measures, api_name=False, show_progress="hidden")
    e.reference.upload(partial(h.on_reference, ex), [e.reference, state, e.alpha, e.latent], [state, *shown],
                       api_name=False).then(*measures, api_name=False)
    # a pixel-interpolation α is a blend: no spinner; the latent toggle decodes, so it shows progress
    for event, spinner in ((e.alpha.change, "hidden"), (e.latent.change, "full")):
        event(partial(h.on_alpha, ex), [state, e.alpha, e.latent], shown, trigger_mode="always_last",
              show_progress=spinner, api_name=False).then(*measures, api_name=False, show_progress="hidden")
    e.download.click(partial(h.on_download, ex), [state, e.alpha, e.latent], [e.download_file, e.download_map, e.status],
                     api_name=False).then(None, [e.download_file], None, js=DOWNLOAD_JS, api_name=False)
    e.operator_file.upload(partial(h.on_operator, ex), [e.operator_file], [operator_info, e.status, e.operator_file],
                           api_name=False)


def _batch_follows_explore(explore: SimpleNamespace, batch: SimpleNamespace) -> None:
    """The Batch tab's α values start from the α chosen in Explore, until the user types their own
    (the box then no longer holds the value last put there)."""
    last = gr.State(batch.alphas.value)

    def follow(alpha, text, last_set):
        if alpha is None or (text or "").strip() != last_set:
            return gr.skip(), gr.skip()
        value = f"{float(alpha):g}"
        return value, value
    explore.alpha.change(follow, [explore.alpha, batch.alphas, last], [batch.alphas, last], api_name=False,
                         show_progress="hidden")


def build_app(explorer: Explorer) -> gr.Blocks:
    """The Blocks app; ``launch`` it (see :func:`dotrestore.serve.serve`)."""
    ex = explorer
    # Gradio's cache of the files handlers return: files older than an hour are dropped, hourly
    with gr.Blocks(title="dotrestore α explorer", delete_cache=(3600, 3600)) as app:
        gr.Markdown("# dotrestore · choose α by eye\n"
                    "x̂α = (1 − α)·x̂0 + α·x*: α = 1 is your restorer's output x*, α = 0 the perceptual "
                    "optimum x̂0 = T(x*), α < 0 and α > 1 extrapolate.")
        operator_info = gr.Markdown(ex.describe_operator(), elem_id="operator-info")
        state = gr.State(None)
        with gr.Tabs(selected="explore" if ex.dot is not None else "fit") as tabs:
            with gr.Tab("Explore", id="explore"):
                explore = _explore_tab(ex)
            with gr.Tab("Fit", id="fit"):
                fit = _fit_tab()
            with gr.Tab("Batch", id="batch"):
                batch = _batch_tab()
        # the API: image file + α -> PNG; invisible in the page, listed in the API docs
        api_image, api_alpha = gr.File(type="filepath", visible=False), gr.Number(visible=False)
        api_map = gr.File(type="filepath", visible=False)  # optional: a greyscale α map, as apply --alpha-map
        api_result, api_button = gr.File(visible=False), gr.Button(visible=False)

        _wire_explore(ex, explore, state, operator_info)
        _batch_follows_explore(explore, batch)
        fit.button.click(partial(h.on_fit, ex), [fit.src_files, fit.src_dirs, fit.tgt_files, fit.tgt_dirs, fit.codec,
                                                 fit.patch_size, fit.pairing, fit.sigma],
                         [fit.file, fit.status, operator_info], api_name=False)
        batch.button.click(partial(h.on_batch, ex), [batch.folder, batch.alphas, batch.out, batch.zip],
                           [batch.file, batch.status], api_name=False)
        api_button.click(partial(h.transform_api, ex), [api_image, api_alpha, api_map], api_result, api_name="transform")
    app.explorer = ex
    app.tabs = tabs
    return app
