"""``python _audit_opens.py LOG ARGS...``: run ``dotrestore ARGS`` and write every path it opens to LOG.

An audit hook (:func:`sys.addaudithook`, event ``open``: ``open``, ``io.open``, ``os.open``)
appends the path of each open to LOG through a descriptor opened before the hook exists, so the
log itself is never counted and DataLoader workers (forked, the hook and descriptor inherited)
log theirs too. Clips opened by FFmpeg (PyAV's ``av.open``) are logged as well. Under torchrun
each rank writes ``LOG.<RANK>``.
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
    _log_clip_opens(fd)
    from dotrestore.cli import main as cli

    return cli(argv)


def _log_clip_opens(fd: int) -> None:
    """FFmpeg opens a clip in C, unseen by the audit hook: PyAV's ``av.open`` for reading logs it instead."""
    try:
        import av
    except ImportError:  # no video extra: no clips to count
        return
    opened = av.open

    def logged(file, mode="r", *args, **kwargs):
        if mode == "r" and isinstance(file, (str, os.PathLike)):
            os.write(fd, os.fsencode(os.path.abspath(os.fsdecode(file))) + b"\n")
        return opened(file, mode, *args, **kwargs)

    av.open = logged


if __name__ == "__main__":
    sys.exit(main())
