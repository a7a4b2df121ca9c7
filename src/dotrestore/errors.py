"""Exceptions raised by dotrestore, and the one policy that tells a user's mistake from a bug.

Every error a user can cause derives from :class:`DotRestoreError`. :class:`InputError` is for
what a user handed us (a file, a flag, a setting, a configuration, an operator file, a restorer)
and always names it; inside the library, plain ``ValueError`` / ``TypeError`` mean a bug or a
misuse of an internal function. :func:`user_message` applies that policy for every interface:
the command line prints it and exits with status 2, ``dotrestore serve`` shows it in the page;
anything else is an internal error (exit status 1, "please report").
"""

from __future__ import annotations

from pathlib import Path


class DotRestoreError(Exception):
    """Base class of every error dotrestore raises on purpose."""


class InputError(DotRestoreError, ValueError):
    """Something a user handed us is unusable: ``subject`` (a file, a flag, a setting) and the problem.

    ``str(error)`` is ``"<subject>: <problem>"``. Errors pickle with both parts, so an error
    raised in a DataLoader worker or another process reads the same in the main process.
    """

    def __init__(self, subject: str | Path, problem: str):
        if subject is None or not str(subject):
            raise TypeError("InputError needs a subject: the file, flag or setting the problem is about")
        self.path = str(subject)
        self.problem = problem
        super().__init__(f"{subject}: {problem}")

    @property
    def subject(self) -> str:
        return self.path

    def __reduce__(self):
        return type(self), (self.path, self.problem)


class SettingError(InputError, TypeError):
    """A setting has a value outside its type or range (named as the interface spells it:
    ``lowpass_sigma`` in Python, ``--lowpass-sigma`` on the command line, ``FILE: key`` in a file).

    Also a ``TypeError``, as scikit-learn's ``InvalidParameterError`` is, so callers catching
    either see it.
    """


class ImageTooSmallError(InputError):
    """An image has no complete latent patch."""


class OperatorFileError(InputError):
    """A file given as an operator is not a dotrestore operator, or does not fit the codec."""


class CodecUnavailableError(DotRestoreError, OSError):
    """A codec's weights cannot be found (e.g. a hub model that is not cached, offline)."""


class NotFittedError(DotRestoreError, AttributeError):
    """The estimator is used before it has the statistics it needs."""


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (ANSI escape sequences, carriage
    returns, bidirectional overrides) written as ``\\x1b``-style escapes, the rest unchanged.

    File names and an operator file's metadata are the user's bytes: printed raw, ``ESC[2J``
    in a name would clear the screen, ``\\r`` hide the start of a line.
    """
    import unicodedata

    return "".join(ch if ch.isprintable() or ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
                   else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def user_message(exc: BaseException) -> str | None:
    """The one-line message of an error that is the user's to fix, or None for a bug.

    The user's: every :class:`DotRestoreError` (it names its subject), and an ``OSError`` (a file
    that cannot be read or written, a full disk: named by its ``filename`` when it has one).
    Anything else, a ``ValueError`` from inside the library included, is a bug to report.
    """
    if isinstance(exc, DotRestoreError):
        return printable(" ".join(str(exc).split()))
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "(unknown file)"
        return printable(f"{where}: {exc.strerror or exc}")
    return None


__all__ = ["DotRestoreError", "InputError", "SettingError", "ImageTooSmallError", "OperatorFileError",
           "CodecUnavailableError", "NotFittedError", "printable", "user_message"]
