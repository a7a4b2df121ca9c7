"""The ``dotrestore`` command's entry point, light enough to catch a Ctrl-C while torch loads.

Importing the command line takes seconds (torch); a Ctrl-C then raised ``KeyboardInterrupt``
out of the import, as a traceback. Here it ends like any interruption of a command: one line,
exit status 130. Everything else is :func:`dotrestore.cli.main`'s.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Import the command line and run it; a Ctrl-C before it took over exits 130 with one line."""
    try:
        from .cli import main as run

        return run(argv)
    except KeyboardInterrupt:
        sys.stderr.write("dotrestore: interrupted (SIGINT)\n")
        sys.stderr.flush()
        return 130


__all__ = ["main"]
