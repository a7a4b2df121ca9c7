"""Command-line options made from the settings table: flag, type, default and help in one place.

Every value is checked when the arguments are parsed (argparse exits with status 2 naming the
flag) by the same ``parse`` the Python API uses (:data:`dotrestore.settings.SETTINGS`).
"""

from __future__ import annotations

import argparse
import re

from .. import settings
from ..runtime import Runtime

#: the runtime options every working command takes
RUNTIME_OPTIONS = ("device", "dtype", "tile", "tile_overlap", "max_memory", "batch_size", "workers", "max_pixels")


def setting_type(name: str):
    """An argparse ``type`` that parses with the setting's own parser."""
    setting = settings.SETTINGS[name]

    def parse(text: str):
        try:
            return setting.parse(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        return f"{value:,}"
    return str(value)


def add(parser, name: str, *, table_default: bool = True, help: str | None = None, **kwargs) -> None:
    """Add the setting ``name`` as its flag. ``table_default=False`` leaves the parsed default None
    (so a configuration file can fill it) while the help still shows the table's default."""
    setting = settings.SETTINGS[name]
    text = help or setting.help
    if setting.default is not None and not isinstance(setting.default, bool) and "default" not in text:
        text += f" (default: {_shown(setting.default)})"
    if setting.parse is settings.boolean:
        parser.add_argument(setting.option, dest=name, action="store_true",
                            default=setting.default if table_default else None, help=text)
        return
    options = getattr(setting.parse, "options", None)
    kwargs.setdefault("metavar", setting.metavar or ("{" + ",".join(options) + "}" if options else None))
    kwargs.setdefault("type", setting_type(name))
    parser.add_argument(setting.option, dest=name, default=settings.default(name) if table_default else None,
                        help=text, **kwargs)


class _AlphaList(argparse.Action):
    """Every α flag adds to one list: ``--alpha 0 --alpha 0.5``, ``--alpha 0,0.5``, ``--alphas 0 0.5``."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        for text in values if isinstance(values, list) else [values]:
            try:
                items.extend(settings.SETTINGS["alphas"].parse(text))
            except (ValueError, TypeError) as exc:
                raise argparse.ArgumentError(self, f"{exc}") from None
        setattr(namespace, self.dest, list(dict.fromkeys(items)))


#: what the parser takes for a negative number (a value, not a flag): ``-0.5``, ``-.5``, ``-0.5,0``
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def add_alpha_list(parser, dest: str, help: str) -> None:
    """``--alpha A`` (repeatable; ``A`` may be a comma-separated list) and ``--alphas A [A ...]``,
    both adding to ``args.<dest>`` (None when neither is given)."""
    parser.add_argument("--alpha", dest=dest, action=_AlphaList, default=None, metavar="A",
                        help=f"{help}; repeat it or separate values by commas: --alpha 0 --alpha 0.5 = --alpha 0,0.5")
    parser.add_argument("--alphas", dest=dest, action=_AlphaList, nargs="+", default=None, metavar="A",
                        help="several alphas at once: --alphas 0 0.5 (the same list as --alpha)")
    # argparse takes "-0.5,0" for an unknown flag; every token starting "-<digit>" is a value here
    parser._negative_number_matcher = _NEGATIVE_VALUE


def add_runtime(parser, names=RUNTIME_OPTIONS, table_default: bool = True) -> None:
    for name in names:
        add(parser, name, table_default=table_default)
    if "no_progress" not in {a.dest for a in parser._actions}:
        parser.add_argument("--no-progress", dest="progress", action="store_false",
                            default=True if table_default else None, help="hide progress bars")


def runtime(args) -> Runtime:
    """The Runtime the parsed arguments describe (fields not given keep their defaults)."""
    values = {name: getattr(args, name) for name in (*RUNTIME_OPTIONS, "progress") if getattr(args, name, None) is not None}
    return Runtime(**values)


__all__ = ["setting_type", "add", "add_alpha_list", "add_runtime", "runtime", "RUNTIME_OPTIONS"]
