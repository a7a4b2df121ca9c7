"""The typed fitted state: both roles round-trip, the schema names the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dotrestore import DOT
from dotrestore.errors import OperatorFileError
from dotrestore.state import FittedState, validate

from support import write_images


# ---------------------------------------------------------------------- helpers
def test_state_round_trip_keeps_both_roles_shrinkage(tmp_path):
    rng = np.random.default_rng(3)
    smooth = [torch.from_numpy(np.kron(rng.random((3, 6, 7)), np.ones((1, 4, 4)))).float() for _ in range(2)]
    tgt = write_images(tmp_path / "t", 2, seed=4)
    dot = DOT(codec="pixel", shrinkage="oas", lowpass_sigma=None).fit(smooth, tgt)
    used = dot.shrinkage_used_
    assert set(used) == {"source", "target"} and used["source"] != used["target"]
    tensors, meta = dot.state_.state_dict()
    again = FittedState.from_state_dict(tensors, meta)
    assert torch.equal(again.operator, dot.operator_) and again.source.n_patches == dot.n_source_patches_
    dot.save(tmp_path / "op.safetensors")
    assert DOT.load(tmp_path / "op.safetensors").shrinkage_used_ == used
    with pytest.raises(AttributeError):
        dot.operator_ = None  # read-only view of state_


def test_validate_names_the_file():
    with pytest.raises(OperatorFileError, match="x.safetensors.*format_version"):
        validate({"format_version": "2"}, {}, "x.safetensors")


