"""dotrestore's log: one stderr handler on the ``dotrestore`` logger, so notices reach users.

Libraries usually stay silent, but what dotrestore logs at INFO is what a user must know: which
codec ``auto`` chose and why, which files of a folder were skipped. The handler is installed when
the package is imported, only if the application has not configured the ``dotrestore`` logger
itself (or the root logger); silence it with ``logging.getLogger("dotrestore").setLevel(logging.WARNING)``.
"""

from __future__ import annotations

import logging
import sys

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


__all__ = ["logger", "install_default_handler", "StderrHandler"]
