"""DOT's parameters as the caller gave them, and the values the method runs with.

The constructor of :class:`~dotrestore.DOT` stores its arguments untouched (scikit-learn's
convention), so ``DOT(**dot.get_params())`` has the same parameters as ``dot``: ``None``
stays ``None``, ``"OAS"`` stays ``"OAS"``, a runtime dict stays that dict. What the method
reads is :class:`Resolved`: every value checked and made canonical by the settings table
(``lowpass_sigma=None`` is 0.0, a runtime dict is a :class:`~dotrestore.runtime.Runtime`).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import settings
from .errors import SettingError

#: The constructor's parameters, in order: the codec, the method's settings and the runtime.
PARAMS = ("codec", *settings.METHOD, "runtime")


@dataclass(frozen=True)
class Resolved:
    """The canonical value of every parameter (see :data:`dotrestore.settings.SETTINGS`)."""

    codec: object
    patch_size: int
    lowpass_sigma: float
    split: str
    weighting: str
    shrinkage: None | str | float
    eps: float
    stochastic: str
    zero_shot: bool
    mixture: int
    max_patches: int
    seed: int
    runtime: object  #: a :class:`~dotrestore.runtime.Runtime`


def resolve(given: dict, runtime) -> Resolved:
    """Check the parameters ``given`` (a SettingError names the first bad one); their canonical values.

    ``runtime`` is ``given["runtime"]`` made a :class:`~dotrestore.runtime.Runtime` by the caller
    (this module sits below the runtime: it only reads the table).
    """
    values = {name: settings.check(name, given[name]) for name in PARAMS if name != "runtime"}
    if values["mixture"] > 1 and values["zero_shot"]:
        raise SettingError("mixture", "a mixture needs fitted source statistics: it cannot be zero-shot")
    if values["max_patches"] < 2 * values["mixture"]:
        raise SettingError("max_patches", f"must be at least 2 * mixture = {2 * values['mixture']}, "
                           f"got {values['max_patches']}")
    return Resolved(**values, runtime=runtime)


__all__ = ["PARAMS", "Resolved", "resolve"]
