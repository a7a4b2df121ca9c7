"""The data pipeline: batches by size, every item once, workers; the fitting engine encodes whole batches."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from dotrestore.errors import InputError
from dotrestore.io import images as data
from dotrestore.runtime import pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))


# --------------------------------------------------------------------------- single process
def test_size_batches_group_equal_sizes_only():
    sizes = [(4, 4), (4, 5), (4, 4), (4, 4), None, (4, 5)]
    assert pipeline.size_batches(sizes, 2) == [[0, 2], [3], [1, 5], [4]]
    assert pipeline.size_batches(sizes, 1) == [[i] for i in range(6)]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_yield_every_item_once_stacked(tmp_path, workers):
    paths, sizes = [], []
    for k in range(7):
        h = 8 if k % 3 else 12
        data.save_image(torch.full((3, h, 10), k / 10), tmp_path / f"{k}.png")
        paths.append(tmp_path / f"{k}.png")
        sizes.append((h, 10))
    seen = {}
    for batch in pipeline.batches(paths, data.read_image, sizes=sizes, batch_size=3, workers=workers):
        assert batch.images.shape[0] == len(batch.positions) <= 3
        assert batch.names == [str(paths[i]) for i in batch.positions]
        for j, i in enumerate(batch.positions):
            seen[i] = float(batch.images[j].mean())
    assert sorted(seen) == list(range(7))
    assert all(abs(v - k / 10) < 1 / 255 for k, v in seen.items())


def test_fit_encodes_whole_loader_batches(tmp_path):
    """fit with batch_size B: the codec encodes B same-size images per call; moments as one at a time."""
    from dotrestore import DOT, Runtime

    g = torch.Generator().manual_seed(5)
    paths = [data.save_image(torch.rand(3, 48, 40, generator=g), tmp_path / f"{i}.png") for i in range(5)]
    calls = []

    def counting(batch_size):
        dot = DOT(codec="pixel", patch_size=3, runtime=Runtime(batch_size=batch_size, workers=0, progress=False))
        codec = dot.prepare()
        encode = codec.encode
        codec.encode = lambda x: calls.append(x.shape[0]) or encode(x)
        return dot

    one = counting(1).partial_fit(paths, "target")
    assert calls == [1] * 5
    calls.clear()
    four = counting(4).partial_fit(paths, "target")
    assert calls == [4, 1] and one.n_target_images_ == four.n_target_images_ == 5
    assert torch.allclose(four.mean_target_, one.mean_target_, rtol=1e-6)
    assert torch.allclose(four.cov_target_, one.cov_target_, rtol=1e-6)
    calls.clear()
    latents = counting(2).encode(torch.rand(5, 3, 48, 40, generator=g))  # a batch tensor: batch_size per call
    assert calls == [2, 2, 1] and [tuple(z.shape) for z in latents] == [(1, 3, 48, 40)] * 5
    bad = torch.rand(2, 3, 48, 40)
    bad[1, 0, 0, 0] = float("nan")
    stream = pipeline.batches(["a", "b"], lambda item: bad[0] if item == "a" else bad[1], sizes=[(48, 40)] * 2,
                              batch_size=2, workers=0)
    with pytest.raises(InputError, match="b: image contains NaN"):
        counting(2).partial_fit(stream, "target")


def test_image_writer_writes_and_surfaces_errors(tmp_path):
    with pipeline.ImageWriter() as writer:
        for k in range(5):
            writer.submit(torch.rand(3, 8, 8), tmp_path / "ok" / f"{k}.png")
    assert len(list((tmp_path / "ok").iterdir())) == 5
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(Exception), pipeline.ImageWriter() as writer:
        writer.submit(torch.rand(3, 8, 8), tmp_path / "file" / "x.png")


