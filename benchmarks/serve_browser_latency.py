"""The explorer's latency as a user meets it: slider α → new picture and brush stroke → new picture.

A ``dotrestore serve`` subprocess and headless Chromium (Playwright, /usr/bin/chromium); a
MutationObserver timestamps every new ``src`` of the ``#output`` picture. Eight α values are
typed into the slider's box (Enter → new picture), then six horizontal strokes are painted on the
brush (mouse-up → new picture); the medians of both print in one run, on the same machine state.

    python benchmarks/serve_browser_latency.py OPERATOR.safetensors IMAGES_DIR [--pick N]

The brush is found either way it has been built (a canvas in ``#paint``; an editor with a
"Brush" button is switched to its brush first), so the same script measures older versions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9)
STROKES = 6

#: a timestamp (performance.now()) for each new src of the output picture
WATCH = """() => { window.__srcs = []; const host = document.querySelector('#output');
 new MutationObserver(() => { const im = host.querySelector('img'); if (im && im.src !== window.__last) {
   window.__last = im.src; window.__srcs.push(performance.now()); } })
 .observe(host, {subtree: true, childList: true, attributes: true}); }"""


def serve(operator: str, images: str, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "dotrestore", "serve", operator, "--images", images,
                                    "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; see {log}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"the server did not answer within 300 s; see {log}")


def new_picture_ms(page, count: int, t0: float) -> float:
    """Milliseconds from t0 (performance.now()) to the first new output src after ``count`` of them."""
    page.wait_for_function("n => window.__srcs.length > n", arg=count, timeout=30_000)
    return page.evaluate("() => window.__srcs[window.__srcs.length - 1]") - t0


def slider_ms(page) -> list[float]:
    times = []
    for alpha in ALPHAS:
        count = page.evaluate("() => window.__srcs.length")
        box = page.locator("#alpha input[type=number]")
        box.fill(f"{alpha:g}")
        t0 = page.evaluate("() => performance.now()")
        box.press("Enter")
        times.append(new_picture_ms(page, count, t0))
        time.sleep(0.3)
    return times


def stroke_ms(page, moves: int = 10) -> list[float]:
    page.wait_for_function("() => { const c = document.querySelector('#paint canvas');"
                           " return c !== null && c.getBoundingClientRect().height > 20; }", timeout=60_000)
    page.locator("#paint").scroll_into_view_if_needed()
    editor_brush = page.get_by_role("button", name="Brush", exact=True)
    if editor_brush.count():
        editor_brush.click()
    box = page.locator("#paint canvas").first.bounding_box()
    times = []
    for k in range(STROKES):
        count = page.evaluate("() => window.__srcs.length")
        y, x0 = box["y"] + box["height"] * (0.3 + 0.08 * k), box["x"] + box["width"] * 0.5 - 100
        page.mouse.move(x0, y)
        page.mouse.down()
        for i in range(moves):
            page.mouse.move(x0 + 20 * i, y)
        t0 = page.evaluate("() => performance.now()")
        page.mouse.up()
        times.append(new_picture_ms(page, count, t0))
        time.sleep(0.5)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operator")
    parser.add_argument("images", help="folder given to --images")
    parser.add_argument("--pick", type=int, default=0, help="which gallery image (0 = the first)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    log = Path(tempfile.mkdtemp(prefix="serve_latency_")) / "server.log"
    process, url = serve(args.operator, args.images, log)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(url)
            page.wait_for_selector("#alpha input[type=number]", timeout=120_000)
            page.evaluate(WATCH)
            page.locator("#gallery .thumbnail-item").nth(args.pick).click()
            page.wait_for_function("() => document.querySelector('#status').innerText.includes('α =')",
                                   timeout=300_000)
            page.wait_for_function("() => window.__srcs.length > 0", timeout=120_000)
            page.wait_for_function("() => document.querySelector('#output img').naturalWidth > 0", timeout=60_000)
            size = page.evaluate("() => { const im = document.querySelector('#output img');"
                                 " return [im.naturalWidth, im.naturalHeight]; }")
            time.sleep(2)  # the first α of an image is not what is measured
            sliders, strokes = slider_ms(page), stroke_ms(page)
            browser.close()
    finally:
        process.terminate()
        process.wait()
    print(f"image {size[0]}x{size[1]}")
    print("slider ms:", [round(t) for t in sliders], "median", round(statistics.median(sliders)))
    print("stroke ms:", [round(t) for t in strokes], "median", round(statistics.median(strokes)))


if __name__ == "__main__":
    main()
