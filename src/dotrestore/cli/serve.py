"""``dotrestore serve [OP] [--images DIR] [--reference DIR] [--host 127.0.0.1] [--port 7860]``."""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import signal
import sys

from ..errors import InputError
from . import options
from .restorer import add_restorer_option, restorer_from

log = logging.getLogger("dotrestore")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="the alpha explorer in the browser (pip install \"dotrestore[ui]\")",
        description="Start a local web app to choose alpha by eye: pick or upload an image, move the alpha "
        "slider, compare before/after, see PSNR/SSIM against a reference, download the PNG at that alpha; "
        "fit operators and apply them to folders. Binds 127.0.0.1 unless --host says otherwise; never a public link.",
    )
    p.add_argument("operator", nargs="?", metavar="OP.safetensors",
                   help="operator to explore (without one the app opens on the Fit tab)")
    p.add_argument("--images", metavar="DIR", help="folder of restored images shown in a gallery")
    p.add_argument("--reference", metavar="DIR", help="folder of clean references, matched by file stem")
    options.add(p, "host")
    options.add(p, "port")
    options.add(p, "max_pixels")
    options.add(p, "device")
    add_restorer_option(p, "images dropped into Explore (and Batch inputs) are degraded: x* = RESTORER(image) "
                        "is what alpha explores")
    p.set_defaults(func=serve_command)


def serve_command(args) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise InputError("dotrestore serve", 'needs Gradio: pip install "dotrestore[ui]"')
    check_address(args.host, args.port)  # before any work: Gradio's own "Cannot find empty port" names no flag
    from ..runtime import Runtime
    from ..serve import Explorer, serve

    runtime = Runtime(device=args.device, max_pixels=args.max_pixels, progress=False)
    explorer = Explorer(args.operator, images=args.images, reference=args.reference, runtime=runtime,
                        restorer=restorer_from(args.restorer, runtime))
    log.info("%s", explorer.describe_operator())
    try:
        serve(explorer, host=args.host, port=args.port, block=True)
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM, SIGHUP: the server is closed already
        atexit.register(_leave_now, 128 + getattr(stop, "signum", signal.SIGINT))
        raise
    finally:
        explorer.close()
    return 0


def _leave_now(code: int) -> None:
    """The last step of a stopped server: after the command's own line, skip the interpreter's
    teardown of torch, Gradio and matplotlib (seconds on a busy machine; nothing is left to clean
    up: the scratch folder is gone and nothing else was written), so SIGTERM ends it at once."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

def check_address(host: str, port: int) -> None:
    """InputError naming ``--host`` when it is not an address of this machine, ``--port`` when the
    port is taken there (a test bind, released at once)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError("--host", f"{host!r} is not a known host name or address ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError("--port", f"{port} is already in use on {host}: stop what uses it or choose "
                                 "another --port") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise InputError("--port", f"{port} needs privileges on {host}: choose a port above 1023") from None
            raise InputError("--host", f"{host!r} is not an address of this machine ({exc.strerror or exc})") from None
