"""``dotrestore serve``: choose α by eye in the browser (Gradio; ``pip install "dotrestore[ui]"``).

Modules: :mod:`.cache` (x* and x̂0 per image, LRU by content hash; α is then a blend),
:mod:`.session` (the operator, checks and per-image work, no Gradio), :mod:`.jobs` (fit and
batch), :mod:`.app` (the Gradio layout and handlers), :mod:`.cli` (the subcommand).
"""

from __future__ import annotations

from .session import DEFAULT_MAX_PIXELS, Explorer

__all__ = ["DEFAULT_MAX_PIXELS", "Explorer", "build_app", "serve"]


def build_app(explorer: Explorer):
    """The Gradio Blocks of ``explorer`` (imports gradio, which the ``ui`` extra installs)."""
    from .app import build_app as _build

    return _build(explorer)


def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Launch the app on ``host:port`` (localhost by default; never a public share link)."""
    app = build_app(explorer)
    app.queue(default_concurrency_limit=1)  # one transport at a time: torch already uses every core
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
               footer_links=["api"], allowed_paths=[str(explorer.work_dir)])
    return app
