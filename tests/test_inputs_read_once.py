"""Each input is read once into a checked record: counted with an audit hook on ``open`` / ``os.open``.

``fit`` and ``apply`` open each image at most twice (the check that decodes it, the read that
uses it) and the operator file once; under torchrun each rank opens only its own share.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

from dotrestore.io.images import ImageFile, check_images, save_image

import _torchrun  # noqa: E402

AUDIT = Path(__file__).with_name("_audit_opens.py")


def smooth_images(folder: Path, n: int, seed: int, scale: float) -> list[Path]:
    """``n`` smooth random PNGs of two sizes (so batching by size is exercised)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    paths = []
    for k in range(n):
        h = 32 if k % 2 else 40
        low = torch.rand(3, h // 8, 5, generator=g) * scale
        img = torch.nn.functional.interpolate(low[None], size=(h, 40), mode="bilinear")[0]
        paths.append(save_image((img + 0.05 * torch.rand(3, h, 40, generator=g)).clamp(0, 1), folder / f"im{k:02d}.png"))
    return paths


def opens(log: Path) -> collections.Counter:
    return collections.Counter(Path(line).resolve() for line in log.read_text().splitlines() if line)


def audited(log: Path, *args, two: bool = False):
    run = (_torchrun.two if two else _torchrun.one)([AUDIT, log, *map(str, args)], timeout=240)
    return run


def test_check_images_records_what_later_stages_use(tmp_path):
    paths = smooth_images(tmp_path, 2, seed=0, scale=1.0)
    records = check_images(paths, None)
    assert [r.path for r in records] == paths and [r.size for r in records] == [(40, 40), (32, 40)]
    assert all(isinstance(r, ImageFile) and r.kind == "image" for r in records)
    st = paths[0].stat()
    assert records[0].identity == (st.st_dev, st.st_ino)


def test_fit_and_apply_open_each_image_at_most_twice_and_the_operator_once(tmp_path):
    source = smooth_images(tmp_path / "source", 4, seed=1, scale=0.6)
    target = smooth_images(tmp_path / "target", 4, seed=2, scale=1.0)
    test = smooth_images(tmp_path / "test", 3, seed=3, scale=0.6)
    op = tmp_path / "op.safetensors"
    # explicit files for the source (each used to be header-checked by every listing), a folder for the target
    fit = audited(tmp_path / "fit.log", "fit", "--source", *source, "--target", tmp_path / "target", "-o", op,
                  "--vae", "pixel", "--workers", "1")
    assert fit.returncode == 0, fit.stderr[-2000:]
    counts = opens(tmp_path / "fit.log")
    assert {p: counts[p.resolve()] for p in source + target} == {p: 2 for p in source + target}
    apply = audited(tmp_path / "apply.log", "apply", op, *test[:2], tmp_path / "test", "-o", tmp_path / "out",
                    "--alpha", "0", "--alpha", "1", "--workers", "1")
    assert apply.returncode == 0, apply.stderr[-2000:]
    counts = opens(tmp_path / "apply.log")
    assert {p: counts[p.resolve()] for p in test} == {p: 2 for p in test}
    assert counts[op.resolve()] == 1
    assert len(list((tmp_path / "out" / "alpha_0").iterdir())) == 3


#: The explorer's Batch tab in a child process, every open logged (see ``_audit_opens.py``).
_BATCH = """
import os, sys
log, operator, folder, out = sys.argv[1:5]
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        os.write(fd, os.fsencode(os.path.abspath(os.fsdecode(args[0]))) + b"\\n")
from dotrestore.serve.jobs import batch_apply, collect_images
from dotrestore.serve.session import Explorer
explorer = Explorer(operator, runtime={"progress": False, "workers": 0})
sys.addaudithook(hook)
images = collect_images(None, folder, "batch images", explorer.max_pixels)
print(batch_apply(explorer, images, [0.0, 0.5, 1.0], out_dir=out, as_zip=False)[1])
"""


def test_the_explorers_batch_opens_each_image_at_most_twice(tmp_path):
    """Listed and checked once into records (collect_images), then decoded once to transport it."""
    from dotrestore import DOT

    images = smooth_images(tmp_path / "batch", 3, seed=6, scale=0.6)
    op = tmp_path / "op.safetensors"
    fitted = DOT(codec="pixel", runtime={"progress": False})
    fitted.fit(smooth_images(tmp_path / "s", 2, seed=7, scale=0.6), smooth_images(tmp_path / "t", 2, seed=8, scale=1))
    fitted.save(op)
    run = _torchrun.one(["-c", _BATCH, tmp_path / "batch.log", op, tmp_path / "batch", tmp_path / "out"], timeout=120)
    assert run.returncode == 0 and run.stdout.split() == ["9"], run.stderr[-2000:]
    counts = opens(tmp_path / "batch.log")
    assert {p: counts[p.resolve()] for p in images} == {p: 2 for p in images}  # was 3: checked twice


@pytest.fixture(scope="module")
def twenty(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("twenty")
    smooth_images(root / "source", 20, seed=4, scale=0.6)
    smooth_images(root / "target", 20, seed=5, scale=1.0)
    return root


def _fit(root: Path, out: Path, source: Path | None = None) -> list:
    return ["fit", "--source", source or root / "source", "--target", root / "target", "-o", out,
            "--vae", "pixel", "--workers", "1"]


@pytest.mark.slow
@pytest.mark.distributed
def test_fit_two_ranks_each_open_only_their_share(twenty, tmp_path):
    one = audited(tmp_path / "one.log", *_fit(twenty, tmp_path / "one.safetensors"))
    two = audited(tmp_path / "two.log", *_fit(twenty, tmp_path / "two.safetensors"), two=True)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-3000:]
    for side in ("source", "target"):
        files = sorted((twenty / side).iterdir())
        for rank in (0, 1):
            counts = opens(tmp_path / f"two.log.{rank}")
            mine, theirs = files[rank::2], files[1 - rank::2]
            assert len(mine) == 10 and all(1 <= counts[p.resolve()] <= 2 for p in mine), (side, rank)
            assert all(counts[p.resolve()] == 0 for p in theirs), (side, rank)  # header checks included
    _torchrun.assert_same_operator(tmp_path / "one.safetensors", tmp_path / "two.safetensors", rtol=1e-9)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("position", [4, 7])  # rank 0's share, rank 1's share
def test_corrupt_file_in_either_share_stops_both_ranks_with_one_line(twenty, tmp_path, position):
    folder = tmp_path / "source"
    folder.mkdir()
    for path in sorted((twenty / "source").iterdir()):
        (folder / path.name).write_bytes(path.read_bytes())
    bad = sorted(folder.iterdir())[position]
    bad.write_bytes(bad.read_bytes()[:120])
    run = audited(tmp_path / "bad.log", *_fit(twenty, tmp_path / "x.safetensors", folder), two=True)
    errors = [line for line in run.stderr.splitlines() if "dotrestore fit: error:" in line]
    assert len(errors) == 2 and errors[0] == errors[1] and bad.name in errors[0], run.stderr[-3000:]
    assert run.stderr.count("exitcode  : 2") == 2
    assert not (tmp_path / "x.safetensors").exists()
    # the file was opened by its own rank only
    owner = position % 2
    assert opens(tmp_path / f"bad.log.{1 - owner}")[bad.resolve()] == 0
    assert opens(tmp_path / f"bad.log.{owner}")[bad.resolve()] == 1


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    """12 lossless 64×64 frames, no sound."""
    pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    from video_clips import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mkv", frames=12, codec="ffv1", pix_fmt="bgr0",
                     audio=None, size=64)


@pytest.mark.slow
@pytest.mark.distributed
def test_a_clip_is_probed_by_rank_0_alone(small_clip, tmp_path):
    """A probe reads the whole clip: rank 0 probes it for both ranks; rank 1 opens it once, for its own frames."""
    clean = smooth_images(tmp_path / "clean", 2, seed=9, scale=1.0)
    op = tmp_path / "op.safetensors"

    def fit(log, two=False):
        return audited(log, "fit", "--source", small_clip, "--target", *clean, "-o", op, "--vae", "pixel",
                       "--overwrite", "--no-progress", two=two)

    def apply(log, out, two=False):
        return audited(log, "apply", op, small_clip, "-o", out, "--no-progress", two=two)

    runs = [fit(tmp_path / "fit1.log"), apply(tmp_path / "apply1.log", tmp_path / "one.mkv"),
            fit(tmp_path / "fit2.log", two=True), apply(tmp_path / "apply2.log", tmp_path / "two.mkv", two=True)]
    assert all(r.returncode == 0 for r in runs), "".join(r.stderr for r in runs)[-3000:]
    clip = small_clip.resolve()
    for job in ("fit", "apply"):
        alone = opens(tmp_path / f"{job}1.log")[clip]  # the probe's opens and one read
        rank0, rank1 = (opens(tmp_path / f"{job}2.log.{r}")[clip] for r in (0, 1))
        assert (rank0, rank1) == (alone, 1), (job, alone, rank0, rank1)


@pytest.mark.slow
@pytest.mark.distributed
def test_a_bad_clip_stops_both_ranks_with_one_line_and_rank_1_never_opens_it(small_clip, tmp_path):
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(small_clip.read_bytes()[:400])
    clean = smooth_images(tmp_path / "clean", 2, seed=9, scale=1.0)
    run = audited(tmp_path / "bad.log", "fit", "--source", bad, "--target", *clean, "-o", tmp_path / "x.safetensors",
                  "--vae", "pixel", two=True)
    errors = [line for line in run.stderr.splitlines() if "dotrestore fit: error:" in line]
    assert len(errors) == 2 and errors[0] == errors[1] and bad.name in errors[0], run.stderr[-3000:]
    assert opens(tmp_path / "bad.log.1")[bad.resolve()] == 0 and opens(tmp_path / "bad.log.0")[bad.resolve()] >= 1
    assert not (tmp_path / "x.safetensors").exists()
