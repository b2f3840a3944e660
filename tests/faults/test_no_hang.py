"""Issue 13: under a plain ``mpiexec -n 2`` (no distgrad-run), a rank that raises before
``init``, calls ``sys.exit(3)`` mid-training or is stopped (SIGSTOP) ends the whole job
non-zero with the rank named and nothing left running; a rank that skips a backward, runs out
of data or issues an extra collective makes every rank raise the named desync error (default
settings)."""

import pytest

from tests import mpijob
from tests.mpijob import requires_mpi

from .faultlib import DEADLINE_S, REPS, WORKERS

pytestmark = [requires_mpi, pytest.mark.multiprocess]


def _record(fault_record, name, rep, job, guard, deadline=None):
    fault_record(
        name,
        rep,
        detection_s=job.detection_s,
        deadline_s=deadline,
        guard=guard,
        orphans=job.orphans,
    )


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.mpi_shm_left(
    "a plain mpiexec has no supervisor: rank 0 is killed inside MPI_Init, after MPICH made its "
    "/dev/shm file and before distgrad could unlink it (distgrad-run removes it: next test)"
)
def test_raise_before_init_plain_mpiexec(rep, fault_record):
    job = mpijob.run(WORKERS / "nohang.py", "raise_before_init", timeout=60)
    _record(
        fault_record, "13 raise before init, plain mpiexec", rep, job, "import hook + PMI abort"
    )
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert "[rank 1] RuntimeError: rank 1 fails before init" in job.stderr, job.describe()
    assert "[rank 1] uncaught exception: aborting all 2 ranks" in job.stderr


@pytest.mark.parametrize("rep", range(REPS))
def test_raise_before_init_under_distgrad_run(rep, fault_record):
    """The same under distgrad-run: it names the rank, and removes the MPI shared-memory file
    the rank killed in MPI_Init left (the fixture checks the job's private /dev/shm)."""
    job = mpijob.run(WORKERS / "nohang.py", "raise_before_init", launcher="distgrad-run")
    _record(fault_record, "13 raise before init, distgrad-run", rep, job, "wrapper + PMI abort")
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert "[rank 1] RuntimeError: rank 1 fails before init" in job.stderr, job.describe()
    assert "the job failed with exit status" in job.stderr, job.describe()
    assert "rank 1 raised an uncaught exception" in job.stderr, job.describe()
    if job.shm_left is not None:
        assert not [name for name in job.shm_left if name.startswith("mpich_shm_")], job.shm_left


@pytest.mark.parametrize("rep", range(REPS))
def test_sys_exit_mid_training_plain_mpiexec(rep, fault_record):
    job = mpijob.run(WORKERS / "nohang.py", "exit_mid", timeout=60)
    _record(
        fault_record, "13 sys.exit(3) mid-training, plain mpiexec", rep, job, "exit fingerprint"
    )
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert "rank 1: nothing: it has finished (exit status 3)" in job.stderr, job.describe()
    assert "[rank 0] distgrad.distributed.desync.CollectiveDesyncError" in job.stderr


@pytest.mark.parametrize("rep", range(REPS))
def test_sigstop_plain_mpiexec(rep, fault_record):
    job = mpijob.run(
        WORKERS / "nohang.py",
        "sigstop",
        timeout=60,
        env={"DISTGRAD_COLLECTIVE_TIMEOUT": DEADLINE_S},
    )
    _record(fault_record, "13 SIGSTOP, plain mpiexec", rep, job, "deadline + watchdog", DEADLINE_S)
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert "[rank 0] distgrad.distributed.communicator.CollectiveTimeoutError" in job.stderr
    assert "collective #11 allreduce" in job.stderr
    assert "rank(s) 1 did not answer" in job.stderr.split("verdict:")[-1], job.describe()


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("mode", ["skip_backward", "out_of_data", "extra_collective"])
def test_desync_named_on_every_rank(mode, rep, fault_record):
    job = mpijob.run(WORKERS / "nohang.py", mode, timeout=60)
    _record(fault_record, f"13 desync: {mode.replace('_', ' ')}", rep, job, "desync fingerprint")
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert "[rank 1] desync on WORLD: the ranks issued different collectives" in job.stderr
    assert "CollectiveDesyncError: [rank 0] desync on WORLD" in job.stderr
    assert "rank 1: nothing: it has finished (exit status 0)" in job.stderr


@pytest.mark.parametrize("rep", range(REPS))
def test_groups_created_in_a_different_order(rep, fault_record):
    job = mpijob.run(WORKERS / "group_order.py", n=3, timeout=60)
    _record(fault_record, "13 groups created in a different order", rep, job, "new_group check")
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert "new_group mismatch" in job.stderr, job.describe()
    assert "is in its new_group call #1 for ranks [1, 2], but rank 2 is in its call #2" in (
        job.stderr
    ) or "is in its new_group call #2 for ranks [1, 2], but rank 1 is in its call #1" in (
        job.stderr
    ), job.describe()


@pytest.mark.parametrize("rep", range(REPS))
def test_monitored_barrier_names_absent_ranks(rep, fault_record):
    job = mpijob.run(WORKERS / "monitored.py", n=3, timeout=60)
    _record(fault_record, "13 monitored_barrier, a rank absent", rep, job, "monitored_barrier", 2)
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert "monitored_barrier: rank(s) [2] did not reach the barrier within 2 s" in job.stderr
    assert "passed the barrier" not in job.stdout
