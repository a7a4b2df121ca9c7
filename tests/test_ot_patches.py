"""Patch transport: the convolution form against the plain unfold → matmul → fold form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dotrestore.ot.patches import (
    extract_patches,
    overlap_add,
    patch_weights,
    positional_normal,
    transport_latent,
    transport_latent_reference,
)


def random_problem(c: int, p: int, seed: int, dtype=torch.float64):
    """Random operator and means, scaled so transported values stay O(1)."""
    d = c * p * p
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    ms = torch.randn(d, generator=g, dtype=torch.float64)
    mt = torch.randn(d, generator=g, dtype=torch.float64)
    return a.to(dtype), ms.to(dtype), mt.to(dtype)


def random_latent(b, c, h, w, seed, dtype=torch.float64):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# -- extract_patches ---------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2])
def test_extract_patches_matches_unfold_order(stride):
    z = random_latent(2, 3, 7, 6, 0)
    rows = extract_patches(z, 3, stride=stride)
    cols = F.unfold(z, 3, stride=stride)  # [B, D, L]
    assert rows.shape == (2 * cols.shape[2], 27)
    assert torch.equal(rows, torch.cat([cols[0].T, cols[1].T]))
    # Index d = c·p² + i·p + j of the patch at the origin.
    assert rows[0, 1 * 9 + 2 * 3 + 0] == z[0, 1, 2, 0]


def test_extract_patches_smaller_than_patch_is_empty():
    assert extract_patches(torch.zeros(1, 4, 2, 9), 3).shape == (0, 36)
    with pytest.raises(ValueError):
        extract_patches(torch.zeros(4, 5, 5), 3)


# -- convolution form == reference --------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [1, 3, 5])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (5, 1), (2, 3)])
@pytest.mark.parametrize("weighting", ["uniform", "gaussian"])
def test_conv_form_equals_reference(dtype, p, size, weighting):
    c = 3
    a, ms, mt = random_problem(c, p, seed=p)
    z = random_latent(2, c, *size, seed=11, dtype=dtype)
    # The float64 operator is cast to z's dtype inside; the output keeps z's dtype.
    fast = transport_latent(z, a, ms, mt, p, weighting)
    ref = transport_latent_reference(z, a, ms, mt, p, weighting)
    assert fast.dtype == dtype and fast.shape == z.shape
    assert torch.allclose(fast, ref, rtol=0, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    c=st.integers(1, 4),
    p=st.sampled_from([1, 3, 5, 7]),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    b=st.integers(1, 3),
    weighting=st.sampled_from(["uniform", "gaussian"]),
)
def test_conv_form_equals_reference_any_shape(c, p, h, w, b, weighting):
    a, ms, mt = random_problem(c, p, seed=h * 13 + w)
    z = random_latent(b, c, h, w, seed=c + p)
    fast = transport_latent(z, a, ms, mt, p, weighting)
    assert torch.allclose(fast, transport_latent_reference(z, a, ms, mt, p, weighting), rtol=0, atol=1e-10)


def test_batch_items_are_independent():
    a, ms, mt = random_problem(4, 3, seed=2)
    z = random_latent(3, 4, 6, 5, seed=3)
    batch = transport_latent(z, a, ms, mt, 3, "gaussian")
    for i in range(3):
        assert torch.allclose(batch[i : i + 1], transport_latent(z[i : i + 1], a, ms, mt, 3, "gaussian"), atol=1e-12)


@pytest.mark.parametrize("p", [3, 5])
def test_overlap_add_fold_and_slices_agree(p):
    y = random_latent(2, 2 * p * p, 6, 4, seed=p)
    assert torch.allclose(overlap_add(y, 2, p, use_fold=True), overlap_add(y, 2, p, use_fold=False), atol=1e-12)


# -- closed forms --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
@pytest.mark.parametrize("weighting", ["uniform", "gaussian"])
@pytest.mark.parametrize("p", [1, 3, 5])
def test_identity_operator_returns_input(p, weighting, dtype, tol):
    # Unit-scale latents (as VAE latents are): the only error is rounding of the p²-term average.
    c = 4
    d = c * p * p
    z = random_latent(2, c, 9, 4, seed=5, dtype=dtype)
    mean = torch.randn(d, generator=torch.Generator().manual_seed(6))
    out = transport_latent(z, torch.eye(d), mean, mean, p, weighting)
    assert (out - z).abs().max() <= tol


def test_mean_shift_only_moves_by_the_shift():
    """A = I, μt = μs + δ with δ constant per channel: every pixel moves by δ_c exactly."""
    c, p = 2, 3
    shift = torch.tensor([0.5, -2.0]).repeat_interleave(p * p)
    z = random_latent(1, c, 5, 6, seed=6)
    out = transport_latent(z, torch.eye(c * p * p, dtype=torch.float64), torch.zeros(c * p * p), shift, p)
    assert torch.allclose(out - z, torch.tensor([0.5, -2.0], dtype=torch.float64).view(1, 2, 1, 1).expand_as(z))


def test_gaussian_weights():
    w = patch_weights(3, "gaussian", dtype=torch.float64)
    sigma = 3 / 4
    assert w[1, 1] == 1 and torch.allclose(w[0, 0], torch.exp(torch.tensor(-2 / (2 * sigma**2), dtype=torch.float64)))
    assert torch.equal(patch_weights(5, "uniform"), torch.ones(5, 5))


def test_invalid_arguments():
    a, ms, mt = random_problem(2, 3, seed=0)
    z = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    for bad_p in (2, 4, 0):
        with pytest.raises(ValueError):  # InputError is a ValueError
            transport_latent(z, a, ms, mt, bad_p)
    with pytest.raises(ValueError):
        transport_latent(z, a, ms, mt, 3, weighting="triangle")
    with pytest.raises(ValueError):
        transport_latent(torch.zeros(1, 3, 4, 4), a, ms, mt, 3)  # D mismatch
    with pytest.raises(ValueError):
        transport_latent(z[0], a, ms, mt, 3)


# -- noise ---------------------------------------------------------------------------------------
def noise_problem():
    """(c, p, D, A, μs, μt, z, noise √) of a small stochastic-map problem (eq. 19)."""
    c, p = 3, 3
    d = c * p * p
    a, ms, mt = random_problem(c, p, seed=7)
    z = random_latent(2, c, 6, 7, seed=8)
    noise_sqrt = 0.3 * torch.randn(d, d, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    return c, p, d, a, ms, mt, z, noise_sqrt


def test_noise_reproducible_and_matches_reference():
    c, p, d, a, ms, mt, z, noise_sqrt = noise_problem()

    def run(fn, seed, weighting="uniform"):
        return fn(z, a, ms, mt, p, weighting, noise_sqrt=noise_sqrt, generator=torch.Generator().manual_seed(seed))

    first, again, other = run(transport_latent, 0), run(transport_latent, 0), run(transport_latent, 1)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert not torch.allclose(first, transport_latent(z, a, ms, mt, p))
    for weighting in ("uniform", "gaussian"):
        assert torch.allclose(run(transport_latent, 4, weighting), run(transport_latent_reference, 4, weighting), atol=1e-10)


def test_noise_variance_is_averaged_over_overlaps():
    """A = I, L = s·I: each interior pixel averages p² independent N(0, s²) draws."""
    c, p, s = 2, 3, 0.5
    d = c * p * p
    z = torch.zeros(4, c, 40, 40)
    out = transport_latent(
        z, torch.eye(d), torch.zeros(d), torch.zeros(d), p,
        noise_sqrt=s * torch.eye(d), generator=torch.Generator().manual_seed(10),
    )
    interior = out[:, :, 1:-1, 1:-1]
    assert interior.mean().abs() < 0.01
    assert interior.var().item() == pytest.approx(s**2 / p**2, rel=0.1)
    # Corners are covered by 4 patches only: larger variance there.
    assert out[:, :, 0, 0].var() > 1.5 * interior.var()


# -- position-seeded noise -----------------------------------------------------------------------
def test_positional_normal_is_standard_normal_and_independent_across_positions_and_channels():
    eps = positional_normal(3, 16, 96, 96).double()
    assert abs(float(eps.mean())) < 0.01 and float(eps.std()) == pytest.approx(1.0, abs=0.01)
    flat = eps.reshape(-1)
    # tails of a standard normal: P(|ε| > 2) = 0.0455, P(|ε| > 3) = 0.0027
    assert float((flat.abs() > 2).double().mean()) == pytest.approx(0.0455, abs=0.003)
    assert float((flat.abs() > 3).double().mean()) == pytest.approx(0.0027, abs=0.0008)
    for a, b in ((eps[:, 1:], eps[:, :-1]), (eps[:, :, 1:], eps[:, :, :-1]), (eps[1:], eps[:-1])):
        assert abs(float((a * b).mean())) < 0.01  # neighbours (rows, columns, channels) uncorrelated
    assert abs(float((positional_normal(4, 16, 96, 96).double() * eps).mean())) < 0.01  # seeds differ
    assert torch.equal(positional_normal(3, 16, 96, 96), eps.float())


def test_positional_normal_of_a_crop_is_the_crop_of_the_whole_map():
    whole = positional_normal(11, 5, 40, 50)
    crop = positional_normal(11, 5, 17, 23, origin=(9, 20))
    assert torch.equal(crop, whole[:, 9:26, 20:43])


def test_position_seeded_noise_is_the_same_for_a_pixel_in_any_batch_and_crop():
    """The same latent position gets the same noise whatever else is transported with it."""
    c, p = 2, 3
    d = c * p * p
    zero = torch.zeros(d)
    noise_sqrt = 0.5 * torch.eye(d)

    def noise(z, origin=(0, 0)):  # A = 0: the output is the averaged noise alone
        return transport_latent(z, torch.zeros(d, d), zero, zero, p, noise_sqrt=noise_sqrt, noise_seed=5,
                                origin=origin)

    z = random_latent(3, c, 30, 40, seed=1, dtype=torch.float32)
    batch = noise(z)
    assert float(batch.std()) > 0.1
    assert torch.equal(noise(z[1:2])[0], batch[1])  # batch of 1 vs batch of 3
    assert torch.equal(batch[0], batch[2])  # every image gets the draws of its positions
    # a crop at (8, 10): interior pixels (all of whose patches lie inside the crop) agree exactly
    crop = noise(z[:, :, 8:28, 10:35], origin=(8, 10))
    assert torch.allclose(crop[:, :, 1:-1, 1:-1], batch[:, :, 9:27, 11:34], atol=1e-6)
    assert torch.equal(noise(z), batch)  # and on every call
    again = transport_latent(z, torch.zeros(d, d), zero, zero, p, noise_sqrt=noise_sqrt,
                             generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(again[0], again[2])  # a stream generator draws per image instead


def test_position_seeded_noise_matches_the_reference_form():
    c, p, d, a, ms, mt, z, noise_sqrt = noise_problem()
    for weighting in ("uniform", "gaussian"):
        fast = transport_latent(z, a, ms, mt, p, weighting, noise_sqrt=noise_sqrt, noise_seed=2, origin=(3, 4))
        slow = transport_latent_reference(z, a, ms, mt, p, weighting, noise_sqrt=noise_sqrt, noise_seed=2,
                                          origin=(3, 4))
        assert torch.allclose(fast, slow, atol=1e-10)
