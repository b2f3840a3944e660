"""BLAS threads: the examples use one per process unless told otherwise; ``distgrad-run``
counts the CPUs a process may really use (affinity, cgroup quota), not the host's."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from distgrad.launcher.rank_main import usable_cpus

pytestmark = pytest.mark.multiprocess  # starts processes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads_in_example(**env):
    """The thread count numpy's BLAS reports in a process that imported examples/common.py."""
    pytest.importorskip("threadpoolctl")
    code = (
        f"import sys; sys.path.insert(0, {str(EXAMPLES)!r}); import common, numpy; "
        "from threadpoolctl import threadpool_info; "
        "print([p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'][0])"
    )
    environment = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    environment.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_examples_default_to_one_blas_thread():
    assert blas_threads_in_example() == 1


def test_examples_keep_a_thread_count_that_is_set():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs to see 2 threads")
    assert blas_threads_in_example(OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2") == 2


def test_usable_cpus_follows_the_affinity_mask():
    assert usable_cpus() <= len(os.sched_getaffinity(0))
    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed")
    code = "from distgrad.launcher.rank_main import usable_cpus; print(usable_cpus())"
    first = sorted(os.sched_getaffinity(0))[0]
    out = subprocess.run(
        ["taskset", "-c", str(first), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
