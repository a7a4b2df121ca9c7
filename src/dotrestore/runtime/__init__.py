"""Where and how the work runs: devices, processes, the data pipeline, and one :class:`Runtime` object.

The method (what DOT fits) and the runtime (where it runs) are separate: a
:class:`~dotrestore.DOT` holds the method's settings and one :class:`Runtime` holding the
device, the codec's precision, tiling and memory budget, batching, loader workers, the input
size limit and progress bars. Modules: :mod:`.devices`, :mod:`.parallel` (the only
``torch.distributed`` user), :mod:`.pipeline` (the DataLoader and the PNG writer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch

from .. import settings
from ..codecs import precision as codec_precision
from .devices import local_device


def _default(name: str):
    return field(default=settings.default(name))


@dataclass
class Runtime:
    """How to run: every field is a setting of :data:`dotrestore.settings.SETTINGS` (group "runtime").

    Values are checked (and made canonical) when the object is made; a bad one is a
    :class:`~dotrestore.errors.SettingError` naming the field. ``dtype="auto"`` (the default)
    runs the codec in bfloat16 on CPUs that compute it natively and in float32 elsewhere
    (:func:`dotrestore.codecs.precision.resolve_precision`); float16 needs a CUDA device.

    >>> Runtime(device="cpu", batch_size=4, max_pixels=None).batch_size
    4
    """

    device: str | None = _default("device")
    dtype: str = _default("dtype")
    tile: str | int = _default("tile")
    tile_overlap: int | None = _default("tile_overlap")
    max_memory: int | None = _default("max_memory")
    batch_size: int = _default("batch_size")
    workers: int | None = _default("workers")
    max_pixels: int | None = _default("max_pixels")
    progress: bool = _default("progress")

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, settings.check(f.name, getattr(self, f.name)))
        codec_precision.check_precision(self.dtype, self.device)

    @classmethod
    def coerce(cls, value: Runtime | dict | None) -> Runtime:
        """A Runtime from a Runtime (returned as is), a dict of its fields, or None (defaults)."""
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise TypeError(f"unknown runtime settings {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
            return cls(**value)
        raise TypeError(f"runtime must be a Runtime, a dict or None, got {type(value).__name__}")

    @property
    def torch_device(self) -> torch.device:
        """This process's device (under torchrun, ``cuda`` is ``cuda:LOCAL_RANK``)."""
        return local_device(self.device)

    def precision(self) -> codec_precision.Precision:
        """The codec precision this runtime gives on its device, and why."""
        return codec_precision.resolve_precision(self.dtype, self.torch_device)

    def codec_options(self) -> dict:
        """What configures a codec: tiling, overlap, precision and memory budget."""
        return {"tile": self.tile, "tile_overlap": self.tile_overlap, "dtype": self.dtype,
                "max_memory": self.max_memory}

    def to_dict(self) -> dict:
        return asdict(self)

    def progress_bar(self, total: int | None, desc: str, unit: str = "img"):
        """A tqdm bar (items done / total, items per second) on the main process, when progress
        is on and there is more than one item (``total`` None: a stream of unknown length)."""
        from tqdm.auto import tqdm

        from . import parallel

        return tqdm(total=total, desc=desc, unit=unit, leave=False,
                    disable=not self.progress or not parallel.is_main() or (total is not None and total < 2))


__all__ = ["Runtime", "local_device"]
