"""Every example runs (as a user would run it) and reaches its stated result."""

import os
import re

import pytest

from tests import mpijob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

pytest.importorskip("sklearn", reason="examples need scikit-learn (the 'examples' extra)")
pytestmark = pytest.mark.multiprocess


def run_example(name, *args, timeout=120):
    return mpijob.run_python(os.path.join(EXAMPLES, name), *args, timeout=timeout).check().stdout


@pytest.mark.parametrize(
    "name",
    [
        "tensors_and_autograd.py",
        "custom_layer.py",
        "custom_optimizer.py",
        "custom_function.py",
        "linear_regression.py",
        "multitask.py",
    ],
)
def test_small_examples(name):
    run_example(name)


def _accuracy(out):
    return float(re.search(r"test accuracy ([0-9.]+)", out).group(1))


def test_mlp_digits_reaches_97_percent_and_resumes(tmp_path):
    out = run_example(
        "train_mlp_digits.py", "--epochs", "20", "--out", str(tmp_path), "--no-progress"
    )
    assert (tmp_path / "checkpoint.safetensors").exists()
    out = run_example(
        "train_mlp_digits.py",
        "--epochs",
        "30",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--resume",
        str(tmp_path / "checkpoint.safetensors"),
    )
    assert "resumed from" in out and "at epoch 20" in out
    assert _accuracy(out) >= 0.97, out
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_cnn_digits_trains():
    out = run_example("train_cnn_digits.py", "--epochs", "12")
    assert _accuracy(out) >= 0.96, out
