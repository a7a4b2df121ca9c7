"""The α brush without a browser: strokes → α map (rasterised exactly), the render, the download, /transform with a map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dotrestore import cli
from dotrestore.io import images as data
from dotrestore.serve import Explorer
from dotrestore.serve.paint import PALETTE, PaintedMap, Painting, Stroke, brush_colours, parse_strokes

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


def strokes(*items, frame=None, size=(80, 80), pick=None) -> dict:
    """The page's message: strokes as (points, radius, α or None), points in frame pixels (default: the image's)."""
    height, width = size
    data = {"frame": list(frame or (width, height)),
            "strokes": [{"points": [list(p) for p in points], "radius": r, "alpha": a} for points, r, a in items]}
    return data if pick is None else {**data, "pick": pick}


def mask(*items, frame=None, size=(40, 60)) -> np.ndarray:
    painting = Painting.from_strokes(parse_strokes(strokes(*items, frame=frame, size=size), size), size)
    return np.zeros(size, bool) if painting is None else painting.opacity > 0


def test_a_dot_covers_the_pixels_whose_centre_is_within_its_radius():
    m = mask(([(20.5, 10.5)], 3, 1.0))  # the centre of pixel (row 10, column 20)
    rows, cols = np.nonzero(m)
    assert m[10, 17:24].all() and not m[10, 16] and not m[10, 24]  # ±3 on the row, not one more
    assert m[7:14, 20].all() and not m[6, 20] and not m[14, 20]
    assert not m[7, 17] and m[8, 18]  # a disc: the corners of its box are out
    assert m.sum() == 29 and (rows.mean(), cols.mean()) == (10, 20)  # symmetric: 29 centres within 3 of a centre
    assert mask(([(20.5, 10.5)], 0.5, 1.0)).sum() == 1  # the smallest brush: one pixel


def test_a_line_has_round_ends_and_its_width_is_twice_the_radius():
    m = mask(([(10.5, 20.5), (40.5, 20.5)], 2, 0.5))
    assert m[18:23, 10:41].all() and not m[17, 10:41].any() and not m[23, 10:41].any()
    assert m[20, 8] and not m[20, 7] and m[20, 42] and not m[20, 43]  # the ends: radius 2 past each end point
    assert not m[18, 8] and not m[22, 42]  # rounded, not square
    bent = mask(([(10.5, 10.5), (30.5, 10.5), (30.5, 30.5)], 2, 0.5))
    assert bent[10, 10:31].all() and bent[10:31, 30].all() and not bent[7, 33]  # a round join


def test_strokes_are_scaled_from_the_frame_to_the_image():
    # the page painted on a copy at half the size: the points double, the radius is in image pixels already
    assert np.array_equal(mask(([(5.25, 5.25), (20.25, 5.25)], 2, 1.0), frame=(30, 20)),
                          mask(([(10.5, 10.5), (40.5, 10.5)], 2, 1.0)))
    wide = mask(([(15, 10)], 1, 1.0), frame=(30, 40), size=(40, 60))  # x ×2, y ×1
    assert np.array_equal(np.argwhere(wide).mean(axis=0), [9.5, 29.5])


def test_the_eraser_and_later_strokes_cover_earlier_ones():
    size = (40, 60)
    items = [([(10.5, 10.5), (50.5, 10.5)], 3, 1.0), ([(30.5, 5.5), (30.5, 15.5)], 2, 0.25)]
    painting = Painting.from_strokes(parse_strokes(strokes(*items, size=size), size), size)
    assert painting.value[10, 12] == 1.0 and painting.value[10, 30] == 0.25  # the later stroke on top
    alphas = painting.alphas(0.6)
    assert float(alphas[30, 30]) == 0.6 and float(alphas[10, 30]) == 0.25  # unpainted: the slider's α
    erased = Painting.from_strokes(parse_strokes(strokes(*items, ([(30.5, 10.5)], 4, None), size=size), size), size,
                                   previous=painting)
    assert erased.opacity[10, 30] == 0 and float(erased.alphas(0.6)[10, 30]) == 0.6 and erased.opacity[10, 12] == 1
    assert Painting.from_strokes(parse_strokes(strokes(items[0], (items[0][0], 5, None), size=size), size),
                                 size) is None  # all erased: nothing painted
    # drawing only the new strokes on the previous painting gives what drawing all of them gives
    again = Painting.from_strokes(erased.strokes, size)
    assert np.array_equal(again.value, erased.value) and np.array_equal(again.opacity, erased.opacity)


@pytest.mark.parametrize("bad, message", [
    ({"strokes": []}, "must come as"),
    ({"frame": [0, 10], "strokes": [{"points": [[1, 1]], "radius": 2, "alpha": 1}]}, "positive size"),
    ({"frame": [10, 10], "strokes": [{"points": [1, 1], "radius": 2, "alpha": 1}]}, "must come as"),
    ({"frame": [10, 10], "strokes": ["a"]}, "must come as"),
    ({"frame": [10, 10], "strokes": [{"points": [[1, 1]], "radius": 2, "alpha": 0.3}]}, "α must be one of"),
    ({"frame": [10, 10], "strokes": [{"points": [[1, 1]], "radius": 0, "alpha": 1}]}, "radius"),
    ({"frame": [10, 10], "strokes": [{"points": [], "radius": 2, "alpha": 1}]}, "at least one point"),
    ({"frame": [10, 10], "strokes": [{"points": [[1, float("nan")]], "radius": 2, "alpha": 1}]}, "finite"),
])
def test_malformed_strokes_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_strokes(bad, (10, 10))


def test_palette_and_maps():
    assert brush_colours()[0] == "rgb(0, 0, 0)" and brush_colours()[-1] == "rgb(255, 255, 255)" and len(PALETTE) == 5
    painting = Painting.from_strokes([Stroke(((3.5, 3.5),), 2, 0.0)], (8, 10))
    outside = PaintedMap.make(painting, -0.5)
    assert outside.value_range == (-0.5, 1.0) and outside.command_options() == " --alpha-map-range=-0.5,1.0"
    assert PaintedMap.make(painting, 0.3).command_options() == ""


def test_a_stroke_changes_its_region_only_and_the_download_equals_apply(ws, explorer, tmp_path):
    from dotrestore.serve import handlers as h

    image = ws["images"] / "test10.png"  # 80x80
    state, *_ = h._pick(explorer, image, "test10", 0.0, False, lambda *a, **k: None)
    before = h.show(explorer, state, 0.0, False)[1]
    canvas, shown = h.paint_canvas(explorer, state, None)
    assert (canvas["width"], canvas["height"], canvas["pick"]) == (80, 80, state["pick"]) and shown == state["pick"]
    assert canvas["src"].startswith("data:image/png;base64,")
    assert h.paint_canvas(explorer, state, shown) == (gr.skip(), gr.skip())  # the same pick: left alone
    # a stroke of radius 5 along row 40 from column 20 to 60, painted white (α = 1: x*)
    line = ([(20.5, 40.5), (60.5, 40.5)], 5, 1.0)
    state, _, after, status = h.on_strokes(explorer, strokes(line, pick=state["pick"]), state, 0.0, False)
    assert "with the painted α map" in status
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 0
    reach = 5 + 2  # the radius and the feather (4 px: 2 each side)
    outside = np.ones_like(changed)
    outside[40 - reach:41 + reach, 20 - reach:61 + reach] = False
    assert changed[38:43, 22:59].mean() > 0.9 and not changed[outside].any()
    assert np.array_equal(after[38:43, 25:55], h.to_array(data.read_image(image))[38:43, 25:55])  # white = x*
    picture, alpha_map, text = h.on_download(explorer, state, 0.0, False)
    assert alpha_map.endswith("test10_alpha_map.png") and "--alpha-map test10_alpha_map.png` writes" in text
    out = tmp_path / "apply"
    assert cli.main(["apply", str(ws["operator"]), str(image), "-o", str(out), "--alpha-map", alpha_map]) == 0
    assert (out / "test10.png").read_bytes() == Path(picture).read_bytes()
    # strokes from an earlier pick of the image are left alone
    assert h.on_strokes(explorer, strokes(line, pick="earlier"), state, 0.0, False) == (gr.skip(),) * 4
    # the eraser over the stroke, and a clear (no strokes): back to the slider's α everywhere
    for message in (strokes(line, ([(20.5, 40.5), (60.5, 40.5)], 8, None)), strokes()):
        state, _, erased, status = h.on_strokes(explorer, {**message, "pick": state["pick"]}, state, 0.0, False)
        assert np.array_equal(erased, before) and "painted" not in status
    _, _, _, refused = h.on_strokes(explorer, {"pick": state["pick"], "frame": [80, 80], "strokes": [
        {"points": [[1, 1]], "radius": 2, "alpha": 0.3}]}, state, 0.0, False)
    assert refused.startswith("**Error:**") and "α must be one of" in refused


def test_a_painting_off_the_unit_range_downloads_with_its_range(ws, explorer, tmp_path):
    from dotrestore.serve import handlers as h

    image = ws["images"] / "test11.png"  # 56x56
    state, *_ = h._pick(explorer, image, "test11", 1.5, False, lambda *a, **k: None)
    state, *_ = h.on_strokes(explorer, strokes(([(5.5, 20.5), (40.5, 20.5)], 6, 0.0), size=(56, 56),
                                               pick=state["pick"]), state, 1.5, False)
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


def test_a_large_image_is_painted_on_a_reduced_copy_and_its_strokes_are_scaled_back():
    import base64
    import io

    from PIL import Image

    from dotrestore.serve.brush import FRAME_MAX, canvas_value

    value = canvas_value(torch.rand(3, 40, FRAME_MAX + 320), "p1")
    assert (value["width"], value["height"], value["pick"]) == (FRAME_MAX + 320, 40, "p1")
    frame = Image.open(io.BytesIO(base64.b64decode(value["src"].split(",", 1)[1]))).size
    assert frame == (FRAME_MAX, 32)  # the long side at FRAME_MAX, the aspect kept
    # the page's point at the frame's centre is the image's centre
    m = mask(([(FRAME_MAX / 2, 16)], 1, 1.0), frame=frame, size=(40, FRAME_MAX + 320))
    assert np.array_equal(np.argwhere(m).mean(axis=0), [19.5, (FRAME_MAX + 320) / 2 - 0.5])
