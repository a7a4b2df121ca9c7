"""``dotrestore demo``: the classic DOT experiment on photographs bundled with scikit-image, offline.

DOT (Adrai et al., NeurIPS 2023) corrects a restorer's outputs; the demo uses a restorer anyone
can run without weights: noise of σ = 50 (0-255 units), then a Gaussian blur of σ = 2 px as
the "denoiser" x* — smooth and blotchy, and far from the MMSE estimator.

Data: 192×192 tiles cut from the six colour photographs of the world that ship inside
scikit-image (astronaut, coffee, chelsea the cat, rocket, and the two motorcycle views; no
scientific images), saved as PNGs in ``OUT/data/clean``; the ordinary experiment then runs on
that folder, so the demo can be repeated or varied with
``dotrestore experiment --config OUT/config.yaml``. From each photograph the tile with the most
detail (mean |Laplacian| of the clean image) is a test tile, the others are fitted: 24 fit
tiles and 6 test tiles, one per photograph, so every test tile is of a photograph whose other
parts the fit saw, and none of its own pixels.

Why these choices (judged by eye on the before/after and the collages, and measured; the
report shows both):

- photographs of the world only: that is what users bring; microscopy, Hubble and retina
  images made the collages hard to read and mixed unlike statistics into the fit.
- 192-px tiles rather than 256: the six photographs give 30 tiles instead of 13, enough for a
  test tile from every photograph while the fit still sees ~11,600 latent patches (D = 288)
  of all six (12 tiles of 256 px gave ~10,800).
- paired fit (the restored and clean versions of the same tiles): with so few, so varied
  photographs an unpaired fit mostly moves colours between unrelated scenes.
- blur σ = 2 rather than 3: a blurrier x* made α = 0 sharper at edges but streaky.

The first test tile (coffee: its wooden table, saucer and cup) is the report's before/after.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from .. import settings
from ..codecs import load_codec, resolve_auto
from ..errors import InputError
from ..io import images as image_files
from ..io.outputs.guard import check_output_folder, check_writable_folder
from .config import ExperimentConfig
from .runner import ExperimentResult, run

logger = logging.getLogger(__name__)

TILE = 192
MAX_TILES_PER_PHOTO = 6
#: scikit-image data functions (colour photographs of the world) and files in skimage/data.
PHOTOS = ("coffee", "astronaut", "chelsea", "rocket")
PHOTO_FILES = ("motorcycle_left.png", "motorcycle_right.png")
#: The photograph whose test tile comes first: the report's before/after shows it.
HERO = "coffee"
DEGRADE = "noise:sigma=50"
RESTORER = "gaussian-blur:sigma=2"
#: With all six photographs: 30 tiles, one test tile per photograph, the other 24 fitted (paired).
TEST_PER_PHOTO = 1
#: Our method alone by default (:data:`~dotrestore.settings.DEMO_VARIANTS`); ``--variants detail,whole``
#: adds the paper's whole-image transport (every test tile is then transported, decoded and measured twice).
COMPARE_VARIANTS = "detail,whole"


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
    return [(n, a[..., :3]) for n, a in found if a.ndim == 3 and a.shape[2] >= 3 and a.dtype == np.uint8]


def _detail(tile: np.ndarray) -> float:
    """Mean |Laplacian| of the grey tile: how much fine detail there is to restore."""
    grey = tile.astype(np.float64).mean(axis=2)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.abs(lap).mean())


def _tiles(name: str, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The photograph's TILE×TILE grid, centred; at most MAX_TILES_PER_PHOTO, the most detailed."""
    h, w = array.shape[:2]
    rows, cols = h // TILE, w // TILE
    top, left = (h - rows * TILE) // 2, (w - cols * TILE) // 2
    tiles = [(f"{name}_{r}_{c}", array[top + r * TILE: top + (r + 1) * TILE, left + c * TILE: left + (c + 1) * TILE])
             for r in range(rows) for c in range(cols)]
    if len(tiles) > MAX_TILES_PER_PHOTO:
        keep = sorted(sorted(range(len(tiles)), key=lambda i: -_detail(tiles[i][1]))[:MAX_TILES_PER_PHOTO])
        tiles = [tiles[i] for i in keep]
    return tiles


def demo_tiles() -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(fit tiles, test tiles) as (name, 192×192×3 uint8), named ``<photo>_<row>_<col>``.

    Each photograph's most detailed tile is a test tile (HERO's first), the rest are fitted,
    interleaved across photographs. A photograph with a single tile is fitted only.
    """
    fit, test = [], []
    per_photo = [_tiles(name, array) for name, array in _photos()]
    per_photo = [t for t in per_photo if t]
    for tiles in per_photo:
        if len(tiles) > TEST_PER_PHOTO:
            chosen = sorted(range(len(tiles)), key=lambda i: -_detail(tiles[i][1]))[:TEST_PER_PHOTO]
            test += [tiles[i] for i in sorted(chosen)]
            tiles[:] = [t for i, t in enumerate(tiles) if i not in chosen]
    fit = [t[i] for i in range(MAX_TILES_PER_PHOTO) for t in per_photo if i < len(t)]
    test.sort(key=lambda t: not t[0].startswith(HERO + "_"))  # the before/after's tile first
    return fit, test


def make_demo_images(folder: str | Path) -> tuple[list[Path], int]:
    """Write the demo's clean tiles as ``NN_<photo>_<r>_<c>.png``, fit tiles first; returns
    (paths, number of fit tiles). Raises InputError when too few photographs loaded."""
    folder = Path(folder)
    fit, test = demo_tiles()
    if len(fit) < 10 or not test:
        raise InputError("scikit-image data", f"only {len(fit)} fit and {len(test)} test tiles could be made from scikit-image's "
                         "photographs; the demo needs at least 10 and 1 (is scikit-image's data folder complete?)")
    paths = []
    for k, (name, tile) in enumerate(fit + test):
        image = torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1).float() / 255
        paths.append(image_files.save_image(image, folder / f"{k:02d}_{name}.png"))
    return paths, len(fit)


def resolve_vae(vae: str, device=None):
    """(codec, note): ``auto`` → sd-vae-ft-ema when cached, else the bundled TAEF2 (never pixel).

    The note says which codec ran and why; it goes into the log and the report.
    """
    if vae.strip().lower() == "auto":
        codec, why = resolve_auto(device=device)
        return codec, f"codec: {codec.id}. {why}"
    codec = load_codec(vae, device=device)
    return codec, f"codec: {codec.id} (--vae {vae})"


def fresh_folder(out: Path) -> Path:
    """``out`` when it does not exist or is empty, else the first of ``out-2``, ``out-3``, ... that is."""
    def free(path: Path) -> bool:
        return not path.exists() and not path.is_symlink() or path.is_dir() and not any(path.iterdir())

    if free(out):
        return out
    k = 2
    while not free(out.with_name(f"{out.name}-{k}")):
        k += 1
    return out.with_name(f"{out.name}-{k}")


def demo(out: str | Path = "dotrestore-demo", vae: str = "auto", overwrite: bool = False,
         device=None, progress: bool = True, variants=None) -> ExperimentResult:
    """Run the demo; returns the experiment's result (``result.report`` is the report's path).

    30 tiles of 192×192 from six photographs: the restored and clean versions of 24 give the
    source and target statistics (``--paired``), 6 (one per photograph) are the test set.
    Degradation ``noise:sigma=50``, restorer ``gaussian-blur:sigma=2``, the ten α of
    :data:`~dotrestore.experiment.config.DEFAULT_ALPHAS`, collages of every test tile.
    ``variants``: DOT configurations (default :data:`~dotrestore.settings.DEMO_VARIANTS`, our detail transport
    alone; ``"detail,whole"`` adds the paper's whole-image transport).

    A second run does not touch the first: when ``out`` holds anything, the demo writes into
    ``out-2`` (``out-3``, ...) and says so in its notes; ``overwrite`` replaces ``out`` instead.
    """
    out, asked = Path(out), Path(out)
    if not overwrite:
        out = fresh_folder(asked)
    clean_dir = out / "data" / "clean"
    check_output_folder(out)
    check_writable_folder(out.parent, out)
    codec, note = resolve_vae(vae, device=device)  # before writing anything: an unknown --vae fails cleanly
    created = not out.exists()
    if clean_dir.exists():
        shutil.rmtree(clean_dir)
    try:
        paths, fit = make_demo_images(clean_dir)
        config = ExperimentConfig(clean=str(clean_dir), degrade=DEGRADE, restorer=RESTORER, vae=codec.spec,
                                  fit_source=fit, fit_target=fit, paired=True, out=str(out), overwrite=True,
                                  collages=len(paths) - fit, device=device, progress=progress,
                                  variants=variants or list(settings.DEMO_VARIANTS))
        notes = [note] if note else []
        if out != asked:
            notes.append(f"{asked} already holds files (a previous demo?): this run wrote {out} instead and left "
                         f"{asked} as it was (`--overwrite` replaces it)")
            logger.warning("%s", notes[-1])
        if "whole" not in (config.variants if isinstance(config.variants, list) else str(config.variants)):
            notes.append(f"this demo runs our detail transport alone; `dotrestore demo --variants {COMPARE_VARIANTS}` "
                         "adds the paper's whole-image transport beside it (about twice the evaluation time)")
        return run(config, codec=codec, notes=notes, reserved=("data",))
    except BaseException:  # a failed demo leaves nothing of its own behind
        shutil.rmtree(out if created else clean_dir, ignore_errors=True)
        raise
