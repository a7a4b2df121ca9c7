"""The one statistics type: idempotent ``sync``, ``reset`` to empty, the same in fitting and in metrics."""

from __future__ import annotations

import torch

from dotrestore import DOT, metrics
from dotrestore.metrics import PatchMoments, PerImageMean
from dotrestore.ot.moments import Moments
from dotrestore.ot.statistics import Statistics

F64 = torch.float64


class Twins:
    """A communicator for two processes that saw the same samples: sums double, rank 0's shift wins."""

    def __init__(self):
        self.calls = 0

    def all_reduce_sum(self, tensor):
        self.calls += 1
        return tensor * 2

    def broadcast(self, tensor, src=0):
        return tensor.clone()


def samples(n: int, d: int, seed: int, offset: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return offset + torch.randn(n, d, generator=g, dtype=F64)


def state(m: Statistics) -> dict[str, torch.Tensor]:
    return {name: getattr(m, name).clone() for name in m.state_names}


def test_moments_sync_twice_changes_nothing():
    x = samples(300, 4, 1)
    m = Moments(4).update(x)
    comm = Twins()
    once = state(m.sync(comm))
    assert int(once["count"]) == 600  # the sum over the two processes
    twice = state(m.sync(comm))
    assert comm.calls == 6  # both calls are real collectives (every rank must take part)...
    assert all(torch.equal(once[k], twice[k]) for k in once)  # ...and the second sums the local state again
    # The covariance of two identical halves is the one of each half (up to the n-1 factor).
    torch.testing.assert_close(m.covariance * (2 * 300 - 1), torch.cov(x.T) * (300 - 1) * 2, rtol=1e-10, atol=0)


def test_update_after_sync_continues_the_local_state():
    x, y = samples(200, 3, 2), samples(100, 3, 3)
    m = Moments(3).update(x)
    m.sync(Twins())
    m.update(y)  # back to this process's own samples, plus the new ones
    assert not m.synced and int(m.count) == 300
    torch.testing.assert_close(m.covariance, torch.cov(torch.cat([x, y]).T), rtol=1e-10, atol=0)
    assert int(m.sync(Twins()).count) == 600


def test_reset_returns_a_fitted_accumulator_to_empty(tmp_path):
    from dotrestore.io.images import read_image

    from support import write_images

    src = [read_image(p) for p in sorted(write_images(tmp_path / "s", 2, seed=0).iterdir())]
    tgt = [read_image(p) for p in sorted(write_images(tmp_path / "t", 2, seed=1).iterdir())]
    dot = DOT(codec="pixel", lowpass_sigma=0, runtime={"device": "cpu"}).fit(src, tgt)
    moments = dot.state_.source.moments
    assert int(moments.count) > 0
    fresh = Moments(moments.dim)
    moments.reset()
    assert int(moments.count) == 0 and not moments.synced
    assert all(torch.equal(getattr(moments, k), getattr(fresh, k)) for k in ("count", "sum", "outer"))
    # Empty means empty: refilled, it equals a new accumulator fed the same samples (its shift is chosen anew).
    x = samples(50, moments.dim, 4, offset=0.5)
    moments.update(x)
    fresh.update(x)
    assert all(torch.equal(getattr(moments, k), getattr(fresh, k)) for k in ("count", "shift", "sum", "outer"))


def test_reset_keeps_a_given_shift_and_device():
    shift = torch.full((2,), 3.0, dtype=F64)
    m = Moments(2, shift=shift).update(samples(10, 2, 5))
    m.sync(Twins())
    m.reset()
    assert torch.equal(m.shift, shift) and int(m.count) == 0 and m.sum.abs().max() == 0


def test_metrics_are_the_same_statistics_type():
    g = torch.Generator().manual_seed(6)
    a, b = torch.rand(3, 3, 16, 16, generator=g), torch.rand(3, 3, 16, 16, generator=g)
    mean, pm = PerImageMean("mse", metrics.mse), PatchMoments(3)
    assert isinstance(mean, Statistics) and isinstance(pm, Statistics)
    mean.update(a, b)
    pm.update(a)
    expected = mean.compute()
    # In one process sync is the identity, however often it is called.
    for _ in range(2):
        mean.sync()
        pm.sync()
    assert mean.compute() == expected and int(pm.compute().count) == 3 * 14 * 14
    total = mean.total.clone()
    Statistics.sync(mean, Twins())
    Statistics.sync(mean, Twins())
    assert float(mean.total) == 2 * float(total) and mean.compute() == expected
    mean.reset()
    pm.reset()
    assert float(mean.count) == 0 and mean.compute() != mean.compute()  # nan: no images
    assert pm.moments is None
