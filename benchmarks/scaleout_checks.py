"""Scale-out checks on real data: `torchrun --nproc_per_node 2` (gloo, CPU) against 1 process.

The checks of the scale-out issue, with TAEF2 and the shared data sets, each printing its
number and PASS/FAIL (both runs use OMP_NUM_THREADS=1, as torchrun sets it, so the codec's
float32 rounding is the same):

- ``fit``: 10 blurred + 10 clean CBSD68 images; the operator's tensors agree within 1e-9
  relative, and each rank opened only its own shard of the images (an audit hook logs
  every PNG a rank opens);
- ``experiment``: fit on CBSD68, test on Kodak24, σ = 50 noise, gaussian-blur restorer;
  every number of results.csv agrees within 1e-6 relative; one "report:" line;
- ``apply``: the 24 Kodak images, the PNGs of both runs byte-identical, each written once.

    python benchmarks/scaleout_checks.py [--checks fit experiment apply] [--work DIR]
                                         [--cbsd68 DIR] [--kodak DIR] [--taesd DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"

# Runs the CLI with an audit hook writing every .png this rank opens to $AUDIT_DIR/rank<R>.txt.
AUDITED_CLI = '''
import os, sys
if os.environ.get("AUDIT_DIR"):
    log = open(os.path.join(os.environ["AUDIT_DIR"], "rank%s.txt" % os.environ.get("RANK", "0")), "a")
    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].endswith(".png"):
            log.write(os.path.basename(args[0]) + "\\n"); log.flush()
    sys.addaudithook(hook)
from dotrestore.cli import main
sys.exit(main(sys.argv[1:]))
'''


def env(audit: Path | None = None) -> dict:
    src = HERE.parent / "src"
    extra = {"AUDIT_DIR": str(audit)} if audit else {}
    return {**os.environ, **extra, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)}


def run(procs: int, args: list, work: Path, audit: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    script = work / "audited_cli.py"
    script.write_text(AUDITED_CLI)
    launcher = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(procs)]
    start = time.perf_counter()
    done = subprocess.run([*launcher, str(script), *map(str, args)], env=env(audit), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{procs} process(es) failed with exit code {done.returncode}:\n{done.stderr[-3000:]}")
    return done, seconds


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def check_fit(work: Path, cbsd68: Path, taesd: Path) -> Path:
    from safetensors.torch import load_file

    from dotrestore.experiment.degradations import gaussian_blur
    from dotrestore.io import images as data

    files = sorted(cbsd68.glob("*.png"))
    for role, paths in (("source", files[:10]), ("target", files[10:20])):
        for path in paths:
            img = data.read_image(path)
            if role == "source":  # a blurry restoration
                img = gaussian_blur(img[None], 1.5)[0]
            data.save_image(img, work / "fit" / role / path.name)
    results = {}
    for procs in (1, 2):
        audit = work / f"audit-fit-{procs}"
        audit.mkdir(parents=True, exist_ok=True)
        out = work / f"fit-{procs}.safetensors"
        done, seconds = run(procs, ["fit", "--source", work / "fit" / "source", "--target", work / "fit" / "target",
                                    "-o", out, "--vae", taesd, "--device", "cpu", "--workers", "0"], work, audit)
        results[procs] = (done.returncode, seconds, out, audit)
    a, b = load_file(results[1][2]), load_file(results[2][2])
    worst = max(float((a[k].double() - b[k].double()).abs().max() / a[k].double().abs().max().clamp_min(1e-300))
                for k in a)
    # rank r of 2 owns files r, r+2, … of each role (the sorted listing)
    own = {r: set() for r in (0, 1)}
    for role in ("source", "target"):
        names = sorted(p.name for p in (work / "fit" / role).iterdir())
        for k, name in enumerate(names):
            own[k % 2].add(name)
    opened = {r: set((results[2][3] / f"rank{r}.txt").read_text().split()) for r in (0, 1)}
    shard_ok = all(opened[r] and opened[r] <= own[r] for r in (0, 1))
    print(f"fit 10+10 CBSD68, TAEF2: 1 process {results[1][1]:.1f} s, 2 processes {results[2][1]:.1f} s; "
          f"max relative difference {worst:.2e} (≤ 1e-9: {verdict(worst <= 1e-9)}); rank 0 opened "
          f"{len(opened[0])} files, rank 1 {len(opened[1])}, each only its own shard: {verdict(shard_ok)}")
    return results[1][2]


def read_table(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def check_experiment(work: Path, cbsd68: Path, kodak: Path, taesd: Path) -> None:
    outs = {}
    for procs in (1, 2):
        out = work / f"experiment-{procs}"
        done, seconds = run(procs, ["experiment", "--clean", cbsd68, "--test-clean", kodak, "--degrade",
                                    "noise:sigma=50", "--restorer", "gaussian-blur:sigma=2", "--vae", taesd, "--device", "cpu",
                                    "--out", out, "--no-progress", "--overwrite"], work)
        outs[procs] = (done, seconds, out)
    a, b = read_table(outs[1][2] / "results.csv"), read_table(outs[2][2] / "results.csv")
    worst, same_text = 0.0, a[0] == b[0] and len(a) == len(b)
    for ra, rb in zip(a[1:], b[1:]):
        for x, y in zip(ra, rb):
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                same_text &= x == y
                continue
            if fx != fy:
                worst = max(worst, abs(fx - fy) / max(abs(fx), 1e-12))
    reports = outs[2][0].stdout.count("report:")
    print(f"experiment CBSD68 → Kodak24, σ = 50, gaussian-blur σ = 2, TAEF2: 1 process {outs[1][1]:.0f} s, "
          f"2 processes {outs[2][1]:.0f} s; {len(a) - 1} rows, max relative difference {worst:.2e} "
          f"(≤ 1e-6: {verdict(worst <= 1e-6 and same_text)}); 'report:' lines {reports} ({verdict(reports == 1)})")


def check_apply(work: Path, kodak: Path, operator: Path) -> None:
    outs = {}
    for procs in (1, 2):
        out = work / f"apply-{procs}"
        done, seconds = run(procs, ["apply", operator, kodak, "-o", out, "--alpha", "0", "--alpha", "0.5",
                                    "--device", "cpu", "--overwrite"], work)
        outs[procs] = (done, seconds, out)
    names = sorted(p.relative_to(outs[1][2]) for p in outs[1][2].rglob("*.png"))
    other = sorted(p.relative_to(outs[2][2]) for p in outs[2][2].rglob("*.png"))
    same = names == other and all((outs[1][2] / n).read_bytes() == (outs[2][2] / n).read_bytes() for n in names)
    wrote = outs[2][0].stdout.count("wrote ")
    print(f"apply 24 Kodak, α 0 and 0.5: 1 process {outs[1][1]:.0f} s, 2 processes {outs[2][1]:.0f} s; "
          f"{len(names)} PNGs byte-identical: {verdict(same and len(names) == 48)}; 'wrote' lines {wrote} "
          f"({verdict(wrote == 1)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", nargs="+", default=["fit", "experiment", "apply"])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--cbsd68", type=Path, default=SHARED / "data" / "cbsd68")
    parser.add_argument("--kodak", type=Path, default=SHARED / "data" / "kodak24")
    parser.add_argument("--taesd", type=Path, default=SHARED / "weights" / "taef2")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dotrestore-scaleout-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}")
    operator = work / "fit-1.safetensors"
    if "fit" in args.checks or ("apply" in args.checks and not operator.exists()):
        operator = check_fit(work, args.cbsd68, args.taesd)
    if "experiment" in args.checks:
        check_experiment(work, args.cbsd68, args.kodak, args.taesd)
    if "apply" in args.checks:
        check_apply(work, args.kodak, operator)


if __name__ == "__main__":
    main()
