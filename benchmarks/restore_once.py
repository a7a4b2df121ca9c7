"""Two variants, one restoration: ``experiment --variants detail,whole`` against an older checkout.

Runs the same experiment (BM3D σ = 25 on noisy crops, TAEF2, two variants; paired like the demo:
``--fit`` images restored for the source and their clean versions for the target, ``--test``
more for the evaluation) with this checkout's sources and with a baseline's (``--baseline-src``, e.g. a worktree of the commit
before restorations were shared across variants), interleaved (A B A B ...), and prints wall
and CPU seconds (the child's user + system time) per run and the ratio this ÷ baseline.
Before, each variant restored its fit images again (the test images were restored once): with
F fit and T test images the restorer ran 2F + T times, now F + T, so the ratio tends to
(F + T) ÷ (2F + T) as the restorer dominates (0.56 at the demo's 24 + 6). Target: ≤ 0.6.

    python benchmarks/restore_once.py --baseline-src OLD_CHECKOUT/src [--clean DIR] [--crop 192]
                                      [--fit 24] [--test 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("DOTRESTORE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
THIS_SRC = Path(__file__).resolve().parents[1] / "src"


def run(src: Path, out: Path, args) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``python -m dotrestore experiment`` with ``src`` first on the path."""
    clean = out.parent / "clean"
    argv = [sys.executable, "-m", "dotrestore", "experiment", "--clean", str(clean), "--crop", str(args.crop),
            "--degrade", "noise:sigma=25", "--restorer", "bm3d:sigma=25", "--variants", "detail,whole",
            "--vae", "taef2", "--paired", "--fit-source", str(args.fit), "--fit-target", str(args.fit),
            "--alphas", "0", "0.5", "1", "--collages", "0", "--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--clean", type=Path, default=SHARED / "data" / "cbsd68", help="clean photographs")
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--fit", type=int, default=24, help="images fitted on (paired)")
    parser.add_argument("--test", type=int, default=6, help="images evaluated on")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="restore-once-"))
    try:
        (work / "clean").mkdir()
        for path in sorted(args.clean.glob("*.png"))[: args.fit + args.test]:
            shutil.copy(path, work / "clean" / path.name)
        times: dict[str, list[tuple[float, float]]] = {"this": [], "baseline": []}
        for k in range(args.repeats):
            for name, src in (("this", THIS_SRC), ("baseline", args.baseline_src)):
                times[name].append(run(src, work / f"{name}{k}", args))
                print(f"{name:<8} run {k}: wall {times[name][-1][0]:.1f} s, CPU {times[name][-1][1]:.1f} s", flush=True)
        for i, what in enumerate(("wall", "CPU")):
            this, base = (sum(t[i] for t in times[n]) for n in ("this", "baseline"))
            print(f"{what}: this ÷ baseline = {this / base:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
