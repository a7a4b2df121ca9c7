"""Command line: ``dotrestore fit | apply | info | experiment | demo | serve``.

Each subcommand module parses its arguments (flags, types, defaults and help come from the
settings table, :mod:`.options`) and calls the library. :func:`main` applies the one error
policy (:func:`dotrestore.errors.user_message`): a user's mistake prints one line naming the
file or flag and exits with status 2, nothing written; a bug prints one line asking for a
report and exits with status 1 (``--debug`` shows the traceback). Ctrl-C, SIGTERM and SIGHUP
(torchrun sends SIGTERM to the other processes when one dies) end a command the same way:
staged outputs are removed, one line is printed and the exit status is 128 + the signal.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from .. import log, settings
from .._version import __version__
from ..errors import SettingError, printable, user_message
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
    """Run one command; exit status 0 (done), 2 (a problem with an input, named), 1 (a bug),
    128 + N after signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    command = "dotrestore"
    try:
        args = build_parser().parse_args(argv)
        log.install_default_handler(force=True)
        log.logger.setLevel("DEBUG" if args.verbose else "INFO")
        command = f"dotrestore {args.command}"
        with terminations_interrupt() as received:
            return _run(args, command, received)
    except KeyboardInterrupt as exc:
        # Ctrl-C before the handler took over (parsing the arguments) or while it hands back:
        # the same one line as during the command, never a traceback
        return _interrupted(command, getattr(exc, "signum", signal.SIGINT))


def _run(args, command: str, received: list[int]) -> int:
    """``args.func(args)`` under the one error policy (see :func:`main`)."""
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        return _interrupted(command, getattr(exc, "signum", signal.SIGINT))
    except Exception as exc:
        if received:  # an error the signal caused (a DataLoader worker it killed): still an interruption
            return _interrupted(command, received[0])
        if args.debug:
            raise
        message = user_message(_as_flag(exc))
        if message is None:  # a bug: one line, never a bare traceback unless asked for
            _say(f"{command}: internal error: {type(exc).__name__}: "
                 f"{' '.join(str(exc).split()) or '(no message)'} "
                 "(please report this; rerun with --debug for the traceback)")
            return 1
        _say(f"{command}: error: {message}")
        if parallel.active():  # every rank agreed on this error: leave together, now
            parallel.exit_now(2)
        return 2
    finally:
        parallel.finish()


def _say(line: str) -> None:
    # one write of the whole line: under torchrun every rank shares stderr, and print's two
    # writes (text, then newline) let two ranks' lines run together
    sys.stderr.write(printable(line) + "\n")  # a file name's escape codes never reach the terminal raw
    sys.stderr.flush()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, like Ctrl-C's KeyboardInterrupt, so every
    ``with`` block and ``finally`` clause cleans up on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


@contextlib.contextmanager
def terminations_interrupt():
    """Within the block SIGINT, SIGTERM and SIGHUP raise :class:`Terminated` (once: a second
    signal must not cut the clean-up of the first short); yields the list of signals received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise Terminated(signum)

    wanted = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _interrupted(command: str, signum: int) -> int:
    name = signal.Signals(signum).name
    _say(f"{command}: interrupted ({name})")
    code = 128 + int(signum)
    if parallel.active():  # no orderly teardown: the other processes may be gone already
        parallel.exit_now(code)
    return code


def _as_flag(exc: BaseException) -> BaseException:
    """A SettingError named by its Python name is named by its flag on the command line."""
    if isinstance(exc, SettingError) and exc.subject in settings.SETTINGS:
        return SettingError(settings.SETTINGS[exc.subject].option, exc.problem)
    return exc


__all__ = ["build_parser", "main", "Terminated", "terminations_interrupt"]
