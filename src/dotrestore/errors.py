"""Exceptions raised by dotrestore.

Every error a user can cause derives from :class:`DotRestoreError`; the CLI turns
it into a one-line message and exit code 2.
"""

from __future__ import annotations

from pathlib import Path


class DotRestoreError(Exception):
    """Base class of every error dotrestore raises on purpose."""


class InputError(DotRestoreError, ValueError):
    """A user-supplied file or value is unusable; the message names it and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class ImageTooSmallError(InputError):
    """An image has no complete latent patch. ``index`` is its position among the images given,
    so a caller that passed tensors can name the file they came from."""

    def __init__(self, path, problem: str, index: int | None = None):
        super().__init__(path, problem)
        self.index = index


class OperatorFileError(InputError):
    """A file given as an operator is not a dotrestore operator, or does not fit the codec."""


class CodecUnavailableError(DotRestoreError, OSError):
    """A codec's weights cannot be found (e.g. a hub model that is not cached, offline)."""


class NotFittedError(DotRestoreError, AttributeError):
    """The estimator is used before it has the statistics it needs."""
