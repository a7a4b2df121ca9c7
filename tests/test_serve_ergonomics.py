"""`dotrestore serve` as the tools people know behave, in the real Chromium against a real server process:
the command line's operator is not replaced by a stray upload, "Download at this α" is one click, the
full-resolution view is 1:1, the Batch tab starts from Explore's α, and SIGTERM stops it at once.

The operator is a pixel-space fit (no codec weights, seconds); needs the ``ui`` extra, Playwright and
/usr/bin/chromium, and skips otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dotrestore import cli
from dotrestore.io import images as data

from serve_support import free_port, textured

pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dotrestore[ui]')")
pytestmark = pytest.mark.slow  # a server start and a browser: about a minute on 2 cores

CHROMIUM = Path("/usr/bin/chromium")
BIG = (700, 1300)  # (H, W): wider than the page's column


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_ergo")
    for k in range(3):
        data.save_image(textured(k, 64), root / "clean" / f"c{k}.png")
        data.save_image(textured(k + 5, 64) * 0.8 + 0.1, root / "restored" / f"r{k}.png")
    big = torch_big()
    data.save_image(big, root / "images" / "big.png")
    for name in ("op", "other"):
        assert cli.main(["fit", "--source", str(root / "restored"), "--target", str(root / "clean"), "--vae", "pixel",
                         "--patch-size", "3" if name == "op" else "1", "-o", str(root / f"{name}.safetensors")]) == 0
    return root


def torch_big():
    import torch

    tile = textured(9, 128)
    return torch.cat([torch.cat([tile] * 11, dim=2)] * 6, dim=1)[:, :BIG[0], :BIG[1]].contiguous()


@pytest.fixture(scope="module")
def server(workspace):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "-m", "dotrestore", "serve", str(workspace / "op.safetensors"),
                                "--images", str(workspace / "images"), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"dotrestore serve exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("dotrestore serve did not answer within 180 s")
    yield {"url": url, "process": process, "root": workspace}
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium to run the browser tests")
    api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, url, **context):
    page = browser.new_context(viewport={"width": 1000, "height": 1000}, accept_downloads=True, **context).new_page()
    page.goto(url)
    page.wait_for_selector("#alpha input[type=number]", timeout=120_000)
    return page


def wait_status(page, text: str, timeout: float = 120_000) -> str:
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=text, timeout=timeout)
    return page.inner_text("#status")


def set_alpha(page, alpha: float) -> None:
    box = page.locator("#alpha input[type=number]")
    box.fill(f"{alpha:g}")
    box.press("Enter")
    wait_status(page, f"α = {alpha:g} ")


def pick_big(page) -> None:
    page.locator("#gallery .thumbnail-item").nth(0).click()
    wait_status(page, "big")
    page.wait_for_function("() => { const i = document.querySelector('#output img');"
                           " return i !== null && i.complete && i.naturalWidth > 0 }", timeout=60_000)


def shown_size(page) -> list[float]:
    return page.evaluate("() => { const i = document.querySelector('#output img'); const r = i.getBoundingClientRect();"
                         " return [i.naturalWidth, i.naturalHeight, r.width, r.height] }")


def test_download_is_one_click_and_the_view_is_one_to_one(server, browser, tmp_path):
    page = open_page(browser, server["url"])
    pick_big(page)
    set_alpha(page, 0.5)
    width, height, shown_w, shown_h = shown_size(page)
    assert (width, height) == (BIG[1], BIG[0])
    assert page.evaluate("() => document.querySelector('#output').getBoundingClientRect().width") < BIG[1]
    assert (shown_w, shown_h) == (BIG[1], BIG[0])  # not shrunk to the column: one pixel per pixel
    with page.expect_download(timeout=60_000) as info:
        page.click("#download")  # the only click
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name == "big_alpha_0.5.png"
    out = tmp_path / "applied.png"
    assert cli.main(["apply", str(server["root"] / "op.safetensors"), str(server["root"] / "images" / "big.png"),
                     "-o", str(out), "--alpha", "0.5"]) == 0
    assert np.array_equal(np.asarray(Image.open(saved)), np.asarray(Image.open(out)))
    page.screenshot(path=str(tmp_path / "serve_one_to_one.png"))
    page.context.close()


def test_one_to_one_on_a_high_density_screen(server, browser):
    page = open_page(browser, server["url"], device_scale_factor=2)
    pick_big(page)
    width, height, shown_w, shown_h = shown_size(page)
    assert (shown_w, shown_h) == (width / 2, height / 2)  # CSS pixels: one image pixel per device pixel
    page.context.close()


def test_command_line_operator_is_not_replaced_silently(server, browser, workspace):
    page = open_page(browser, server["url"])
    fold = page.locator("#operator-replace")
    assert "Replace the operator (op.safetensors, from the command line)" in fold.inner_text()
    assert not page.locator("#operator-upload").is_visible()  # folded away until asked for
    fold.get_by_text("Replace the operator").click()
    page.locator("#operator-upload").wait_for(state="visible")
    assert "replaces op.safetensors in every tab" in page.inner_text("#operator-upload")
    with page.expect_file_chooser() as chooser:
        page.locator("#operator-upload .upload-container, #operator-upload button").first.click()
    chooser.value.set_files(str(workspace / "other.safetensors"))
    text = wait_status(page, "Replaced the operator")
    assert "Replaced the operator op.safetensors" in text and "patch 1×1" in text
    assert "patch 1×1" in page.inner_text("#operator-info")
    page.context.close()


def test_batch_starts_from_the_alpha_chosen_in_explore(server, browser):
    page = open_page(browser, server["url"])
    pick_big(page)
    set_alpha(page, 0.35)
    page.get_by_role("tab", name="Batch").click()
    box = page.locator("#batch-alphas textarea, #batch-alphas input").first
    page.wait_for_function("() => { const b = document.querySelector('#batch-alphas textarea, #batch-alphas input');"
                           " return b && b.value === '0.35' }", timeout=30_000)
    box.fill("0, 1")  # typed by the user: Explore no longer changes it
    page.get_by_role("tab", name="Explore").click()
    set_alpha(page, 0.7)
    page.get_by_role("tab", name="Batch").click()
    time.sleep(1.0)
    assert box.input_value() == "0, 1"
    page.context.close()


def test_sigterm_stops_it_within_two_seconds_with_one_line(server, browser):
    page = open_page(browser, server["url"])  # an open page holds an event stream to the server
    process = server["process"]
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    elapsed = time.monotonic() - start
    output = process.stdout.read()
    after = output.split("(Ctrl+C stops it)\n", 1)[1]
    print(f"SIGTERM to exit: {elapsed:.2f} s; after the address line: {after!r}")
    assert process.returncode == 128 + signal.SIGTERM
    assert after == "dotrestore serve: interrupted (SIGTERM)\n"
    assert elapsed < 2.0
    page.context.close()
