"""dotrestore's log: one stderr handler on the ``dotrestore`` logger, so notices reach users.

Libraries usually stay silent, but what dotrestore logs at INFO is what a user must know: which
codec ``auto`` chose and why, which files of a folder were skipped. The handler is installed when
the package is imported, only if the application has not configured the ``dotrestore`` logger
itself (or the root logger); silence it with ``logging.getLogger("dotrestore").setLevel(logging.WARNING)``.
The libraries a codec is loaded with print their own warnings; :func:`libraries_kept_quiet` holds
them back while a model loads (an error is then one line of ours) and logs them at DEBUG instead.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator

from .errors import printable

logger = logging.getLogger("dotrestore")


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the stream of the
    first call): a command may run many times in one process, with stderr redirected in between."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        text = f"dotrestore: {level}{printable(record.getMessage())}"  # file names are the user's bytes
        if record.exc_info:  # an internal error logged with its traceback keeps it
            text += "\n" + self.formatException(record.exc_info)
        return text


def install_default_handler(force: bool = False) -> None:
    """``dotrestore: message`` lines on stderr from INFO up, unless the application configured
    logging itself (``force``: the command line, which owns the process)."""
    if not force and (logger.handlers or logger.level != logging.NOTSET or logging.getLogger().handlers):
        return
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


class _Kept(logging.Handler):
    """Keeps the records it is given, for :func:`libraries_kept_quiet` to log them later."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_quiet = threading.RLock()  # one block at a time: each swaps the libraries' handlers and restores them


@contextlib.contextmanager
def libraries_kept_quiet(*names: str) -> Iterator[None]:
    """Within the block, the loggers ``names`` (libraries such as diffusers, which print their
    own warnings to stderr) and Python warnings print nothing; afterwards what they said is
    logged here at DEBUG (``-v`` shows it). An error then reaches the user as one line of ours,
    not beside a library's lines about the same problem.

    Import the libraries first: one that sets up its logging inside the block (adding its own
    stderr handler) would print past it.
    """
    kept = _Kept()
    with _quiet, warnings.catch_warnings(record=True) as caught:
        saved = [(library, list(library.handlers), library.propagate) for library in map(logging.getLogger, names)]
        for library, handlers, _ in saved:
            for handler in handlers:
                library.removeHandler(handler)
            library.addHandler(kept)
            library.propagate = False
        try:
            yield
        finally:
            for library, handlers, propagate in saved:
                library.removeHandler(kept)
                for handler in handlers:
                    library.addHandler(handler)
                library.propagate = propagate
            for record in kept.records:  # after an error too: -v shows what led to it
                logger.debug("%s: %s", record.name, record.getMessage())
            for warning in caught:
                logger.debug("%s: %s", warning.category.__name__, warning.message)


__all__ = ["logger", "install_default_handler", "StderrHandler", "libraries_kept_quiet"]
