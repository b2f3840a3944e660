"""Every example runs as a user would run it and reaches its stated result.

The examples run in quick mode (``DISTGRAD_EXAMPLE_QUICK=1``: a few steps) unless a test asks
for more, through ``tests/mpijob.py``; they import distgrad from wherever it is installed (an
editable install or a wheel), and the multi-process ones run on 2 real MPI ranks, under
``mpiexec`` or the installed launcher.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import mpijob
from tests.mpijob import MPIEXEC, requires_mpi

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

pytest.importorskip("sklearn", reason="examples need scikit-learn (the 'examples' extra)")
pytestmark = pytest.mark.multiprocess
QUICK = {
    "DISTGRAD_EXAMPLE_QUICK": "1",
    "PYTHONUNBUFFERED": "1",
    "DISTGRAD_COLLECTIVE_TIMEOUT": "60",
}


def run_example(name, *args, ranks=None, launcher="mpiexec", timeout=240):
    """Run ``examples/NAME`` (on ``ranks`` MPI ranks when given); return (stdout, stderr)."""
    if ranks is None:
        job = mpijob.run_python(EXAMPLES / name, *args, timeout=timeout, env=QUICK)
    else:
        job = mpijob.run(
            EXAMPLES / name, *args, n=ranks, launcher=launcher, timeout=timeout, env=QUICK
        )
    job.check()
    assert job.orphans == 0, job.describe()
    return job.stdout, job.stderr


def _number(pattern, text):
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return match.group(1)


@pytest.mark.parametrize(
    "name",
    [
        "tensors_and_autograd.py",
        "custom_layer.py",
        "custom_optimizer.py",
        "custom_function.py",
        "linear_regression.py",
    ],
)
def test_small_examples(name):
    run_example(name)


def test_multitask_shows_progress_and_reaches_its_accuracy():
    out, err = run_example("multitask.py")
    assert "test accuracy: digit" in out
    pytest.importorskip("tqdm")
    assert "train: 100%" in err and "25/25" in err, err[-2000:]


def test_mlp_digits_resumed_run_equals_straight_run(tmp_path):
    straight, _ = run_example("train_mlp_digits.py", "--epochs", 8, "--out", tmp_path / "a")
    first, _ = run_example(
        "train_mlp_digits.py", "--epochs", 8, "--out", tmp_path / "b", "--stop-after", 3
    )
    assert "stopped after epoch 3" in first and "test accuracy" not in first
    resumed, _ = run_example("train_mlp_digits.py", "--epochs", 8, "--out", tmp_path / "b")
    assert "at epoch 3" in resumed
    sha = r"parameters sha256 ([0-9a-f]+)"
    assert _number(sha, resumed) == _number(sha, straight)
    assert float(_number(r"test accuracy ([0-9.]+)", straight)) >= 0.93, straight
    assert (tmp_path / "b" / "loss.png").stat().st_size > 5000


def test_cnn_digits_learns_and_draws_its_curves(tmp_path):
    out, _ = run_example("train_cnn_digits.py", "--epochs", 8, "--out", tmp_path)
    assert float(_number(r"test accuracy ([0-9.]+) after 8 epochs", out)) >= 0.9, out
    assert "per digit: 0:" in out
    assert (tmp_path / "curves.png").stat().st_size > 5000
    assert (tmp_path / "model.safetensors").exists()


@requires_mpi
def test_main_demo_under_distgrad_run(tmp_path):
    out, _ = run_example(
        "train_data_parallel.py", "--epochs", 4, "--out", tmp_path, ranks=2, launcher="distgrad-run"
    )
    assert "2 rank(s), 719 samples" in out
    assert re.search(r"rank 0: host .*, pid \d+", out) and re.search(r"rank 1: host", out)
    assert float(_number(r"throughput: ([0-9,]+) samples/s", out).replace(",", "")) > 0
    assert re.search(r"overlap: .* in \d+ bucket\(s\).* ran during backward", out), out
    assert float(_number(r"test accuracy ([0-9.]+) after 4 epochs", out)) >= 0.9, out
    assert (tmp_path / "curves.png").stat().st_size > 5000
    assert (tmp_path / "checkpoint.safetensors").exists()


@requires_mpi
def test_resumable_training_killed_and_rerun_is_bit_exact(tmp_path):
    args = ["--epochs", 3, "--save-every", 10]
    straight, _ = run_example("train_resumable.py", *args, "--out", tmp_path / "a", ranks=2)

    # The interrupted run is started here rather than through mpijob, which waits for the end:
    # its output is read as it comes, and the whole job is SIGKILLed after its second
    # checkpoint. Its processes are tagged as mpijob's are, to find any left behind.
    out = tmp_path / "b"
    command = [str(MPIEXEC), "-n", "2", sys.executable, str(EXAMPLES / "train_resumable.py")]
    command += [*map(str, args), "--out", str(out)]
    tag = mpijob.new_tag()
    with tempfile.TemporaryDirectory(prefix="distgrad-job-") as scratch:
        env = mpijob.job_env(tag, Path(scratch), **QUICK)
        job = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        seen = []
        for line in job.stdout:
            seen.append(line)
            if "checkpoint saved at step 20" in line:
                os.killpg(job.pid, signal.SIGKILL)
                break
        job.wait(timeout=60)
        job.stdout.close()
        # Counted (and killed) before the scratch directory goes: a rank still exiting could
        # otherwise write into it again after its removal.
        left_behind = mpijob.orphans(tag)
    assert job.returncode == -signal.SIGKILL, "".join(seen)
    assert left_behind == 0, "the killed job left processes behind"

    resumed, _ = run_example("train_resumable.py", *args, "--out", out, ranks=2)
    step = int(_number(r"resumed from .*: step (\d+)", resumed))
    assert 20 <= step < 69, resumed  # it really was interrupted, and resumed past step 0
    sha = r"parameters sha256 ([0-9a-f]+)"
    assert _number(sha, resumed) == _number(sha, straight)
    assert (out / "loss.png").stat().st_size > 5000


@requires_mpi
def test_char_lm_trains_on_two_ranks_and_samples(tmp_path):
    out, _ = run_example("train_char_lm.py", "--out", tmp_path, ranks=2)
    assert "characters of Python" in out and "2 rank(s) x 16 windows" in out
    samples = re.findall(r"--- step (\d+), held-out ([0-9.]+) bits/char ---\n(.+)", out)
    assert [int(s[0]) for s in samples] == [6, 12], out
    assert all(s[2].startswith("def ") for s in samples)
    final = float(_number(r"held-out ([0-9.]+) bits per character after 12 steps", out))
    assert final < 6.0  # below a uniform guess over the vocabulary (log2(96) = 6.6 bits)
    assert (tmp_path / "loss.png").stat().st_size > 5000
    assert (tmp_path / "model.safetensors").exists()
