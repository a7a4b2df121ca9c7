"""Specs ``name:k=v,...`` for degradations and restorers: parameters, and the one registry/parser."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import InputError
from ..ot.filters import MAX_SIGMA

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


#: σ of a Gaussian blur in pixels: the blur degradation's and the Gaussian-blur restorer's parameter
BLUR_SIGMA = Param("sigma", float, lambda v: 0 < v <= MAX_SIGMA, f"in (0, {MAX_SIGMA:g}], in pixels")


def format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class SpecRegistry(Mapping):
    """Named classes built from ``name[:k=v,...]`` specs; each class has ``name`` and ``params``.

    The one spec parser of dotrestore: degradations and restorers are both registries.
    Parsing errors are InputErrors about the ``<what> spec`` listing the valid names and parameters.
    """

    def __init__(self, what: str, classes=()):
        self.what = what
        self._classes: dict[str, type] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type) -> type:
        """Add ``cls`` under ``cls.name`` (usable as a class decorator)."""
        self._classes[cls.name] = cls
        return cls

    def __getitem__(self, name: str) -> type:
        return self._classes[name]

    def __iter__(self):
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def catalogue(self) -> str:
        """Human-readable list of valid names and parameters, for error messages."""
        entries = [name + (":" + ",".join(p.describe() for p in cls.params) if cls.params else "")
                   for name, cls in self._classes.items()]
        return f"valid {self.what}s: " + "; ".join(entries)

    def parse(self, part: str):
        """The instance a spec such as ``noise:sigma=50`` (or ``noise:50``) describes."""
        cls, values = self.parse_values(part)
        return cls(**values)

    def parse_values(self, part: str):
        """(class, {param: value}) of a spec, every value checked against its :class:`Param`."""
        what, table = self.what, self
        name, _, rest = part.strip().partition(":")
        name = name.strip().lower()
        if name not in table:
            raise InputError(f"{what} spec", f"unknown {what} {name!r} in {part!r}; {self.catalogue()}")
        cls = table[name]
        params = cls.params
        by_name = {p.name: p for p in params}
        given: dict[str, str] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:  # positional shorthand, e.g. noise:50
                if len(params) != 1 or given:
                    raise InputError(f"{what} spec", f"{what} {name!r}: write parameters as key=value in {part!r}; "
                                     f"{self.catalogue()}")
                key, value = params[0].name, item
            key = key.strip().lower()
            if key not in by_name:
                raise InputError(f"{what} spec", f"{what} {name!r} has no parameter {key!r}; {self.catalogue()}")
            if key in given:
                raise InputError(f"{what} spec", f"{what} {name!r}: parameter {key!r} given twice in {part!r}")
            given[key] = value.strip()
        values = {}
        for param in params:
            if param.name not in given:
                if param.default is _REQUIRED:
                    raise InputError(f"{what} spec", f"{what} {name!r} needs {param.describe()} in {part!r}; {self.catalogue()}")
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
                raise InputError(f"{what} spec", f"{what} {name!r}: {param.name}={text!r} is invalid, "
                                 f"expected {param.kind.__name__} {param.rule}")
            values[param.name] = number
        return cls, values


__all__ = ["Param", "SpecRegistry", "format_value"]
