"""Gaussian-mixture OT: EM, MW2 coupling and the posterior-weighted map against POT and closed forms."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dotrestore.ot import gaussian
from dotrestore.ot.mixture import GaussianMixture, MixtureTransport, fit_gmm, mixture_ot_plan
from dotrestore.ot.patches import transport_latent

ot = pytest.importorskip("ot")
ot_gmm = pytest.importorskip("ot.gmm")


def _random_gmm(k, d, seed, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(k, d, generator=g, dtype=torch.float64)
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    covs = a @ a.mT / d + 0.1 * torch.eye(d, dtype=torch.float64)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return GaussianMixture(weights / weights.sum(), means, covs)


def _sample(gmm, n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(gmm.weights, n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(gmm.covariances)
    eps = torch.randn(n, gmm.means.shape[1], generator=g, dtype=torch.float64)
    return gmm.means[labels] + (chol[labels] @ eps[:, :, None])[..., 0], labels


def _np(t):
    return t.numpy()


def test_plan_matches_pot():
    s, t = _random_gmm(3, 4, 0), _random_gmm(4, 4, 1)
    plan, cost = mixture_ot_plan(s, t)
    ref = ot_gmm.gmm_ot_plan(*map(_np, (s.means, t.means, s.covariances, t.covariances, s.weights, t.weights)))
    ref_cost = ot_gmm.dist_bures_squared(*map(_np, (s.means, t.means, s.covariances, t.covariances)))
    assert np.allclose(cost.numpy(), ref_cost, atol=1e-8)
    # Same optimal value (the LP optimum may have ties), same marginals.
    assert float((plan * cost).sum()) == pytest.approx(float((ref * ref_cost).sum()), rel=1e-8)
    assert torch.allclose(plan.sum(1), s.weights, atol=1e-9) and torch.allclose(plan.sum(0), t.weights, atol=1e-9)
    assert int((plan > 1e-12).sum()) <= 3 + 4 - 1  # a vertex of the transport polytope


def test_apply_matches_pot_bary():
    s, t = _random_gmm(3, 4, 2), _random_gmm(3, 4, 3)
    mt = MixtureTransport(s, t)
    x, _ = _sample(s, 200, 4)
    ref = ot_gmm.gmm_ot_apply_map(
        _np(x), *map(_np, (s.means, t.means, s.covariances, t.covariances, s.weights, t.weights)),
        plan=mt.plan.numpy(), method="bary",
    )
    assert np.allclose(mt.apply(x).numpy(), ref, atol=1e-8)
    assert mt.mw2_squared() == pytest.approx(
        float(ot_gmm.gmm_ot_loss(*map(_np, (s.means, t.means, s.covariances, t.covariances, s.weights, t.weights)))),
        rel=1e-8)


def test_identity_when_source_equals_target():
    s = _random_gmm(3, 5, 5)
    mt = MixtureTransport(s, s)
    x, _ = _sample(s, 100, 6)
    assert torch.allclose(mt.apply(x), x, atol=1e-6)
    assert mt.mw2_squared() == pytest.approx(0.0, abs=1e-8)


def test_one_component_is_the_gaussian_map_on_latents():
    g = torch.Generator().manual_seed(7)
    c, p = 2, 3
    d = c * p * p
    src = gaussian.Moments(d).update(torch.randn(500, d, generator=g, dtype=torch.float64) * 0.5 + 1)
    samples = torch.randn(500, d, generator=g, dtype=torch.float64)
    tgt = gaussian.Moments(d).update(samples @ torch.randn(d, d, generator=g, dtype=torch.float64) / 4)
    s = GaussianMixture(torch.ones(1, dtype=torch.float64), src.mean[None], src.covariance[None])
    t = GaussianMixture(torch.ones(1, dtype=torch.float64), tgt.mean[None], tgt.covariance[None])
    mt = MixtureTransport(s, t)
    z = torch.randn(2, c, 9, 11, generator=g, dtype=torch.float64)
    a = gaussian.transport_map(src.covariance, tgt.covariance)
    for weighting in ("uniform", "gaussian"):
        ref = transport_latent(z, a, src.mean, tgt.mean, p, weighting=weighting)
        assert torch.allclose(mt.transport(z, p, weighting), ref, atol=1e-8)


def test_latent_transport_equals_unfold_apply_fold():
    c, p = 2, 3
    d = c * p * p
    s, t = _random_gmm(3, d, 8, spread=1.0), _random_gmm(3, d, 9, spread=1.0)
    mt = MixtureTransport(s, t)
    z = torch.randn(1, c, 7, 8, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    r = p // 2
    cols = F.unfold(F.pad(z, (r,) * 4, mode="replicate"), p)[0].mT  # [HW, D]
    moved = mt.apply(cols).mT[None]
    size = (7 + 2 * r, 8 + 2 * r)
    num = F.fold(moved, size, p)
    den = F.fold(torch.ones_like(moved), size, p)
    ref = (num / den)[:, :, r:-r, r:-r]
    out = mt.transport(z, p)
    assert torch.allclose(out, ref, atol=1e-8)
    out32 = mt.transport(z.float(), p)
    assert torch.allclose(out32.double(), ref, atol=1e-3)


def test_em_recovers_separated_components():
    truth = _random_gmm(3, 3, 11, spread=8.0)
    x, _ = _sample(truth, 3000, 12)
    fitted = fit_gmm(x, 3, shrinkage=None, seed=0)
    order = torch.cdist(truth.means, fitted.means).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    assert torch.allclose(fitted.means[order], truth.means, atol=0.25)
    assert torch.allclose(fitted.weights[order], truth.weights, atol=0.04)
    assert torch.allclose(fitted.covariances[order], truth.covariances, atol=0.35)
    # Seeded: the same call gives the same mixture.
    again = fit_gmm(x, 3, shrinkage=None, seed=0)
    assert torch.equal(again.means, fitted.means)


def test_em_one_component_is_the_sample_moments_and_subsample_is_bounded():
    x = torch.randn(1000, 4, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    g = fit_gmm(x, 1, shrinkage=None)
    assert torch.allclose(g.means[0], x.mean(0), atol=1e-12)
    assert torch.allclose(g.covariances[0], torch.cov(x.T, correction=0), atol=1e-5)
    sub = fit_gmm(x, 1, shrinkage=None, max_samples=100)
    assert not torch.allclose(sub.means[0], x.mean(0), atol=1e-6)


def test_pushforward_matches_target_moments():
    # Two far-apart components each mapped onto one far-apart target component: the pushforward's
    # moments are the target mixture's within sampling error.
    s = _random_gmm(2, 2, 14, spread=10.0)
    t = _random_gmm(2, 2, 15, spread=10.0)
    t.weights = s.weights.clone()
    mt = MixtureTransport(s, t)
    x, _ = _sample(s, 20000, 16)
    y = mt.apply(x)
    ref, _ = _sample(t, 20000, 17)
    assert torch.allclose(y.mean(0), ref.mean(0), atol=0.3)
    assert torch.allclose(torch.cov(y.T), torch.cov(ref.T), rtol=0.1, atol=1.0)


def test_state_dict_round_trip():
    s, t = _random_gmm(2, 3, 18), _random_gmm(2, 3, 19)
    mt = MixtureTransport(s, t)
    back = MixtureTransport.from_state_dict(mt.state_dict())
    x, _ = _sample(s, 50, 20)
    assert torch.allclose(back.apply(x), mt.apply(x), atol=1e-12)
    state = mt.state_dict()
    state["plan"] = state["plan"][:1]
    with pytest.raises(ValueError, match="plan"):
        MixtureTransport.from_state_dict(state)


def test_bad_input():
    with pytest.raises(ValueError, match="too few"):
        fit_gmm(torch.randn(3, 2, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="n_components"):
        fit_gmm(torch.randn(30, 2, dtype=torch.float64), 0)


def test_reservoir_is_bounded_seeded_and_uniform():
    from dotrestore.ot.mixture import PatchReservoir

    rows = torch.arange(10000, dtype=torch.float32)[:, None].expand(10000, 2)
    a, b = PatchReservoir(500, seed=1), PatchReservoir(500, seed=1)
    for chunk in rows.split(777):
        a.update(chunk)
    for chunk in rows.split(3000):
        b.update(chunk)
    assert a.samples.shape == (500, 2) and a.seen == 10000
    assert torch.equal(a.samples, b.samples)  # keys are drawn in stream order, whatever the batches
    # Uniform over the stream: the kept rows' mean index is near the middle.
    assert abs(float(a.samples[:, 0].mean()) - 5000) < 600
    small = PatchReservoir(500).update(rows[:10])
    assert torch.equal(small.samples, rows[:10])
