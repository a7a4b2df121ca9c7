"""``dotrestore demo``: the seed's experiment on photographs bundled with scikit-image, offline.

Non-overlapping 256×256 tiles (at most four per photograph, so no single picture dominates)
are cut from the colour photographs that ship inside scikit-image and saved as PNGs in
``OUT/data/clean``; the ordinary experiment then runs on that folder, so the demo can be
repeated or varied with ``dotrestore experiment --config OUT/config.yaml``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from .. import data
from ..codecs import load_codec, resolve_auto
from ..errors import InputError
from ..io.guard import check_output_folder, check_writable_folder
from .config import ExperimentConfig
from .runner import ExperimentResult, run

logger = logging.getLogger(__name__)

TILE = 256
MAX_TILES_PER_PHOTO = 4
#: scikit-image data functions (colour photographs) and files in skimage/data used as sources.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
PHOTO_FILES = ("motorcycle_left.png", "motorcycle_right.png")
DEGRADE = "noise:sigma=50"
RESTORER = "gaussian-blur:sigma=2"
LEARNED_CODEC_TEST_TILES = 6  # with a learned codec: keeps the whole demo under 2 minutes on 2 CPU cores
FIT = 12  # tiles whose restored and clean versions are fitted (paired); the rest are tested


def _photos() -> list[tuple[str, np.ndarray]]:
    """(name, H×W×3 uint8) of every bundled photograph that loads; failures are logged and skipped."""
    import skimage.data
    from PIL import Image

    folder = Path(skimage.data.__file__).parent
    found = []
    for name in PHOTOS:
        try:
            found.append((name, np.asarray(getattr(skimage.data, name)())))
        except Exception as exc:  # a missing optional file (e.g. pooch-fetched) must not stop the demo
            logger.warning("skipping scikit-image photograph %s: %s", name, exc)
    for file in PHOTO_FILES:
        try:
            with Image.open(folder / file) as image:
                found.append((Path(file).stem, np.asarray(image.convert("RGB"))))
        except Exception as exc:
            logger.warning("skipping scikit-image photograph %s: %s", file, exc)
    return [(n, a) for n, a in found if a.ndim == 3 and a.shape[2] >= 3 and a.dtype == np.uint8]


def make_demo_images(folder: str | Path, max_images: int | None = None) -> list[Path]:
    """Write the demo's clean tiles as ``NN_<photo>_<r>_<c>.png``; returns their paths.

    Tiles are taken centred on each photograph's tile grid, at most four per photograph (the
    four with the largest pixel standard deviation), and interleaved across photographs so the source, target and test sets all mix them.
    """
    folder = Path(folder)
    per_photo: list[list[tuple[str, np.ndarray]]] = []
    for name, array in _photos():
        array = array[..., :3]
        h, w = array.shape[:2]
        rows, cols = h // TILE, w // TILE
        top, left = (h - rows * TILE) // 2, (w - cols * TILE) // 2
        tiles = [(f"{name}_{r}_{c}", array[top + r * TILE: top + (r + 1) * TILE, left + c * TILE: left + (c + 1) * TILE])
                 for r in range(rows) for c in range(cols)]
        if len(tiles) > MAX_TILES_PER_PHOTO:  # the most textured ones: no empty corners of retina/hubble
            keep = sorted(sorted(range(len(tiles)), key=lambda i: -float(tiles[i][1].std()))[:MAX_TILES_PER_PHOTO])
            tiles = [tiles[i] for i in keep]
        if tiles:
            per_photo.append(tiles)
    ordered = [t[i] for i in range(MAX_TILES_PER_PHOTO) for t in per_photo if i < len(t)][:max_images]
    if len(ordered) < 10:
        raise InputError("scikit-image data", f"only {len(ordered)} demo tiles could be made from scikit-image's photographs; "
                         "the demo needs at least 10 (is scikit-image's data folder complete?)")
    paths = []
    for k, (name, tile) in enumerate(ordered):
        image = torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1).float() / 255
        paths.append(data.save_image(image, folder / f"{k:02d}_{name}.png"))
    return paths


def resolve_vae(vae: str, device=None):
    """(codec, note): ``auto`` → sd-vae-ft-ema when cached, else the bundled TAEF2 (never pixel).

    The note says which codec ran and why; it goes into the log and the report.
    """
    if vae.strip().lower() == "auto":
        codec, why = resolve_auto(device=device)
        return codec, f"codec: {codec.id}. {why}"
    codec = load_codec(vae, device=device)
    return codec, f"codec: {codec.id} (--vae {vae})"


def demo(out: str | Path = "dotrestore-demo", vae: str = "auto", overwrite: bool = False,
         device=None, progress: bool = True) -> ExperimentResult:
    """Run the demo; returns the experiment's result (``result.report`` is the report's path).

    Split (``--paired``): the restored and clean versions of the first 12 tiles give the source
    and target statistics, the remaining ~13 tiles (6 with a learned VAE, for time) are the test set. With so few, so varied
    photographs a paired fit keeps the two Gaussians about the same content (an unpaired fit
    on 8 + 8 tiles moved colours between unrelated photographs). Degradation
    ``noise:sigma=50``, restorer ``gaussian-blur:sigma=2``, the seed's ten α.
    """
    out = Path(out)
    clean_dir = out / "data" / "clean"
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(out, "--out folder is not empty; pass --overwrite or choose another --out")
    check_output_folder(out)
    check_writable_folder(out.parent, out)
    codec, note = resolve_vae(vae, device=device)  # before writing anything: an unknown --vae fails cleanly
    created = not out.exists()
    if clean_dir.exists():
        shutil.rmtree(clean_dir)
    try:
        # Each test tile is encoded 12 times (x̂α for ten α, x*, y) for the latent metrics: with a
        # learned codec keep LEARNED_CODEC_TEST_TILES test tiles so the demo stays under 2 minutes.
        make_demo_images(clean_dir, max_images=None if codec.downscale == 1 else FIT + LEARNED_CODEC_TEST_TILES)
        config = ExperimentConfig(clean=str(clean_dir), degrade=DEGRADE, restorer=RESTORER, vae=codec.spec,
                                  fit_source=FIT, fit_target=FIT, paired=True, out=str(out), overwrite=True,
                                  device=device, progress=progress)
        notes = [note] if note else []
        return run(config, codec=codec, notes=notes, reserved=("data",))
    except BaseException:  # a failed demo leaves nothing of its own behind
        shutil.rmtree(out if created else clean_dir, ignore_errors=True)
        raise
