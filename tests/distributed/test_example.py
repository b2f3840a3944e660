"""examples/train_data_parallel.py trains on 2 ranks and in one process."""

import re

import pytest

import distgrad
from tests import mpijob
from tests.mpijob import ROOT, requires_mpi

pytest.importorskip("sklearn", reason="the example needs scikit-learn (the 'examples' extra)")
EXAMPLE = ROOT / "examples" / "train_data_parallel.py"
pytestmark = pytest.mark.multiprocess


def assert_trained(out, path):
    assert len(re.findall(r"test accuracy", out)) == 1, out  # rank 0 only
    assert float(re.search(r"test accuracy ([0-9.]+)", out).group(1)) >= 0.95, out
    state = distgrad.load(str(path / "checkpoint.safetensors"))
    assert state["epoch"] == 12 and "0.weight" in state["model"]


@requires_mpi
def test_two_ranks(tmp_path):
    out = mpijob.run(EXAMPLE, "--epochs", "12", "--out", tmp_path, n=2, timeout=120).check().stdout
    assert "2 rank(s), 719 samples" in out
    assert_trained(out, tmp_path)


def test_one_process(tmp_path):
    out = (
        mpijob.run_python(EXAMPLE, "--epochs", "12", "--out", tmp_path, timeout=120).check().stdout
    )
    assert "1 rank(s), 1438 samples" in out
    assert_trained(out, tmp_path)
