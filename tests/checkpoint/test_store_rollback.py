"""The checkpoint pointer cannot roll back silently: a ``LATEST`` naming an older checkpoint
than the newest committed one, or checkpoint directories swapped, are refused (or, with
``fallback=True``, the newest committed valid checkpoint is loaded with a warning)."""

import json
import os

import numpy as np
import pytest

import distgrad
from distgrad import checkpoint
from distgrad.checkpoint import CheckpointError


def _saved(root):
    distgrad.manual_seed(0)
    model = distgrad.nn.Linear(3, 2)
    values = {}
    for step in (1, 2, 3):
        with distgrad.no_grad():
            model.weight.add_(1.0)
        values[step] = model.weight.detach().numpy().copy()
        checkpoint.save(str(root), model=model, step=step, keep=3)
    return model, values


def _pointer(root):
    return json.loads((root / "LATEST").read_text())


def test_pointer_renamed_with_sequence_kept_is_refused(tmp_path):
    model, _ = _saved(tmp_path)
    pointer = _pointer(tmp_path)
    pointer["checkpoint"] = "ckpt-000000002"
    (tmp_path / "LATEST").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="pointer was edited"):
        checkpoint.load(str(tmp_path), model=model)


def test_pointer_rolled_back_whole_is_refused_or_falls_forward(tmp_path):
    model, values = _saved(tmp_path)
    (tmp_path / "LATEST").write_text(
        json.dumps({"checkpoint": "ckpt-000000001", "sequence": 1, "step": 1})
    )
    before = model.weight.detach().numpy().copy()
    with pytest.raises(CheckpointError, match=r"ckpt-000000003.*committed after it"):
        checkpoint.load(str(tmp_path), model=model)
    np.testing.assert_array_equal(model.weight.detach().numpy(), before)
    with pytest.warns(RuntimeWarning, match="rolled back"):
        state = checkpoint.load(str(tmp_path), model=model, fallback=True)
    assert state.step == 3
    np.testing.assert_array_equal(model.weight.detach().numpy(), values[3])


def test_swapped_directories_are_refused(tmp_path):
    model, _ = _saved(tmp_path)
    a, b = tmp_path / "ckpt-000000002", tmp_path / "ckpt-000000003"
    os.rename(a, tmp_path / "x")
    os.rename(b, a)
    os.rename(tmp_path / "x", b)
    with pytest.raises(CheckpointError, match="renamed or swapped"):
        checkpoint.load(str(tmp_path), model=model)


def test_uncommitted_newer_checkpoint_is_not_a_rollback(tmp_path):
    """A crash after the rename but before the pointer (no COMMITTED marker): LATEST's
    checkpoint loads, as before."""
    model, values = _saved(tmp_path)
    os.unlink(tmp_path / "ckpt-000000003" / "COMMITTED")
    (tmp_path / "LATEST").write_text(
        json.dumps({"checkpoint": "ckpt-000000002", "sequence": 2, "step": 2})
    )
    assert checkpoint.load(str(tmp_path), model=model).step == 2
    np.testing.assert_array_equal(model.weight.detach().numpy(), values[2])
