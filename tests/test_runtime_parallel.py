"""Scale-out: the shard rule, and 2-process runs (torchrun, gloo on the CPU)
that must equal 1-process runs: fit tensors, apply PNGs, experiment tables; a corrupt file on
the second rank stops both ranks with status 2, naming it, writing nothing."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import pytest
import torch

from dotrestore.experiment.degradations import gaussian_blur
from dotrestore.io import images as data
from dotrestore.runtime import parallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _torchrun  # noqa: E402


# --------------------------------------------------------------------------- single process
def test_shard_is_round_robin_and_disjoint():
    items = list(range(11))
    shards = [parallel.shard(items, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shards, [])) == items
    assert parallel.shard(items) == items  # one process: everything


def test_single_process_initialises_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert parallel.init("cpu") is False and not parallel.active()
    assert (parallel.rank(), parallel.world_size(), parallel.is_main()) == (0, 1, True)
    t = torch.arange(3.0)
    assert parallel.all_reduce_sum(t) is t and parallel.gather_objects("x") == ["x"]
    with pytest.raises(ValueError, match="boom"):
        parallel.agree_on_error(ValueError("boom"))










# --------------------------------------------------------------------------- two processes
@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Smooth random images of two sizes: restored (source), clean (target) and test sets."""
    root = tmp_path_factory.mktemp("dist")
    g = torch.Generator().manual_seed(0)
    for name, n, scale in (("source", 6, 0.6), ("target", 5, 1.0), ("test", 7, 0.6)):
        for k in range(n):
            h = 40 if k % 2 else 48
            low = torch.rand(3, h // 8, 6, generator=g) * scale
            img = torch.nn.functional.interpolate(low[None], size=(h, 48), mode="bilinear")[0]
            data.save_image((img + 0.05 * torch.rand(3, h, 48, generator=g)).clamp(0, 1), root / name / f"{name}{k}.png")
    return root


def _cli(*args) -> list[str]:
    return ["-m", "dotrestore", *map(str, args)]


def _fit_args(images: Path, out: Path) -> list[str]:
    return _cli("fit", "--source", images / "source", "--target", images / "target", "-o", out, "--vae", "pixel",
                "--workers", "1")


@pytest.mark.slow
@pytest.mark.distributed
def test_fit_two_processes_equal_one(images, tmp_path):
    _, two = _torchrun.one_and_two(lambda name: _fit_args(images, tmp_path / f"{name}.safetensors"))
    assert two.stdout.count("wrote ") == 1  # rank 0 writes and reports
    _torchrun.assert_same_operator(tmp_path / "one.safetensors", tmp_path / "two.safetensors")


@pytest.mark.slow
@pytest.mark.distributed
def test_apply_two_processes_bit_exact_each_written_once(images, tmp_path):
    op = tmp_path / "op.safetensors"
    assert _torchrun.one(_fit_args(images, op)).returncode == 0
    args = lambda out: _cli("apply", op, images / "test", "-o", out, "--alpha", "0", "--alpha", "0.5",  # noqa: E731
                            "--workers", "1", "--batch-size", "2")
    one, two = _torchrun.one(args(tmp_path / "one")), _torchrun.two(args(tmp_path / "two"))
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-3000:]
    assert two.stdout.count("wrote 14 images") == 1
    for alpha in ("alpha_0", "alpha_0.5"):
        names = sorted(p.name for p in (tmp_path / "one" / alpha).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "two" / alpha).iterdir()) and len(names) == 7
        for name in names:
            a = (tmp_path / "one" / alpha / name).read_bytes()
            assert a == (tmp_path / "two" / alpha / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.distributed
def test_corrupt_file_on_second_rank_stops_all(images, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for path in sorted((images / "test").iterdir()):
        (folder / path.name).write_bytes(path.read_bytes())
    bad = sorted(folder.iterdir())[1]  # position 1: rank 1's first file
    bad.write_bytes(bad.read_bytes()[:200])
    op = tmp_path / "op.safetensors"
    assert _torchrun.one(_fit_args(images, op)).returncode == 0
    started = time.monotonic()
    run = _torchrun.two(_cli("apply", op, folder, "-o", tmp_path / "out", "--workers", "0"), timeout=60)
    assert time.monotonic() - started < 30
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if "dotrestore apply: error:" in line]
    assert len(errors) == 2 and all(bad.name in line for line in errors)  # both ranks name it
    assert run.stderr.count("exitcode  : 2") == 2
    assert not (tmp_path / "out").exists()
    fit = _torchrun.two(_cli("fit", "--source", folder, "--target", images / "target", "-o",
                             tmp_path / "x.safetensors", "--vae", "pixel"), timeout=60)
    assert fit.stderr.count("exitcode  : 2") == 2 and bad.name in fit.stderr
    assert not (tmp_path / "x.safetensors").exists()


def _experiment_args(images: Path, out: Path, *extra) -> list[str]:
    # A ridge keeps the map well conditioned: two tiny pixel-codec fits leave eigenvalues of Σs near the
    # clamp, where sums that differ in the 16th digit (one process or two) move the operator by 1e-6.
    return _cli("experiment", "--clean", images / "target", "--test-clean", images / "test", "--degrade",
                "noise:sigma=50", "--restorer", "gaussian-blur:sigma=1.5", "--vae", "pixel", "--fit-source", 2,
                "--fit-target", 2, "--alphas", "0", "0.5", "1", "--out", out, "--no-progress", "--workers", "1",
                "--collages", 3, "--shrinkage", "0.01", *extra)


def _table(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.slow
@pytest.mark.distributed
def test_experiment_two_processes_equal_one(images, tmp_path):
    one = _torchrun.one(_experiment_args(images, tmp_path / "one"))
    two = _torchrun.two(_experiment_args(images, tmp_path / "two"))
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-3000:]
    assert two.stdout.count("report:") == 1
    a, b = _table(tmp_path / "one" / "results.csv"), _table(tmp_path / "two" / "results.csv")
    assert a[0] == b[0] and len(a) == len(b)
    for ra, rb in zip(a[1:], b[1:]):
        for x, y in zip(ra, rb):
            try:
                x, y = float(x), float(y)
            except ValueError:
                assert x == y
                continue
            assert y == pytest.approx(x, rel=1e-6, abs=1e-12)
    assert sorted(p.name for p in (tmp_path / "two" / "collages").iterdir()) == ["test0.png", "test1.png", "test2.png"]


@pytest.mark.slow
@pytest.mark.distributed
def test_fit_taef2_two_processes_equal_one(cbsd68_dir, taef2_dir, tmp_path):
    """Real weights on small crops: TAEF2's float32 encoder rounds the same in both runs."""
    for role, paths in (("source", sorted(cbsd68_dir.glob("*.png"))[:4]), ("target", sorted(cbsd68_dir.glob("*.png"))[4:8])):
        for path in paths:
            img = data.read_image(path)[:, :96, :128]
            if role == "source":
                img = gaussian_blur(img[None], 1.5)[0]
            data.save_image(img, tmp_path / role / path.name)
    _torchrun.one_and_two(lambda name: _cli("fit", "--source", tmp_path / "source", "--target", tmp_path / "target",
                                            "-o", tmp_path / f"{name}.safetensors", "--vae", taef2_dir,
                                            "--device", "cpu", "--workers", "0"))
    _torchrun.assert_same_operator(tmp_path / "one.safetensors", tmp_path / "two.safetensors")


@pytest.mark.slow
def test_experiment_memory_does_not_grow_with_test_images(tmp_path):
    """Peak RSS with 60 test images ≤ 1.3× that with 8 of the same size (no image is kept)."""
    g = torch.Generator().manual_seed(1)
    for k in range(60):
        img = torch.rand(3, 96, 96, generator=g)
        data.save_image(img, tmp_path / "all" / f"t{k:02d}.png")
        if k < 8:
            data.save_image(img, tmp_path / "few" / f"t{k:02d}.png")
    for k in range(4):
        data.save_image(torch.rand(3, 96, 96, generator=g), tmp_path / "fit" / f"f{k}.png")
    peaks = {}
    for name in ("few", "all"):
        code = ("import resource, sys; from dotrestore.cli import main; code = main(sys.argv[1:]); "
                "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
        run = _torchrun.one(["-c", code, "experiment", "--clean", tmp_path / "fit", "--test-clean", tmp_path / name,
                             "--degrade", "noise:sigma=50", "--restorer", "gaussian-blur:sigma=1.5", "--vae", "pixel",
                             "--fit-source", 2, "--fit-target", 2, "--out", tmp_path / f"out-{name}", "--no-progress",
                             "--workers", "0", "--collages", 2])
        assert run.returncode == 0, run.stderr[-2000:]
        peaks[name] = int(run.stdout.split("peak_kb")[1].split()[0])
    assert peaks["all"] <= 1.3 * peaks["few"], peaks
