"""Gaussian OT math: against POT and against closed forms."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dotrestore.ot.gaussian import (
    EPS,
    Moments,
    effective_rank,
    inv_sqrtm_psd,
    is_singular,
    pinv_psd,
    shrink_covariance,
    sqrtm_and_inv_sqrtm,
    sqrtm_psd,
    stochastic_transport_map,
    transport_map,
    w2_squared,
)

ot = pytest.importorskip("ot")

F64 = torch.float64


def random_spd(d: int, seed: int, low: float = 0.5, high: float = 2.0) -> torch.Tensor:
    """Well-conditioned SPD matrix: random rotation of eigenvalues in [low, high]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    vals = low + (high - low) * torch.rand(d, generator=g, dtype=F64)
    return (q * vals) @ q.T


def random_vector(d: int, seed: int) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64)
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


# -- matrix roots ------------------------------------------------------------------------------
def test_eps_is_documented_value():
    assert EPS == 1e-12


def test_sqrtm_and_inverse():
    m = random_spd(20, 0)
    root, inv_root = sqrtm_and_inv_sqrtm(m)
    assert rel_err(root @ root, m) < 1e-12
    assert rel_err(inv_root @ m @ inv_root, torch.eye(20, dtype=F64)) < 1e-12
    assert rel_err(sqrtm_psd(m), root) < 1e-14
    assert rel_err(inv_sqrtm_psd(m), inv_root) < 1e-14
    # Symmetric part only: an antisymmetric perturbation is ignored.
    skew = torch.triu(torch.ones(20, 20, dtype=F64), 1)
    assert rel_err(sqrtm_psd(m + 1e-3 * (skew - skew.T)), root) < 1e-14


def test_roots_stay_finite_on_singular_and_keep_dtype():
    v = torch.randn(6, 2, dtype=F64)
    m = v @ v.T  # rank 2
    root, inv_root = sqrtm_and_inv_sqrtm(m, eps=1e-8)
    assert torch.isfinite(inv_root).all()
    assert rel_err(root @ root, m) < 1e-6
    assert is_singular(m) and effective_rank(m) == 2
    assert not is_singular(random_spd(6, 1))
    assert rel_err(m @ pinv_psd(m) @ m, m) < 1e-10
    assert sqrtm_psd(random_spd(4, 2).float()).dtype == torch.float32


# -- transport map ------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [100, 288])
def test_transport_map_matches_pot(d):
    ms, mt = random_vector(d, 1), random_vector(d, 2)
    cs, ct = random_spd(d, 3), random_spd(d, 4)
    a_pot, b_pot = ot.gaussian.bures_wasserstein_mapping(ms.numpy(), mt.numpy(), cs.numpy(), ct.numpy())
    a = transport_map(cs, ct)
    assert rel_err(a, a_pot) <= 1e-8
    assert rel_err(mt - a @ ms, b_pot) <= 1e-8


@pytest.mark.parametrize("d", [100, 288])
def test_w2_squared_matches_pot(d):
    ms, mt = random_vector(d, 5), random_vector(d, 6)
    cs, ct = random_spd(d, 7), random_spd(d, 8)
    # POT returns W2 (it takes a square root at the end), not W2².
    w2_pot = ot.gaussian.bures_wasserstein_distance(ms.numpy(), mt.numpy(), cs.numpy(), ct.numpy())
    assert abs(float(w2_squared(ms, cs, mt, ct)) - float(w2_pot) ** 2) <= 1e-8 * float(w2_pot) ** 2
    # Covariance part alone (equal means): the Bures term must agree too.
    w2_pot0 = ot.gaussian.bures_wasserstein_distance(ms.numpy(), ms.numpy(), cs.numpy(), ct.numpy())
    assert abs(float(w2_squared(ms, cs, ms, ct)) - float(w2_pot0) ** 2) <= 1e-8 * float(w2_pot0) ** 2


def test_transport_map_pushes_source_onto_target():
    d, n = 6, 200_000
    ms, mt = random_vector(d, 10), random_vector(d, 11)
    cs, ct = random_spd(d, 12), random_spd(d, 13)
    a = transport_map(cs, ct)
    assert torch.allclose(a, a.T)
    assert rel_err(a @ cs @ a, ct) < 1e-12  # closed form: A Σs A = Σt
    g = torch.Generator().manual_seed(14)
    x = ms + torch.randn(n, d, generator=g, dtype=F64) @ sqrtm_psd(cs)
    y = (x - ms) @ a.T + mt
    # Sampling error of a mean entry ~ sqrt(2/n) ≈ 0.003, of a covariance entry ≈ 0.006.
    assert torch.allclose(y.mean(0), mt, atol=0.02)
    assert torch.allclose(torch.cov(y.T), ct, atol=0.04)


def test_transport_map_of_target_onto_itself_is_identity():
    ct = random_spd(50, 15)
    assert torch.allclose(transport_map(ct, ct), torch.eye(50, dtype=F64), atol=1e-10)


# -- W2 --------------------------------------------------------------------------------------
def test_w2_identical_is_zero_and_symmetric():
    m, c = random_vector(30, 16), random_spd(30, 17)
    assert float(w2_squared(m, c, m, c)) == pytest.approx(0.0, abs=1e-10)
    m2, c2 = random_vector(30, 18), random_spd(30, 19)
    assert float(w2_squared(m, c, m2, c2)) == pytest.approx(float(w2_squared(m2, c2, m, c)), rel=1e-10)
    assert w2_squared(m, c, m2, c2).ndim == 0


@settings(max_examples=50, deadline=None)
@given(
    ms=st.floats(-10, 10),
    mt=st.floats(-10, 10),
    ss=st.floats(0.01, 10),
    stt=st.floats(0.01, 10),
)
def test_w2_one_dimensional_closed_form(ms, mt, ss, stt):
    value = w2_squared(
        torch.tensor([ms], dtype=F64), torch.tensor([[ss**2]], dtype=F64),
        torch.tensor([mt], dtype=F64), torch.tensor([[stt**2]], dtype=F64),
    )
    assert float(value) == pytest.approx((ms - mt) ** 2 + (ss - stt) ** 2, rel=1e-9, abs=1e-9)


def test_w2_is_the_cost_of_the_map():
    """E‖x − T(x)‖² under the optimal map equals W2² (zero means)."""
    cs, ct = random_spd(12, 20), random_spd(12, 21)
    a = transport_map(cs, ct)
    i = torch.eye(12, dtype=F64)
    cost = torch.trace((i - a) @ cs @ (i - a).T)
    zero = torch.zeros(12, dtype=F64)
    assert float(w2_squared(zero, cs, zero, ct)) == pytest.approx(float(cost), rel=1e-10)


# -- stochastic map (singular source) ---------------------------------------------------------
def singular_source(d: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    factor = torch.randn(d, rank, generator=g, dtype=F64) / rank**0.5
    return factor @ factor.T, factor


def test_stochastic_map_reproduces_target_closed_form_and_cost():
    d = 20
    cs, _ = singular_source(d, 8, 22)
    ct = random_spd(d, 23)
    t0, noise_cov = stochastic_transport_map(cs, ct)
    assert rel_err(t0 @ cs @ t0.T + noise_cov, ct) < 1e-10
    assert torch.linalg.eigvalsh(noise_cov).min() >= -1e-12  # PSD up to rounding
    assert torch.allclose(noise_cov, noise_cov.T)
    # The coupling (x, T0 x + w) attains the Bures cost: E‖x − y‖² = tr Σs + tr Σt − 2 tr(T0 Σs).
    zero = torch.zeros(d, dtype=F64)
    cost = torch.trace(cs) + torch.trace(ct) - 2 * torch.trace(t0 @ cs)
    assert float(cost) == pytest.approx(float(w2_squared(zero, cs, zero, ct)), rel=1e-9)


def test_stochastic_map_reproduces_target_empirically():
    d, n = 6, 200_000
    cs, factor = singular_source(d, 3, 24)
    ct = random_spd(d, 25)
    ms, mt = random_vector(d, 26), random_vector(d, 27)
    t0, noise_cov = stochastic_transport_map(cs, ct)
    g = torch.Generator().manual_seed(28)
    x = ms + torch.randn(n, 3, generator=g, dtype=F64) @ factor.T  # x ~ N(ms, Σs), rank 3
    w = torch.randn(n, d, generator=g, dtype=F64) @ sqrtm_psd(noise_cov, eps=0.0)
    y = (x - ms) @ t0.T + mt + w
    assert torch.allclose(y.mean(0), mt, atol=0.02)
    assert torch.allclose(torch.cov(y.T), ct, atol=0.04)
    # Without the noise the covariance is short of Σt: the noise is what makes it right.
    assert not torch.allclose(torch.cov(((x - ms) @ t0.T).T), ct, atol=0.1)


def test_stochastic_map_full_rank_is_deterministic_map():
    cs, ct = random_spd(15, 29), random_spd(15, 30)
    t0, noise_cov = stochastic_transport_map(cs, ct)
    assert rel_err(t0, transport_map(cs, ct)) < 1e-10
    assert float(noise_cov.abs().max()) < 1e-10


# -- moments ------------------------------------------------------------------------------------
def offset_data(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=F64)
    return 1e4 + 1e-2 * torch.randn(n, d, generator=g, dtype=F64) @ mix


def test_moments_match_torch_cov_with_large_offset():
    x = offset_data(5000, 8, 31)
    m = Moments(8)
    for chunk in x.split(777):
        m.update(chunk)
    assert int(m.count) == 5000
    assert rel_err(m.mean, x.mean(0)) < 1e-14
    assert rel_err(m.covariance, torch.cov(x.T)) < 1e-10


def test_moments_merge_with_different_shifts_equals_single_update():
    x = offset_data(3000, 5, 32)
    y = x[1000:] + 50.0  # a second shard far from the first: very different shifts
    whole = Moments(5).update(torch.cat([x[:1000], y]))
    a = Moments(5).update(x[:1000])
    b = Moments(5).update(y[:700]).update(y[700:])
    assert not torch.equal(a.shift, b.shift)
    a.merge(b)
    assert int(a.count) == int(whole.count)
    assert rel_err(a.mean, whole.mean) < 1e-14
    assert rel_err(a.covariance, whole.covariance) < 1e-10
    # Merging into an empty accumulator adopts the other's state.
    empty = Moments(5).merge(whole)
    assert torch.equal(empty.covariance, whole.covariance)
    assert torch.equal(whole.merge(Moments(5)).covariance, empty.covariance)


def test_moments_state_dict_round_trip_and_sum_of_states():
    x = offset_data(400, 4, 33)
    shift = x[0].clone()
    a = Moments(4, shift=shift).update(x[:150])
    b = Moments(4, shift=shift).update(x[150:])
    state = a.state_dict()
    assert set(state) == {"count", "shift", "sum", "outer"}
    assert all(isinstance(v, torch.Tensor) and v.dtype == F64 for v in state.values())
    restored = Moments.from_state_dict(state)
    assert torch.equal(restored.covariance, a.covariance) and torch.equal(restored.mean, a.mean)
    # With a common shift, summing states (what an all-reduce does) equals merging.
    summed = {k: a.state_dict()[k] + b.state_dict()[k] if k != "shift" else shift for k in state}
    assert rel_err(Moments.from_state_dict(summed).covariance, torch.cov(x.T)) < 1e-10
    restored.update(x[150:])
    assert rel_err(restored.covariance, torch.cov(x.T)) < 1e-10


def test_moments_errors():
    m = Moments(3)
    with pytest.raises(ValueError):
        m.update(torch.zeros(4, 2))
    with pytest.raises(ValueError):
        m.mean
    m.update(torch.zeros(1, 3))
    with pytest.raises(ValueError):
        m.covariance
    with pytest.raises(ValueError):
        m.merge(Moments(2))
    assert m.update(torch.zeros(0, 3)).count.item() == 1


# -- shrinkage ---------------------------------------------------------------------------------
def test_shrinkage_none_and_ridge():
    c = random_spd(10, 34)
    same, used = shrink_covariance(c, 100, None)
    assert same is c and used == "none"
    ridge, used = shrink_covariance(c, 100, 0.25)
    nu = torch.trace(c) / 10
    assert used.startswith("ridge")
    assert torch.allclose(ridge, 0.75 * c + 0.25 * nu * torch.eye(10, dtype=F64))
    assert torch.allclose(shrink_covariance(c, 100, 1.0)[0], nu * torch.eye(10, dtype=F64))
    for bad in (-0.1, 1.5, "ledoit", [0.1]):
        with pytest.raises(ValueError):
            shrink_covariance(c, 100, bad)


def test_oas_shrinks_more_with_fewer_samples_and_helps_when_n_small():
    d = 40
    true = random_spd(d, 35, low=0.5, high=1.5)
    g = torch.Generator().manual_seed(36)
    factor = sqrtm_psd(true)

    def sample_cov(n):
        return torch.cov((torch.randn(n, d, generator=g, dtype=F64) @ factor).T)

    few, many = sample_cov(20), sample_cov(20_000)  # n < D: the sample covariance is singular
    shrunk_few, used_few = shrink_covariance(few, 20, "oas")
    shrunk_many, used_many = shrink_covariance(many, 20_000, "oas")
    rho_few, rho_many = (float(u.split("=")[1].rstrip(")")) for u in (used_few, used_many))
    assert used_few.startswith("oas(") and 0 <= rho_many < rho_few <= 1
    assert rho_many < 0.05
    assert torch.linalg.eigvalsh(shrunk_few).min() > 0  # invertible again
    assert torch.linalg.norm(shrunk_few - true) < torch.linalg.norm(few - true)
    assert torch.trace(shrunk_few) == pytest.approx(float(torch.trace(few)))


def test_reachable_source_drops_directions_the_source_barely_carries():
    """Σs = diag(4, 0.001, 1), Σt = I: the second direction holds 0.1 % of the target's variance."""
    from dotrestore.ot.gaussian import reachable_source, stochastic_transport_map

    cov_s = torch.diag(torch.tensor([4.0, 0.001, 1.0], dtype=torch.float64))
    cov_t = torch.eye(3, dtype=torch.float64)
    assert reachable_source(cov_s, cov_t, 0.0) is cov_s
    kept = reachable_source(cov_s, cov_t, 0.01)
    assert torch.allclose(kept, torch.diag(torch.tensor([4.0, 0.0, 1.0], dtype=torch.float64)), atol=1e-12)
    assert torch.allclose(reachable_source(cov_s, cov_t, 0.0005), cov_s, atol=1e-12)
    t0, noise = stochastic_transport_map(kept, cov_t)
    # the kept directions are mapped (gains 1/2 and 1), the dropped one is pure noise of the target's variance
    assert torch.allclose(t0, torch.diag(torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)), atol=1e-9)
    assert torch.allclose(noise, torch.diag(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)), atol=1e-9)
    # in a rotated basis and against a non-identity target: T0 Σs T0ᵀ + Σw = Σt still holds
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    m = torch.randn(3, 3, generator=g, dtype=torch.float64)
    cov_t = m @ m.T + 0.5 * torch.eye(3, dtype=torch.float64)
    kept = reachable_source(q @ cov_s @ q.T, cov_t, 0.01)
    assert torch.linalg.matrix_rank(kept).item() == 2
    t0, noise = stochastic_transport_map(kept, cov_t)
    assert torch.allclose(t0 @ kept @ t0.T + noise, cov_t, atol=1e-8)
