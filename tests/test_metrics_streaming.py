"""Streaming metric objects: FID/KID through torchmetrics with a random-initialised feature
network against a direct scipy computation, per-image means, patch moments; and 2 processes
(torchrun, gloo) give the 1-process values."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from dotrestore import metrics
from dotrestore.metrics import PatchMoments, PerImageMean

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
needs_torchmetrics = pytest.mark.skipif(importlib.util.find_spec("torchmetrics") is None,
                                        reason="torchmetrics (extra dotrestore[metrics]) is not installed")


def _features(net, imgs):
    with torch.no_grad():
        return net(imgs).double().numpy()


@needs_torchmetrics
def test_fid_kid_match_scipy_on_the_same_features():
    from _dist_metrics import TinyFeatures, images

    net = TinyFeatures()
    real, fake = images(40, 1, 1.0), images(40, 2, 0.7)
    fid_ref, fid, kid_ref, kid = metrics.FID(net), metrics.FID(net), metrics.KID(net), metrics.KID(net)
    for k in range(0, 40, 3):  # uneven batches: streaming must not care
        fid_ref.update(real[k:k + 3], real=True)
        kid_ref.update(real[k:k + 3], real=True)
        fid.update(fake[k:k + 3])
        kid.update(fake[k:k + 3])
    fr, ff = _features(net, real), _features(net, fake)
    s1, s2 = np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected_fid = np.sum((fr.mean(0) - ff.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert fid.compute(fid_ref) == pytest.approx(expected_fid, rel=1e-4)

    d, m = fr.shape[1], fr.shape[0]
    kern = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = kern(fr, fr), kern(ff, ff), kern(fr, ff)
    expected_kid = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.sum() / m**2
    assert kid.compute(kid_ref) == pytest.approx(expected_kid, rel=1e-4)


def test_per_image_mean_and_patch_moments_stream():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(5, 3, 16, 16, generator=g), torch.rand(5, 3, 16, 16, generator=g)
    mean = PerImageMean("psnr", metrics.psnr)
    values = mean.update(a[:2], b[:2]) + mean.update(a[2], b[2]) + mean.update(a[3:], b[3:])
    assert values == [metrics.psnr(x, y) for x, y in zip(a, b)]
    assert mean.compute() == pytest.approx(float(np.mean(values)), rel=1e-12)
    pm = PatchMoments(3)
    for x in a:
        pm.update(x)
    whole = metrics.patch_moments(a, 3)
    torch.testing.assert_close(pm.compute().covariance, whole.covariance, rtol=1e-12, atol=1e-14)
    assert mean.sync() is mean and pm.sync() is pm  # one process: sync changes nothing


def test_per_image_registry_is_one_list():
    names = [n for n, _ in metrics.PER_IMAGE_METRICS]
    assert names[:3] == ["mse", "psnr", "ssim"]
    assert {"latent_fd", "patch_fd"} <= set(metrics.PERCEPTION_METRICS)
    assert "spectrum_distance" in names and "halo_measure" in names


@pytest.mark.slow
@pytest.mark.distributed
@needs_torchmetrics
def test_two_processes_equal_one():
    import _torchrun

    script = str(HERE / "_dist_metrics.py")
    one = _torchrun.one([script], timeout=120)
    two = _torchrun.two([script], timeout=120)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-2000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert (a["world"], b["world"]) == (1, 2)
    for key in ("fid", "kid", "mse", "cov"):
        assert b[key] == pytest.approx(a[key], rel=1e-9), key


# ---------------------------------------------------------------------- the metric contract
def _value(metric, reference=None):
    out = metric.compute(reference) if reference is not None else metric.compute()
    return out.covariance.sum().item() + out.mean.sum().item() if hasattr(out, "covariance") else float(out)


def _contract_cases():
    """(name, make() -> (metric, update(metric, batch), compute(metric)))"""
    cases = {
        "mean-mse": lambda: (PerImageMean("mse", metrics.mse), lambda m, x, c: m.update(x, c), _value),
        "mean-ssim": lambda: (PerImageMean("ssim", metrics.ssim), lambda m, x, c: m.update(x, c), _value),
        "patch-moments-3": lambda: (PatchMoments(3), lambda m, x, c: m.update(x), _value),
        "patch-moments-7-stride-4": lambda: (PatchMoments(7, 4), lambda m, x, c: m.update(x), _value),
    }
    if importlib.util.find_spec("torchmetrics") is not None:
        from _dist_metrics import TinyFeatures

        net = TinyFeatures()
        for name, cls in (("fid", metrics.FID), ("kid", metrics.KID)):
            def make(cls=cls):
                reference = cls(net)
                reference.update(_images(9, 16)[0], real=True)  # as many as outputs: KID uses whole sets
                return cls(net), lambda m, x, c: m.update(x), lambda m: _value(m, reference)
            cases[name] = make
    return cases


def _images(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 24, 24, generator=g), torch.rand(n, 3, 24, 24, generator=g)


@pytest.mark.parametrize("case", sorted(_contract_cases()))
def test_metric_contract_update_merge_compute_equals_one_pass(case):
    """As torchmetrics' MetricTester: any split into updates and merged objects gives the one-pass value."""
    make = _contract_cases()[case]
    images, cleans = _images(9, 5)
    one, update, compute = make()
    update(one, images, cleans)
    expected = compute(one)
    parts = [(0, 2), (2, 3), (3, 9)]  # uneven: a single image, a pair, the rest
    objects = []
    for start, stop in parts:
        metric, _, _ = make()
        for k in range(start, stop):  # one image per update
            update(metric, images[k:k + 1], cleans[k:k + 1])
        objects.append(metric)
    merged = objects[0]
    for other in objects[1:]:
        merged = merged.merge(other)
    # (features of one image or of nine in a batch differ by float32 rounding: rel 1e-5)
    assert compute(merged) == pytest.approx(expected, rel=1e-5, abs=1e-12)
    if hasattr(merged, "sync"):  # torchmetrics objects sync inside compute
        assert compute(merged.sync()) == pytest.approx(expected, rel=1e-6, abs=1e-12)  # one process: a no-op
