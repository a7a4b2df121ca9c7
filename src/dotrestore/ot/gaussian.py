r"""Gaussian optimal transport on tensors: PSD square roots, the OT maps (eq. 17, 19), W2, shrinkage.

Pure mathematics, in the style of POT's ``ot.gaussian``: small functions named after
the formulas they compute. Nothing here knows that images or patches exist.

Notation follows Freirich, Michaeli and Meir, "A Theory of the Distortion-Perception
Tradeoff in Wasserstein Space" (NeurIPS 2021): source :math:`\mathcal N(\mu_s, \Sigma_s)`
(e.g. latent patches of restored images), target :math:`\mathcal N(\mu_t, \Sigma_t)`
(latent patches of clean images).

Every function works on the dtype and device of its inputs; fitting is expected to use
float64 (see :class:`~.moments.Moments`, re-exported here), and callers cast the resulting operator to the latents'
dtype afterwards.
"""

from __future__ import annotations

import torch

from .moments import Moments

__all__ = [
    "EPS",
    "Moments",
    "sqrtm_psd",
    "inv_sqrtm_psd",
    "sqrtm_and_inv_sqrtm",
    "pinv_psd",
    "effective_rank",
    "is_singular",
    "transport_map",
    "stochastic_transport_map",
    "reachable_source",
    "w2_squared",
    "shrink_covariance",
]

#: Floor applied to eigenvalues before square roots and inverse square roots
#: (:math:`\lambda \leftarrow \max(\lambda, \varepsilon)`, with :math:`\varepsilon = 10^{-12}`).
#: Small enough not to bias well-conditioned float64 covariances, large enough to keep
#: :math:`\Sigma^{-1/2}` finite when an eigenvalue rounds to zero or below.
EPS = 1e-12


# -- matrix functions of symmetric PSD matrices ---------------------------------------------
def _sym(m: torch.Tensor) -> torch.Tensor:
    return 0.5 * (m + m.mT)


def _rebuild(vecs: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """V diag(vals) Vᵀ, batched."""
    return (vecs * vals.unsqueeze(-2)) @ vecs.mT


def sqrtm_psd(m: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    r""":math:`M^{1/2} = V \operatorname{diag}(\sqrt{\max(\lambda, \varepsilon)}) V^\top`
    for :math:`\tfrac12(M + M^\top) = V \operatorname{diag}(\lambda) V^\top`.

    ``eps`` = :data:`EPS` (1e-12) by default; pass ``eps=0`` for the exact root of a PSD matrix.
    """
    vals, vecs = torch.linalg.eigh(_sym(m))
    return _rebuild(vecs, vals.clamp(min=eps).sqrt())


def inv_sqrtm_psd(m: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    r""":math:`M^{-1/2} = V \operatorname{diag}(1/\sqrt{\max(\lambda, \varepsilon)}) V^\top`
    (``eps`` > 0 keeps it finite for singular M)."""
    vals, vecs = torch.linalg.eigh(_sym(m))
    return _rebuild(vecs, vals.clamp(min=eps).rsqrt())


def sqrtm_and_inv_sqrtm(m: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Both :math:`M^{1/2}` and :math:`M^{-1/2}` from one eigendecomposition
    (eigenvalues clamped at ``eps``, so the two are exact inverses of each other)."""
    vals, vecs = torch.linalg.eigh(_sym(m))
    root = vals.clamp(min=eps).sqrt()
    return _rebuild(vecs, root), _rebuild(vecs, 1.0 / root)


def _pinv_tolerance(vals: torch.Tensor, eps: float) -> torch.Tensor:
    # Eigenvalues at or below max(eps, D·ε_machine·λ_max) are treated as zero: the second
    # term is numpy's matrix_rank default, i.e. what eigh cannot tell apart from 0.
    d = vals.shape[-1]
    lam_max = vals.abs().amax(dim=-1, keepdim=True)
    return torch.clamp(lam_max * d * torch.finfo(vals.dtype).eps, min=eps)


def _sqrtm_psd_truncated(m: torch.Tensor) -> torch.Tensor:
    # Root of a product that is PSD in exact arithmetic (e.g. Σs^{1/2} Σt Σs^{1/2}):
    # eigenvalues within rounding of 0 (≤ D·ε_machine·λ_max, possibly negative) are set to
    # 0 rather than square-rooted, since √(1e-16) = 1e-8 would swamp float64 accuracy.
    vals, vecs = torch.linalg.eigh(_sym(m))
    vals = torch.where(vals > _pinv_tolerance(vals, 0.0), vals, torch.zeros_like(vals))
    return _rebuild(vecs, vals.sqrt())


def pinv_psd(m: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    r"""Moore–Penrose pseudo-inverse :math:`M^\dagger = V \operatorname{diag}(\lambda^\dagger) V^\top`,
    :math:`\lambda^\dagger = 1/\lambda` if :math:`\lambda > \tau` else 0, with
    :math:`\tau = \max(\varepsilon, D\,\epsilon_{\text{machine}}\,\lambda_{\max})`."""
    vals, vecs = torch.linalg.eigh(_sym(m))
    keep = vals > _pinv_tolerance(vals, eps)
    inv = torch.where(keep, 1.0 / torch.where(keep, vals, torch.ones_like(vals)), torch.zeros_like(vals))
    return _rebuild(vecs, inv)


def effective_rank(cov: torch.Tensor, eps: float = EPS) -> int:
    """Number of eigenvalues above the :func:`pinv_psd` tolerance."""
    vals = torch.linalg.eigvalsh(_sym(cov))
    return int((vals > _pinv_tolerance(vals, eps)).sum().item())


def is_singular(cov: torch.Tensor, eps: float = EPS) -> bool:
    """True when ``cov`` has an eigenvalue at or below the :func:`pinv_psd` tolerance."""
    return effective_rank(cov, eps) < cov.shape[-1]


# -- optimal transport between Gaussians ----------------------------------------------------
def transport_map(cov_source: torch.Tensor, cov_target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    r"""Linear part of the OT map between Gaussians (Freirich et al. 2021, eq. 17):

    .. math::
        A = \Sigma_s^{-1/2}\big(\Sigma_s^{1/2}\Sigma_t\Sigma_s^{1/2}\big)^{1/2}\Sigma_s^{-1/2},
        \qquad T(x) = A(x - \mu_s) + \mu_t.

    A is symmetric PSD and :math:`A\Sigma_s A = \Sigma_t`. ``eps`` floors the eigenvalues
    of :math:`\Sigma_s` (use :func:`stochastic_transport_map` when it is singular).
    Matches ``ot.gaussian.bures_wasserstein_mapping`` (which returns A and
    :math:`b = \mu_t - A\mu_s`).
    """
    s_half, s_inv_half = sqrtm_and_inv_sqrtm(cov_source, eps)
    middle = _sqrtm_psd_truncated(s_half @ cov_target @ s_half)
    return _sym(s_inv_half @ middle @ s_inv_half)


def stochastic_transport_map(
    cov_source: torch.Tensor, cov_target: torch.Tensor, eps: float = EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""OT plan from a possibly singular :math:`\Sigma_s` (Freirich et al. 2021, eq. 19).

    .. math::
        T_0 = \Sigma_t^{1/2}\big(\Sigma_t^{1/2}\Sigma_s\Sigma_t^{1/2}\big)^{1/2}
              \Sigma_t^{-1/2}\,\Sigma_s^{\dagger}, \qquad
        \Sigma_w = \Sigma_t^{1/2}\big(I - \Sigma_t^{1/2}T^*\Sigma_s^{\dagger}T^*\Sigma_t^{1/2}\big)
                   \Sigma_t^{1/2},

    where :math:`T^* = \Sigma_t^{-1/2}(\Sigma_t^{1/2}\Sigma_s\Sigma_t^{1/2})^{1/2}\Sigma_t^{-1/2}`
    is the (deterministic) map from target to source. The transport is
    :math:`\hat x = T_0(x - \mu_s) + \mu_t + w`, :math:`w \sim \mathcal N(0, \Sigma_w)`
    independent of x. With :math:`C = \Sigma_t T^*` (the target–source cross-covariance),
    :math:`T_0 = C\Sigma_s^\dagger` is the regression of target on source and
    :math:`\Sigma_w = \Sigma_t - C\Sigma_s^\dagger C^\top` its residual, so
    :math:`T_0\Sigma_s T_0^\top + \Sigma_w = \Sigma_t` (since
    :math:`\Sigma_s^\dagger\Sigma_s\Sigma_s^\dagger = \Sigma_s^\dagger`). When
    :math:`\Sigma_s` is full rank, :math:`T_0` equals :func:`transport_map` and
    :math:`\Sigma_w \approx 0`.

    ``eps`` floors the eigenvalues of :math:`\Sigma_t` (assumed full rank) and sets the
    pseudo-inverse tolerance :math:`\max(\varepsilon, D\,\epsilon_{\text{machine}}\lambda_{\max})`
    for :math:`\Sigma_s`. :math:`\Sigma_w` is returned symmetric with eigenvalues clamped at 0.

    Returns
    -------
    (T0, noise_cov) : tensors [D, D]
    """
    t_half, t_inv_half = sqrtm_and_inv_sqrtm(cov_target, eps)
    middle = _sqrtm_psd_truncated(t_half @ cov_source @ t_half)
    cross = t_half @ middle @ t_inv_half  # Σt T*
    source_pinv = pinv_psd(cov_source, eps)
    t0 = cross @ source_pinv
    noise_cov = cov_target - t0 @ cross.mT
    vals, vecs = torch.linalg.eigh(_sym(noise_cov))
    return t0, _rebuild(vecs, vals.clamp(min=0.0))


def reachable_source(cov_source: torch.Tensor, cov_target: torch.Tensor, ratio: float) -> torch.Tensor:
    r""":math:`\Sigma_s` without the directions a deterministic map can only amplify from almost nothing.

    With :math:`\Sigma_s = \sum_i \lambda_i v_i v_i^\top`, direction :math:`v_i` is kept when
    the source carries at least ``ratio`` of the target's variance along it,
    :math:`\lambda_i \ge \rho\, v_i^\top\Sigma_t v_i`, and dropped (its eigenvalue set to 0)
    otherwise. Given to :func:`stochastic_transport_map`, the dropped directions get no gain
    (eq. 19's :math:`\Sigma_s^\dagger` is 0 there) and the part of :math:`\Sigma_t` the kept
    ones cannot explain comes back as independent noise :math:`\Sigma_w`: grain instead of a
    ×1/√ρ amplification of what little a restorer left (e.g. after ×4 super-resolution).
    ``ratio`` = 0 keeps :math:`\Sigma_s` as it is.
    """
    if ratio <= 0:
        return cov_source
    vals, vecs = torch.linalg.eigh(_sym(cov_source))
    target_var = torch.einsum("di,de,ei->i", vecs, cov_target, vecs)
    keep = vals >= ratio * target_var
    return _rebuild(vecs, torch.where(keep, vals, torch.zeros_like(vals)))


def w2_squared(
    mean_source: torch.Tensor, cov_source: torch.Tensor, mean_target: torch.Tensor, cov_target: torch.Tensor
) -> torch.Tensor:
    r"""Squared 2-Wasserstein (Bures–Wasserstein) distance between two Gaussians:

    .. math::
        W_2^2 = \lVert\mu_s - \mu_t\rVert^2
              + \operatorname{tr}\big(\Sigma_s + \Sigma_t
              - 2(\Sigma_t^{1/2}\Sigma_s\Sigma_t^{1/2})^{1/2}\big).

    Returns a 0-d tensor, clamped at 0 against rounding; eigenvalues within rounding of 0
    (:math:`\le D\,\epsilon_{\text{machine}}\lambda_{\max}`) are taken as 0 before the square
    roots, so singular covariances keep float64 accuracy. Note that POT's
    ``ot.gaussian.bures_wasserstein_distance`` returns :math:`W_2`, not its square.
    """
    t_half = _sqrtm_psd_truncated(cov_target)
    # tr(M^{1/2}) = Σ sqrt(λ_i(M)): eigenvalues suffice, no need to rebuild the root.
    # Eigenvalues within rounding of 0 count as 0 (see _sqrtm_psd_truncated).
    vals = torch.linalg.eigvalsh(_sym(t_half @ cov_source @ t_half))
    cross = torch.where(vals > _pinv_tolerance(vals, 0.0), vals, torch.zeros_like(vals)).sqrt().sum()
    bures = torch.diagonal(cov_source, dim1=-2, dim2=-1).sum() + torch.diagonal(cov_target, dim1=-2, dim2=-1).sum()
    value = (mean_source - mean_target).square().sum() + bures - 2.0 * cross
    return value.clamp(min=0.0)


def parse_shrinkage(value) -> None | str | float:
    """The one parser of a shrinkage setting: None (or "none"), "oas", or a ridge fraction ρ ∈ [0, 1].

    Accepts the strings a command line or a config file gives ("oas", "0.1"); raises
    ValueError naming the accepted values otherwise. Callers at user-input boundaries wrap
    the message in an InputError naming the file or flag.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("oas", "none"):
            return None if text == "none" else "oas"
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"shrinkage must be None, 'oas' or a number in [0, 1], got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"shrinkage must be None, 'oas' or a number in [0, 1], got {value!r}")
    rho = float(value)
    if not 0.0 <= rho <= 1.0:  # also refuses NaN
        raise ValueError(f"shrinkage ridge fraction must be in [0, 1], got {rho}")
    return rho


def shrink_covariance(
    cov: torch.Tensor, n_samples: int, shrinkage: None | str | float
) -> tuple[torch.Tensor, str]:
    r"""Shrink a sample covariance towards :math:`\nu I`, :math:`\nu = \operatorname{tr}\Sigma / D`:

    .. math:: \Sigma_\rho = (1 - \rho)\,\Sigma + \rho\,\nu I.

    ``shrinkage``:

    - ``None``: no shrinkage (returns ``cov`` itself, ``"none"``);
    - ``"oas"``: Oracle Approximating Shrinkage (Chen, Wiesel, Eldar, Hero 2010), a
      Ledoit–Wolf-family closed form that needs only :math:`\Sigma` and n (same expression
      as scikit-learn's ``oas``, on :math:`S = \tfrac{n-1}{n}\Sigma`; ρ is scale-invariant):
      :math:`\rho = \min\!\Big(1, \dfrac{\bar{s^2} + \nu^2}{(n+1)(\bar{s^2} - \nu^2/D)}\Big)`,
      :math:`\bar{s^2} = \operatorname{tr}(S^2)/D^2`, :math:`\nu = \operatorname{tr}S/D`;
    - a float ρ in [0, 1]: fixed ridge.

    Returns
    -------
    (cov, used) : the shrunk covariance and a description such as ``"oas(rho=0.0132)"``.
    """
    shrinkage = parse_shrinkage(shrinkage)
    if shrinkage is None:
        return cov, "none"
    d = cov.shape[-1]
    nu = torch.diagonal(cov).sum() / d
    if shrinkage == "oas":
        n = int(n_samples)
        if n < 2:
            raise ValueError(f"OAS shrinkage needs n_samples >= 2, got {n}")
        emp = cov * ((n - 1) / n)
        mu = nu * ((n - 1) / n)
        alpha = emp.square().mean()
        num = alpha + mu * mu
        den = (n + 1) * (alpha - mu * mu / d)
        rho = 1.0 if den.item() == 0 else min(float(num / den), 1.0)
        label = f"oas(rho={rho:.4g})"
    else:
        rho = shrinkage
        label = f"ridge(rho={rho:.4g})"
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    return (1.0 - rho) * cov + (rho * nu) * eye, label
