"""``import distgrad`` under a plain MPI launch (distgrad/_launched.py): BLAS threads per rank
when ranks x threads would exceed the cores, and nothing at all in a plain python."""

import os
import subprocess
import sys

import pytest

from distgrad._launched import THREAD_VARS, limit_threads
from tests.mpijob import MPIEXEC, requires_mpi


@pytest.mark.parametrize(
    "environ, cores, expected",
    [
        ({"MPI_LOCALNRANKS": "4"}, 16, "4"),  # MPICH hydra: 4 ranks share 16 cores
        ({"OMPI_COMM_WORLD_LOCAL_SIZE": "3"}, 2, "1"),  # never 0
        ({"MPI_LOCALNRANKS": "1"}, 16, None),  # alone on the node: BLAS may take them all
        ({"MPI_LOCALNRANKS": "4", "OMP_NUM_THREADS": "2"}, 16, None),  # the user chose
        ({}, 16, None),  # no launcher
    ],
)
def test_limit_threads(environ, cores, expected, monkeypatch):
    monkeypatch.delitem(sys.modules, "numpy", raising=False)  # (as before numpy is imported)
    env = dict(environ)
    result = limit_threads(env, cpu_count=cores, warn=False)
    assert result == (None if expected is None else int(expected))
    for name in THREAD_VARS:
        assert env.get(name) == (expected if expected else environ.get(name))


def test_too_late_after_numpy(monkeypatch):
    env = {"MPI_LOCALNRANKS": "4"}
    assert limit_threads(env, cpu_count=16, warn=False) is None and "OMP_NUM_THREADS" not in env


@requires_mpi
@pytest.mark.multiprocess
def test_plain_mpiexec_ranks_get_their_share_of_the_cores():
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    # one write per rank: print's separate writes of unbuffered ranks can interleave
    code = "import os, sys, distgrad; sys.stdout.write(f\"threads {os.environ.get('OMP_NUM_THREADS')}\\n\")"
    out = subprocess.run(
        [str(MPIEXEC), "-n", "2", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    cores = len(os.sched_getaffinity(0))
    assert out.stdout.count(f"threads {max(1, cores // 2)}") == 2, out.stdout
