"""The explorer's α brush without a browser: paint layer → α map, the render, the download and /transform with a map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dotrestore import cli
from dotrestore.io import images as data
from dotrestore.serve import Explorer
from dotrestore.serve.paint import PALETTE, PaintedMap, Painting, brush_colours

from serve_support import make_workspace

gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("paint"))


@pytest.fixture()
def explorer(ws, tmp_path):
    ex = Explorer(ws["operator"], images=ws["images"], work_dir=tmp_path / "scratch")
    yield ex
    ex.close()


def stroke_layer(h: int, w: int, rows: slice, cols: slice, level: int = 255) -> np.ndarray:
    """An RGBA layer with an opaque grey rectangle (a stroke) and one half-transparent edge column."""
    layer = np.zeros((h, w, 4), dtype=np.uint8)
    layer[rows, cols, :3] = level
    layer[rows, cols, 3] = 255
    edge = cols.stop
    layer[rows, edge, :3], layer[rows, edge, 3] = level, 128
    return layer


def test_palette_and_painting():
    assert brush_colours()[0] == "rgb(0, 0, 0)" and brush_colours()[-1] == "rgb(255, 255, 255)" and len(PALETTE) == 5
    assert Painting.from_layer(np.zeros((4, 5, 4), dtype=np.uint8), (4, 5)) is None  # nothing painted
    painting = Painting.from_layer(stroke_layer(8, 10, slice(2, 4), slice(1, 5), level=191), (8, 10))
    alphas = painting.alphas(0.2)
    assert float(alphas[0, 0]) == 0.2 and float(alphas[2, 2]) == pytest.approx(191 / 255)
    assert float(alphas[2, 5]) == pytest.approx(0.2 + (191 / 255 - 0.2) * 128 / 255)  # a soft edge
    with pytest.raises(ValueError, match="the paint layer is 9x8 but the image is 10x8"):
        Painting.from_layer(np.zeros((8, 9, 4), dtype=np.uint8), (8, 10))
    outside = PaintedMap.make(painting, -0.5)
    assert outside.value_range == (-0.5, 1.0) and outside.command_options() == " --alpha-map-range=-0.5,1.0"
    assert PaintedMap.make(painting, 0.3).command_options() == ""


def test_a_stroke_changes_its_region_only_and_the_download_equals_apply(ws, explorer, tmp_path):
    from dotrestore.serve import handlers as h

    image = ws["images"] / "test10.png"  # 80x80
    state, *_ = h._pick(explorer, image, "test10", 0.0, False, lambda *a, **k: None)
    before = h.show(explorer, state, 0.0, False)[1]
    canvas, shown_key = h.paint_canvas(explorer, state, None)
    assert canvas["background"].shape == (80, 80, 3) and canvas["layers"] == [] and shown_key == state["key"]
    assert h.paint_canvas(explorer, state, shown_key) == (gr.skip(), gr.skip())  # the same image: left alone
    layer = stroke_layer(80, 80, slice(30, 50), slice(20, 60))
    state, _, after, status = h.on_paint(explorer, {"background": None, "layers": [layer], "composite": None},
                                         state, 0.0, False)
    assert "with the painted α map" in status
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 0
    reach = 2 + 1  # the feather (4 px: 2 each side) and the soft edge column
    outside = np.ones_like(changed)
    outside[30 - reach:50 + reach, 20 - reach:61 + reach] = False
    assert changed[34:46, 24:56].mean() > 0.9 and not changed[outside].any()
    assert np.array_equal(after[35:45, 25:55], h.to_array(data.read_image(image))[35:45, 25:55])  # white = x*
    picture, alpha_map, text = h.on_download(explorer, state, 0.0, False)
    assert alpha_map.endswith("test10_alpha_map.png") and "--alpha-map test10_alpha_map.png` writes" in text
    out = tmp_path / "apply"
    assert cli.main(["apply", str(ws["operator"]), str(image), "-o", str(out), "--alpha-map", alpha_map]) == 0
    assert (out / "test10.png").read_bytes() == Path(picture).read_bytes()
    # the eraser: an empty layer goes back to the slider's α everywhere
    state, _, erased, status = h.on_paint(explorer, {"layers": [np.zeros((80, 80, 4), np.uint8)]}, state, 0.0, False)
    assert np.array_equal(erased, before) and "painted" not in status


def test_a_painting_off_the_unit_range_downloads_with_its_range(ws, explorer, tmp_path):
    from dotrestore.serve import handlers as h

    image = ws["images"] / "test11.png"  # 56x56
    state, *_ = h._pick(explorer, image, "test11", 1.5, False, lambda *a, **k: None)
    state, *_ = h.on_paint(explorer, {"layers": [stroke_layer(56, 56, slice(10, 30), slice(5, 40), level=0)]},
                           state, 1.5, False)
    picture, alpha_map, text = h.on_download(explorer, state, 1.5, False)
    assert "--alpha-map-range=0.0,1.5" in text
    out = tmp_path / "apply"
    assert cli.main(["apply", str(ws["operator"]), str(image), "-o", str(out), "--alpha-map", alpha_map,
                     "--alpha-map-range=0.0,1.5"]) == 0
    assert (out / "test11.png").read_bytes() == Path(picture).read_bytes()


def test_transform_api_takes_a_map(ws, explorer, tmp_path):
    from dotrestore.serve import handlers as h

    image = ws["images"] / "test10.png"
    levels = np.zeros((80, 80), dtype=np.uint8)
    levels[:, 40:] = 255
    from PIL import Image

    Image.fromarray(levels).save(tmp_path / "half.png")
    result = h.transform_api(explorer, str(image), 0.7, str(tmp_path / "half.png"))
    assert cli.main(["apply", str(ws["operator"]), str(image), "-o", str(tmp_path / "out"),
                     "--alpha-map", str(tmp_path / "half.png")]) == 0
    assert torch.equal(data.read_image(result), data.read_image(tmp_path / "out" / "test10.png"))
    Image.fromarray(levels[:, :70]).save(tmp_path / "narrow.png")
    with pytest.raises(gr.Error, match="narrow.png: α map is 70x80 but its image is 80x80"):
        h.transform_api(explorer, str(image), 0.7, str(tmp_path / "narrow.png"))
