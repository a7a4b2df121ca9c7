"""The fitted state of a DOT estimator, typed, and the one schema of its serialised form.

Per role r ∈ {source, target}, :class:`RoleState` holds the running moments (count n, shift
s, Σ(x − s), Σ(x − s)(x − s)ᵀ; see :class:`~dotrestore.ot.moments.Moments`), the number of
images seen, and what is derived from them: the mean μr, the (possibly shrunk) covariance
Σr and a description of the shrinkage used. :class:`FittedState` adds the transport map
(A of eq. 17, or T0 with the noise covariance Σw of eq. 19) and W2²(source, target).

:meth:`FittedState.state_dict` flattens this into named tensors plus JSON-able metadata;
:func:`validate` checks such a pair field by field against the tables :data:`META_FIELDS`
and :data:`TENSORS` (types, ranges equal to what ``fit`` accepts, shapes from ``dim``,
dtype, finiteness) and names the file and the field in its error. A new optional group of
tensors (e.g. mixture components) is one more row in :data:`TENSORS` and a format-version bump.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import settings
from .errors import OperatorFileError
from .ot import gaussian
from .ot.mixture import MixtureTransport

ROLES = ("source", "target")
FORMAT = "dotrestore.operator"
FORMAT_VERSION = 3
MOMENT_KEYS = ("count", "shift", "sum", "outer")


# ---------------------------------------------------------------------- the state
@dataclass
class RoleState:
    """One role's statistics: running moments, images seen, and the Gaussian (μ, Σ) fitted from them."""

    moments: gaussian.Moments | None = None
    n_images: int = 0
    mean: torch.Tensor | None = None
    cov: torch.Tensor | None = None
    shrinkage_used: str | None = None

    @property
    def n_patches(self) -> int:
        """n, the number of latent patches accumulated."""
        return 0 if self.moments is None else int(self.moments.count)

    def refit(self, shrinkage) -> None:
        """μ = s + S/n and Σ (shrunk towards (tr Σ / D)·I) from the moments; needs n ≥ 2."""
        m = self.moments
        if m is None or float(m.count) < 2:
            return
        self.cov, self.shrinkage_used = gaussian.shrink_covariance(m.covariance, int(m.count), shrinkage)
        self.mean = m.mean


@dataclass
class FittedState:
    """Everything DOT learns: both roles, the map and W2² between the two Gaussians."""

    source: RoleState = field(default_factory=RoleState)
    target: RoleState = field(default_factory=RoleState)
    operator: torch.Tensor | None = None
    noise_cov: torch.Tensor | None = None
    w2_squared: float | None = None
    #: K > 1: both fitted Gaussian mixtures and their MW2 coupling (see :mod:`dotrestore.ot.mixture`)
    mixture: MixtureTransport | None = None

    def role(self, name: str) -> RoleState:
        if name not in ROLES:
            raise ValueError(f"role must be 'source' or 'target', got {name!r}")
        return getattr(self, name)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, metadata): float64 CPU tensors under the file's names, and JSON-able values."""
        tensors: dict[str, torch.Tensor] = {}
        meta: dict = {}

        def put(name: str, value: torch.Tensor | None) -> None:
            if value is not None:
                tensors[name] = value.detach().to("cpu", torch.float64).contiguous()

        for r in ROLES:
            role = self.role(r)
            put(f"mean_{r}", role.mean)
            put(f"cov_{r}", role.cov)
            if role.moments is not None:
                for key, value in role.moments.state_dict().items():
                    put(f"{r}.{key}", value)
            meta[f"n_{r}_images"] = int(role.n_images)
            meta[f"n_{r}_patches"] = role.n_patches
        put("operator", self.operator)
        put("noise_cov", self.noise_cov)
        if self.mixture is not None:
            for key, value in self.mixture.state_dict().items():
                put(f"mixture.{key}", value)
        meta["shrinkage_used"] = {r: self.role(r).shrinkage_used for r in ROLES}
        meta["stochastic_map"] = self.noise_cov is not None
        meta["w2_squared"] = self.w2_squared
        return tensors, meta

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping,
                        eps: float = gaussian.EPS) -> FittedState:
        """Rebuild from :meth:`state_dict` output (validate it first with :func:`validate`)."""
        used = meta.get("shrinkage_used")
        state = cls()
        for r in ROLES:
            group = {k: tensors[f"{r}.{k}"] for k in MOMENT_KEYS if f"{r}.{k}" in tensors}
            role = RoleState(
                moments=gaussian.Moments.from_state_dict(group) if group else None,
                n_images=int(meta.get(f"n_{r}_images", 0)),
                mean=tensors.get(f"mean_{r}"), cov=tensors.get(f"cov_{r}"),
                # format 2 files before typed states kept one string for both roles
                shrinkage_used=used.get(r) if isinstance(used, Mapping) else used if role_fitted(tensors, r) else None,
            )
            setattr(state, r, role)
        state.operator = tensors.get("operator")
        state.noise_cov = tensors.get("noise_cov")
        group = {k.split(".", 1)[1]: t for k, t in tensors.items() if k.startswith("mixture.")}
        state.mixture = MixtureTransport.from_state_dict(group, eps=eps) if group else None
        w2 = meta.get("w2_squared")
        state.w2_squared = None if w2 is None else float(w2)
        return state


def role_fitted(tensors: Mapping, role: str) -> bool:
    return f"cov_{role}" in tensors


# ---------------------------------------------------------------------- the schema
def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _shrinkage_used_ok(v) -> bool:
    if isinstance(v, Mapping):
        return set(v) <= set(ROLES) and all(x is None or isinstance(x, str) for x in v.values())
    return v is None or isinstance(v, str)


def _setting_field(name: str) -> tuple[bool, Callable[[object], bool], str]:
    setting = settings.SETTINGS[name]
    return False, setting.accepts_stored, setting.rule


#: name -> (required, check, what is expected). The method's settings come from the one table
#: (:data:`dotrestore.settings.SETTINGS`): a file accepts exactly the values ``DOT`` accepts.
META_FIELDS: dict[str, tuple[bool, Callable[[object], bool], str]] = {
    "format": (False, lambda v: v == FORMAT, f"{FORMAT!r}"),
    "format_version": (True, lambda v: _is_int(v) and 1 <= v <= FORMAT_VERSION, f"an integer from 1 to {FORMAT_VERSION}"),
    "package_version": (False, lambda v: isinstance(v, str), "a string"),
    "codec_id": (True, lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "codec_spec": (True, lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "latent_channels": (False, lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "downscale": (False, lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "dim": (True, lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    **{name: _setting_field(name) for name in settings.METHOD},
    "shrinkage_used": (False, _shrinkage_used_ok, "null, a string or {source, target: string}"),
    "stochastic_map": (False, lambda v: isinstance(v, bool), "true or false"),
    "w2_squared": (False, lambda v: v is None or (_is_real(v) and v >= 0), "null or a finite number >= 0"),
    **{f"n_{r}_{k}": (False, lambda v: _is_int(v) and v >= 0, "an integer >= 0")
       for r in ROLES for k in ("images", "patches")},
}
META_FIELDS["patch_size"] = (True, *META_FIELDS["patch_size"][1:])

#: tensor name -> shape in terms of D and K ("" = scalar). Presence rules are in :func:`validate`.
TENSORS: dict[str, str] = {
    "mean_source": "D", "cov_source": "DD", "mean_target": "D", "cov_target": "DD",
    "operator": "DD", "noise_cov": "DD",
    **{f"{r}.{k}": {"count": "", "shift": "D", "sum": "D", "outer": "DD"}[k] for r in ROLES for k in MOMENT_KEYS},
    # format version 3, mixture K > 1
    "mixture.plan": "KK",
    **{f"mixture.{r}.{k}": s for r in ROLES for k, s in (("weights", "K"), ("means", "KD"), ("covariances", "KDD"))},
}
MIXTURE_TENSORS = tuple(name for name in TENSORS if name.startswith("mixture."))
SYMMETRIC = ("cov_source", "cov_target", "noise_cov")


def _required_tensors(meta: Mapping) -> tuple[str, ...]:
    if meta.get("zero_shot"):
        return ("mean_target", "cov_target")
    return ("mean_source", "cov_source", "mean_target", "cov_target", "operator") + (
        ("noise_cov",) if meta.get("stochastic_map") else ()) + (
        MIXTURE_TENSORS if meta.get("mixture", 1) > 1 else ())


def validate(meta, tensors: Mapping[str, torch.Tensor], path: str | Path | None) -> dict:
    """Check an operator's metadata and tensors; returns ``meta`` (a dict) when all is well.

    Raises :class:`~dotrestore.errors.OperatorFileError` naming ``path`` and the first field
    or tensor that is missing, of the wrong type, out of range, of the wrong shape or dtype,
    or not finite.
    """
    def fail(problem: str):
        raise OperatorFileError(path, problem)

    if not isinstance(meta, Mapping):
        fail(f"has corrupt dotrestore metadata: a JSON object is expected, got {type(meta).__name__}")
    version = meta.get("format_version")
    if _is_int(version) and version > FORMAT_VERSION:
        fail(f"has operator format version {version}; this dotrestore reads versions 1 to {FORMAT_VERSION}")
    for name, (required, check, expected) in META_FIELDS.items():
        if name not in meta:
            if required:
                fail(f"metadata field {name!r} is missing")
            continue
        if not check(meta[name]):
            fail(f"metadata field {name!r} must be {expected}, got {meta[name]!r}")
    dim, p = meta["dim"], meta["patch_size"]
    channels = meta.get("latent_channels")
    if channels is not None and channels * p * p != dim:
        fail(f"metadata dim = {dim} does not equal latent_channels x patch_size^2 = {channels} x {p}^2")
    if dim % (p * p):
        fail(f"metadata dim = {dim} is not a multiple of patch_size^2 = {p * p}")

    k = meta.get("mixture", 1)
    if k > 1 and meta.get("zero_shot"):
        fail(f"metadata has mixture = {k} with zero_shot: a mixture needs fitted source statistics")
    if k == 1 and any(name in tensors for name in MIXTURE_TENSORS):
        fail("has mixture tensors but metadata mixture = 1")
    shapes = {"": (), "D": (dim,), "DD": (dim, dim), "K": (k,), "KK": (k, k), "KD": (k, dim), "KDD": (k, dim, dim)}
    for name, tensor in tensors.items():
        if name not in TENSORS:
            fail(f"has an unexpected tensor {name!r} (format version {version} has {', '.join(TENSORS)})")
        if not isinstance(tensor, torch.Tensor):
            fail(f"tensor {name} is not a tensor")
        if not tensor.is_floating_point():
            fail(f"tensor {name} has dtype {tensor.dtype}; a floating-point dtype is expected")
        expected = shapes[TENSORS[name]]
        if tuple(tensor.shape) != expected and not (expected == () and tuple(tensor.shape) == (1,)):
            fail(f"tensor {name} has shape {tuple(tensor.shape)}, expected {expected} (D = {dim})")
        if not bool(torch.isfinite(tensor).all()):
            fail(f"tensor {name} has non-finite values (NaN or inf)")
    missing = [n for n in _required_tensors(meta) if n not in tensors]
    if missing:
        fail(f"is missing tensors {missing}")
    for r in ROLES:
        present = [k for k in MOMENT_KEYS if f"{r}.{k}" in tensors]
        if present and len(present) != len(MOMENT_KEYS):
            fail(f"has an incomplete {r} moments group ({', '.join(f'{r}.{k}' for k in present)}; "
                 f"all of {', '.join(MOMENT_KEYS)} are needed)")
        if present:
            count = float(tensors[f"{r}.count"].reshape(()))
            if count < 0 or count != int(count):
                fail(f"tensor {r}.count must be a non-negative whole number, got {count}")
    for name in SYMMETRIC:
        if name in tensors:
            c = tensors[name].double()
            scale = float(c.abs().max()) or 1.0
            if float((c - c.T).abs().max()) > 1e-6 * scale:
                fail(f"tensor {name} is not symmetric (a covariance is expected)")
            if bool((torch.diagonal(c) < -1e-9 * scale).any()):
                fail(f"tensor {name} has negative variances on its diagonal (a covariance is expected)")
    return dict(meta)


#: The fitted attributes of :class:`~dotrestore.DOT`, read from the typed state (``state_``) after every fit and load.
#: name -> (getter, present even when None)
FITTED = {
    "mean_source_": (lambda s: s.source.mean, False), "cov_source_": (lambda s: s.source.cov, False),
    "mean_target_": (lambda s: s.target.mean, False), "cov_target_": (lambda s: s.target.cov, False),
    "operator_": (lambda s: s.operator, False), "noise_cov_": (lambda s: s.noise_cov, True),
    "w2_squared_": (lambda s: s.w2_squared, True), "mixture_": (lambda s: s.mixture, True),
    "n_source_images_": (lambda s: s.source.n_images, False), "n_target_images_": (lambda s: s.target.n_images, False),
    "n_source_patches_": (lambda s: s.source.n_patches, False),
    "n_target_patches_": (lambda s: s.target.n_patches, False),
    "shrinkage_used_": (lambda s: {r: s.role(r).shrinkage_used for r in ROLES}, True),
}


__all__ = ["RoleState", "FittedState", "validate", "META_FIELDS", "TENSORS", "FORMAT", "FORMAT_VERSION", "ROLES", "FITTED"]
