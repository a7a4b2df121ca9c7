"""What the α explorer does, without any Gradio: the current operator, the image cache, the per-image work.

:class:`Explorer` holds one operator (a fitted :class:`~dotrestore.DOT`), the
:class:`~dotrestore.runtime.Runtime` it runs with (``--max-pixels`` and ``--device`` of
``dotrestore serve``) and a :class:`~dotrestore.serve.cache.TransportCache`. Picking an image
encodes, transports and decodes it once (x̂0); every α after that is a blend. Everything a user
hands over (image, reference, operator) is checked here and refused with an
:class:`~dotrestore.errors.InputError` naming the file; the app shows that message and keeps serving.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path

import torch
from PIL import Image

from .. import metrics, settings
from ..errors import InputError, NotFittedError
from ..io import image_formats
from ..io import images as image_files
from ..io.alpha_maps import read_alpha_map, save_alpha_map
from ..ot.tradeoff import feather
from ..runtime import Runtime
from ..tasks.apply import alpha_dirname
from .cache import Entry, TransportCache, content_hash

logger = logging.getLogger(__name__)

#: the slider: −1 … 2 in steps of 0.05 (any α within settings.ALPHA_LIMIT can be typed)
ALPHA_MIN, ALPHA_MAX, ALPHA_STEP = -1.0, 2.0, 0.05


def alpha_grid() -> list[float]:
    """The slider's α values, −1 … 2 in steps of 0.05, rounded so they print as typed."""
    n = round((ALPHA_MAX - ALPHA_MIN) / ALPHA_STEP)
    return [round(ALPHA_MIN + i * ALPHA_STEP, 2) for i in range(n + 1)]


def check_image_file(path: str | Path, max_pixels: int | None = settings.default("max_pixels")) -> Path:
    """Refuse a missing, non-regular, unreadable or oversized image before decoding it (the header gives the size)."""
    return image_files.list_images([Path(path)], max_pixels)[0]


class Explorer:
    """State of one ``dotrestore serve``: operator, image folders, cache and a scratch folder."""

    MAX_SCRATCH = 256

    def __init__(self, operator: str | Path | None = None, images: str | Path | None = None,
                 reference: str | Path | None = None, *, runtime: Runtime | dict | None = None,
                 cache_size: int = 16, work_dir: str | Path | None = None, restorer=None):
        self.images_dir = None if images is None else Path(images)
        self.reference_dir = None if reference is None else Path(reference)
        for folder, flag in ((self.images_dir, "--images"), (self.reference_dir, "--reference")):
            if folder is not None and not folder.is_dir():
                raise InputError(folder, f"{flag} must be a folder of images")
        self.runtime = Runtime.coerce(runtime if runtime is not None else {"progress": False})
        self.cache = TransportCache(cache_size)
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="dotrestore-serve-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.dot = None
        # with a restorer, images are degraded inputs y and x* = restorer(y) is what is explored
        self.restorer = restorer
        self.operator_path: Path | None = None
        self._generation = 0  # part of every cache key: a new operator never sees old x̂0
        self._lock = threading.RLock()  # one transport at a time: torch already uses every core
        self._names = itertools.count()
        self._scratch: deque[Path] = deque()
        if operator is not None:
            self.load_operator(operator)

    def exclusive(self) -> threading.RLock:
        """The explorer's transport lock, for a long job that must not run beside a transport."""
        return self._lock

    @property
    def max_pixels(self) -> int | None:
        return self.runtime.max_pixels

    # ------------------------------------------------------------------ operator
    def load_operator(self, path: str | Path) -> str:
        """Make the operator file at ``path`` current; returns a one-line description."""
        from ..estimator import DOT

        path = Path(path)
        dot = DOT.load(path, runtime=self.runtime)  # refuses non-operators and codec mismatches
        return self.set_operator(dot, path)

    def set_operator(self, dot, path: str | Path | None = None) -> str:
        with self._lock:
            self.dot = dot
            self.operator_path = None if path is None else Path(path)
            self._generation += 1
            self.cache.clear()
        return self.describe_operator()

    def describe_operator(self) -> str:
        if self.dot is None:
            return "No operator yet: fit one in the Fit tab or upload an operator file."
        dot = self.dot
        name = self.operator_path.name if self.operator_path is not None else "fitted here"
        p = dot.resolved.patch_size
        return f"Operator {name}: codec {dot.codec_.id}, patch {p}×{p}, low-pass σ {dot.resolved.lowpass_sigma:g}"

    def require_operator(self):
        if self.dot is None:
            raise NotFittedError("no operator loaded: fit one in the Fit tab or upload an operator file")
        return self.dot

    # ------------------------------------------------------------------ images
    def gallery(self) -> list[Path]:
        """The images of ``--images`` (sorted), or none."""
        if self.images_dir is None:
            return []
        return image_files.list_images([self.images_dir], self.max_pixels)

    def reference_for(self, stem: str) -> Path | None:
        """The file of ``--reference`` with this stem, if any."""
        if self.reference_dir is None:
            return None
        matches = [p for p in image_files.list_images([self.reference_dir], self.max_pixels) if p.stem == stem]
        return matches[0] if matches else None

    def read_checked(self, path: str | Path) -> torch.Tensor:
        return image_files.read_image(check_image_file(path, self.max_pixels), self.max_pixels)

    def prepare(self, path: str | Path, stem: str | None = None) -> Entry:
        """The cached entry of the image at ``path``, transporting it on first sight."""
        dot = self.require_operator()
        path = check_image_file(path, self.max_pixels)
        key = f"{self._generation}:{content_hash(path)}"
        entry = self.cache.get(key)
        if entry is not None:
            return entry
        kept = image_formats.read_kept(path, self.max_pixels)  # x*, and its grey / alpha / 16 bits
        x_star = kept["image"]
        with self._lock:
            if self.restorer is not None:  # the same x* as `dotrestore apply --restorer`
                x_star = self.restorer(x_star[None])[0].cpu()
            # the same call `dotrestore apply` makes, so x̂0 carries the same bits
            x0 = dict(dot.iter_alphas(x_star[None], [0.0]))[0.0][0].cpu()
        return self.cache.put(Entry(key=key, stem=stem or Path(path).stem, x_star=x_star, x0=x0,
                                    source=kept["source"]))

    def attach_reference(self, entry: Entry, path: str | Path | None) -> Entry:
        """Give ``entry`` a clean reference (or drop it with ``None``); sizes must agree."""
        if path is None:
            entry.reference, entry.reference_name, entry.mse_curve = None, None, None
            return entry
        reference = self.read_checked(path)
        if reference.shape != entry.x_star.shape:
            raise InputError(path, f"reference is {reference.shape[2]}x{reference.shape[1]} but the image is "
                             f"{entry.x_star.shape[2]}x{entry.x_star.shape[1]}")
        entry.reference, entry.reference_name, entry.mse_curve = reference, Path(path).name, None
        return entry

    def render(self, entry: Entry, alpha: float, interpolation: str = "pixel",
               alpha_map: torch.Tensor | None = None) -> torch.Tensor:
        """x̂α of a prepared image: a blend (pixel) or a decode of the blended latents (latent).

        ``alpha_map`` (H, W) or (1, 1, H, W), when given, is used instead of ``alpha``.
        """
        alpha = settings.check("alpha", alpha, "α") if alpha_map is None else alpha_map
        if settings.check("interpolation", interpolation) == "pixel":
            return entry.at(alpha)
        dot = self.require_operator()
        with self._lock:
            return dict(dot.iter_alphas(entry.x_star[None], [alpha], "latent"))[alpha][0].cpu()

    # ------------------------------------------------------------------ measures
    @staticmethod
    def scores(entry: Entry, image: torch.Tensor) -> dict[str, float] | None:
        """PSNR (dB) and SSIM of the 8-bit image as saved, against the reference; None without one."""
        if entry.reference is None:
            return None
        shown = image_files.quantize(image)
        return {"psnr": metrics.psnr(shown, entry.reference), "ssim": metrics.ssim(shown, entry.reference)}

    @staticmethod
    def mse_curve(entry: Entry) -> list[tuple[float, float]] | None:
        """(α, MSE of x̂α against the reference) over the slider's grid (pixel interpolation)."""
        if entry.reference is None:
            return None
        if entry.mse_curve is None:
            entry.mse_curve = [(a, metrics.mse(image_files.quantize(entry.at(a)), entry.reference))
                               for a in alpha_grid()]
        return entry.mse_curve

    # ------------------------------------------------------------------ files
    def scratch(self, name: str) -> Path:
        """A fresh file path ``name`` in its own scratch subfolder (downloads keep readable names).

        Only the newest :attr:`MAX_SCRATCH` subfolders are kept: Gradio copies every file a
        handler returns into its own cache, so a long session must not fill the disk here.
        """
        folder = self.work_dir / f"{next(self._names):06d}"
        folder.mkdir(parents=True, exist_ok=False)
        self._scratch.append(folder)
        while len(self._scratch) > self.MAX_SCRATCH:
            shutil.rmtree(self._scratch.popleft(), ignore_errors=True)
        return folder / name

    def save_png(self, image: torch.Tensor, stem: str, alpha: float, source=None) -> Path:
        """Write x̂α with the writer `dotrestore apply` uses; name ``<stem>_<alpha_A>.png``. ``source``
        (the entry's :class:`~dotrestore.io.image_formats.SourceFormat`) keeps grey, alpha and 16 bits."""
        return image_files.save_image(image, self.scratch(f"{stem}_{alpha_dirname(alpha)}.png"),
                                      encode=image_formats.kept_writer(source))

    def transform_file(self, path: str | Path, alpha: float, interpolation: str = "pixel",
                       alpha_map: str | Path | None = None) -> Path:
        """The API: an image file and α → a lossless PNG of x̂α, pixel for pixel ``dotrestore apply``'s.

        The pixels are quantised exactly as :func:`dotrestore.io.images.save_image` does; the PNG
        is compressed at zlib level 1 instead of PIL's default 6: the same pixels, a larger file,
        written several times faster (a repeated α must answer within the slider's budget).
        ``alpha_map``: a greyscale α map file read as ``apply --alpha-map`` reads it with its
        defaults (black = 0, white = 1, the same size, feathered); it replaces ``alpha``.
        """
        entry = self.prepare(path)
        image = self.render(entry, alpha, interpolation, self.read_alpha_map(alpha_map, entry))
        target = self.scratch(f"{entry.stem}_{alpha_dirname(alpha)}.png")
        pixels = (image_files.quantize(image) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels, "RGB").save(target, format="PNG", compress_level=1)
        return target

    def read_alpha_map(self, path: str | Path | None, entry: Entry) -> torch.Tensor | None:
        """The feathered α map (1, 1, H, W) of ``entry`` from a map file, as `apply` reads it; None without one."""
        if path is None:
            return None
        alpha = read_alpha_map(path, tuple(entry.x_star.shape[-2:]), settings.default("alpha_map_range"),
                               max_pixels=self.max_pixels)
        return feather(alpha[None, None], settings.default("alpha_map_feather"))

    def save_alpha_map(self, levels, stem: str) -> Path:
        """Write 16-bit α map levels as ``<stem>_alpha_map.png`` in a scratch folder."""
        return save_alpha_map(levels, self.scratch(f"{stem}_alpha_map.png"))

    def close(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
