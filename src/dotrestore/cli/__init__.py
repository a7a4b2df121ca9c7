"""Command line: ``dotrestore fit | apply | info | experiment | demo | serve``.

Each subcommand module parses its arguments (flags, types, defaults and help come from the
settings table, :mod:`.options`) and calls the library. :func:`main` applies the one error
policy (:func:`dotrestore.errors.user_message`): a user's mistake prints one line naming the
file or flag and exits with status 2, nothing written; a bug prints one line asking for a
report and exits with status 1 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys

from .. import log, settings
from .._version import __version__
from ..errors import SettingError, user_message
from ..runtime import parallel
from . import apply, experiment, fit, info, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dotrestore",
        description="Deep Optimal Transport image restoration: make a restoration model's outputs look real "
        "and choose a point on the perception-distortion trade-off at test time.",
    )
    parser.add_argument("--version", action="version", version=f"dotrestore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks of unexpected errors (to report them)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (fit, apply, info, experiment, serve):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0 (done), 2 (a problem with an input, named), 1 (a bug)."""
    args = build_parser().parse_args(argv)
    log.install_default_handler(force=True)
    log.logger.setLevel("DEBUG" if args.verbose else "INFO")
    command = f"dotrestore {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        message = user_message(_as_flag(exc))
        if message is None:  # a bug: one line, never a bare traceback unless asked for
            print(f"{command}: internal error: {type(exc).__name__}: {' '.join(str(exc).split()) or '(no message)'} "
                  "(please report this; rerun with --debug for the traceback)", file=sys.stderr)
            return 1
        print(f"{command}: error: {message}", file=sys.stderr)
        if parallel.active():  # every rank agreed on this error: leave together, now
            parallel.exit_now(2)
        return 2
    finally:
        parallel.finish()


def _as_flag(exc: BaseException) -> BaseException:
    """A SettingError named by its Python name is named by its flag on the command line."""
    if isinstance(exc, SettingError) and exc.subject in settings.SETTINGS:
        return SettingError(settings.SETTINGS[exc.subject].option, exc.problem)
    return exc


__all__ = ["build_parser", "main"]
