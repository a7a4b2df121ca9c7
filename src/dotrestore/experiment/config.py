"""Configuration of one α-sweep experiment: defaults, YAML files, validation.

Precedence: dataclass defaults < values in ``--config FILE.yaml`` < command-line flags.
The resolved configuration is written next to the results (``config.yaml``) so a run can be
repeated with ``dotrestore experiment --config OUT/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import InputError
from ..io.files import atomic_write
from ..io.images import DEFAULT_MAX_PIXELS, check_max_pixels
from ..runtime.devices import parse_device
from ..ot.filters import MAX_SIGMA
from ..ot.gaussian import parse_shrinkage
from ..ot.patches import MAX_PATCH_SIZE

#: The α values of the seed's experiment (Adrai et al. 2023): extrapolation on both sides of [0, 1].
DEFAULT_ALPHAS: tuple[float, ...] = (-0.7, -0.5, -0.3, 0.0, 0.3, 0.5, 0.7, 1.0, 1.3, 1.5)


@dataclass
class ExperimentConfig:
    """Everything that defines an experiment; field names equal the CLI flags (``-`` → ``_``).

    Data: ``clean`` (folder of clean images) and either ``restored`` (folder of the user's
    restored images, paired with ``clean`` by file stem) or ``degrade`` + ``restorer`` specs.
    Split: the first ``fit_source`` images give the source (restored) statistics; with
    ``paired=False`` the next ``fit_target`` clean images give the target statistics, with
    ``paired=True`` the clean versions of the first ``fit_target`` images do. Test images are
    the remaining ones, or every image of ``test_clean`` when given.
    """

    clean: str | None = None
    restored: str | None = None
    degrade: str | None = None
    restorer: str | None = None
    test_clean: str | None = None
    vae: str = "auto"
    fit_source: int = 10
    fit_target: int = 10
    paired: bool = False
    alphas: list[float] = field(default_factory=lambda: list(DEFAULT_ALPHAS))
    seed: int = 0
    crop: int | None = None
    resize: int | None = None
    save_outputs: bool = False
    out: str = "dotrestore-experiment"
    overwrite: bool = False
    patch_size: int = 3
    lowpass_sigma: float = 4.0
    shrinkage: str | float | None = None
    device: str | None = None
    tile: str | int = "auto"
    tile_overlap: int | None = None
    dtype: str = "float32"
    max_memory: str | int | None = None
    collages: int = 4
    progress: bool = True
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    variants: list[str] | None = None
    workers: int | None = None
    batch_size: int = 1

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | Path | None = None) -> "ExperimentConfig":
        """Build from a mapping (YAML keys may use ``-`` or ``_``); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        clean_values: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name == "unpaired":  # the CLI's --unpaired is the negation of paired
                name, value = "paired", not value
            if name not in names:
                raise InputError(source, f"unknown configuration key {key!r}; known keys: {', '.join(sorted(names))}")
            clean_values[name] = value
        config = cls(**clean_values)
        config.validate(source)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ExperimentConfig":
        """Read a configuration written by hand or by a previous run (``config.yaml``)."""
        return cls.from_dict(read_yaml(path), source=path)

    def updated(self, **overrides: Any) -> "ExperimentConfig":
        """A copy with the given fields replaced (``None`` values are ignored), validated."""
        values = self.to_dict()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return type(self).from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (YAML/JSON safe), in field order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_yaml(self, path: str | Path) -> None:
        atomic_write(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    # ------------------------------------------------------------------ validation
    def validate(self, source: str | Path | None = None) -> "ExperimentConfig":
        """Check types and combinations; raises InputError naming the option and the problem.

        Only cheap checks live here (no file is opened); the runner checks the files.
        """
        where = source

        def fail(problem: str) -> None:
            raise InputError(where, problem)

        if not self.clean:
            fail("--clean DIR is required (a folder of clean images)")
        for name in ("clean", "restored", "degrade", "restorer", "test_clean", "vae", "out", "device"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, Path)):
                fail(f"--{_flag(name)} must be a string, got {value!r}")
            if isinstance(value, Path):
                setattr(self, name, str(value))
        if self.restored and (self.degrade or self.restorer):
            fail("give either --restored DIR or --degrade SPEC --restorer SPEC, not both")
        if not self.restored and not (self.degrade and self.restorer):
            fail("the restored images are needed: give --restored DIR, or both --degrade SPEC and --restorer SPEC")
        for name in ("fit_source", "fit_target", "seed", "patch_size", "collages"):
            self._check_int(name, fail)
        if self.fit_source < 1 or self.fit_target < 1:
            fail("--fit-source and --fit-target must be at least 1")
        if self.seed < 0:
            fail("--seed must be a non-negative integer")
        if not 1 <= self.patch_size <= MAX_PATCH_SIZE or self.patch_size % 2 == 0:
            fail(f"--patch-size must be an odd integer from 1 to {MAX_PATCH_SIZE}, got {self.patch_size}")
        if self.collages < 0:
            fail("--collages must be 0 or more")
        for name in ("crop", "resize"):
            if getattr(self, name) is not None:
                self._check_int(name, fail)
                if getattr(self, name) < 8:
                    fail(f"--{name} must be at least 8 pixels, got {getattr(self, name)}")
        if self.crop is not None and self.resize is not None:
            fail("give --crop N or --resize N, not both")
        for name in ("paired", "save_outputs", "overwrite", "progress"):
            if not isinstance(getattr(self, name), bool):
                fail(f"--{_flag(name)} must be true or false, got {getattr(self, name)!r}")
        self.alphas = self._checked_alphas(fail)
        if self.variants is not None:
            names = self.variants.replace(",", " ").split() if isinstance(self.variants, str) else self.variants
            if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
                fail(f"--variants must be a list of names (whole, detail, mix<K>), got {self.variants!r}")
            self.variants = [n.strip().lower() for n in names]
        if self.workers is not None:
            self._check_int("workers", fail)
            if self.workers < 0:
                fail(f"--workers must be 0 or more, got {self.workers}")
        self._check_int("batch_size", fail)
        if self.batch_size < 1:
            fail(f"--batch-size must be at least 1, got {self.batch_size}")
        sigma = self.lowpass_sigma
        if sigma is None:
            sigma = 0.0
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma <= MAX_SIGMA:
            fail(f"--lowpass-sigma must be a number in [0, {MAX_SIGMA:g}] (pixels; 0 transports whole images), "
                 f"got {sigma!r}")
        self.lowpass_sigma = float(sigma)
        self._check_codec_options(fail)
        try:
            self.shrinkage = parse_shrinkage(self.shrinkage)
        except ValueError as exc:
            fail(f"--{exc}")
        try:
            self.max_pixels = check_max_pixels(self.max_pixels)
        except ValueError:
            fail(f"--max-pixels must be a positive integer (or null: no limit), got {self.max_pixels!r}")
        if self.device is not None:
            try:
                parse_device(self.device)
            except ValueError as exc:
                fail(f"--device: {exc}")
        return self

    def _check_codec_options(self, fail) -> None:
        from ..codecs import tiling

        for name, parse in (("tile", tiling.parse_tile), ("tile_overlap", tiling.parse_overlap),
                            ("dtype", tiling.parse_dtype), ("max_memory", tiling.parse_memory)):
            try:
                parse(getattr(self, name))
            except ValueError as exc:
                fail(f"--{_flag(name)}: {exc}")
        if tiling.parse_dtype(self.dtype) != tiling.DTYPES["float32"]:
            import torch

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            if not str(device).startswith("cuda"):
                fail(f"--dtype {self.dtype} needs a CUDA device (the codec would run on {device}); use float32")

    def _check_int(self, name: str, fail) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                setattr(self, name, int(value))
                return
            fail(f"--{_flag(name)} must be an integer, got {value!r}")

    def _checked_alphas(self, fail) -> list[float]:
        alphas = self.alphas
        if isinstance(alphas, (int, float)) and not isinstance(alphas, bool):
            alphas = [alphas]
        if isinstance(alphas, str):
            alphas = alphas.replace(",", " ").split()
        if not isinstance(alphas, (list, tuple)) or not alphas:
            fail(f"--alphas must be a non-empty list of numbers, got {self.alphas!r}")
        result: list[float] = []
        for a in alphas:
            try:
                value = float(a)
            except (TypeError, ValueError):
                fail(f"--alphas: {a!r} is not a number")
            if not math.isfinite(value):
                fail(f"--alphas: {a!r} is not finite")
            if value not in result:
                result.append(value)
        return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping raises InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "configuration file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(path, "a configuration file must hold a mapping of option: value")
    return values


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
