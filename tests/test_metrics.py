"""Tests of dotrestore.metrics: closed forms, scikit-image agreement, patch statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dotrestore import metrics
from dotrestore.metrics import (
    gaussian_fd,
    latent_fd,
    mse,
    patch_fd,
    patch_moments,
    perceptual_availability,
    perceptual_metrics,
    psnr,
    ssim,
)


def natural_like(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, h, w) images in [0, 1] with a 1/f amplitude spectrum and correlated channels."""
    g = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.rfftfreq(w).view(1, -1)
    amp = 1.0 / torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / max(h, w))
    lum = torch.fft.irfft2(torch.randn(n, 1, h, w // 2 + 1, generator=g) * amp, s=(h, w))
    col = torch.fft.irfft2(torch.randn(n, 3, h, w // 2 + 1, generator=g) * amp, s=(h, w))
    x = lum + 0.3 * col
    x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
    return (0.5 + 0.18 * x).clamp(0, 1).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


# --------------------------------------------------------------------------- distortion


def test_mse_psnr_closed_form():
    x = torch.rand(3, 32, 40) * 0.8
    y = x + 0.1  # constant offset: MSE = 0.01, PSNR = 10·log10(1 / 0.01) = 20 dB
    assert mse(x, y) == pytest.approx(0.01, rel=1e-5)
    assert psnr(x, y) == pytest.approx(20.0, abs=1e-4)
    assert psnr(255 * x, 255 * y, data_range=255.0) == pytest.approx(20.0, abs=1e-3)
    assert psnr(x, x) == math.inf
    assert isinstance(mse(x, y), float)


def test_distortion_shape_mismatch_raises():
    with pytest.raises(ValueError):
        mse(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))  # smaller than the 11×11 window


@pytest.mark.parametrize("kind", ["random", "natural"])
def test_ssim_matches_skimage(kind):
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    if kind == "random":
        g = torch.Generator().manual_seed(1)
        x = torch.rand(3, 37, 53, generator=g)
        y = (x + 0.2 * torch.randn(3, 37, 53, generator=g)).clamp(0, 1)
    else:
        x = natural_like(1, 64, 80, seed=2)[0]
        y = gaussian_blur(x[None], 1.5)[0] + 0.02 * torch.randn(3, 64, 80, generator=torch.Generator().manual_seed(3))
        y = y.clamp(0, 1)
    ref = structural_similarity(
        x.permute(1, 2, 0).numpy(), y.permute(1, 2, 0).numpy(), channel_axis=-1,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
    )
    ours = ssim(x, y)
    assert 0.05 < ours < 0.999  # a non-trivial value, so agreement means something
    assert ours == pytest.approx(float(ref), abs=1e-4)


def test_ssim_identity_and_ordering():
    x = natural_like(1, 48, 48, seed=4)[0]
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    light = (x + 0.01 * torch.randn_like(x)).clamp(0, 1)
    heavy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(x, light) > ssim(x, heavy)


# --------------------------------------------------------------------------- patch statistics


def reference_patches(tensors, p, s):
    return torch.cat([F.unfold(t.double(), p, stride=s).transpose(1, 2).reshape(-1, t.shape[1] * p * p)
                      for t in tensors])


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_patch_moments_equals_torch_cov(stride, monkeypatch):
    g = torch.Generator().manual_seed(5)
    tensors = [torch.rand(2, 3, 19, 23, generator=g), torch.rand(3, 16, 17, generator=g)]
    # Tiny chunks force the banded path (several row bands per image) to be exercised.
    monkeypatch.setattr(metrics.functional, "_CHUNK_ELEMENTS", 500)
    m = patch_moments(iter(tensors), patch_size=3, stride=stride)
    ref = reference_patches([tensors[0], tensors[1][None]], 3, stride)
    h = lambda n: (n - 3) // stride + 1  # noqa: E731 (patches per side)
    assert float(m.count) == ref.shape[0] == 2 * h(19) * h(23) + h(16) * h(17)
    torch.testing.assert_close(m.mean, ref.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(m.covariance, torch.cov(ref.T), rtol=0, atol=1e-12)


def test_patch_moments_rejects_bad_input():
    with pytest.raises(ValueError):
        patch_moments([], 3)
    with pytest.raises(ValueError):
        patch_moments([torch.rand(3, 2, 8)], 3)  # no 3×3 patch
    with pytest.raises(ValueError):
        patch_moments([torch.rand(3, 8, 8), torch.rand(4, 8, 8)], 3)  # channel count changes
    with pytest.raises(ValueError):
        patch_moments([torch.rand(8, 8)], 3)


def test_gaussian_fd_zero_on_itself_positive_when_blurred():
    x = natural_like(3, 40, 40, seed=6)
    m = patch_moments(x, 3)
    assert gaussian_fd(m, m) == pytest.approx(0.0, abs=1e-9)
    mb = patch_moments(gaussian_blur(x, 1.5), 3)
    assert gaussian_fd(m, mb) > 1e-3
    with pytest.raises(ValueError):
        gaussian_fd(m, patch_moments(x, 5))


def test_gaussian_fd_matches_pot():
    ot_gaussian = pytest.importorskip("ot.gaussian")
    a = patch_moments(torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(7)), 2)
    b = patch_moments(natural_like(2, 20, 20, seed=8), 2)
    w = ot_gaussian.bures_wasserstein_distance(
        a.mean.numpy(), b.mean.numpy(), a.covariance.numpy(), b.covariance.numpy())
    assert gaussian_fd(a, b) == pytest.approx(float(np.asarray(w)) ** 2, rel=1e-6)


def test_latent_fd_symmetric_and_accepts_moments():
    g = torch.Generator().manual_seed(9)
    za = torch.randn(4, 4, 12, 12, generator=g)
    zb = [1.5 * torch.randn(1, 4, 10, 14, generator=g) + 0.2 for _ in range(3)]
    ab, ba = latent_fd(za, zb), latent_fd(zb, za)
    assert ab > 0.1
    assert ab == pytest.approx(ba, rel=1e-6)
    assert latent_fd(patch_moments(za, 3), zb) == pytest.approx(ab, rel=1e-12)
    assert latent_fd(za, za) == pytest.approx(0.0, abs=1e-9)


def test_patch_fd_ranks_blur_above_light_noise():
    clean = natural_like(4, 96, 96, seed=10)
    other_clean = natural_like(4, 96, 96, seed=11)
    blurred = gaussian_blur(other_clean, 2.0)
    noised = (other_clean + 2 / 255 * torch.randn(other_clean.shape, generator=torch.Generator().manual_seed(12))).clamp(0, 1)
    ref = patch_moments(clean, 7, metrics.PATCH_FD_STRIDE)
    fd_blur, fd_noise = patch_fd(ref, blurred), patch_fd(ref, noised)
    fd_clean = patch_fd(ref, other_clean)
    assert fd_blur > 3 * fd_noise
    assert fd_noise < 2 * fd_clean + 1e-3  # light noise is nearly invisible to the measure


def test_patch_fd_default_stride_close_to_dense():
    a = natural_like(3, 80, 80, seed=13)
    b = gaussian_blur(natural_like(3, 80, 80, seed=14), 1.0)
    dense, strided = patch_fd(a, b, stride=1), patch_fd(a, b)
    assert strided == pytest.approx(dense, rel=0.1)


# --------------------------------------------------------------------------- perceptual


def test_perceptual_metrics_skip_with_reason_here():
    avail = perceptual_availability()
    assert set(avail) == {"lpips", "fid", "kid"}
    if all(v is None for v in avail.values()):
        pytest.skip("torchmetrics and its weights are present here; skip path not exercised")
    imgs = [torch.rand(3, 32, 32) for _ in range(2)]
    values, reasons = perceptual_metrics(imgs, imgs)
    for name, why in avail.items():
        if why is not None:
            assert values[name] is None
            assert reasons[name] == why and "skipped" in why


def test_perceptual_availability_names_missing_weights(monkeypatch, tmp_path):
    # Pretend every module is installed: the reason must then be the uncached weights.
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    avail = perceptual_availability()
    assert "pt_inception-2015-12-05" in avail["fid"] and "not cached" in avail["fid"]
    assert "AlexNet" in avail["lpips"] and "not cached" in avail["lpips"] and "not installed" not in avail["lpips"]
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth").touch()
    avail = perceptual_availability()
    assert avail["fid"] is None and avail["kid"] is None and avail["lpips"] is not None
