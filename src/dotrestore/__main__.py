"""``python -m dotrestore``: what the ``dotrestore`` command runs (see :mod:`dotrestore._entry`), with
the same one line for a Ctrl-C that arrives while torch loads."""

import sys

try:
    from .cli import main

    code = main()
except KeyboardInterrupt:
    sys.stderr.write("dotrestore: interrupted (SIGINT)\n")
    code = 130
sys.exit(code)
