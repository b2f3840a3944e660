"""examples/train_data_parallel.py trains on 2 ranks and in one process."""

import re

import pytest

import distgrad

from .mpi_helpers import ROOT, check, requires_mpi, run_mpi, run_python

pytest.importorskip("sklearn", reason="the example needs scikit-learn (the 'examples' extra)")
EXAMPLE = ROOT / "examples" / "train_data_parallel.py"


def assert_trained(out, path):
    assert len(re.findall(r"test accuracy", out)) == 1, out  # rank 0 only
    assert float(re.search(r"test accuracy ([0-9.]+)", out).group(1)) >= 0.95, out
    state = distgrad.load(str(path / "checkpoint.safetensors"))
    assert state["epoch"] == 12 and "0.weight" in state["model"]


@requires_mpi
def test_two_ranks(tmp_path):
    out = check(run_mpi(2, EXAMPLE, "--epochs", "12", "--out", tmp_path, timeout=120)).stdout
    assert "2 rank(s), 719 samples" in out
    assert_trained(out, tmp_path)


def test_one_process(tmp_path):
    out = check(run_python(EXAMPLE, "--epochs", "12", "--out", tmp_path, timeout=120)).stdout
    assert "1 rank(s), 1438 samples" in out
    assert_trained(out, tmp_path)
