"""Run by tests/test_metrics_streaming.py (plain python or under torchrun): FID/KID of seeded images
through the project's metric objects with a random-initialised feature network; prints JSON."""

import json
import sys

import torch

from dotrestore.metrics import FID, KID, PatchMoments, PerImageMean, mse
from dotrestore.runtime import parallel


class TinyFeatures(torch.nn.Module):
    """A small random-initialised CNN: (B, 3, H, W) in [0, 1] → (B, 16) features."""

    num_features = 16

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.copy_(torch.randn(16, generator=g) * 0.1)

    def forward(self, x):
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        return torch.tanh(self.conv(x)).mean(dim=(2, 3)).double()


def images(n: int, seed: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 24, 24, generator=g) * scale).clamp(0, 1)


def main() -> None:
    parallel.init("cpu")
    real, fake = images(40, 1, 1.0), images(40, 2, 0.7)
    net = TinyFeatures()
    mine = parallel.shard(list(range(40)))
    fid_ref, fid, kid_ref, kid = FID(net), FID(net), KID(net), KID(net)
    mean = PerImageMean("mse", mse)
    moments = PatchMoments(3)
    for i in mine:
        fid_ref.update(real[i], real=True)
        kid_ref.update(real[i], real=True)
        fid.update(fake[i])
        kid.update(fake[i])
        mean.update(fake[i], real[i])
        moments.update(fake[i])
    mean.sync()
    moments.sync()
    first = (mean.compute(), moments.compute().covariance.clone())
    mean.sync()  # idempotent: a second sync sums the local state again, never the summed one
    moments.sync()
    assert mean.compute() == first[0] and torch.equal(moments.compute().covariance, first[1])
    out = {"fid": fid.compute(fid_ref), "kid": kid.compute(kid_ref), "mse": mean.compute(),
           "cov": moments.compute().covariance.sum().item(), "world": parallel.world_size()}
    if parallel.is_main():
        json.dump(out, sys.stdout)
    parallel.finish()


if __name__ == "__main__":
    main()
