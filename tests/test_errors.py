"""The one error policy: a user's mistake names its subject (exit 2); a bug is one line asking for a report (exit 1)."""

from __future__ import annotations

import pytest
import torch

from dotrestore.cli import main
from dotrestore.errors import InputError


# ---------------------------------------------------------------------- helpers
def test_library_internals_raise_value_errors_not_input_errors():
    from dotrestore.ot.gaussian import Moments
    from dotrestore.ot.patches import extract_patches

    for call in (lambda: Moments(3).update(torch.zeros(2, 2)), lambda: extract_patches(torch.zeros(3, 3), 3)):
        with pytest.raises(ValueError) as info:
            call()
        assert not isinstance(info.value, InputError)


def test_internal_error_is_one_line_exit_1_and_debug_shows_it(files, capsys, monkeypatch):
    _, _, op = files

    def boom(args):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr("dotrestore.cli.info.run", boom)
    code = main(["info", str(op)])
    err = capsys.readouterr().err
    assert code == 1 and "internal error" in err and "please report" in err and "--debug" in err
    assert "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(RuntimeError):
        main(["--debug", "info", str(op)])


def _with_func(parser, command, func):
    for action in parser._subparsers._group_actions:
        action.choices[command].set_defaults(func=func)
    return parser


