"""DOT's parameters round-trip: the constructor stores what it is given, ``resolved`` holds the canonical values.

``DOT(**dot.get_params())`` has the parameters of ``dot`` for every method and runtime setting of
the table, including values the table makes canonical (``None`` low-pass, upper-case names,
numpy integers, runtime dicts), and an operator file's parameters build the same DOT again.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dotrestore import DOT, Runtime, settings

#: A valid value per setting that its parser rewrites (or, where none is rewritten, a non-default one).
METHOD_VALUES = {
    "codec": "PIXEL ", "patch_size": np.int64(5), "lowpass_sigma": None, "split": " Guided+Clamp",
    "weighting": "GAUSSIAN", "shrinkage": "OAS", "eps": 1, "stochastic": "Always", "zero_shot": True,
    "mixture": np.int64(2), "max_patches": np.int64(64), "seed": np.int64(7),
}
RUNTIME_VALUES = {
    "device": "CPU", "dtype": torch.float32, "tile": "OFF", "tile_overlap": np.int64(32), "max_memory": "8GB",
    "batch_size": np.int64(2), "workers": np.int64(0), "max_pixels": None, "progress": False,
}


def _same(a, b) -> bool:
    """Equal and of the same type, element by element for dicts: what was given comes back unchanged."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_the_tables_here_cover_every_method_and_runtime_setting():
    assert set(METHOD_VALUES) == {"codec", *settings.METHOD} and set(RUNTIME_VALUES) == set(settings.RUNTIME)


@pytest.mark.parametrize("name", sorted(METHOD_VALUES))
def test_a_method_setting_is_kept_as_given_and_round_trips(name):
    value = METHOD_VALUES[name]
    dot = DOT(**{name: value}) if name != "zero_shot" else DOT(zero_shot=True)
    params = dot.get_params()
    assert params[name] is value and getattr(dot, name) is value
    assert getattr(dot.resolved, name) == settings.check(name, value)  # the canonical value, used by the method
    again = DOT(**params).get_params()
    assert all(_same(params[k], again[k]) for k in params), name


@pytest.mark.parametrize("name", sorted(RUNTIME_VALUES))
def test_a_runtime_setting_is_kept_as_given_and_round_trips(name):
    given = {name: RUNTIME_VALUES[name]}
    dot = DOT(runtime=given)
    assert dot.get_params()["runtime"] is given and DOT(**dot.get_params()).get_params()["runtime"] == given
    assert dot.resolved.runtime == Runtime(**given)
    assert getattr(dot.resolved.runtime, name) == settings.check(name, RUNTIME_VALUES[name])


def test_defaults_round_trip_and_a_changed_parameter_is_resolved_again():
    dot = DOT()
    assert all(_same(v, DOT(**dot.get_params()).get_params()[k]) for k, v in dot.get_params().items())
    dot.lowpass_sigma = None
    assert dot.resolved.lowpass_sigma == 0.0


def test_an_operator_files_parameters_build_the_same_dot(tmp_path):
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 24, 24, generator=generator) for _ in range(4)]
    dot = DOT(codec="pixel", lowpass_sigma=None, shrinkage="OAS", split="Gaussian", runtime={"progress": False})
    dot.fit(images[:2], images[2:]).save(tmp_path / "op.safetensors")
    loaded = DOT.load(tmp_path / "op.safetensors", runtime={"progress": False})
    params = loaded.get_params()
    assert params["lowpass_sigma"] == 0.0 and params["shrinkage"] == "oas"  # the file holds canonical values
    again = DOT(**params).get_params()
    assert all(_same(params[k], again[k]) for k in params)
    assert loaded.resolved == DOT(**params).resolved
