"""What the estimator accepts as images: tensors, lists of tensors, files and folders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from .. import data
from ..errors import InputError


def image_items(images, desc: str, max_pixels: int | None = data.DEFAULT_MAX_PIXELS) -> tuple[list, str]:
    """Normalise accepted inputs to a list of (3, H, W) tensors or lazy paths.

    Returns the items and the input kind ("single", "batch", "list") so that
    ``DOT.transform`` can answer in the same kind. Paths are validated up front and
    read one at a time, so fitting on many files needs memory for one image only.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim == 3 and images.shape[0] == 3:
            return [images], "single"
        if images.ndim == 4 and images.shape[1] == 3:
            return list(images), "batch"
        raise InputError(None, f"{desc}: expected a (3, H, W) or (B, 3, H, W) tensor, got {tuple(images.shape)}")
    if isinstance(images, (str, Path)):
        images = [images]
    if not isinstance(images, Iterable):
        raise InputError(None, f"{desc}: expected tensors or image paths, got {type(images).__name__}")
    items = list(images)
    if not items:
        raise InputError(None, f"{desc}: no images given")
    if all(isinstance(i, (str, Path)) for i in items):
        paths = data.list_images(items, max_pixels)
        data.validate_images(paths, max_pixels)
        return paths, "list"
    for i, item in enumerate(items):
        if not (isinstance(item, torch.Tensor) and item.ndim == 3 and item.shape[0] == 3):
            raise InputError(None, f"{desc}: item {i} is not a (3, H, W) tensor or a path")
    return items, "list"


def load_item(item, max_pixels: int | None = data.DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """A (3, H, W) float tensor from an item of :func:`image_items`; NaN/inf refused."""
    image = data.read_image(item, max_pixels) if isinstance(item, (str, Path)) else item
    if not torch.isfinite(image).all():
        raise InputError(None, "image contains NaN or infinite values")
    return image.float()
