"""The α brush as a user meets it: a real server, headless Chromium, a painted stroke, the download, an undo.

Same set-up as ``test_serve_browser.py`` (its helpers are reused): a TAEF2 operator fitted on
generated images, no ../shared, no network.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_serve_browser import CHROMIUM, save_artifact, shown_pixels, start_server, stop, wait_status

from dotrestore import cli
from dotrestore.io import images as data

from serve_support import make_workspace

pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
pytestmark = pytest.mark.slow  # a server start, a fit and a browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("paint_ws"))
    process, url = start_server(ws, str(ws["operator"]), "--images", str(ws["images"]))
    try:
        yield {**ws, "url": url, "process": process}
    finally:
        stop(process)


@pytest.fixture(scope="module")
def page(served):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium to run the browser tests")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
        page = context.new_page()
        page.goto(served["url"])
        page.wait_for_selector("#alpha input[type=number]", timeout=120_000)
        yield page
        browser.close()


def download(page, selector: str, target: Path) -> Path:
    link = page.locator(f"{selector} a[download]")
    link.wait_for(timeout=60_000)
    with page.expect_download() as info:
        link.click()
    info.value.save_as(target)
    return target


def canvas_point(box: dict, x: float, y: float, size: int) -> tuple[float, float]:
    """Screen position of image pixel coordinates (x, y) on the brush's canvas showing a size×size image."""
    return box["x"] + x * box["width"] / size, box["y"] + y * box["height"] / size


def new_pixels(page, url: str, old: np.ndarray) -> np.ndarray:
    deadline = time.monotonic() + 30
    while np.array_equal(shown := shown_pixels(page, url), old) and time.monotonic() < deadline:
        time.sleep(0.2)  # the <img> is swapped after the status line
    return shown


def test_paint_a_stroke_then_download_image_and_map(served, page, tmp_path):
    image = served["images"] / "test10.png"  # 80x80
    page.locator("#gallery .thumbnail-item").nth(0).click()
    wait_status(page, "test10")
    # the canvas takes the picked image's size once its picture has loaded (after the status line)
    page.wait_for_function("() => document.querySelector('#paint canvas').width === 80", timeout=60_000)
    before = shown_pixels(page, served["url"])
    page.locator("#paint").scroll_into_view_if_needed()
    page.locator("#paint .size").fill("3")  # radius 3 image pixels; white (α = 1) is the default colour
    box = page.locator("#paint canvas").bounding_box()
    assert box["width"] > 300, "a small image is shown enlarged: the points are scaled to its pixels"
    start = time.perf_counter()
    page.mouse.move(*canvas_point(box, 20.5, 40.5, 80))
    page.mouse.down()
    for i in range(1, 9):
        page.mouse.move(*canvas_point(box, 20.5 + 5 * i, 40.5, 80))
    page.mouse.up()
    wait_status(page, "with the painted α map")
    after = new_pixels(page, served["url"], before)
    print(f"stroke → new picture in {time.perf_counter() - start:.2f} s (browser)")
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 0
    rows, cols = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
    assert changed[40, 22:59].all(), "the stroke changed its pixels"
    reach = 3 + 2 + 1  # radius, feather (4 px: 2 each side), a pointer position rounded to a screen pixel
    assert 40 - reach <= rows.min() and rows.max() <= 40 + reach, "the rest did not change"
    assert 20 - reach <= cols.min() and cols.max() <= 60 + reach, "the rest did not change"
    x_star = (data.read_image(image) * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(after[40, 25:55], x_star[40, 25:55])  # painted white: x* itself
    shot = tmp_path / "serve_paint_stroke.png"
    page.screenshot(path=str(shot), full_page=True)
    save_artifact(shot)

    page.click("#download")
    picture = download(page, "#download-file", tmp_path / "downloaded.png")
    alpha_map = download(page, "#download-map", tmp_path / "test10_alpha_map.png")
    assert np.array_equal(data.read_image(picture).mul(255).round().byte().permute(1, 2, 0).numpy(), after)
    out = tmp_path / "apply"
    assert cli.main(["apply", str(served["operator"]), str(image), "-o", str(out), "--alpha-map", str(alpha_map)]) == 0
    assert (out / "test10.png").read_bytes() == picture.read_bytes()

    page.locator("#paint .undo").click()  # the only stroke undone: the slider's α everywhere again
    assert np.array_equal(new_pixels(page, served["url"], after), before)
    assert "painted" not in page.inner_text("#status")
    page.locator("#gallery .thumbnail-item").nth(1).click()  # another image (56x56): a new, empty canvas
    wait_status(page, "test11")
    page.wait_for_function("() => document.querySelector('#paint canvas').width === 56", timeout=60_000)
    assert served["process"].poll() is None
