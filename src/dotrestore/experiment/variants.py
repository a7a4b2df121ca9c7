"""DOT configurations compared in one experiment (``--variants whole,detail,mix4``).

- ``whole``: whole images are transported, as in the paper (``lowpass_sigma=None``);
- ``detail``: only details finer than the low-pass L_σ (``--lowpass-sigma``, default 4);
- ``mixK``: detail transport with a K-component Gaussian mixture (``DOT(mixture=K)``).

Each variant's rows have ``method = "dot-<variant>"``. Variants with the same low-pass encode
the same images, so their patch moments come from one encoding pass (:func:`fit_variants`).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import torch

from ..runtime import parallel, pipeline
from ..errors import InputError
from ..estimator import DOT
from ..ot.gaussian import Moments

#: The default comparison: our default (details) beside the paper's method (whole images).
DEFAULT_VARIANTS = ("detail", "whole")
DEFAULT_DETAIL_SIGMA = 4.0
_MIX = re.compile(r"mix([1-9][0-9]*)$")


@dataclass(frozen=True)
class Variant:
    name: str                   # "whole", "detail", "mix4"
    lowpass_sigma: float | None
    mixture: int | None = None

    @property
    def method(self) -> str:
        """The ``method`` column of this variant's rows."""
        return f"dot-{self.name}"


def parse_variants(spec, lowpass_sigma: float | None = None, where=None) -> list[Variant]:
    """Variants from ``"detail,whole"`` or a list of names; duplicates are dropped.

    ``lowpass_sigma`` (the ``--lowpass-sigma`` value) is the detail variants' σ when > 0.
    """
    names = spec.replace(",", " ").split() if isinstance(spec, str) else list(spec)
    if not names:
        raise InputError(where, "--variants needs at least one of whole, detail, mix<K>")
    sigma = float(lowpass_sigma) if lowpass_sigma else DEFAULT_DETAIL_SIGMA
    out: list[Variant] = []
    for name in names:
        name = str(name).strip().lower()
        mix = _MIX.match(name)
        if name == "whole":
            variant = Variant("whole", None)
        elif name == "detail":
            variant = Variant("detail", sigma)
        elif mix:
            if "mixture" not in inspect.signature(DOT.__init__).parameters:
                raise InputError(where, f"--variants {name} needs mixture support (DOT(mixture=K)), "
                                 "which this version of dotrestore does not have")
            variant = Variant(name, sigma, int(mix.group(1)))
        else:
            raise InputError(where, f"--variants: unknown variant {name!r}; known: whole, detail, mix<K> (e.g. mix4)")
        if variant not in out:
            out.append(variant)
    return out


def default_variants(lowpass_sigma: float | None) -> list[Variant]:
    """The configured transport first (details unless ``lowpass_sigma`` is 0), then whole images."""
    first = "detail" if lowpass_sigma else "whole"
    return parse_variants([first, "whole"], lowpass_sigma)


def make_dot(variant: Variant, config, codec) -> DOT:
    kwargs = {"mixture": variant.mixture} if variant.mixture is not None else {}
    # codec tiling / dtype options (issue 9) travel with the configuration when it has them
    kwargs.update({name: getattr(config, name) for name in ("tile", "tile_overlap", "dtype", "max_memory")
                   if hasattr(config, name)})
    return DOT(codec=codec, patch_size=config.patch_size, shrinkage=config.shrinkage,
               lowpass_sigma=variant.lowpass_sigma, device=parallel.local_device(config.device),
               progress=False, seed=config.seed, **kwargs)


def fit_variants(variants: list[Variant], config, codec, roles: dict, *, workers=None, batch_size=1) -> dict:
    """One fitted DOT per variant, from this rank's shard of each role's items.

    ``roles`` maps "source"/"target" to ``(items, load, name)``, ``name(item)`` the file an
    error about that item names. Gaussian variants sharing a
    low-pass are fitted from one encoding pass whose moments are all-reduced across ranks;
    mixture variants need the patches themselves and fit on their own pass (one process only).
    """
    dots = {v: make_dot(v, config, codec) for v in variants}
    codec = next(iter(dots.values()))._get_codec()  # loaded once, shared by every variant
    for d in dots.values():
        d.codec_ = codec
    groups: dict = {}
    for v in variants:
        groups.setdefault((v.lowpass_sigma, v.mixture is not None), []).append(v)
    for (_, is_mixture), members in groups.items():
        if is_mixture:
            if parallel.active():
                raise InputError(None, "mixture variants are fitted in one process only (no torchrun yet)")
            for v in members:
                for role, (items, load, _) in roles.items():
                    for _, batch in pipeline.batches(items, load, workers=workers):
                        dots[v].partial_fit(batch, role=role)
            continue
        lead = dots[members[0]]
        for role, (items, load, name) in roles.items():
            moments, count = pipeline.latent_moments(lead, items, load, batch_size=batch_size, workers=workers,
                                                     name=name)
            moments = parallel.all_reduce_moments(moments if moments is not None else Moments(lead.dim_))
            count = int(parallel.all_reduce_sum(torch.tensor(float(count), dtype=torch.float64)).item())
            for v in members:
                dots[v].partial_fit_moments(moments, role, n_images=count)
    return dots
