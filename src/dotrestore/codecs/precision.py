"""The codec's compute precision: which one runs where, and why.

``--dtype auto`` (the default) resolves per device:

- on a CPU with native bfloat16 arithmetic (x86: AMX-BF16 tiles or AVX-512 BF16, as on Intel
  Xeons since Cooper Lake / Sapphire Rapids; Arm: the BF16 extension) the codec runs under
  bfloat16 autocast: oneDNN's bf16 convolutions there cost about a third of float32's, and the
  outputs stay within ~50 dB of float32's;
- on any other CPU float32: without native support bf16 is emulated and runs several times
  slower than float32;
- on CUDA float32: no measurement of ``benchmarks/dtype.py`` on a GPU is on record yet, so
  reduced precision stays something a user asks for (``--dtype bfloat16``).

Only the codec's networks run in reduced precision (``torch.autocast``; its weights stay
float32). Statistics are float64 sums, the operator and the transport float32, the blend
float32, whatever ``dtype`` is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import SettingError

logger = logging.getLogger(__name__)

#: concrete compute precisions (``auto`` resolves to one of them)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTO = "auto"
#: the CPU capabilities (``torch.cpu.get_capabilities()``) that mean native bfloat16 arithmetic
NATIVE_BF16_FEATURES = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")
_warned: set[str] = set()


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX-BF16, AVX-512 BF16, or Arm's BF16 extension).

    Asked of ``torch.cpu.get_capabilities()`` (cpuinfo, the detection PyTorch's own kernels
    dispatch on); a torch without that function is taken to have no native support.
    """
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return False
    found = capabilities()
    return any(bool(found.get(name, False)) for name in NATIVE_BF16_FEATURES)


def _device_type(where) -> str:
    if where is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(where).type


def _name(precision) -> str:
    if isinstance(precision, torch.dtype):
        precision = str(precision).removeprefix("torch.")
    return AUTO if precision is None else str(precision)


@dataclass(frozen=True)
class Precision:
    """The precision the codec computes in on one device (``name``), and why (``reason``)."""

    name: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def resolve_precision(precision, where) -> Precision:
    """The concrete precision of ``precision`` ("auto" or a name) on device ``where``, with the reason."""
    name, kind = _name(precision), _device_type(where)
    if name != AUTO:
        native = kind != "cpu" or name == "float32" or cpu_native_bf16()
        return Precision(name, f"asked for: --dtype {name}" + ("" if native else "; this CPU emulates it, slowly"))
    if kind == "cpu" and cpu_native_bf16():
        return Precision("bfloat16", "--dtype auto: this CPU computes bfloat16 natively (AMX-BF16 or AVX-512 BF16)")
    if kind == "cpu":
        return Precision("float32", "--dtype auto: this CPU has no native bfloat16 (no AMX-BF16 or AVX-512 BF16)")
    return Precision("float32", f"--dtype auto: float32 on {kind} (no reduced-precision measurement on record)")


def check_precision(precision, where) -> None:
    """SettingError (``dtype``) for a precision the device cannot run; one warning for a slow one.

    float16 needs a CUDA device (CPUs only emulate it). bfloat16 runs on CUDA and on any CPU;
    on a CPU without native bf16 it is emulated, several times slower than float32, which is
    said once per process (a warning line), not refused.
    """
    name, kind = _name(precision), _device_type(where)
    if name == AUTO or name == "float32":
        return
    if kind == "cuda":
        return
    if name == "float16" or kind != "cpu":
        raise SettingError("dtype", f"{name} needs a CUDA device{'' if name == 'float16' else ' or a CPU'} "
                           f"(the codec would run on {where or kind}); use float32 or auto")
    if not cpu_native_bf16() and "cpu" not in _warned:
        _warned.add("cpu")
        logger.warning("--dtype bfloat16: this CPU has no native bfloat16 (no AMX-BF16 or AVX-512 BF16), so it is "
                       "emulated and runs several times slower than float32 (--dtype auto picks float32 here)")


__all__ = ["DTYPES", "AUTO", "Precision", "cpu_native_bf16", "resolve_precision", "check_precision"]
