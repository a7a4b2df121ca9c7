"""Image files: listing, validation, reading, saving, pairing, crop/resize and 8-bit quantization.

Images in memory are float32 torch tensors in [0, 1] of shape (3, H, W). Files on disk are
whatever Pillow reads; :func:`save_image` writes 8-bit RGB PNG (:mod:`.image_formats` writes other
formats, keeping grey, alpha and 16-bit grey).
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..checks import RANGE_TOLERANCE
from ..errors import InputError, SettingError
from .files import atomic_write, open_regular
from .outputs.folder import FileId
from .pixels import SIXTEEN_BIT_MODES, NotFinite, OutOfRange, stored_bits, to_rgb_array  # noqa: F401

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
Paths = PathLike | Iterable[PathLike]

# EXIF orientations 5-8 swap width and height (transpose / rotate by 90 or 270 degrees).
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

#: Largest image (width × height, from the file header) read without ``max_pixels``: a
#: 6000×4000 photograph passes; a small file declaring a huge canvas is refused before
#: decoding (decoding allocates what the header declares). None disables the check.
#: The settings table's ``max_pixels`` default says the same (tests/test_architecture.py checks it).
DEFAULT_MAX_PIXELS = 40_000_000


def check_max_pixels(max_pixels) -> int | None:
    """``max_pixels`` as a typed value: a positive int, or None (no limit); SettingError otherwise."""
    if max_pixels is None or (isinstance(max_pixels, numbers.Integral) and not isinstance(max_pixels, bool)
                              and max_pixels >= 1):
        return None if max_pixels is None else int(max_pixels)
    raise SettingError("max_pixels", f"must be a positive number of pixels or None, got {max_pixels!r}")


@contextlib.contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """The image at ``path``, lazily decoded; a FIFO or device is refused, never waited on."""
    with open_regular(path) as handle:
        # Our own limit (max_pixels, checked right after) replaces Pillow's bomb warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(handle)
        with image:
            yield image


def check_size(path: Path, image: Image.Image, max_pixels: int | None) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(path, f"declares an empty {width}x{height} image")
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(path, f"is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,} (raise it with --max-pixels / max_pixels=)")


def image_extensions() -> frozenset[str]:
    """Lower-case file extensions (with the dot) that the installed Pillow can open."""
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _as_path_list(paths: Paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def list_images(paths: Paths, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, headers: bool = True) -> list[Path]:
    """Expand files and folders into the list of image files they name.

    Folders are expanded non-recursively to their files whose extension Pillow reads, sorted by
    name, hidden files (``.name``) ignored. Files given explicitly are kept in the order given.
    A file named twice (directly or through its folder) is kept once, at its first position.

    Raises InputError naming the path when it does not exist, when a folder holds no image, or
    when an explicit file has an extension Pillow does not read or is not an image, or when an
    explicit file's header declares more than ``max_pixels`` pixels. With ``headers=False``
    no file is opened (names and file types only): :func:`check_images` checks what is read.
    """
    max_pixels = check_max_pixels(max_pixels)
    given = _as_path_list(paths)
    if not given:
        raise InputError("images", "no image files or folders given")
    extensions = image_extensions()
    found: list[Path] = []
    for path in given:
        if not path.exists():
            raise InputError(path, "does not exist")
        if path.is_dir():
            found.extend(_folder_images(path, extensions))
            continue
        if not path.is_file():  # a FIFO, a socket or a device would block or never end
            raise InputError(path, "is not a regular file")
        if path.suffix.lower() not in extensions:
            raise InputError(path, f"not an image file (extension {path.suffix or '(none)'!r} is not one Pillow reads)")
        if not headers:
            found.append(path)
            continue
        try:  # header only: cheap; full decoding is validate_images' job
            with open_image(path) as image:
                check_size(path, image, max_pixels)
        except InputError:
            raise
        except Exception as err:  # Pillow raises many types for foreign bytes
            raise InputError(path, f"not an image Pillow can read ({type(err).__name__}: {err})") from None
        found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _folder_images(folder: Path, extensions) -> list[Path]:
    """The image files of ``folder`` (sorted by name); one log line names what was skipped."""
    files, skipped = [], []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        is_image = p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
        (files if is_image else skipped).append(p)
    if not files:
        raise InputError(folder, "folder holds no image file (none with an extension Pillow reads)")
    if skipped:
        shown = ", ".join(_skipped_name(p, extensions) for p in skipped[:8])
        more = f" and {len(skipped) - 8} more" if len(skipped) > 8 else ""
        what = "1 entry that is not an image file" if len(skipped) == 1 else \
            f"{len(skipped)} entries that are not image files"
        logger.info("%s: skipped %s: %s%s", folder, what, shown, more)
    return files


def _skipped_name(path: Path, extensions) -> str:
    if path.is_dir():
        return path.name + "/"
    if path.suffix.lower() in extensions and not path.name.startswith(".") and os.path.lexists(path):
        return f"{path.name} (not a regular file)"  # a FIFO, socket, device or broken link
    return path.name


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return height, width


def header_size(path: PathLike) -> tuple[int, int]:
    """(H, W) of an image after EXIF orientation, from its header (nothing decoded)."""
    with open_image(Path(path)) as image:
        return _oriented_size(image)


@dataclass(frozen=True)
class ImageFile:
    """An image input listed and checked once; later stages use it instead of the bare path.

    ``identity`` is the (st_dev, st_ino) of the file that was decoded (no output may replace
    it), ``size`` its (H, W) after EXIF orientation (it batches images of one size).
    """

    path: Path
    identity: FileId
    size: tuple[int, int]
    kind: str = "image"


def check_image(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageFile:
    """Open ``path`` once and decode it fully, so a corrupt file fails before long work.

    InputError naming the file when it cannot be decoded (truncated, garbage, empty) or declares
    more than ``max_pixels`` pixels (checked from the header, before decoding).
    """
    path = Path(path)
    try:
        with open_regular(path) as handle:
            st = os.fstat(handle.fileno())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(handle)
            with image:
                check_size(path, image, max_pixels)
                image.load()
                size = _oriented_size(image)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(path, "does not exist") from None
    except Exception as err:
        raise InputError(path, f"cannot be decoded ({type(err).__name__}: {err})") from None
    return ImageFile(path, (st.st_dev, st.st_ino), size)


def check_images(paths: Sequence[PathLike], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[ImageFile]:
    """:func:`check_image` of each of ``paths`` (already listed: nothing is expanded), in order."""
    return [check_image(path, max_pixels) for path in paths]


def validate_images(paths: Paths, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[tuple[int, int]]:
    """Fully decode every image of ``list_images(paths)`` so a corrupt file fails before long work.

    Returns the (H, W) size of each image after EXIF orientation, in ``list_images`` order.
    Raises InputError naming the first file that cannot be decoded (truncated, garbage, empty)
    or that declares more than ``max_pixels`` pixels (checked from the header, before decoding).
    """
    max_pixels = check_max_pixels(max_pixels)
    return [record.size for record in check_images(list_images(paths, max_pixels, headers=False), max_pixels)]


def read_image(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read one image as a contiguous float32 tensor (3, H, W) in [0, 1].

    EXIF orientation is applied. Gray (L, 1, I;16, I, F), gray+alpha (LA), RGBA, palette (P),
    CMYK and other modes become RGB with a one-line logged notice; alpha is dropped (not
    composited on a background); 16-bit values are divided by 65535 (full precision kept).
    Images whose header declares more than ``max_pixels`` pixels are refused before decoding.
    (:func:`dotrestore.io.image_formats.read_kept` also keeps what the file had beyond RGB.)
    """
    image, mode = read_image_and(path, max_pixels, lambda picture, bits: picture.mode)
    if mode != "RGB":
        logger.warning("%s: converted %s to RGB", path, mode)
    return image


def read_image_and(path: PathLike, max_pixels: int | None, inspect: Callable[[Image.Image, int], object]):
    """``(read_image(path), inspect(picture, bits))``: ``picture`` the decoded, EXIF-oriented Pillow
    image, ``bits`` the bits per sample its file stored (16 for a 16-bit PNG that Pillow decodes to
    8), so that callers learn more of a file than its RGB without opening it twice."""
    max_pixels = check_max_pixels(max_pixels)
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    try:
        with open_image(path) as image:
            check_size(path, image, max_pixels)
            bits = stored_bits(image)
            image.load()
            image = ImageOps.exif_transpose(image)
            array = to_rgb_array(image)
            if not np.isfinite(array).all():  # a float TIFF can hold NaN or inf
                raise NotFinite
            seen = inspect(image, bits)
    except NotFinite:
        raise InputError(path, "has NaN or infinite pixel values") from None
    except OutOfRange as exc:
        low, high = exc.args
        raise InputError(path, f"has values in [{low:.4g}, {high:.4g}]; expected a float image in [0, 1] "
                         f"(a tolerance of {RANGE_TOLERANCE:g} is clamped, nothing more)") from None
    except InputError:
        raise
    except Exception as err:
        raise InputError(path, f"cannot be decoded ({type(err).__name__}: {err})") from None
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous(), seen


def resize_image(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (3, H, W) or (B, 3, H, W) to ``size`` = (H', W'), antialiased, in [0, 1].

    torch ``F.interpolate(mode="bicubic", antialias=True, align_corners=False)``; antialiasing
    only acts when shrinking. Bicubic overshoots at edges, hence the clamp.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(img.shape[-2:]) == size:
        return img
    batch = img if img.dim() == 4 else img[None]
    out = F.interpolate(batch.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    out = out.clamp(0, 1)
    return out if img.dim() == 4 else out[0]


def center_crop(img: torch.Tensor, size: int, path: PathLike | None = None) -> torch.Tensor:
    """Centre crop (…, H, W) to size × size; InputError (naming ``path``) when a side is smaller."""
    height, width = img.shape[-2:]
    if height < size or width < size:
        raise InputError(path if path is not None else "image",
                         f"is {height}x{width}, smaller than the {size}x{size} crop")
    top, left = (height - size) // 2, (width - size) // 2
    return img[..., top:top + size, left:left + size].contiguous()


def _positive_int(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise InputError(name, f"must be a positive integer, got {value!r}")
    return int(value)


def load_images(paths: Paths, crop: int | None = None, resize: int | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[torch.Tensor]:
    """Read every image of ``list_images(paths)`` as (3, H, W) tensors.

    ``resize=N`` scales the shorter side to N (aspect ratio kept, see :func:`resize_image`);
    ``crop=N`` then takes the centre N × N crop (InputError naming the file if it is smaller).
    """
    crop, resize = _positive_int(crop, "crop"), _positive_int(resize, "resize")
    images = []
    for path in list_images(paths, max_pixels):
        img = read_image(path, max_pixels)
        if resize is not None:
            height, width = img.shape[-2:]
            scale = resize / min(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            if max_pixels is not None and size[0] * size[1] > max_pixels:  # before allocating it
                raise InputError(path, f"resized to {size[1]}x{size[0]} = {size[0] * size[1]:,} pixels, over the "
                                 f"limit of {max_pixels:,} (lower --resize, or raise --max-pixels)")
            img = resize_image(img, size)
        if crop is not None:
            img = center_crop(img, crop, path)
        images.append(img)
    return images


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.detach().float().clamp(0, 1) * 255).round()


def quantize(img: torch.Tensor) -> torch.Tensor:
    """round(clamp(x, 0, 1) · 255) / 255 as float32: exactly the values save_image writes."""
    return (_to_uint8(img) / 255).to(torch.float32)


def checked_rgb(img: torch.Tensor, path: PathLike) -> torch.Tensor:
    """``img`` as (3, H, W) (a batch of one is unwrapped); InputError naming ``path`` for another
    shape or non-finite values: nothing is written from them."""
    if img.dim() == 4 and img.shape[0] == 1:
        img = img[0]
    if img.dim() != 3 or img.shape[0] != 3:
        raise InputError(path, f"expected a (3, H, W) image tensor, got shape {tuple(img.shape)}")
    if not bool(torch.isfinite(img).all()):
        raise InputError(path, "image has non-finite values (NaN or inf); refusing to save")
    return img


def png_writer(img: torch.Tensor, path: PathLike) -> Callable[[BinaryIO], None]:
    """Check (3, H, W) ``img`` and quantize it (:func:`quantize`); returns ``write(handle)`` writing its PNG.

    InputError naming ``path`` for a non-PNG name, a wrong shape or non-finite values.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(path, "save_image writes PNG files: use a .png extension")
    img = checked_rgb(img, path)
    array = _to_uint8(img).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    picture = Image.fromarray(np.ascontiguousarray(array), "RGB")
    return lambda handle: picture.save(handle, format="PNG")


def save_image(img: torch.Tensor, path: PathLike, write_file: Callable | None = None,
               encode: Callable | None = None) -> Path:
    """Write (3, H, W) in [0, 1] as an 8-bit RGB PNG; returns the path.

    Values are clamped to [0, 1] and rounded (see :func:`quantize`); non-finite values are
    refused. By default parent folders are created and the PNG is written atomically with the
    umask's default mode (:func:`dotrestore.io.files.atomic_write`), so no partial file is ever
    left; ``write_file(path, write)`` replaces that (e.g. a staged folder's writer).
    ``encode(img, path)`` returns ``write`` instead of :func:`png_writer` (another format, or
    what the input had: :func:`dotrestore.io.image_formats.image_writer`).
    """
    write = (encode or png_writer)(img, path)
    path = Path(path)
    if write_file is not None:
        return write_file(path, write)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)


def pair_by_stem(restored: Sequence[PathLike], clean: Sequence[PathLike]) -> list[tuple[Path, Path]]:
    """Pair each restored file with the clean file of the same stem, sorted by stem.

    Extra clean files are ignored. Raises InputError when restored files have no clean match
    (a few are listed) or when a stem appears twice on one side (ambiguous).
    """
    def by_stem(paths: Sequence[PathLike], side: str) -> dict[str, Path]:
        table: dict[str, Path] = {}
        for p in map(Path, paths):
            if p.stem in table and table[p.stem].resolve() != p.resolve():
                raise InputError(p, f"stem {p.stem!r} appears twice among the {side} images ({table[p.stem].name})")
            table[p.stem] = p
        return table

    restored_by_stem, clean_by_stem = by_stem(restored, "restored"), by_stem(clean, "clean")
    missing = sorted(set(restored_by_stem) - set(clean_by_stem))
    if missing:
        shown = ", ".join(restored_by_stem[s].name for s in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError("restored images", f"{len(missing)} have no clean image with the same stem: {shown}{more}")
    return [(restored_by_stem[s], clean_by_stem[s]) for s in sorted(restored_by_stem)]


__all__ = [
    "DEFAULT_MAX_PIXELS", "check_max_pixels", "image_extensions", "list_images", "validate_images", "header_size",
    "ImageFile", "check_image", "check_images", "read_image", "read_image_and", "load_images",
    "resize_image", "center_crop", "quantize", "checked_rgb", "png_writer", "save_image", "pair_by_stem",
]
