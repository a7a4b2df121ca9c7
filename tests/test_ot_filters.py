"""The one Gaussian kernel, shared by the blur, the detail split, SSIM and the patch weighting."""

from __future__ import annotations

import pytest
import torch


# ---------------------------------------------------------------------- helpers
def test_gaussian_kernel_is_shared():
    from dotrestore import metrics
    from dotrestore.experiment import degradations
    from dotrestore.ot import filters, patches

    assert degradations.gaussian_blur is filters.gaussian_blur
    assert torch.allclose(metrics.functional._gaussian_window(11, 1.5, torch.float64, "cpu"),
                          filters.gaussian_kernel1d(1.5, radius=5, dtype=torch.float64))
    g = filters.gaussian_kernel1d(0.75, radius=1, normalize=False, dtype=torch.float64)
    assert torch.allclose(patches.patch_weights(3, "gaussian", torch.float64), torch.outer(g, g))




@pytest.mark.parametrize("sigma", [0.5, 2.0, 4.0, 20.0])
def test_cpu_shifted_sums_equal_the_depthwise_convolution(monkeypatch, sigma):
    """On the CPU the blur sums shifted views; it is the convolution's result to float rounding."""
    from dotrestore.ot import filters

    x = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(1))
    fast = filters.gaussian_blur(x, sigma)
    monkeypatch.setattr(filters, "_SHIFTED_SUMS_RADIUS", -1)  # the convolution path
    assert (fast - filters.gaussian_blur(x, sigma)).abs().max() <= 1e-6
