"""Synthetic degradations y = D(x) for experiments: noise, blur, downscaling, JPEG.

Specs are ``name:param=value[,param=value]`` (or ``name:value`` for the single parameter),
composed left to right with ``+``: ``noise:sigma=50+blur:sigma=1`` blurs the noisy image.
Every stage clips its output to [0, 1]. ``str(deg)`` gives the canonical spec back.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from .io import quantize, resize_image

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One numeric parameter of a spec: its type, validity rule (as text) and default."""

    name: str
    kind: type  # int or float
    check: Callable[[float], bool]
    rule: str
    default: object = _REQUIRED
    default_text: str = ""  # how a default of None is chosen, e.g. "estimated"

    def describe(self) -> str:
        optional = ""
        if self.default is not _REQUIRED:
            optional = f", default {self.default_text or self.default}"
        return f"{self.name}=<{self.kind.__name__} {self.rule}{optional}>"


def format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def catalogue(table: dict[str, tuple[type, tuple[Param, ...]]], what: str) -> str:
    """Human-readable list of valid names and parameters, for error messages."""
    entries = []
    for name, (_, params) in table.items():
        entries.append(name + (":" + ",".join(p.describe() for p in params) if params else ""))
    return f"valid {what}s: " + "; ".join(entries)


def parse_params(part: str, table: dict[str, tuple[type, tuple[Param, ...]]], what: str):
    """Parse ``name[:k=v,...]`` (or ``name:v`` when it has one parameter) against ``table``.

    Returns (class, {param: value}); InputError(None, ...) lists the valid names and parameters.
    """
    name, _, rest = part.strip().partition(":")
    name = name.strip().lower()
    if name not in table:
        raise InputError(None, f"unknown {what} {name!r} in {part!r}; {catalogue(table, what)}")
    cls, params = table[name]
    by_name = {p.name: p for p in params}
    given: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:  # positional shorthand, e.g. noise:50
            if len(params) != 1 or given:
                raise InputError(None, f"{what} {name!r}: write parameters as key=value in {part!r}; {catalogue(table, what)}")
            key, value = params[0].name, item
        key = key.strip().lower()
        if key not in by_name:
            raise InputError(None, f"{what} {name!r} has no parameter {key!r}; {catalogue(table, what)}")
        if key in given:
            raise InputError(None, f"{what} {name!r}: parameter {key!r} given twice in {part!r}")
        given[key] = value.strip()
    values = {}
    for param in params:
        if param.name not in given:
            if param.default is _REQUIRED:
                raise InputError(None, f"{what} {name!r} needs {param.describe()} in {part!r}; {catalogue(table, what)}")
            values[param.name] = param.default
            continue
        text = given[param.name]
        try:
            number = float(text)
            if param.kind is int:
                if number != int(number):
                    raise ValueError
                number = int(number)
        except (ValueError, OverflowError):
            number = None
        if number is None or not math.isfinite(number) or not param.check(number):
            raise InputError(None, f"{what} {name!r}: {param.name}={text!r} is invalid, expected {param.kind.__name__} {param.rule}")
        values[param.name] = number
    return cls, values


@functools.lru_cache(maxsize=32)
def gaussian_kernel1d(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian exp(-t²/2σ²), t = -r..r with radius r = ceil(3σ).

    Cached per (σ, dtype, device): detail transport blurs every batch, and building the
    taps on the host and copying them to a GPU each time costs more than the blur. Callers
    must not modify the returned tensor.
    """
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), radius ceil(3σ), reflect borders.

    Reflect padding needs radius < side; smaller images fall back to replicate borders.
    """
    kernel = gaussian_kernel1d(sigma, x.dtype, x.device)
    radius = kernel.numel() // 2
    channels = x.shape[1]
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


class Degradation:
    """A degradation ``deg(img, generator=None) -> img`` on (3, H, W) or (B, 3, H, W) in [0, 1]."""

    name = ""
    params: tuple[Param, ...] = ()

    def __init__(self, **values):
        for key, value in values.items():
            setattr(self, key, value)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def stages(self) -> list[Degradation]:
        return [self]

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = img if img.dim() == 4 else img[None]
        out = self.apply(batch.float(), generator).clamp(0, 1)
        return out if img.dim() == 4 else out[0]

    def __add__(self, other: Degradation) -> Compose:
        return Compose(self.stages() + other.stages())

    def __str__(self) -> str:
        values = ",".join(f"{p.name}={format_value(getattr(self, p.name))}" for p in self.params)
        return f"{self.name}:{values}" if values else self.name

    def __repr__(self) -> str:
        return f"parse_degradation({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Degradation) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class Noise(Degradation):
    """Additive white Gaussian noise y = x + (σ/255)·ε, ε ~ N(0, I) drawn from ``generator``."""

    name = "noise"
    params = (Param("sigma", float, lambda v: v >= 0, "≥ 0, in 0-255 units"),)

    def apply(self, x, generator):
        if generator is None:
            eps = torch.randn(x.shape, device=x.device)
        else:  # draw where the generator lives so CPU generators work for GPU images
            eps = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
        return x + (self.sigma / 255.0) * eps


class Blur(Degradation):
    """Gaussian blur with standard deviation σ pixels (radius ceil(3σ), reflect borders)."""

    name = "blur"
    params = (Param("sigma", float, lambda v: v > 0, "> 0, in pixels"),)

    def apply(self, x, generator):
        return gaussian_blur(x, self.sigma)


class Down(Degradation):
    """Downscale by an integer factor K to (H // K, W // K): antialiased bicubic (torch)."""

    name = "down"
    params = (Param("scale", int, lambda v: v >= 1, "≥ 1"),)

    def apply(self, x, generator):
        height, width = x.shape[-2:]
        if height < self.scale or width < self.scale:
            raise InputError(None, f"image {height}x{width} is smaller than the factor of {self}")
        return resize_image(x, (height // self.scale, width // self.scale))


class Jpeg(Degradation):
    """JPEG compression round trip in memory (Pillow, quality Q, default 4:2:0 subsampling)."""

    name = "jpeg"
    params = (Param("quality", int, lambda v: 1 <= v <= 100, "in 1..100"),)

    def apply(self, x, generator):
        out = []
        for img in x:
            array = (quantize(img) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(array), "RGB").save(buffer, format="JPEG", quality=self.quality)
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                back = np.asarray(decoded.convert("RGB"), dtype=np.uint8).astype(np.float32) / 255
            out.append(torch.from_numpy(back).permute(2, 0, 1))
        return torch.stack(out).to(x.device)


class Compose(Degradation):
    """Stages applied left to right, each clipped to [0, 1]; str joins their specs with '+'."""

    name = "compose"

    def __init__(self, stages: list[Degradation]):
        self._stages = list(stages)

    def stages(self) -> list[Degradation]:
        return list(self._stages)

    def apply(self, x, generator):
        for stage in self._stages:
            x = stage(x, generator)
        return x

    def __str__(self) -> str:
        return "+".join(str(s) for s in self._stages)


DEGRADATIONS: dict[str, tuple[type, tuple[Param, ...]]] = {
    cls.name: (cls, cls.params) for cls in (Noise, Blur, Down, Jpeg)
}


def parse_degradation(spec: str | Degradation) -> Degradation:
    """Build a degradation from a spec such as ``"noise:sigma=50+blur:sigma=1"``.

    Names: ``noise:sigma=S`` (S in 0-255 units), ``blur:sigma=S`` (pixels), ``down:scale=K``
    (integer), ``jpeg:quality=Q`` (1-100); ``name:value`` is shorthand for the single
    parameter. Bad specs raise InputError listing the valid names and parameters.
    """
    if isinstance(spec, Degradation):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(None, f"empty degradation spec {spec!r}; {catalogue(DEGRADATIONS, 'degradation')}")
    stages = []
    for part in spec.split("+"):
        if not part.strip():
            raise InputError(None, f"empty stage in degradation spec {spec!r}")
        cls, values = parse_params(part, DEGRADATIONS, "degradation")
        stages.append(cls(**values))
    return stages[0] if len(stages) == 1 else Compose(stages)


__all__ = ["Degradation", "Compose", "Noise", "Blur", "Down", "Jpeg", "DEGRADATIONS",
           "parse_degradation", "gaussian_blur", "gaussian_kernel1d"]
