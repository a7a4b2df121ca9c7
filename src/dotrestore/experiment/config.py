"""Configuration of one α-sweep experiment: defaults, YAML files, validation.

Precedence: the settings table's defaults < values in ``--config FILE.yaml`` < command-line
flags. Every field is a setting of :data:`dotrestore.settings.SETTINGS` (``vae`` is the codec
setting, spelled as its flag): its default, type and range live there; this module adds only
the checks that combine fields. The resolved configuration is written next to the results
(``config.yaml``) so a run can be repeated with ``dotrestore experiment --config OUT/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import settings
from ..codecs.precision import check_precision
from ..errors import InputError, SettingError
from ..io.files import atomic_write, open_regular

#: The α values of Adrai et al. (2023): extrapolation on both sides of [0, 1].
DEFAULT_ALPHAS: tuple[float, ...] = settings.DEFAULT_ALPHAS
_MIX = re.compile(r"mix([1-9][0-9]*)$")


def _default(name: str):
    value = settings.SETTINGS[name].default
    return field(default_factory=lambda: list(value)) if isinstance(value, list) else field(default=value)


def _setting(name: str) -> str:
    """The table's name of a configuration field."""
    return "codec" if name == "vae" else name


@dataclass
class ExperimentConfig:
    """Everything that defines an experiment; field names equal the CLI flags (``-`` → ``_``).

    Data: ``clean`` (folder of clean images) and either ``restored`` (folder of the user's
    restored images, paired with ``clean`` by file stem) or ``degrade`` + ``restorer`` specs.
    Split: the first ``fit_source`` images give the source (restored) statistics; with
    ``paired=False`` the next ``fit_target`` clean images give the target statistics, with
    ``paired=True`` the clean versions of the first ``fit_target`` images do. Test images are
    the remaining ones, or every image of ``test_clean`` when given. ``variants`` are the DOT
    configurations compared: ``detail`` (``lowpass_sigma``, ``split``), ``whole`` (the paper)
    and ``mix<K>``; by default the configured transport first, then whole images.
    """

    clean: str | None = _default("clean")
    restored: str | None = _default("restored")
    degrade: str | None = _default("degrade")
    restorer: str | None = _default("restorer")
    test_clean: str | None = _default("test_clean")
    vae: str = _default("codec")
    fit_source: int = _default("fit_source")
    fit_target: int = _default("fit_target")
    paired: bool = _default("paired")
    alphas: list[float] = _default("alphas")
    seed: int = _default("seed")
    crop: int | None = _default("crop")
    resize: int | None = _default("resize")
    save_outputs: bool = _default("save_outputs")
    out: str = _default("out")
    overwrite: bool = _default("overwrite")
    patch_size: int = _default("patch_size")
    lowpass_sigma: float = _default("lowpass_sigma")
    split: str = _default("split")
    shrinkage: str | float | None = _default("shrinkage")
    device: str | None = _default("device")
    tile: str | int = _default("tile")
    tile_overlap: int | None = _default("tile_overlap")
    dtype: str = _default("dtype")
    max_memory: int | None = _default("max_memory")
    collages: int = _default("collages")
    progress: bool = _default("progress")
    max_pixels: int | None = _default("max_pixels")
    variants: list[str] | None = _default("variants")
    workers: int | None = _default("workers")
    batch_size: int = _default("batch_size")

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | Path | None = None,
                  flags: frozenset[str] = frozenset()) -> ExperimentConfig:
        """Build from a mapping (YAML keys may use ``-`` or ``_``); unknown keys are an error.

        Errors name ``source`` (a configuration file) and the key, or the flag for the fields
        given on the command line (``flags``) and when there is no file.
        """
        names = set(cls.field_names())
        clean_values: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name == "unpaired":  # the CLI's --unpaired is the negation of paired
                name, value = "paired", not value
            if name not in names:
                raise InputError(source or "configuration", f"unknown configuration key {key!r}; known keys: "
                                 f"{', '.join(sorted(names))}")
            clean_values[name] = value
        config = cls(**clean_values)
        config.validate(source, flags=flags)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        """Read a configuration written by hand or by a previous run (``config.yaml``)."""
        return cls.from_dict(read_yaml(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (YAML/JSON safe), in field order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_yaml(self, path: str | Path) -> None:
        atomic_write(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    def runtime(self):
        """The :class:`~dotrestore.runtime.Runtime` of this experiment."""
        from ..runtime import Runtime

        return Runtime(**{name: getattr(self, name) for name in settings.RUNTIME})

    # ------------------------------------------------------------------ validation
    def validate(self, source: str | Path | None = None, flags: frozenset[str] = frozenset()) -> ExperimentConfig:
        """Check every field against the settings table and the combinations of fields.

        Raises a SettingError naming the field (as ``FILE: key`` or ``--flag``) and the problem.
        Only cheap checks live here (no file is opened); the runner checks the files.
        """
        def subject(name: str) -> str:
            return f"{source}: {name}" if source is not None and name not in flags else settings.SETTINGS[
                _setting(name)].option

        for name in self.field_names():
            setattr(self, name, settings.check(_setting(name), getattr(self, name), subject(name)))

        def fail(name: str, problem: str):
            raise SettingError(subject(name), problem)

        if not self.clean:
            fail("clean", "is required (a folder of clean images)")
        if self.restored and (self.degrade or self.restorer):
            fail("restored", "give either --restored DIR or --degrade SPEC --restorer SPEC, not both")
        if not self.restored and not (self.degrade and self.restorer):
            fail("restorer", "the restored images are needed: give --restored DIR, or both --degrade SPEC and "
                 "--restorer SPEC")
        if self.crop is not None and self.resize is not None:
            fail("resize", "give --crop N or --resize N, not both")
        for name in ("resize", "crop"):  # an image of side N has at least N² pixels: refused before any work
            side = getattr(self, name)
            if side is not None and self.max_pixels is not None and side * side > self.max_pixels:
                fail(name, f"{side} makes images of at least {side}x{side} = {side * side:,} pixels, over the "
                     f"limit of {self.max_pixels:,} (lower it, or raise --max-pixels)")
        try:
            check_precision(self.dtype, self.device)
        except SettingError as exc:
            fail("dtype", exc.problem)
        self.variants = self._checked_variants(fail)
        return self

    def _checked_variants(self, fail) -> list[str] | None:
        if self.variants is None:
            return None
        names = self.variants.replace(",", " ").split() if isinstance(self.variants, str) else self.variants
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            fail("variants", f"must be a list of names (whole, detail, mix<K>), got {self.variants!r}")
        names = list(dict.fromkeys(n.strip().lower() for n in names))
        for name in names:
            if name not in ("whole", "detail") and not _MIX.fullmatch(name):
                fail("variants", f"unknown variant {name!r}; known: whole, detail, mix<K> (e.g. mix4)")
            if name != "whole" and not self.lowpass_sigma:
                fail("variants", f"{name} transports details, which needs --lowpass-sigma > 0 "
                     "(0 transports whole images: use --variants whole)")
        return names


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping raises InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "configuration file not found")
    try:
        with open_regular(path) as handle:  # a FIFO is refused, not waited on
            values = yaml.safe_load(handle.read().decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"not valid YAML: {first}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(path, "a configuration file must hold a mapping of option: value")
    return values


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
