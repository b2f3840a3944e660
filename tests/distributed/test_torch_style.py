"""Programs written for torch.distributed run unchanged: a torchrun-style script (LOCAL_RANK,
RANK, WORLD_SIZE, init_process_group, destroy_process_group) under distgrad-run, and an
mp.spawn-style script through distgrad.multiprocessing.spawn; both train to the parameters
of one process doing the same work (1e-12, float64), and a failing spawned rank fails the
parent's spawn call."""

import sys
from pathlib import Path

import pytest

from tests import mpijob
from tests.mpijob import DISTGRAD_RUN, requires_mpi

WORKERS = Path(__file__).resolve().parent / "workers"
pytestmark = [requires_mpi, pytest.mark.multiprocess]


@pytest.mark.parametrize("n", [2, 3])
def test_torchrun_style_script_under_distgrad_run(n):
    job = mpijob.run_command(
        [DISTGRAD_RUN, "-np", n, "--oversubscribe", sys.executable, WORKERS / "torchrun_style.py"],
        timeout=120,
    ).check()
    for r in range(n):
        assert f"rank {r} of {n}: trained" in job.stdout, job.describe()
    assert job.orphans == 0


def test_mp_spawn_style_script():
    job = mpijob.run_command([sys.executable, WORKERS / "spawn_style.py", 3], timeout=120).check()
    for r in range(3):
        assert f"rank {r} of 3: trained" in job.stdout, job.describe()
    assert "spawn done" in job.stdout and job.orphans == 0


def test_mp_spawn_failing_rank_raises_in_parent():
    job = mpijob.run_command([sys.executable, WORKERS / "spawn_style.py", 2, "fail"], timeout=120)
    assert job.returncode == 5 and job.orphans == 0, job.describe()
    assert "spawn failed: exit code 1" in job.stdout
    assert "[rank 1] RuntimeError: worker 1 gives up" in job.stderr
