"""The one check of the image tensors a caller hands the Python API (DOT.fit, partial_fit, transform, iter_alphas).

Images are dense, real, floating-point tensors of shape (3, H, W) or (B, 3, H, W) with H, W ≥ 1,
finite and in [0, 1] (a rounding slack of :data:`RANGE_TOLERANCE` is clamped). Anything else is
an :class:`~dotrestore.errors.InputError` naming what was given and the problem, in the words the
command line uses for a file or a restorer's output. Without this, a uint8 image (0…255) comes
out 99.6 % white, NaN goes through to the output, and an empty, meta or sparse tensor fails deep
inside torch.
"""

from __future__ import annotations

import torch

from .errors import InputError

#: How far images may stray outside [0, 1] (a model's rounding) before they are refused rather than clamped.
RANGE_TOLERANCE = 1e-3


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def check_images(images, what: str, *, ndims: tuple[int, ...] = (3, 4), allow_empty: bool = False,
                 values: bool = True) -> torch.Tensor:
    """``images`` checked (see the module docstring) and clamped to [0, 1]; InputError naming ``what``.

    ``ndims`` are the accepted ranks: 3 for one (3, H, W) image, 4 for a (B, 3, H, W) batch.
    ``allow_empty`` accepts a batch of B = 0 images (returned as it is). ``values=False`` checks
    the kind of tensor only (a stream checks each batch's values when it gets there).
    """
    shapes = " or ".join("(3, H, W)" if n == 3 else "(B, 3, H, W)" for n in ndims)
    if not isinstance(images, torch.Tensor):
        raise InputError(what, f"expected a {shapes} tensor, got {type(images).__name__}")
    if images.layout != torch.strided:
        raise InputError(what, f"is a sparse tensor ({images.layout}); give a dense one (images.to_dense())")
    if images.is_meta:
        raise InputError(what, "is a meta tensor: it has a shape but no values")
    if images.ndim not in ndims or images.shape[-3] != 3:
        raise InputError(what, f"expected a {shapes} tensor, got shape {tuple(images.shape)}")
    if images.is_complex() or not images.is_floating_point():
        raise InputError(what, f"is a {dtype_name(images.dtype)} tensor; expected floating-point values in [0, 1] "
                         "(e.g. images.float() / 255)")
    if images.ndim == 4 and images.shape[0] == 0:
        if allow_empty:
            return images
        raise InputError(what, "is an empty batch (B = 0): no images given")
    height, width = images.shape[-2:]
    if height == 0 or width == 0:
        raise InputError(what, f"has a zero-size image ({height}x{width} pixels)")
    return check_values(images, what) if values else images


def check_values(images: torch.Tensor, what: str) -> torch.Tensor:
    """Finite and within [0, 1] (± :data:`RANGE_TOLERANCE`, then clamped); InputError naming ``what``."""
    if not bool(torch.isfinite(images).all()):
        raise InputError(what, "image contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise InputError(what, f"has values in [{low:.4g}, {high:.4g}]; expected images in [0, 1] "
                         f"(a tolerance of {RANGE_TOLERANCE:g} is clamped, nothing more)")
    if low < 0 or high > 1:
        images = images.clamp(0, 1)
    return images


__all__ = ["RANGE_TOLERANCE", "check_images", "check_values", "dtype_name"]
