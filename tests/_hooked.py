"""Run ``python -m dotrestore ARGS`` with a hook, so a test can hit an exact moment of a run.

    python tests/_hooked.py --after MODULE:ATTR [--call N] --do RANK=ACTION ... -- ARGS

After the N-th call (default 1) of ``MODULE.ATTR`` (a function, or ``Class.method``) returns,
the process of torchrun rank RANK (0 without torchrun) does ACTION:

- a signal name (``SIGTERM``, ``SIGINT``, ``SIGHUP``, ``SIGKILL``): sent to this very process,
  as ``kill`` from another terminal (or torchrun, or a closing terminal) would;
- ``wait``: stop right there until a signal arrives (what torchrun sends when another rank dies),
  for at most 120 s, then exit 3 (a test then fails instead of hanging).

No sleeping to win a race: the hook is the moment.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time


def _resolve(spec: str):
    module_name, _, attr = spec.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _act(action: str) -> None:
    if action == "wait":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)  # a signal's handler raises here
        os._exit(3)
    os.kill(os.getpid(), getattr(signal, action))


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--after", required=True)
    parser.add_argument("--call", type=int, default=1)
    parser.add_argument("--do", action="append", default=[])
    args = parser.parse_args(argv[:split])
    actions = dict(item.split("=", 1) for item in args.do)
    action = actions.get(os.environ.get("RANK", "0"))
    if action is not None:
        owner, name = _resolve(args.after)
        original, calls = getattr(owner, name), [0]

        def hooked(*a, **kw):
            result = original(*a, **kw)
            calls[0] += 1
            if calls[0] == args.call:
                _act(action)
            return result

        setattr(owner, name, hooked)
    from dotrestore.cli import main as cli_main

    return cli_main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
