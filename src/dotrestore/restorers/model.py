"""``ModelRestorer``: x* = f(y) for a network read from its file, batched, tiled, in inference mode.

The network runs on the device and in the precision it is given (the codec's, see
:meth:`ModelRestorer.configure`), under ``torch.inference_mode``. Images whose activations
would not fit the memory budget (``--max-memory``; free CUDA memory, or
:data:`CPU_BUDGET` on the CPU) are restored in overlapping tiles: every tile sees
:data:`TILE_CONTEXT` extra pixels of its neighbours, and the tiles' outputs are blended with
linear ramps across the overlaps (:func:`dotrestore.codecs.tiling.tiled_apply`), so a tiled
output matches the untiled one within rounding. A batch of equal-size images runs as one batch
when it fits.

The context must cover the network's effective reach, which for deep restorers is far larger
than for the codec: Real-ESRGAN x4plus (23 RRDB blocks), a 400×400 input in tiles of 160 px
against untiled (``benchmarks/real_esrgan_tiles.py``): 32 px of context left seams of up to
27.9 levels (0–255; 99.9th percentile 6.0, mean 0.19), 64 px 1.14 (0.19, 0.005), 96 px 0.015.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import Tensor

from ..codecs import tiling
from ..codecs.options import DTYPES as _DTYPES
from ..codecs.precision import resolve_precision
from ..errors import InputError
from ..io.images import resize_image
from .model_file import load_model_file

logger = logging.getLogger(__name__)

#: input pixels of context every tile sees beyond its core (each side), and the default overlap
TILE_CONTEXT = 96
TILE_OVERLAP = 16
#: default activation budget on the CPU (bytes): with 96 px of context on each side, 1 GiB
#: (the codec's) would leave Real-ESRGAN tiles of 81 px inside 273 (11× the work); 4 GiB: 355 in 547
CPU_BUDGET = 4 << 30
#: smallest tile side chosen automatically (input pixels)
MIN_TILE = 64



class ModelRestorer:
    """A restorer from a model file (see :func:`~dotrestore.restorers.model_file.load_model_file`).

    Called like every restorer, ``res(img, size=None)`` on (3, h, w) or (B, 3, h, w) float
    tensors in [0, 1]; returns the model's output (h·scale, w·scale), or, when ``size`` is
    given and differs, that output resized to ``size`` (bicubic, logged once).
    ``architecture``, ``scale`` and ``path`` describe the model.
    """

    resizes_input = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.model = load_model_file(self.path)
        self.architecture = self.model.architecture.name
        self.scale = int(self.model.scale)
        self.device, self.dtype, self.max_memory = torch.device("cpu"), torch.float32, None
        self.tile_overlap = TILE_OVERLAP
        self._channels = _widest_layer(self.model.model)
        self._warned_resize = self._warned_context = False

    def configure(self, *, device=None, dtype: str | None = None, max_memory: int | None = None,
                  tile_overlap: int | None = None) -> ModelRestorer:
        """Run on ``device`` in ``dtype`` ("float32", "bfloat16", "float16") within ``max_memory`` bytes.

        A precision the architecture does not support (spandrel's flags) falls back to float32, logged.
        """
        if device is not None:
            self.device = torch.device(device)
        if dtype is not None:
            if dtype == "auto":  # the codec's choice on this device (bf16 only where it is native)
                dtype = resolve_precision(dtype, self.device).name
            wanted = _DTYPES[dtype]
            supported = {torch.float16: self.model.supports_half, torch.bfloat16: self.model.supports_bfloat16}
            if not supported.get(wanted, True):
                logger.warning("%s: %s does not support %s; running it in float32", self.path, self.architecture, dtype)
                wanted = torch.float32
            self.dtype = wanted
        if max_memory is not None:
            self.max_memory = int(max_memory)
        if tile_overlap is not None:
            self.tile_overlap = int(tile_overlap)
        return self

    def describe(self) -> str:
        return f"{self.architecture} ×{self.scale} ({self.path.name})"

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"ModelRestorer({str(self.path)!r})"

    def bytes_per_pixel(self) -> float:
        """Estimated activation bytes per input pixel: a few feature maps of the widest layer at
        the input size, and some at the output size (an upsampler's last layers)."""
        size = torch.finfo(self.dtype).bits // 8
        return size * self._channels * (8 + 3 * self.scale ** 2)

    def __call__(self, img: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        batch = img if img.dim() == 4 else img[None]
        out = self.restore(batch.float())
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            if not self._warned_resize:
                logger.warning("%s: gives %dx%d (×%d); resized to %dx%d", self.path.name, *out.shape[-2:],
                               self.scale, *size)
                self._warned_resize = True
            out = resize_image(out, tuple(size)).clamp(0, 1)
        return out if img.dim() == 4 else out[0]

    def restore(self, x: Tensor) -> Tensor:
        """f(x) for (B, 3, h, w) in [0, 1] → (B, 3, h·s, w·s) float32 in [0, 1] on x's device."""
        device = self._run_device()
        if next(self.model.model.parameters()).device != device or self._model_dtype() != self.dtype:
            self.model.to(device=device, dtype=self.dtype)
        budget = tiling.device_budget(device, self.max_memory, cpu_budget=CPU_BUDGET)
        per_image = x.shape[-2] * x.shape[-1] * self.bytes_per_pixel()
        with torch.inference_mode():
            if per_image * x.shape[0] <= budget:
                return self._run(x).to(x.device)
            if per_image <= budget:  # one image fits: several at a time would not
                step = max(1, int(budget // per_image))
                return torch.cat([self._run(x[i:i + step]) for i in range(0, len(x), step)]).to(x.device)
            tile, context = self._tile_and_context(budget)
            outs = [tiling.tiled_apply(image[None].to(device), self._run_tile, tile, min(self.tile_overlap, tile // 2),
                                       self.scale, 1, 3, desc="restorer tiles", context=context)
                    for image in x]
            return torch.cat(outs).clamp_(0, 1).to(x.device)

    def _tile_and_context(self, budget: int) -> tuple[int, int]:
        """(tile core, context) input pixels: a tile and its context on both sides within the
        budget; the context shrinks (with a warning) only when the budget leaves no room for it."""
        side = int(math.sqrt(budget / self.bytes_per_pixel()))
        context = max(0, min(TILE_CONTEXT, (side - MIN_TILE) // 2))
        if context < TILE_CONTEXT and not self._warned_context:
            logger.warning("%s: --max-memory leaves room for tiles of %d px with %d px of context (%d "
                           "wanted): seams may show; raise --max-memory", self.path.name, side, context, TILE_CONTEXT)
            self._warned_context = True
        return max(MIN_TILE, side - 2 * context), context

    def _run(self, x: Tensor) -> Tensor:
        return self._forward(x.to(self._run_device(), self.dtype))

    def _run_tile(self, x: Tensor) -> Tensor:
        return self._forward(x.to(self.dtype))

    def _forward(self, x: Tensor) -> Tensor:
        try:
            return self.model(x).float()
        except torch.OutOfMemoryError as err:
            raise InputError(self.path, f"ran out of memory on an input of shape {tuple(x.shape)}: "
                             "lower --max-memory (smaller tiles) or --batch-size") from err
        except Exception as err:
            raise InputError(self.path, f"failed on an input of shape {tuple(x.shape)} "
                             f"({type(err).__name__}: {err})") from err

    def _model_dtype(self) -> torch.dtype:
        return next(self.model.model.parameters()).dtype

    def _run_device(self) -> torch.device:
        # a DataLoader worker (a forked process) restores on the CPU: CUDA does not survive a fork
        if self.device.type != "cpu" and torch.utils.data.get_worker_info() is not None:
            return torch.device("cpu")
        return self.device


def _widest_layer(module: torch.nn.Module) -> int:
    widths = [p.shape[0] for p in module.parameters() if p.dim() >= 2]
    return max(widths, default=64)


__all__ = ["ModelRestorer", "CPU_BUDGET", "TILE_CONTEXT", "TILE_OVERLAP"]
