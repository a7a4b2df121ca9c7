"""DOT configurations compared in one experiment (``--variants whole,detail,mix4``).

- ``whole``: whole images are transported, as in the paper (``lowpass_sigma=0``);
- ``detail``: only details finer than the low-pass (``--lowpass-sigma``, ``--split``);
- ``mixK``: detail transport with a K-component Gaussian mixture (``DOT(mixture=K)``).

Each variant's rows have ``method = "dot-<variant>"``. Every variant is fitted by the one
fitting job, :func:`dotrestore.tasks.fit.fit_together` (the engine :func:`dotrestore.runtime.fitting.partial_fit_together`,
behind :meth:`DOT.partial_fit`) on one stream of this process's share of the images: each image is read,
degraded and restored once for all variants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import settings
from ..estimator import DOT
from ..runtime import pipeline
from ..tasks import fit as fitting

_MIX = re.compile(r"mix([1-9][0-9]*)$")


@dataclass(frozen=True)
class Variant:
    name: str                   # "whole", "detail", "mix4"
    lowpass_sigma: float
    mixture: int = 1

    @property
    def method(self) -> str:
        """The ``method`` column of this variant's rows."""
        return f"dot-{self.name}"


def variants_of(config) -> list[Variant]:
    """The variants of a (validated) configuration: ``config.variants``, or by default the
    configured transport first (details unless ``lowpass_sigma`` is 0), then whole images."""
    names = config.variants or (list(settings.DEFAULT_VARIANTS) if config.lowpass_sigma else ["whole"])
    out: list[Variant] = []
    for name in names:
        mix = _MIX.fullmatch(name)
        variant = (Variant("whole", 0.0) if name == "whole" else
                   Variant(name, config.lowpass_sigma, int(mix.group(1)) if mix else 1))
        if variant not in out:
            out.append(variant)
    return out


def make_dot(variant: Variant, config, codec) -> DOT:
    return DOT(codec=codec, patch_size=config.patch_size, shrinkage=config.shrinkage, split=config.split,
               lowpass_sigma=variant.lowpass_sigma, mixture=variant.mixture, seed=config.seed,
               runtime=config.runtime())


def fit_variants(variants: list[Variant], config, codec, roles: dict) -> dict[Variant, DOT]:
    """One fitted DOT per variant, from this process's share of each role's items.

    ``roles`` maps "source"/"target" to ``(items, load, name)``: ``load(item)`` gives the
    (3, H, W) image, ``name(item)`` the file an error about it names. Each role's images are
    loaded (read, degraded, restored) once for all variants, and encoded once per distinct
    codec input (:func:`dotrestore.runtime.fitting.partial_fit_together`); the codec is loaded once and
    shared by every variant.
    """
    dots: dict[Variant, DOT] = {}
    for variant in variants:
        dot = dots[variant] = make_dot(variant, config, codec)
        codec = dot.prepare()
    names = ", ".join(v.name for v in variants)
    making = "reading" if config.restored else "degrading, restoring"
    what = {"source": f"fitting {names} · {making} + encoding source", "target": f"fitting {names} · encoding target"}
    for role, (items, load, name) in roles.items():
        stream = pipeline.batches(items, load, batch_size=config.batch_size, workers=config.workers, name=name)
        fitting.fit_together(list(dots.values()), stream, role, total=len(items),
                             desc=what.get(role, role))
    return dots


__all__ = ["Variant", "variants_of", "make_dot", "fit_variants"]
