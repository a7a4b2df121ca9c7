"""``dotrestore serve [OP] [--images DIR] [--reference DIR] [--host 127.0.0.1] [--port 7860]``."""

from __future__ import annotations

import importlib.util
import logging

from ..errors import InputError
from ..serve.session import DEFAULT_MAX_PIXELS

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
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse images with more pixels than N (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=serve_command)


def serve_command(args) -> int:
    if not 0 < args.port < 65536:  # arguments first: a bad flag is named whether or not Gradio is installed
        raise InputError(None, f"--port must be in 1..65535, got {args.port}")
    if importlib.util.find_spec("gradio") is None:
        raise InputError(None, 'dotrestore serve needs Gradio: pip install "dotrestore[ui]"')
    if args.max_pixels < 1:
        raise InputError(None, f"--max-pixels must be positive, got {args.max_pixels}")
    from ..serve import Explorer, serve

    explorer = Explorer(args.operator, images=args.images, reference=args.reference, max_pixels=args.max_pixels,
                        device=args.device)
    log.info("%s", explorer.describe_operator())
    print(f"dotrestore serve: http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    try:
        serve(explorer, host=args.host, port=args.port, block=True)
    finally:
        explorer.close()
    return 0
