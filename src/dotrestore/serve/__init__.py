"""``dotrestore serve``: choose α by eye in the browser (Gradio; ``pip install "dotrestore[ui]"``).

Modules: :mod:`.cache` (x* and x̂0 per image, LRU by content hash; α is then a blend),
:mod:`.session` (the operator, checks and per-image work, no Gradio), :mod:`.jobs` (fit and
batch), :mod:`.handlers` (the page's event handlers and its one error policy), :mod:`.app`
(the layout and wiring). The command is :mod:`dotrestore.cli.serve`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import urllib.request

from .session import Explorer

__all__ = ["Explorer", "build_app", "serve", "stop_now"]


def build_app(explorer: Explorer):
    """The Gradio Blocks of ``explorer`` (imports gradio, which the ``ui`` extra installs)."""
    from .app import build_app as _build

    return _build(explorer)


def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Launch the app on ``host:port`` (localhost by default; never a public share link).

    The address is printed once the page answers, not when the server starts to come up. With
    ``block``, it serves until Ctrl-C or SIGTERM (raised here as KeyboardInterrupt by the command
    line's handler, which prints the one line saying so) and then stops within a second.
    """
    from .app import PAGE_CSS, PAGE_JS

    app = build_app(explorer)
    app.queue(default_concurrency_limit=1)  # one transport at a time: torch already uses every core
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
               quiet=True, footer_links=["api"], allowed_paths=[str(explorer.work_dir)], css=PAGE_CSS, js=PAGE_JS)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    _wait_until_answering(url)
    print(f"dotrestore serve: {url} (Ctrl+C stops it)", flush=True)
    if block:
        try:
            while app.is_running:
                time.sleep(0.1)
        finally:
            stop_now(app)
    return app


def stop_now(app, wait_s: float = 1.0) -> None:
    """Close the server without waiting for open connections (a browser's event stream would hold a
    graceful shutdown for seconds) and without Gradio's own "closing server" line."""
    server = getattr(app, "server", None)
    # uvicorn logs the lifespan task it cancels on a forced exit as an error, with a traceback
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    if server is not None:
        server.force_exit = True  # uvicorn: leave now, open connections or not
    thread = getattr(server, "thread", None)
    app.is_running = False
    if server is not None:
        server.should_exit = True
    with contextlib.suppress(Exception):  # the queue's and heartbeats' tasks: best effort, never a traceback
        app._queue.close()
        app.app.stop_event.set()
    if thread is not None:
        thread.join(wait_s)


def _wait_until_answering(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
