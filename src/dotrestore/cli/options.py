"""Command-line options made from the settings table: flag, type, default and help in one place.

Every value is checked when the arguments are parsed (argparse exits with status 2 naming the
flag) by the same ``parse`` the Python API uses (:data:`dotrestore.settings.SETTINGS`).
"""

from __future__ import annotations

import argparse

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


__all__ = ["setting_type", "add", "add_runtime", "runtime", "RUNTIME_OPTIONS"]
