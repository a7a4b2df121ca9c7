"""The value parsers of the settings table: what a user wrote → one canonical value.

Each parser takes a Python value, a YAML value or the text of a command-line flag and returns
the canonical value, or raises ``ValueError`` saying what is accepted (its ``rule``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable

import torch

from ..errors import SettingError
from ..ot.filters import MAX_SIGMA
from ..ot.gaussian import parse_shrinkage
from ..ot.tradeoff import ALPHA_LIMIT, as_alpha_map

#: Largest patch side: D = C·p² grows fast, and the D×D covariances with it.
MAX_PATCH_SIZE = 15
#: Largest K of a Gaussian mixture (EM on K full D×D covariances per role).
MAX_MIXTURE = 64
STOCHASTIC = ("auto", "never", "always")
INTERPOLATIONS = ("pixel", "latent")
#: ``--dtype auto``: the codec picks its precision per device (:mod:`dotrestore.codecs.precision`)
AUTO = "auto"
#: the codec's concrete compute precisions (the codecs' own table must match: tests/test_architecture.py)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_ALPHAS = (-0.7, -0.5, -0.3, 0.0, 0.3, 0.5, 0.7, 1.0, 1.3, 1.5)


# ---------------------------------------------------------------------- value parsers
def _number(value, kind: type) -> float | int:
    """A real or an integer from a Python number or its text ("4", "1e8", "100_000_000")."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = float(text) if kind is float else (int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text))
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"a number is expected, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"a finite number is expected, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise ValueError(f"a whole number is expected, got {value!r}")
        return int(value)
    return float(value)


def integer(low: int | None = None, high: int | None = None, optional: bool = False, odd: bool = False):
    """Parser of an integer in [low, high] (None when ``optional``)."""
    span = (f"from {low} to {high}" if high is not None else f">= {low}") if low is not None else ""
    rule = f"{'an odd' if odd else 'an'} integer {span}".strip() + (" (or none)" if optional else "")

    def parse(value):
        if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))):
            return None
        try:
            number = _number(value, int)
        except ValueError as exc:
            raise ValueError(f"must be {rule}: {exc}") from None
        if (low is not None and number < low) or (high is not None and number > high) or (odd and number % 2 == 0):
            raise ValueError(f"must be {rule}, got {value!r}")
        return number
    parse.rule = rule
    return parse


def real(low: float, high: float | None = None, low_open: bool = False):
    """Parser of a finite real number in [low, high] ((low, high] when ``low_open``)."""
    rule = f"a finite number {'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")

    def parse(value):
        try:
            number = _number(value, float)
        except ValueError as exc:
            raise ValueError(f"must be {rule}: {exc}") from None
        if number < low or (low_open and number == low) or (high is not None and number > high):
            raise ValueError(f"must be {rule}, got {value!r}")
        return number
    parse.rule = rule
    return parse


def choice(options) -> Callable:
    options = tuple(options)

    def parse(value):
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in options:
            raise ValueError(f"must be one of {', '.join(map(str, options))}, got {value!r}")
        return text
    parse.rule = "one of " + ", ".join(map(str, options))
    parse.options = options
    return parse


def boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ValueError(f"must be true or false, got {value!r}")


def optional_text(value) -> str | None:
    if value is None:
        return None
    if hasattr(value, "__fspath__"):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def lowpass_sigma(value) -> float:
    """σ of the detail split in pixels; 0 (or None) means whole images."""
    return 0.0 if value is None else real(0.0, MAX_SIGMA)(value)


def shrinkage(value):
    try:
        return parse_shrinkage(value)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("shrinkage ")) from None


def alpha(value) -> float:
    """α of x̂α = (1 − α)·x̂0 + α·x*: a finite number with |α| <= ALPHA_LIMIT."""
    return real(-ALPHA_LIMIT, ALPHA_LIMIT)(value)


def check_alpha(value, shape):
    """α as a checked number, or an α map as a float64 (B, 1, H, W) tensor for images of ``shape``.

    A tensor of one or more dimensions is a per-pixel map (:func:`~dotrestore.ot.tradeoff.as_alpha_map`);
    every value must be finite and within ``ALPHA_LIMIT``, as a single α. SettingError
    (``alpha``) otherwise.
    """
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return _checked_alpha(float(value) if isinstance(value, torch.Tensor) else value)
    try:
        a = as_alpha_map(value, shape)
    except (TypeError, ValueError) as exc:
        raise SettingError("alpha", str(exc)) from None
    if float(a.abs().max()) > ALPHA_LIMIT:
        raise SettingError("alpha", f"an α map's values must be within ±{ALPHA_LIMIT:g}")
    return a


def _checked_alpha(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingError("alpha", f"must be {alpha.rule}, got {value!r} ({type(value).__name__})")
    try:
        return alpha(value)
    except ValueError as exc:
        raise SettingError("alpha", str(exc)) from None


def alpha_range(value) -> tuple[float, float]:
    """(α of black, α of white) of an α map, from a pair or the text "LO,HI"."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"must be two numbers LO,HI (the alpha of black and of white), got {value!r}")
    return (alpha(value[0]), alpha(value[1]))


def alphas(value) -> list[float]:
    """A non-empty list of α (a list, or text "0 0.5, 1"); duplicates dropped, order kept."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"must be a non-empty list of numbers, got {value!r}")
    return list(dict.fromkeys(alpha(a) for a in value))


#: The DOT configurations ``dotrestore experiment`` compares by default (``whole`` alone when
#: ``lowpass_sigma`` is 0), and ``dotrestore demo``'s: our detail transport alone.
DEFAULT_VARIANTS = ("detail", "whole")
DEMO_VARIANTS = ("detail",)


def variants(value):
    """Variant names as given (checked against the low-pass by the experiment's configuration)."""
    return value


def device(value) -> str | None:
    """A device this machine really has: cpu, cuda, cuda:N (N < visible GPUs), mps; None = CUDA when available."""
    if value is None:
        return None
    text = str(value).strip().lower() if isinstance(value, (str, torch.device)) else None
    if text is None:
        raise ValueError(f"must be a device name such as cpu or cuda, got {type(value).__name__}")
    names = available_devices()
    hint = f"available here: {', '.join(names)}"
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match and not torch.cuda.is_available():
        raise ValueError(f"{value!r}: CUDA is not available on this machine; {hint}")
    if match and match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise ValueError(f"{value!r}: there is no GPU {match.group(1)} ({torch.cuda.device_count()} visible); {hint}")
    if text not in names and not match:
        raise ValueError(f"unknown or unavailable device {value!r}; {hint}")
    return text


def available_devices() -> list[str]:
    """Names of the devices usable here, e.g. ``['cpu', 'cuda', 'cuda:0']``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def tile(value) -> str | int:
    """``"auto"``, ``"off"`` or a tile side in pixels (>= 16)."""
    if value is None:
        return "auto"
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()
    try:
        return integer(16)(value)
    except ValueError:
        raise ValueError(f"must be auto, off or a tile side of at least 16 pixels, got {value!r}") from None


def dtype(value) -> str:
    """The codec's compute precision, by name: auto (the default; see :mod:`dotrestore.codecs.precision`) or a dtype."""
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    return choice((AUTO, *DTYPES))(AUTO if value is None else value)


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2,
          "g": 1e9, "gb": 1e9, "gib": 1024**3, "t": 1e12, "tb": 1e12, "tib": 1024**4}


def memory(value) -> int | None:
    """Bytes from ``"8GB"``, ``"512MiB"``, ``"2.5g"`` or a number of bytes; None stays None."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(f"must be a size such as 8GB, 512MiB or a number of bytes, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number) or int(number * _UNITS[unit]) <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return int(number * _UNITS[unit])


def codec_spec(value):
    """A codec spec (text) or a :class:`~dotrestore.codecs.Codec` instance, kept as it is."""
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        return optional_text(value)
    if hasattr(value, "encode") and hasattr(value, "decode") and hasattr(value, "latent_channels"):
        return value
    raise ValueError(f"must be a codec spec (text) or a Codec, got {type(value).__name__}")


# what each parser accepts, in words (error messages and the operator-file schema say it)
_RULES = ((lowpass_sigma, f"a number in [0, {MAX_SIGMA:g}] (pixels; 0 = whole images)"),
          (shrinkage, "none, 'oas' or a number in [0, 1]"), (boolean, "true or false"),
          (optional_text, "a non-empty string"), (alpha, f"a finite number in [-{ALPHA_LIMIT:g}, {ALPHA_LIMIT:g}]"),
          (alphas, "a non-empty list of numbers"), (alpha_range, "two numbers LO,HI"),
          (device, "a device of this machine (cpu, cuda, cuda:N, mps)"),
          (tile, "auto, off or a tile side of at least 16 pixels"), (dtype, "auto, float32, bfloat16 or float16"),
          (memory, "a size such as 8GB or 512MiB"), (codec_spec, "a codec spec or a Codec"),
          (variants, "a list of whole, detail, mix<K>"))
for _parser, _rule in _RULES:
    _parser.rule = _rule

