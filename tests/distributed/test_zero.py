"""ZeRO-1/2/3 over real MPI processes (2, 3 and 4 ranks, oversubscribed): equal to one process
training on all ranks' batches (float64, 1e-12), bitwise identical from run to run."""

import re
from pathlib import Path

import pytest

from tests import mpijob

WORKERS = Path(__file__).resolve().parent / "workers"


def run_mpi(n, script, *args, timeout=60):
    return mpijob.run(WORKERS / script, *args, n=n, timeout=timeout)


def check(job):
    return job.check()


pytestmark = mpijob.requires_mpi

STAGES = [1, 2, 3, 5]  # 5: ZeRO-1 with ddp= (reduce-scatter)


def digests(proc, n):
    check(proc)
    found = re.findall(r"OK \S+ ([0-9a-f]{64})", proc.stdout)
    assert len(found) == n, proc.stdout
    assert len(set(found)) == 1, "the ranks ended with different parameters"
    return found[0]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("ranks", [2, 3, 4])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_equal_to_single_process(stage, ranks, optimizer):
    digests(run_mpi(ranks, "zero_equivalence.py", stage, optimizer, timeout=120), ranks)


@pytest.mark.parametrize("stage", STAGES)
def test_bitwise_identical_run_to_run(stage):
    first = digests(run_mpi(3, "zero_equivalence.py", stage, "adam", timeout=120), 3)
    assert digests(run_mpi(3, "zero_equivalence.py", stage, "adam", timeout=120), 3) == first


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_hybrid_sharding_equal_to_single_process(optimizer):
    """A (2, 2) mesh: shard within each row, all-reduce across rows (HSDP, ZeRO-3)."""
    digests(run_mpi(4, "zero_equivalence.py", 4, optimizer, timeout=180), 4)
