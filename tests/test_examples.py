"""Every example runs as a user would run it and reaches its stated result.

The examples run in quick mode (``DISTGRAD_EXAMPLE_QUICK=1``: a few steps) unless a test asks
for more; they import distgrad from wherever it is installed (an editable install or a wheel),
and the multi-process ones run on 2 real MPI ranks, under the installed ``distgrad-run`` or
the ``mpiexec`` next to the Python.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.distributed.mpi_helpers import MPIEXEC, requires_mpi

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DISTGRAD_RUN = Path(sys.executable).parent / "distgrad-run"

pytest.importorskip("sklearn", reason="examples need scikit-learn (the 'examples' extra)")


def example_env(**extra):
    env = dict(os.environ, DISTGRAD_EXAMPLE_QUICK="1", PYTHONUNBUFFERED="1")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)  # the examples choose (examples/common.py)
    env.setdefault("DISTGRAD_COLLECTIVE_TIMEOUT", "60")
    env.update(extra)
    return env


def run_example(name, *args, ranks=None, timeout=240, **env):
    """Run ``examples/NAME`` (on ``ranks`` MPI ranks when given); return stdout + stderr."""
    command = [sys.executable, str(EXAMPLES / name), *map(str, args)]
    if ranks is not None:
        command = [str(MPIEXEC), "-n", str(ranks), *command]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=example_env(**env)
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout, proc.stderr


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
    if not DISTGRAD_RUN.exists():
        pytest.skip("distgrad-run is not installed next to this Python")
    proc = subprocess.run(
        [str(DISTGRAD_RUN), "-np", "2", sys.executable, str(EXAMPLES / "train_data_parallel.py")]
        + ["--epochs", "4", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=example_env(),
    )
    out = proc.stdout
    assert proc.returncode == 0, f"{out}\n{proc.stderr}"
    assert "2 rank(s), 719 samples" in out
    assert re.search(r"rank 0: host .*, pid \d+", out) and re.search(r"rank 1: host", out)
    assert float(_number(r"throughput: ([0-9,]+) samples/s", out).replace(",", "")) > 0
    assert re.search(r"overlap: .* in \d+ bucket\(s\).* ran during backward", out), out
    assert float(_number(r"test accuracy ([0-9.]+) after 4 epochs", out)) >= 0.9, out
    assert (tmp_path / "curves.png").stat().st_size > 5000
    assert (tmp_path / "checkpoint.safetensors").exists()


def _processes_mentioning(text):
    """PIDs of processes whose command line contains ``text`` (orphans of a killed job)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@requires_mpi
def test_resumable_training_killed_and_rerun_is_bit_exact(tmp_path):
    args = ["--epochs", 3, "--save-every", 10]
    straight, _ = run_example("train_resumable.py", *args, "--out", tmp_path / "a", ranks=2)

    out = tmp_path / "b"
    command = [str(MPIEXEC), "-n", "2", sys.executable, str(EXAMPLES / "train_resumable.py")]
    command += [*map(str, args), "--out", str(out)]
    job = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=example_env(),
        start_new_session=True,
    )
    seen = []
    for line in job.stdout:  # kill the whole job right after its second checkpoint
        seen.append(line)
        if "checkpoint saved at step 20" in line:
            os.killpg(job.pid, signal.SIGKILL)
            break
    job.wait(timeout=60)
    job.stdout.close()
    assert job.returncode == -signal.SIGKILL, "".join(seen)
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_mentioning(str(out)), "the killed job left processes behind"

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
