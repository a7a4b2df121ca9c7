"""`dotrestore serve` as a user meets it: a real server process, gradio_client and headless Chromium.

The server runs as a subprocess on a free localhost port with a small operator fitted with the
bundled TAEF2 on generated images (no ../shared, no network). Screenshots are saved under the
test's tmp folder and, when ``DOTRESTORE_ARTIFACTS`` names a folder, copied there.
Needs the ``ui`` extra (gradio, gradio_client); the browser tests also need Playwright and
Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``); they skip otherwise.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dotrestore import cli
from dotrestore.io import images as data

from serve_support import free_port, make_workspace

pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
pytestmark = pytest.mark.slow  # a server start, a fit and a browser: about a minute on 2 cores

CHROMIUM = Path("/usr/bin/chromium")
#: the issue asks ≤ 150 ms per repeated α on 2 idle CPU cores; asserted loosely (shared, loaded CI machines)
REPEAT_BOUND_S = 2.0


def start_server(ws, *args: str):
    """``dotrestore serve ARGS --port P`` as a subprocess; returns (process, url) once the page answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(ws["root"] / f"server-{port}.log", "w")  # noqa: SIM115 - the server's stdout while it runs
    ws["log"] = ws["root"] / f"server-{port}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "-m", "dotrestore", "serve", *args, "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"dotrestore serve exited with {process.returncode}:\n{(ws['root'] / f'server-{port}.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            pytest.fail("dotrestore serve did not answer within 180 s")
        time.sleep(0.5)


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("serve_ws"))


@pytest.fixture(scope="module")
def served(workspace):
    ws = workspace
    process, url = start_server(ws, str(ws["operator"]), "--images", str(ws["images"]), "--reference", str(ws["refs"]))
    try:
        yield {**ws, "url": url, "process": process}
    finally:
        stop(process)


def applied(ws, image: Path, alpha: float, out: Path) -> Path:
    assert cli.main(["apply", str(ws["operator"]), str(image), "-o", str(out), "--alpha", str(alpha)]) == 0
    return out / f"{image.stem}.png"


def save_artifact(path: Path) -> None:
    folder = os.environ.get("DOTRESTORE_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


# ------------------------------------------------------------------ gradio_client
def test_transform_api_equals_apply_and_repeats_fast(served, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(served["url"], verbose=False)
    image = served["images"] / "test10.png"
    start = time.perf_counter()
    result = client.predict(handle_file(str(image)), 0.5, api_name="/transform")
    first = time.perf_counter() - start
    reference = applied(served, image, 0.5, tmp_path / "apply")
    assert np.array_equal(data.read_image(result).numpy(), data.read_image(reference).numpy())
    times = []
    for alpha in (0.0, 0.25, 0.75, 1.0, 1.5, -0.5):
        start = time.perf_counter()
        out = client.predict(handle_file(str(image)), alpha, api_name="/transform")
        times.append(time.perf_counter() - start)
        assert Path(out).is_file()
    print(f"/transform first call {first * 1000:.0f} ms; repeated alpha: median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {len(times)} calls")
    assert max(times) <= REPEAT_BOUND_S
    assert statistics.median(times) < first  # the first call transports; the others only blend
    # α = 1 is x* itself
    at_one = client.predict(handle_file(str(image)), 1.0, api_name="/transform")
    assert np.array_equal(data.read_image(at_one).numpy(), data.read_image(image).numpy())


def test_transform_api_reports_a_corrupt_file_and_keeps_serving(served):
    from gradio_client import Client, handle_file

    client = Client(served["url"], verbose=False)
    with pytest.raises(Exception, match="corrupt.png"):
        client.predict(handle_file(str(served["corrupt"])), 0.5, api_name="/transform")
    assert Path(client.predict(handle_file(str(served["images"] / "test11.png")), 0.5, api_name="/transform")).is_file()
    assert served["process"].poll() is None


# ------------------------------------------------------------------ the page in Chromium
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium to run the browser tests")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(served, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    page.goto(served["url"])
    page.wait_for_selector("#alpha input[type=number]", timeout=120_000)
    yield page
    context.close()


def wait_status(page, text: str, timeout: float = 120_000) -> str:
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=text, timeout=timeout)
    return page.inner_text("#status")


def shown_pixels(page, url: str) -> np.ndarray:
    """The x̂α the page shows, fetched from the <img> it displays."""
    from PIL import Image

    src = page.locator("#output img").get_attribute("src")
    with urllib.request.urlopen(src if src.startswith("http") else url.rstrip("/") + src) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def set_alpha(page, alpha: float) -> None:
    box = page.locator("#alpha input[type=number]")
    box.fill(f"{alpha:g}")
    box.press("Enter")
    wait_status(page, f"α = {alpha:g} ")


def upload(page, path: Path) -> None:
    """Choose ``path`` in the upload box as a user would (the click opens a file chooser)."""
    with page.expect_file_chooser() as chooser:
        page.locator("#upload button.upload-container, #upload .upload-container").first.click()
    chooser.value.set_files(str(path))


def test_explore_alpha_download_and_corrupt_upload(served, page, tmp_path):
    image = served["images"] / "test10.png"
    page.locator("#gallery .thumbnail-item").nth(0).click()
    assert "test10" in wait_status(page, "test10")
    shots = []
    pixels, prev = {}, None
    for alpha in (0.0, 0.5, 1.0):
        set_alpha(page, alpha)
        page.wait_for_function("() => document.querySelector('#output img') !== null")
        deadline = time.monotonic() + 30
        while True:  # the <img> is swapped after the status line: wait for a new picture
            pixels[alpha] = shown_pixels(page, served["url"])
            if alpha == 0.0 or not np.array_equal(pixels[alpha], pixels[prev]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        prev = alpha
    x_star = (data.read_image(image) * 255).round().byte().permute(1, 2, 0).numpy()
    assert not np.array_equal(pixels[0.0], pixels[0.5]) and not np.array_equal(pixels[0.5], pixels[1.0])
    assert np.array_equal(pixels[1.0], x_star)
    page.wait_for_function("() => document.querySelector('#scores').innerText.includes('PSNR')", timeout=60_000)
    shots.append(tmp_path / "serve_explore_alpha1.png")
    page.screenshot(path=str(shots[-1]), full_page=True)

    set_alpha(page, 0.5)
    page.click("#download")
    link = page.locator("#download-file a[download]")
    link.wait_for(timeout=60_000)
    with page.expect_download() as info:
        link.click()
    downloaded = tmp_path / "downloaded.png"
    info.value.save_as(downloaded)
    assert downloaded.read_bytes() == applied(served, image, 0.5, tmp_path / "apply").read_bytes()

    upload(page, served["corrupt"])
    text = wait_status(page, "Error")
    assert "corrupt.png" in text and "not an image" in text
    shots.append(tmp_path / "serve_corrupt_upload.png")
    page.screenshot(path=str(shots[-1]), full_page=True)

    upload(page, served["images"] / "test11.png")
    assert "test11" in wait_status(page, "test11")
    assert served["process"].poll() is None
    for shot in shots:
        assert shot.stat().st_size > 10_000
        save_artifact(shot)


def test_without_operator_fit_then_batch(workspace, browser, tmp_path):
    """No operator: the app opens on Fit; a fit from server folders becomes the operator; Batch never overwrites."""
    ws = workspace
    process, url = start_server(ws)
    try:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#fit", timeout=120_000)
        assert page.locator("#fit").is_visible() and not page.locator("#alpha").is_visible()
        page.get_by_label("…or restored folders on the server").fill(str(ws["restored"]))
        page.get_by_label("…or clean folders on the server").fill(str(ws["clean"]))
        page.click("#fit")
        page.wait_for_function("/Fitted|Error/.test(document.querySelector('#fit-status').innerText)", timeout=300_000)
        assert "Fitted on 4 restored and 4 clean images" in page.inner_text("#fit-status")
        assert "taesd:taef2:" in page.inner_text("#operator-info")
        page.get_by_role("tab", name="Batch").click()
        help_text = page.inner_text("#batch-help")  # "<stem>" must not be read as an HTML tag
        assert "One α → OUT/<stem>.png, several → OUT/alpha_<A>/<stem>.png; existing files are never" in help_text
        out = tmp_path / "batch"
        page.get_by_label("Folder of restored images").fill(str(ws["images"]))
        page.get_by_label("α values").fill("0.5")
        page.get_by_label("Output folder (new or without these files; empty with zip)").fill(str(out))
        page.get_by_role("button", name="Apply").click()
        page.wait_for_function("/Wrote|Error/.test(document.querySelector('#batch-status').innerText)", timeout=180_000)
        assert "Wrote 2 images" in page.inner_text("#batch-status")
        assert sorted(p.name for p in out.iterdir()) == ["test10.png", "test11.png"]
        before = (out / "test10.png").read_bytes()
        page.get_by_role("button", name="Apply").click()
        page.wait_for_function("/never overwrites/.test(document.querySelector('#batch-status').innerText)",
                               timeout=60_000)
        assert (out / "test10.png").read_bytes() == before
        shot = tmp_path / "serve_fit_batch.png"
        page.screenshot(path=str(shot), full_page=True)
        save_artifact(shot)
        page.close()
    finally:
        stop(process)


def test_server_prints_its_address_once_answering_and_no_share_hint(served):
    deadline = time.monotonic() + 30
    while f"dotrestore serve: {served['url']}" not in served["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = served["log"].read_text()
    assert f"dotrestore serve: {served['url']} (Ctrl+C stops it)" in log
    assert "share=True" not in log and "public link" not in log
