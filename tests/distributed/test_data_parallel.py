"""DataParallel and SyncBatchNorm over real MPI processes: equivalence with one process on the
concatenated batch (float64, 1e-12), overlap of communication with backward, and faults."""

import time

import pytest

from .mpi_helpers import check, requires_mpi, run_mpi

pytestmark = [requires_mpi, pytest.mark.multiprocess]


def assert_ok(proc, n):
    check(proc)
    assert proc.stdout.count("OK") == n, proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("caps", "1e-9"),
        ("caps", "25"),
        ("caps", "1e4"),
        ("adam",),
        ("no_sync",),
        ("unused",),
        ("syncbn",),
    ],
    ids=[
        "cap-one-param-per-bucket",
        "cap-default",
        "cap-one-bucket",
        "adam",
        "no_sync",
        "unused",
        "syncbn",
    ],
)
def test_equivalent_to_single_process(args):
    assert_ok(run_mpi(2, "dp_equivalence.py", *args), 2)


@pytest.mark.parametrize("scenario", ["unused", "syncbn"])
def test_equivalent_on_odd_world(scenario):
    assert_ok(run_mpi(3, "dp_equivalence.py", scenario, "1e-9"), 3)


def test_buckets_launch_during_backward():
    assert_ok(run_mpi(2, "dp_overlap.py"), 2)


@pytest.mark.parametrize(
    "mode, expected",
    [
        (
            "shape",
            "parameter 'fc.weight' has shape [3, 4] (float32) on rank 0 but [5, 4] (float32) "
            "on rank 1",
        ),
        ("count", "rank 0 has 4 parameters but rank 1 has 6 (rank 1 also has 'more.weight' [2, 3]"),
    ],
)
def test_model_mismatch_raises_on_every_rank(mode, expected):
    out = check(run_mpi(2, "dp_faults.py", mode)).stdout
    for rank in (0, 1):
        assert f"rank {rank} raised: DataParallel: the ranks do not hold the same model" in out
    assert out.count(expected) == 2, out


def test_rank_failing_mid_backward_takes_job_down():
    start = time.monotonic()
    proc = run_mpi(2, "dp_faults.py", "backward", timeout=60)
    assert proc.returncode != 0
    assert "[rank 1] RuntimeError: backward failed on purpose" in proc.stderr
    assert "finished" not in proc.stdout
    assert time.monotonic() - start < 15


def test_module_api_and_buffer_broadcast():
    assert_ok(run_mpi(2, "dp_api.py"), 2)
