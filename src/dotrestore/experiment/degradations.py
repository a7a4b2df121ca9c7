"""Synthetic degradations y = D(x) for experiments: noise, blur, downscaling, JPEG.

Specs are ``name:param=value[,param=value]`` (or ``name:value`` for the single parameter),
composed left to right with ``+``: ``noise:sigma=50+blur:sigma=1`` blurs the noisy image.
Every stage clips its output to [0, 1]. ``str(deg)`` gives the canonical spec back.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..io.images import quantize, resize_image
from ..ot.filters import MAX_SIGMA, gaussian_blur, gaussian_kernel1d  # noqa: F401  (re-exported)
from ..restorers.specs import BLUR_SIGMA, Param, SpecRegistry, format_value


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
    params = (BLUR_SIGMA,)

    def apply(self, x, generator):
        return gaussian_blur(x, self.sigma)


class Down(Degradation):
    """Downscale by an integer factor K to (H // K, W // K): antialiased bicubic (torch)."""

    name = "down"
    params = (Param("scale", int, lambda v: v >= 1, "≥ 1"),)

    def apply(self, x, generator):
        height, width = x.shape[-2:]
        if height < self.scale or width < self.scale:
            raise InputError(str(self), f"image {height}x{width} is smaller than the factor")
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


#: The named degradations, parsed from ``name:k=v`` specs by the shared :class:`SpecRegistry`.
DEGRADATIONS = SpecRegistry("degradation", (Noise, Blur, Down, Jpeg))


def parse_degradation(spec: str | Degradation) -> Degradation:
    """Build a degradation from a spec such as ``"noise:sigma=50+blur:sigma=1"``.

    Names: ``noise:sigma=S`` (S in 0-255 units), ``blur:sigma=S`` (pixels), ``down:scale=K``
    (integer), ``jpeg:quality=Q`` (1-100); ``name:value`` is shorthand for the single
    parameter. Bad specs raise InputError listing the valid names and parameters.
    """
    if isinstance(spec, Degradation):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("degradation spec", f"is empty ({spec!r}); {DEGRADATIONS.catalogue()}")
    stages = []
    for part in spec.split("+"):
        if not part.strip():
            raise InputError("degradation spec", f"empty stage in {spec!r}")
        stages.append(DEGRADATIONS.parse(part))
    return stages[0] if len(stages) == 1 else Compose(stages)


__all__ = ["Degradation", "Compose", "Noise", "Blur", "Down", "Jpeg", "DEGRADATIONS",
           "parse_degradation", "gaussian_blur", "gaussian_kernel1d"]
