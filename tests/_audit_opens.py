"""``python _audit_opens.py LOG ARGS...``: run ``dotrestore ARGS`` and write every path it opens to LOG.

An audit hook (:func:`sys.addaudithook`, event ``open``: ``open``, ``io.open``, ``os.open``)
appends the path of each open to LOG through a descriptor opened before the hook exists, so the
log itself is never counted and DataLoader workers (forked, the hook and descriptor inherited)
log theirs too. Under torchrun each rank writes ``LOG.<RANK>``.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    log, argv = sys.argv[1], sys.argv[2:]
    rank = os.environ.get("RANK")
    fd = os.open(log if rank is None else f"{log}.{rank}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            os.write(fd, os.fsencode(os.path.abspath(os.fsdecode(args[0]))) + b"\n")

    sys.addaudithook(hook)
    from dotrestore.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
