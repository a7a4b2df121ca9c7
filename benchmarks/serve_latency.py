"""`dotrestore serve` latency: a repeated α for a cached image ÷ the first call for that image.

Starts the app in this process on a free localhost port with an operator (``--operator``, or
one fitted here with the bundled TAEF2 on ``--fit`` images), then calls ``/transform`` through
``gradio_client`` as a script would: once per image (encode, transport, decode), then once per α
of the slider's kind (a blend of the cached x* and x̂0). Prints, per image and in one run:
first-call ms, repeated-α median and max ms, their ratio, and the share of a repeated call
spent inside the handler (the rest is Gradio's upload/queue/download round trip).
Target from the issue: a repeated α ≤ 150 ms on 2 CPU cores.

    python benchmarks/serve_latency.py IMAGE [IMAGE ...] [--operator OP | --fit DIR_RESTORED DIR_CLEAN]
"""

from __future__ import annotations

import argparse
import socket
import statistics
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
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for image in args.images:
            start = time.perf_counter()
            client.predict(handle_file(str(image)), 0.5, api_name="/transform")
            first = time.perf_counter() - start
            calls, inside = [], []
            for alpha in ALPHAS:
                start = time.perf_counter()
                client.predict(handle_file(str(image)), alpha, api_name="/transform")
                calls.append(time.perf_counter() - start)
                start = time.perf_counter()
                explorer.transform_file(image, alpha)
                inside.append(time.perf_counter() - start)
            median = statistics.median(calls)
            print(f"{image.name}: first {first * 1e3:.0f} ms; repeated alpha median {median * 1e3:.0f} ms, "
                  f"max {max(calls) * 1e3:.0f} ms; repeated/first {median / first:.3f}; "
                  f"handler share {statistics.median(inside) / median:.2f}")
    finally:
        app.close()
        explorer.close()


if __name__ == "__main__":
    main()
