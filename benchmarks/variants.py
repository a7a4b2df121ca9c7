"""DOT configurations compared by :mod:`realism`: how each is fitted and how it makes x̂0.

``default`` is the estimator as it ships (``DOT(codec)``, ``transform(x, alpha=0)``). The other
variants reuse cached stages (the fitted operator of a split, E(split(x*)), D(T(z))), so a
variant that only changes how x̂0 is recombined costs no codec pass.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dotrestore import DOT
from dotrestore.ot import split as detail


class Stages:
    """Fitted DOT of one split plus an on-disk cache of per-image latents and decodings."""

    def __init__(self, dot: DOT, cache: Path | None):
        self.dot, self.cache = dot, cache

    def _cached(self, key: str, make):
        if self.cache is None:
            return make()
        file = self.cache / f"{key}.pt"
        if file.exists():
            return torch.load(file, weights_only=True)
        value = make()
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(value, file)
        return value

    def parts(self, x: torch.Tensor):
        """(encoded detail image, L(x*)) of (3, H, W) x*, as the estimator splits it."""
        dot = self.dot
        return detail.split(x[None], dot.lowpass_sigma, dot.split.split("+")[0])

    def latent(self, x, stem):
        return self._cached(f"z-{stem}", lambda: self.dot.codec_.encode(self.parts(x)[0]))

    def decoded(self, x, stem, tag="T", transport=None):
        """D(T(z)) (the decoder's output, before recombination), cached under ``tag``."""
        def make():
            z = self.latent(x, stem)
            moved = transport(z) if transport else self.dot.transport(z)
            return self.dot.codec_.decode(moved, size=tuple(x.shape[-2:]))
        return self._cached(f"{tag}-{stem}", make)


def make_dot(variant: str, codec: str = "taef2") -> DOT:
    return DOT(codec=codec)


def _noise_transport(dot: DOT, ratio: float, seed: int = 0, scale: float = 1.0):
    """The regularised stochastic map (eq. 19 on :func:`reachable_source`), position-seeded noise."""
    from dotrestore.ot import gaussian
    from dotrestore.ot.patches import transport_latent

    cov_s = gaussian.reachable_source(dot.cov_source_, dot.cov_target_, ratio)
    t0, noise_cov = gaussian.stochastic_transport_map(cov_s, dot.cov_target_, eps=dot.eps)
    args = [t.float() for t in (t0, dot.mean_source_, dot.mean_target_, scale * gaussian.sqrtm_psd(noise_cov))]

    def move(z):
        a, ms, mt, noise = (t.to(z.device) for t in args)
        return transport_latent(z, a, ms, mt, dot.patch_size, dot.weighting, noise_sqrt=noise, noise_seed=seed)
    return move


def transport_latent_weighted(dot: DOT, z: torch.Tensor) -> torch.Tensor:
    from dotrestore.ot.patches import transport_latent

    a, ms, mt = (t.float().to(z.device) for t in (dot.operator_, dot.mean_source_, dot.mean_target_))
    return transport_latent(z, a, ms, mt, dot.patch_size, "gaussian")


def alpha0(variant: str, stages: Stages, x_star: torch.Tensor, stem: str) -> torch.Tensor:
    """x̂0 of one restoration (3, H, W) under ``variant`` ("+"-joined tokens, see the module)."""
    dot = stages.dot
    if variant == "default":
        return dot.transform(x_star, alpha=0.0)
    recombination, tag, transport = "cached", "T", None
    for token in variant.split("+"):
        if token == "wgauss":  # overlapping patches averaged with Gaussian weights (σ = p/4)
            tag = token
            transport = lambda z: transport_latent_weighted(dot, z)  # noqa: E731
        elif token.startswith("noisep"):  # noise std × p: overlap averaging of p² patches divides it by p
            tag, transport = token, _noise_transport(dot, float(token[len("noisep"):]), scale=dot.patch_size)
        elif token.startswith("noise"):
            tag, transport = token, _noise_transport(dot, float(token[len("noise"):]))
        elif token != "cached-default":
            recombination = token
    decoded = stages.decoded(x_star, stem, tag, transport)
    _, low = stages.parts(x_star)
    if recombination == "cached":  # the estimator's recombination
        out = detail.recombine(decoded, low, dot.split, reference=x_star[None], sigma=dot.lowpass_sigma)
    else:
        out = recombine_variant(recombination, decoded, low, x_star[None])
    return out.clamp(0, 1)[0]


def fit_name(variant: str) -> str:
    """Variants sharing a fit name share the cached operator and decodings of a split."""
    return "default"


def _blur(x, sigma):
    from dotrestore.ot.filters import gaussian_blur
    return gaussian_blur(x, sigma)


def recombine_variant(name: str, decoded, low, x_star):
    """Experimental recombinations: ``proj-gauss<σ>``: L(x*) + d − G_σ(d); ``proj-delta<σ>``:
    x* + (I − G_σ)(d − H(x*)), with d = D(T(z)) − ½ and H(x*) = x* − L(x*)."""
    d = decoded - detail.GREY
    if name == "legacy":  # the recombination before the projection: L(x*) + d
        return low + d
    if name == "clamp":  # the projection, then the "+clamp" rule (x*'s local range widened by the detail's)
        return detail.recombine(decoded, low, "guided+clamp", reference=x_star, sigma=4.0)
    if name.startswith("clamp-r"):  # clamp to x*'s local range over radius r, widened by half Δ's local range
        radius = int(name[len("clamp-r"):])
        out = detail.recombine(decoded, low, "guided", reference=x_star, sigma=4.0)
        lo, hi = detail.local_range(x_star, radius)
        dlo, dhi = detail.local_range(out - x_star, radius)
        margin = (dhi - dlo) / 2
        return torch.maximum(torch.minimum(out, hi + margin), lo - margin)
    if name.startswith("edgeclamp"):  # near x*'s strong edges only: clamp to x*'s local range (radius 6)
        from dotrestore.metrics.perception import strong_edge_band
        out = detail.recombine(decoded, low, "guided", reference=x_star, sigma=4.0)
        band = strong_edge_band(x_star[0], threshold=float(name[len("edgeclamp"):] or 0.1), radius=3)
        lo, hi = detail.local_range(x_star, 6)
        clamped = torch.maximum(torch.minimum(out, hi), lo)
        return torch.where(band.to(out.device)[None, None], clamped, out)
    if name.startswith("proj-gauss"):
        return low + d - _blur(d, float(name[len("proj-gauss"):]))
    if name.startswith("proj-delta"):
        change = d - (x_star - low)
        return x_star + change - _blur(change, float(name[len("proj-delta"):]))
    raise SystemExit(f"unknown recombination {name!r}")
