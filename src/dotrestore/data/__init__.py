"""Image data for dotrestore: files in and out, synthetic degradations, baseline restorers.

Images are float32 tensors in [0, 1] of shape (3, H, W); lists of them where sizes differ.
"""

from ..io.images import (
    DEFAULT_MAX_PIXELS,
    center_crop,
    image_extensions,
    list_images,
    load_images,
    pair_by_stem,
    quantize,
    read_image,
    resize_image,
    save_image,
    validate_images,
)
from .degradations import DEGRADATIONS, Compose, Degradation, parse_degradation
from .restorers import RESTORERS, Restorer, UserRestorer, parse_restorer

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "list_images", "validate_images", "read_image", "load_images", "save_image", "quantize",
    "pair_by_stem", "resize_image", "center_crop", "image_extensions",
    "Degradation", "Compose", "DEGRADATIONS", "parse_degradation",
    "Restorer", "UserRestorer", "RESTORERS", "parse_restorer",
]
