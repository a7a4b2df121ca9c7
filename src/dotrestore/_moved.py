"""Modules that moved when the package was laid out by layer; their old import paths keep working.

``import dotrestore.gaussian`` (and ``from dotrestore.gaussian import ...``) gives the module
that now lives at ``dotrestore.ot.gaussian``, with a DeprecationWarning naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module -> new module
MOVED = {
    "dotrestore.gaussian": "dotrestore.ot.gaussian",
    "dotrestore.mixture": "dotrestore.ot.mixture",
    "dotrestore.patches": "dotrestore.ot.patches",
    "dotrestore.detail": "dotrestore.ot.split",
    "dotrestore.filters": "dotrestore.ot.filters",
    "dotrestore.perception": "dotrestore.metrics.perception",
    "dotrestore.fileio": "dotrestore.io.files",
    "dotrestore.guard": "dotrestore.io.guard",
    "dotrestore.data.io": "dotrestore.io.images",
    "dotrestore.devices": "dotrestore.runtime.devices",
    "dotrestore.parallel": "dotrestore.runtime.parallel",
    "dotrestore.pipeline": "dotrestore.runtime.pipeline",
}


class _Loader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        warnings.warn(f"{name} moved to {MOVED[name]}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(name, _Loader(MOVED[name]))


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
