"""Target statistics of clean photographs that ship with dotrestore, so a fit needs only a restorer's outputs.

``data/kodak24_taef2.safetensors`` holds the float64 latent-patch moments (count, shift, sum,
outer; :class:`~dotrestore.ot.moments.Moments`) of the 24 Kodak photographs (Kodak released
them for unrestricted use; see ``data/README.md``) encoded by the bundled TAEF2 codec at the
default method settings (patch 3, guided detail split at σ = 4 px). They stand for the
target side of a fit only with that codec and those settings (:func:`check_applies`);
``benchmarks/bundled_target.py`` regenerates them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..ot.moments import Moments

BUNDLED_TARGET = Path(__file__).resolve().parent / "data" / "kodak24_taef2.safetensors"
#: the method settings the bundled moments were computed with (what an operator must use)
SETTINGS_USED = ("patch_size", "lowpass_sigma", "split")


@dataclass
class BundledTarget:
    """The moments, how many images gave them, and what they were computed with."""

    moments: Moments
    n_images: int
    codec_id: str
    settings: dict
    images: list[str]
    path: Path

    def describe(self) -> str:
        return (f"the bundled statistics of {self.n_images} clean photographs ({self.path.name}: "
                f"{', '.join(self.images[:2])}, ...; codec {self.codec_id})")


def read_bundled_target(path: str | Path = BUNDLED_TARGET) -> BundledTarget:
    """The bundled target moments; InputError naming the file when it is missing or damaged."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in ("count", "shift", "sum", "outer")}
        info = json.loads(meta["dotrestore_target"])
    except Exception as err:  # missing file, damaged header, missing key
        raise InputError(path, f"bundled target statistics unreadable ({type(err).__name__}: {err})") from err
    moments = Moments(int(tensors["sum"].numel()), shift=tensors["shift"])
    moments.count, moments.sum, moments.outer = (tensors[k].to(torch.float64) for k in ("count", "sum", "outer"))
    return BundledTarget(moments, int(info["n_images"]), info["codec_id"], info["settings"], info["images"], path)


def check_applies(dot, bundled: BundledTarget, codec_id: str | None = None) -> None:
    """InputError on ``--target`` unless ``dot``'s settings (and ``codec_id``, once known) match the bundle's."""
    resolved = dot.resolved  # the canonical values: None and 0 are the same low-pass
    wrong = [f"{name} {getattr(resolved, name)!r} (bundled: {bundled.settings[name]!r})" for name in SETTINGS_USED
             if getattr(resolved, name) != bundled.settings[name]]
    if resolved.mixture > 1:
        wrong.append(f"mixture {resolved.mixture} (bundled: 1)")
    if codec_id is not None and codec_id != bundled.codec_id:
        wrong.append(f"codec {codec_id} (bundled: {bundled.codec_id}, use --vae taef2)")
    if wrong:
        raise InputError("--target", "is required here: the bundled clean statistics were computed with other "
                         f"settings: {'; '.join(wrong)}. Give --target CLEAN_IMAGES, or use the defaults")


def write_bundled_target(moments: Moments, n_images: int, codec_id: str, settings: dict, images: list[str],
                         path: str | Path = BUNDLED_TARGET) -> Path:
    """Write moments with what they were computed from (the regeneration script's last step)."""
    from safetensors.torch import save_file

    info = {"n_images": int(n_images), "codec_id": codec_id, "settings": settings, "images": list(images)}
    tensors = {"count": moments.count.reshape(()).double().cpu(), "shift": moments.shift.double().cpu(),
               "sum": moments.sum.double().cpu(), "outer": moments.outer.double().cpu().contiguous()}
    save_file(tensors, str(path), metadata={"dotrestore_target": json.dumps(info)})
    return Path(path)


__all__ = ["BUNDLED_TARGET", "BundledTarget", "read_bundled_target", "check_applies", "write_bundled_target"]
