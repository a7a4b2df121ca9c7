"""The α brush of the Explore tab: x* with a canvas over it, in one ``gr.HTML``.

A stroke is drawn on the canvas in the page at once; when the pointer is lifted, the page sends
the geometry of all its strokes (``trigger('stroke', ...)``: points, radius in image pixels, α or
the eraser; an undo or a clear sends what is left) and nothing else, so a stroke costs what a
slider move costs. The server rasterises the strokes (:mod:`.paint`) into the map it blends with.

The picture on the canvas may be a reduced copy of x* (:data:`FRAME_MAX` on its long side): the
page sends points in its pixels with its size (``frame``) and the server scales them to the image.
The value the server sets (:func:`canvas_value`) starts a new canvas, without strokes.
"""

from __future__ import annotations

import base64
import io

import gradio as gr
import torch
from PIL import Image

from .paint import PALETTE

#: the long side of the picture painted on, at most (the strokes are scaled to the image)
FRAME_MAX = 1280


def canvas_value(x_star: torch.Tensor, pick: str) -> dict:
    """The brush's value for a new pick: x* (3, H, W) in [0, 1] as a PNG data URL, its size, the pick."""
    height, width = x_star.shape[-2:]
    array = (x_star.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    if max(width, height) > FRAME_MAX:
        # only a guide to paint on: the strokes are rasterised at the image's own size
        picture.thumbnail((FRAME_MAX, FRAME_MAX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)  # sent once per pick: speed over size
    src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"src": src, "width": int(width), "height": int(height), "pick": pick}


def _swatches() -> str:
    buttons = []
    for alpha in PALETTE:
        level = round(255 * alpha)
        selected = " selected" if alpha == PALETTE[-1] else ""  # white (x*) first, as before
        buttons.append(f'<button type="button" class="tool swatch{selected}" data-alpha="{alpha:g}" '
                       f'title="α = {alpha:g}" style="background: rgb({level}, {level}, {level});'
                       f' color: {"#000" if alpha > 0.5 else "#fff"}">{alpha:g}</button>')
    return "".join(buttons)


HTML = f"""<div class="dot-brush">
  <div class="tools">{_swatches()}
    <button type="button" class="tool eraser" data-alpha="eraser" title="back to the slider's α">Eraser</button>
    <label class="size-box">radius <input type="range" class="size" min="1" max="64" value="8">
      <span class="size-text">8</span> px</label>
    <button type="button" class="undo">Undo</button>
    <button type="button" class="clear">Clear</button>
  </div>
  <div class="stage"><img class="bg" alt="x* to paint on"><canvas class="ink"></canvas></div>
  <p class="hint">Pick an image to paint on it.</p>
</div>"""

CSS = """
.dot-brush .tools { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-bottom: 6px; }
.dot-brush button { border: 1px solid #888; border-radius: 4px; padding: 2px 10px; min-width: 2.6em; cursor: pointer; }
.dot-brush button.selected { outline: 3px solid #f59e0b; }
.dot-brush .stage { position: relative; display: inline-block; line-height: 0; touch-action: none; }
.dot-brush .bg { display: block; max-width: 100%; image-rendering: pixelated; user-select: none; }
.dot-brush .bg:not([src]) { display: none; }
.dot-brush .ink { position: absolute; left: 0; top: 0; width: 100%; height: 100%; opacity: 0.7;
                  cursor: crosshair; image-rendering: pixelated; }
.dot-brush .hint { margin: 4px 0 0; font-size: 0.85em; opacity: 0.8; }
"""

#: element, props, trigger and watch are given by gr.HTML
JS = """
const img = element.querySelector('.bg'), ink = element.querySelector('.ink'), ctx = ink.getContext('2d');
const size = element.querySelector('.size'), sizeText = element.querySelector('.size-text');
const hint = element.querySelector('.hint');
let meta = null, strokes = [], drawing = null, brush = 1, sizeChosen = false;

element.querySelectorAll('.tool').forEach((button) => button.addEventListener('click', () => {
  element.querySelectorAll('.tool').forEach((b) => b.classList.toggle('selected', b === button));
  brush = button.dataset.alpha === 'eraser' ? null : Number(button.dataset.alpha);
}));
size.addEventListener('input', () => { sizeChosen = true; sizeText.textContent = size.value; });

// canvas pixels per image pixel (the picture may be a reduced copy)
const scale = () => ink.width / meta.width;
function pen(s) {
  const level = Math.round(255 * (s.alpha === null ? 0 : s.alpha));
  ctx.globalCompositeOperation = s.alpha === null ? 'destination-out' : 'source-over';
  ctx.strokeStyle = ctx.fillStyle = 'rgb(' + level + ',' + level + ',' + level + ')';
  ctx.lineWidth = 2 * s.radius * scale();
  ctx.lineCap = ctx.lineJoin = 'round';
}
function dot(s, p) {
  pen(s); ctx.beginPath(); ctx.arc(p[0], p[1], s.radius * scale(), 0, 2 * Math.PI); ctx.fill();
}
function segment(s, a, b) {
  pen(s); ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
}
function redraw() {
  ctx.clearRect(0, 0, ink.width, ink.height);
  for (const s of strokes) {
    dot(s, s.points[0]);
    for (let i = 1; i < s.points.length; i++) segment(s, s.points[i - 1], s.points[i]);
  }
}
// every stroke the page holds: an undo or a clear is one more message, and a lost message is repaired by the next
function send() {
  trigger('stroke', {pick: meta.pick, frame: [ink.width, ink.height], strokes: strokes});
}
function at(event) {
  const r = ink.getBoundingClientRect();
  const x = (event.clientX - r.left) * ink.width / r.width, y = (event.clientY - r.top) * ink.height / r.height;
  return [Math.round(x * 100) / 100, Math.round(y * 100) / 100];
}
ink.addEventListener('pointerdown', (event) => {
  if (!meta || event.button !== 0) return;
  event.preventDefault();
  ink.setPointerCapture(event.pointerId);
  drawing = {points: [at(event)], radius: Number(size.value), alpha: brush};
  strokes.push(drawing);
  dot(drawing, drawing.points[0]);
});
ink.addEventListener('pointermove', (event) => {
  if (!drawing) return;
  const p = at(event), last = drawing.points[drawing.points.length - 1];
  if (Math.hypot(p[0] - last[0], p[1] - last[1]) < 0.5) return;
  drawing.points.push(p);
  segment(drawing, last, p);
});
const finish = () => { if (drawing) { drawing = null; send(); } };
ink.addEventListener('pointerup', finish);
ink.addEventListener('pointercancel', finish);
element.querySelector('.undo').addEventListener('click', () => {
  if (meta && strokes.length) { strokes.pop(); redraw(); send(); }
});
element.querySelector('.clear').addEventListener('click', () => {
  if (meta && strokes.length) { strokes = []; redraw(); send(); }
});

// the picture's width: the column's, or less so that it fits 70 % of the window's height
function fit() {
  if (!meta || !img.naturalWidth) return;
  const room = Math.min(element.clientWidth, 0.7 * window.innerHeight * img.naturalWidth / img.naturalHeight);
  img.style.width = Math.max(1, Math.floor(room)) + 'px';
}
new ResizeObserver(fit).observe(element);
function load(value) {
  meta = value && value.src ? value : null;
  strokes = []; drawing = null;
  if (!meta) { img.removeAttribute('src'); ctx.clearRect(0, 0, ink.width, ink.height); return; }
  img.onload = () => {
    ink.width = img.naturalWidth; ink.height = img.naturalHeight;
    const long = Math.max(meta.width, meta.height);
    size.max = Math.max(8, Math.round(long / 4));
    if (!sizeChosen) size.value = Math.max(2, Math.round(long / 40));
    sizeText.textContent = size.value;
    hint.textContent = meta.width + '×' + meta.height + ' px; the radius is in image pixels.';
    fit(); redraw();
  };
  img.src = meta.src;
}
watch('value', () => load(props.value));
if (props.value) load(props.value);
"""


def brush_component() -> gr.HTML:
    """The brush (its strokes arrive as its ``stroke`` event, with the data in ``gr.EventData``)."""
    return gr.HTML(None, html_template=HTML, css_template=CSS, js_on_load=JS, elem_id="paint",
                   apply_default_css=False)
