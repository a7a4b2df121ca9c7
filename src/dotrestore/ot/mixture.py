r"""Gaussian-mixture OT between latent patch distributions (Delon & Desolneux 2020).

One Gaussian treats edges, flat areas and textures alike. Here the source and target patch
distributions are each a K-component Gaussian mixture

.. math:: \mu_s = \sum_k a_k\,\mathcal N(m_k, S_k),\qquad \mu_t = \sum_l b_l\,\mathcal N(n_l, T_l),

fitted by EM (:func:`fit_gmm`). The components are coupled by the discrete OT plan π between
the weights with Bures costs, the MW2 distance of Delon & Desolneux (2020, eq. 4.2):

.. math:: \pi = \arg\min_{\pi\in\Pi(a, b)} \sum_{k,l} \pi_{kl}\,W_2^2(\mathcal N(m_k,S_k), \mathcal N(n_l,T_l)),

a K×K linear programme. Each patch z is moved by the posterior-weighted combination of the
coupled Gaussian maps (their T_bary, POT's ``gmm_ot_apply_map(method="bary")``):

.. math:: T(z) = \sum_{k,l} \frac{p(k\mid z)\,\pi_{kl}}{a_k}\big(A_{kl}(z - m_k) + n_l\big),

with :math:`A_{kl}` the Gaussian OT map from component k to l (Freirich et al. eq. 17) and
p(k | z) the source mixture's posterior. K = 1 is the single-Gaussian map.

On latents (:meth:`MixtureTransport.transport`) every step is a convolution, as in
:mod:`dotrestore.ot.patches`: one conv per source component for the Mahalanobis distances of
every patch, one per coupled pair (π has at most 2K − 1 nonzero entries) for the maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import gaussian
from .patches import overlap_add, overlap_weight, patch_weights

__all__ = ["GaussianMixture", "fit_gmm", "mixture_ot_plan", "MixtureTransport"]

#: Rows of samples per E-step chunk: bounds the memory of EM to a few chunks of N×D.
CHUNK = 16384
#: Added to every component covariance, relative to the mean variance of all samples, so that
#: Cholesky never fails on a component that collapsed onto few samples.
REG = 1e-6


@dataclass
class GaussianMixture:
    """weights [K] (sum 1), means [K, D], covariances [K, D, D]; float64."""

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor

    @property
    def n_components(self) -> int:
        return int(self.weights.numel())

    def log_prob_components(self, x: torch.Tensor) -> torch.Tensor:
        """log a_k + log N(x | m_k, S_k) for rows of x [N, D]: [N, K] (float64, chunked)."""
        chol = torch.linalg.cholesky(self.covariances)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        d = x.shape[1]
        const = torch.log(self.weights) - 0.5 * (logdet + d * math.log(2 * math.pi))
        out = []
        for chunk in x.split(CHUNK):
            chunk = chunk.to(torch.float64)
            diff = (chunk[None] - self.means[:, None]).mT  # [K, D, n]
            y = torch.linalg.solve_triangular(chol, diff, upper=False)
            out.append(const[None] - 0.5 * y.square().sum(1).mT)
        return torch.cat(out)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {f"{prefix}weights": self.weights, f"{prefix}means": self.means, f"{prefix}covariances": self.covariances}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = "") -> GaussianMixture:
        w, m, c = (state[f"{prefix}{k}"].to(torch.float64) for k in ("weights", "means", "covariances"))
        k, d = m.shape
        if w.shape != (k,) or c.shape != (k, d, d):
            raise ValueError(f"mixture tensors disagree: weights {tuple(w.shape)}, means {tuple(m.shape)}, "
                             f"covariances {tuple(c.shape)}")
        return cls(w, m, c)


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices of k rows of x."""
    first = int(torch.randint(x.shape[0], (1,), generator=generator))
    centres = [first]
    dist = (x - x[first]).square().sum(1)
    for _ in range(1, k):
        total = float(dist.sum())
        if total <= 0:  # fewer distinct rows than components: repeat one
            centres.append(centres[-1])
            continue
        idx = int(torch.multinomial(dist / total, 1, generator=generator))
        centres.append(idx)
        dist = torch.minimum(dist, (x - x[idx]).square().sum(1))
    return torch.tensor(centres)


def _m_step(x: torch.Tensor, resp: torch.Tensor, shrinkage, floor: float) -> GaussianMixture:
    nk = resp.sum(0) + 1e-12  # [K]
    means = (resp.mT @ x) / nk[:, None]
    covs = []
    for k in range(resp.shape[1]):
        diff = x - means[k]
        cov = (diff * resp[:, k : k + 1]).mT @ diff / nk[k]
        cov = 0.5 * (cov + cov.mT)
        # OAS needs n >= 2; a component holding fewer effective samples is shrunk all the way.
        cov, _ = gaussian.shrink_covariance(cov, max(2, int(round(float(nk[k])))), shrinkage)
        covs.append(cov + floor * torch.eye(x.shape[1], dtype=x.dtype, device=x.device))
    return GaussianMixture(nk / nk.sum(), means, torch.stack(covs))


def fit_gmm(
    samples: torch.Tensor, n_components: int, *, max_samples: int = 200_000, max_iter: int = 50,
    tol: float = 1e-4, shrinkage: None | str | float = "oas", seed: int = 0,
) -> GaussianMixture:
    r"""EM fit of a K-component Gaussian mixture to the rows of ``samples`` [N, D] (float64).

    At most ``max_samples`` rows are used, a seeded uniform subsample without replacement.
    Initialisation: k-means++ centres and five Lloyd iterations (hard assignments). Each
    M-step covariance is shrunk (``shrinkage``, see :func:`dotrestore.gaussian.shrink_covariance`,
    with the component's effective sample count) and gets a floor of ``REG`` × the mean
    sample variance on its diagonal. Stops when the mean log-likelihood per sample changes by
    less than ``tol`` or after ``max_iter`` iterations. K = 1 is the sample mean and the
    (maximum-likelihood, shrunk) covariance.
    """
    if samples.ndim != 2:
        raise ValueError(f"samples must be [N, D], got {tuple(samples.shape)}")
    k = int(n_components)
    if k < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components!r}")
    if samples.shape[0] < 2 * k:
        raise ValueError(f"{samples.shape[0]} samples are too few for {k} components (need >= {2 * k})")
    generator = torch.Generator().manual_seed(seed)
    if samples.shape[0] > max_samples:
        keep = torch.randperm(samples.shape[0], generator=generator)[:max_samples]
        samples = samples[keep.to(samples.device)]
    x = samples.detach().to(torch.float64)
    floor = REG * float(x.var(0).mean().clamp(min=1e-12))
    # Hard k-means start: a few Lloyd steps from k-means++ centres.
    centres = x[_kmeans_pp(x.cpu(), k, generator).to(x.device)]
    for _ in range(5):
        labels = torch.cat([torch.cdist(c, centres).argmin(1) for c in x.split(CHUNK)])
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centres[j] = members.mean(0)
    resp = F.one_hot(labels, k).to(x.dtype)
    gmm = _m_step(x, resp, shrinkage, floor)
    previous = -math.inf
    for _ in range(max_iter if k > 1 else 0):
        log_p = gmm.log_prob_components(x)
        norm = torch.logsumexp(log_p, 1, keepdim=True)
        ll = float(norm.mean())
        gmm = _m_step(x, torch.exp(log_p - norm), shrinkage, floor)
        if abs(ll - previous) < tol * max(1.0, abs(ll)):
            break
        previous = ll
    return gmm


def mixture_ot_plan(source: GaussianMixture, target: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(π, C): the MW2 coupling of the components and its cost matrix C_kl = W2²(N_k, N_l).

    The K×L transport LP :math:`\min_\pi \langle\pi, C\rangle` s.t. π1 = a, πᵀ1 = b, π ≥ 0 is
    solved exactly by HiGHS' dual simplex (a vertex: at most K + L − 1 nonzero entries).
    """
    from scipy.optimize import linprog

    k, l_ = source.n_components, target.n_components
    cost = torch.tensor([[float(gaussian.w2_squared(source.means[i], source.covariances[i],
                                                    target.means[j], target.covariances[j]))
                          for j in range(l_)] for i in range(k)], dtype=torch.float64)
    if k == 1 or l_ == 1:  # one marginal is a point mass: the plan is the product
        plan = source.weights.cpu()[:, None] * target.weights.cpu()[None, :]
        return plan, cost
    rows = torch.zeros(k, k, l_, dtype=torch.float64)
    rows[torch.arange(k), torch.arange(k)] = 1.0
    cols = torch.zeros(l_, k, l_, dtype=torch.float64)
    cols[torch.arange(l_), :, torch.arange(l_)] = 1.0
    a_eq = torch.cat([rows.reshape(k, -1), cols.reshape(l_, -1)]).numpy()
    scale = source.weights.sum().cpu() / target.weights.sum().cpu()
    b_eq = torch.cat([source.weights.cpu(), target.weights.cpu() * scale]).numpy()
    result = linprog(cost.reshape(-1).numpy(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs-ds")
    if result.status != 0:
        raise ValueError(f"the component coupling LP failed: {result.message}")
    plan = torch.from_numpy(result.x).reshape(k, l_).clamp(min=0)
    return plan, cost


class MixtureTransport:
    """The posterior-weighted map between two fitted mixtures; see the module docstring.

    Build with :meth:`fit` (from source and target patch samples), from two mixtures, or
    :meth:`from_state_dict`. :meth:`apply` moves patch vectors [N, D]; :meth:`transport` moves
    every overlapping patch of a latent map and averages them back (like
    :func:`dotrestore.patches.transport_latent`).
    """

    def __init__(self, source: GaussianMixture, target: GaussianMixture, plan: torch.Tensor | None = None,
                 eps: float = gaussian.EPS):
        self.source, self.target, self.eps = source, target, eps
        if plan is None:
            plan, _ = mixture_ot_plan(source, target)
        self.plan = plan.to(dtype=torch.float64, device=source.means.device)
        # Entries below 1e-12 of the mass are LP round-off, not couplings.
        self.pairs = [(int(i), int(j)) for i, j in zip(*torch.nonzero(self.plan > 1e-12 * float(self.plan.sum()), as_tuple=True))]
        self.maps = torch.stack([gaussian.transport_map(source.covariances[i], target.covariances[j], eps=eps)
                                 for i, j in self.pairs])  # A_kl, [M, D, D]
        chol = torch.linalg.cholesky(source.covariances)
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device).expand_as(chol)
        self._whiten = torch.linalg.solve_triangular(chol, eye, upper=False)  # L_k^{-1}
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        self._log_prior = torch.log(source.weights) - 0.5 * logdet  # constants common to all k dropped
        self._cache = None

    @classmethod
    def fit(cls, source_samples: torch.Tensor, target_samples: torch.Tensor, n_components: int, **kwargs) -> MixtureTransport:
        """EM on each sample set (:func:`fit_gmm`, same keyword arguments), then the MW2 coupling."""
        return cls(fit_gmm(source_samples, n_components, **kwargs), fit_gmm(target_samples, n_components, **kwargs))

    @property
    def n_components(self) -> int:
        return self.source.n_components

    def pair_weights(self) -> torch.Tensor:
        """π_kl / a_k for each coupled pair, [M]."""
        return torch.stack([self.plan[i, j] / self.source.weights[i] for i, j in self.pairs])

    def mw2_squared(self) -> float:
        """MW2² = Σ π_kl W2²(N_k, N_l) (Delon & Desolneux 2020, eq. 4.2)."""
        _, cost = mixture_ot_plan(self.source, self.target)
        return float((self.plan.cpu() * cost).sum())

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """T(x) for rows of x [N, D] (float64; the reference form, also for tests)."""
        x64 = x.to(torch.float64)
        post = torch.softmax(self.source.log_prob_components(x64), 1)  # p(k | x)
        out = torch.zeros_like(x64)
        for (i, j), a_map, w in zip(self.pairs, self.maps, self.pair_weights()):
            moved = (x64 - self.source.means[i]) @ a_map.mT + self.target.means[j]
            out += (post[:, i] * w)[:, None] * moved
        return out.to(x.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"plan": self.plan}
        state.update(self.source.state_dict("source."))
        state.update(self.target.state_dict("target."))
        return {k: v.detach().to("cpu", torch.float64).contiguous() for k, v in state.items()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], eps: float = gaussian.EPS) -> MixtureTransport:
        source = GaussianMixture.from_state_dict(state, "source.")
        target = GaussianMixture.from_state_dict(state, "target.")
        plan = state["plan"].to(torch.float64)
        if plan.shape != (source.n_components, target.n_components):
            raise ValueError(f"plan has shape {tuple(plan.shape)}, expected {(source.n_components, target.n_components)}")
        return cls(source, target, plan, eps=eps)

    # ------------------------------------------------------------------ latent maps
    def _on_device(self, c: int, p: int, dtype, device):
        key = (c, p, dtype, device)
        if self._cache is None or self._cache[0] != key:
            d = c * p * p
            if self.maps.shape[-1] != d:
                raise ValueError(f"the mixture has patch dimension {self.maps.shape[-1]}, the latent gives C·p² = {d}")
            # Mahalanobis of every patch to component k: ‖L_k^{-1} z − L_k^{-1} m_k‖², one conv per k.
            whiten_b = -(self._whiten @ self.source.means[:, :, None])[..., 0]
            bias = torch.stack([self.target.means[j] - a @ self.source.means[i]
                                for (i, j), a in zip(self.pairs, self.maps)])
            cast = dict(dtype=dtype, device=device)
            self._cache = (key, self._whiten.reshape(-1, d, c, p, p).to(**cast), whiten_b.to(**cast),
                           self._log_prior.to(**cast), self.maps.reshape(-1, d, c, p, p).to(**cast),
                           bias.to(**cast), self.pair_weights().to(**cast))
        return self._cache[1:]

    def transport(self, z: torch.Tensor, patch_size: int, weighting: str = "uniform") -> torch.Tensor:
        """T applied to every overlapping p×p patch of z [B, C, H, W], averaged back (replicate borders).

        Same conventions as :func:`dotrestore.patches.transport_latent`: patches centred on
        every pixel of the replicate-padded map, weighted average of the overlaps, z's dtype.
        """
        if z.ndim != 4 or not z.is_floating_point():
            raise ValueError(f"expected a floating-point latent (B, C, H, W), got {tuple(z.shape)} {z.dtype}")
        b, c, h, w = z.shape
        p = int(patch_size)
        if p < 1 or p % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd integer, got {patch_size}")
        whiten, whiten_b, log_prior, maps, bias, pair_w = self._on_device(c, p, z.dtype, z.device)
        r = p // 2
        zp = F.pad(z, (r, r, r, r), mode="replicate") if r else z
        log_post = torch.stack([
            log_prior[k] - 0.5 * F.conv2d(zp, whiten[k], whiten_b[k]).square().sum(1)
            for k in range(whiten.shape[0])
        ], 1)  # [B, K, H, W]
        post = torch.softmax(log_post, 1)
        out = None
        for m, (i, _) in enumerate(self.pairs):
            term = F.conv2d(zp, maps[m], bias[m]).mul_(post[:, i : i + 1] * pair_w[m])
            out = term if out is None else out.add_(term)
        if weighting != "uniform":
            out = out * patch_weights(p, weighting, dtype=z.dtype, device=z.device).reshape(-1).repeat(c)[None, :, None, None]
        if p == 1:
            return out
        return overlap_add(out, c, p).div_(overlap_weight(h, w, p, weighting, z.dtype, z.device))


class PatchReservoir:
    """A seeded uniform subsample of at most ``capacity`` rows of a stream of patch batches.

    Bottom-k sampling: every row gets an independent uniform key from a seeded generator and
    the ``capacity`` rows with the smallest keys are kept, which is a uniform sample without
    replacement of everything seen, whatever the batch sizes. Rows are stored in float32 on
    the CPU, so memory is bounded by capacity · D · 4 bytes (EM converts chunks to float64).
    """

    def __init__(self, capacity: int = 200_000, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.generator = torch.Generator().manual_seed(seed)
        self.keys = torch.empty(0)
        self.samples: torch.Tensor | None = None
        self.seen = 0

    def update(self, rows: torch.Tensor) -> PatchReservoir:
        rows = rows.detach().to("cpu", torch.float32)
        keys = torch.rand(rows.shape[0], generator=self.generator)
        self.seen += rows.shape[0]
        if self.samples is None:
            self.samples = rows.new_empty((0, rows.shape[1]))
        all_keys = torch.cat([self.keys, keys])
        all_rows = torch.cat([self.samples, rows])
        if all_keys.numel() > self.capacity:
            keep = torch.topk(all_keys, self.capacity, largest=False).indices
            all_keys, all_rows = all_keys[keep], all_rows[keep]
        self.keys, self.samples = all_keys, all_rows
        return self
