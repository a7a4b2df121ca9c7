"""`dotrestore serve` latency: a repeated α for a cached image ÷ the first call for that image.

Starts the app in this process on a free localhost port with an operator (``--operator``, or
one fitted here with the bundled TAEF2 on ``--fit`` images), then calls ``/transform`` through
``gradio_client`` as a script would: once per image (encode, transport, decode), then once per α
of the slider's kind (a blend of the cached x* and x̂0). Prints, per image and in one run:
first-call ms, repeated-α median and max ms, their ratio, and the share of a repeated call
spent inside the handler (the rest is Gradio's upload/queue/download round trip).
Interleaved with each repeated α, a new brush stroke: ``/transform`` with a new α map file (read,
feathered, blended) and the brush's own handler in-process (stroke geometry → α map → blend → picture).
Target: a repeated α, and a new stroke, ≤ 150 ms median on 2 CPU cores.

    python benchmarks/serve_latency.py IMAGE [IMAGE ...] [--operator OP | --fit DIR_RESTORED DIR_CLEAN]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--operator", type=Path)
    parser.add_argument("--fit", nargs=2, type=Path, metavar=("RESTORED", "CLEAN"))
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from dotrestore import DOT
    from dotrestore.serve import Explorer, serve

    if args.operator is None:
        if args.fit is None:
            parser.error("give --operator or --fit RESTORED CLEAN")
        dot = DOT(codec="taef2", shrinkage="oas").fit(str(args.fit[0]), str(args.fit[1]))
        explorer = Explorer()
        explorer.set_operator(dot)
    else:
        explorer = Explorer(args.operator)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serve(explorer, port=port, block=False)
    work = Path(tempfile.mkdtemp(prefix="serve-latency-"))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for image in args.images:
            start = time.perf_counter()
            client.predict(handle_file(str(image)), 0.5, api_name="/transform")
            first = time.perf_counter() - start
            calls, inside, strokes, painted = [], [], [], []
            for k, alpha in enumerate(ALPHAS):  # interleaved: a repeated α, then a new stroke
                start = time.perf_counter()
                client.predict(handle_file(str(image)), alpha, api_name="/transform")
                calls.append(time.perf_counter() - start)
                start = time.perf_counter()
                explorer.transform_file(image, alpha)
                inside.append(time.perf_counter() - start)
                stroke_map = stroke(image, k, work)
                start = time.perf_counter()
                client.predict(handle_file(str(image)), alpha, handle_file(str(stroke_map)), api_name="/transform")
                strokes.append(time.perf_counter() - start)
                painted.append(paint_handler_seconds(explorer, image, k, alpha))
            median = statistics.median(calls)
            print(f"{image.name}: first {first * 1e3:.0f} ms; repeated alpha median {median * 1e3:.0f} ms, "
                  f"max {max(calls) * 1e3:.0f} ms; repeated/first {median / first:.3f}; "
                  f"handler share {statistics.median(inside) / median:.2f}")
            print(f"{image.name}: new stroke (/transform with a new map) median {statistics.median(strokes) * 1e3:.0f} ms, "
                  f"max {max(strokes) * 1e3:.0f} ms; the brush's handler (stroke → map → blend → picture) median "
                  f"{statistics.median(painted) * 1e3:.0f} ms, max {max(painted) * 1e3:.0f} ms")
    finally:
        app.close()
        explorer.close()
        shutil.rmtree(work, ignore_errors=True)


def stroke(image: Path, k: int, work: Path) -> Path:
    """A new α map file per call: the k-th horizontal band white (α = 1) on black, as a brush would leave."""
    import numpy as np
    from PIL import Image

    width, height = Image.open(image).size
    levels = np.zeros((height, width), dtype=np.uint8)
    band = max(2, height // 12)
    levels[(k * band) % height:(k * band) % height + band] = 255
    path = work / f"stroke{k}.png"
    Image.fromarray(levels).save(path)
    return path


def paint_handler_seconds(explorer, image: Path, k: int, alpha: float) -> float:
    """Wall time of the brush's handler for a new stroke on an image already transported (the page
    sends the stroke's geometry; a band across the image, one stroke of radius 1/24 of its height)."""
    from dotrestore.serve import handlers

    state, *_ = handlers._pick(explorer, image, image.stem, alpha, False, lambda *a, **kw: None)
    height, width = state_size(explorer, state)
    y = (k * height / 12) % height + 0.5
    message = {"pick": state["pick"], "frame": [width, height],
               "strokes": [{"points": [[x, y] for x in range(0, width + 1, 20)], "radius": height / 24, "alpha": 1.0}]}
    start = time.perf_counter()
    handlers.on_strokes(explorer, message, state, alpha, False)
    return time.perf_counter() - start


def state_size(explorer, state) -> tuple[int, int]:
    from dotrestore.serve import handlers

    return tuple(handlers.current(explorer, state).x_star.shape[-2:])


if __name__ == "__main__":
    main()
