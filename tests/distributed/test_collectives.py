"""Collectives over real MPI processes (the checks run inside the ranks, see
``workers/collectives_in_ranks.py``), in a world of one, and the pieces that need no MPI
(local communicator, launcher cross-checks)."""

from pathlib import Path

import numpy as np
import pytest

from distgrad.distributed import LocalCommunicator, ReduceOp
from distgrad.distributed.env import cross_check, launcher_claims
from tests import mpijob
from tests.mpijob import requires_mpi

WORKERS = Path(__file__).resolve().parent / "workers"


@requires_mpi
@pytest.mark.multiprocess
@pytest.mark.parametrize("n", [2, 3])
def test_collectives_in_ranks(n):
    proc = mpijob.run(
        WORKERS / "collectives_in_ranks.py",
        "-q",
        "-p",
        "no:cacheprovider",
        n=n,
        python_args=("-m", "pytest", "--with-mpi"),
        timeout=90,
    ).check()
    assert proc.stdout.count(" passed") == n


@requires_mpi
@pytest.mark.multiprocess
def test_world_of_one_without_launcher():
    assert (
        "single process ok mpi" in mpijob.run_python(WORKERS / "single_process.py").check().stdout
    )


@requires_mpi
@pytest.mark.multiprocess
def test_bad_timeout_variable():
    proc = mpijob.run_python(
        WORKERS / "single_process.py", env={"DISTGRAD_COLLECTIVE_TIMEOUT": "soon"}
    )
    assert proc.failed, proc.describe()
    assert "DISTGRAD_COLLECTIVE_TIMEOUT='soon' is not a positive number of seconds" in proc.stderr


@requires_mpi
@pytest.mark.multiprocess
def test_foreign_launcher_singleton_is_a_clear_error():
    proc = mpijob.run_python(
        WORKERS / "single_process.py",
        env={"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"},
    )
    assert proc.failed, proc.describe()
    assert "OMPI_COMM_WORLD_SIZE=2" in proc.stderr
    assert "does not belong to the MPI library" in proc.stderr


def test_local_communicator():
    comm = LocalCommunicator()
    a = np.arange(4.0)
    work = comm.allreduce(a, ReduceOp.AVG)
    assert work.is_completed() and work.wait()
    np.testing.assert_array_equal(a, np.arange(4.0))
    out = np.empty((1, 4))
    comm.allgather(a, out).wait()
    np.testing.assert_array_equal(out[0], a)
    assert comm.allgather_object({"x": 1}) == [{"x": 1}]
    assert comm.broadcast_object([3], root=0) == [3]
    assert comm.seq == 6  # one each for allreduce and allgather, two per object collective
    with pytest.raises(ValueError, match="root 1"):
        comm.broadcast(a, root=1)


def test_local_communicator_writes_non_contiguous_outputs():
    comm = LocalCommunicator()
    a = np.arange(6.0)
    for gathered in (lambda out: comm.allgather(a, out), lambda out: comm.gather(a, out, 0)):
        out = np.zeros((3, 4))[:, ::2].T  # a non-contiguous (2, 3) view
        gathered(out).wait()
        np.testing.assert_array_equal(out.reshape(-1), a)


def test_local_communicator_root_needs_its_buffer():
    """A root's rank-major buffer given as None is named (it was an AttributeError)."""
    comm = LocalCommunicator()
    with pytest.raises(ValueError, match=r"gather: the root \(rank 0\) needs a recv buffer"):
        comm.gather(np.ones(2), None, 0)
    with pytest.raises(ValueError, match=r"scatter: the root \(rank 0\) needs a send buffer"):
        comm.scatter(None, np.ones(2), 0)
    assert comm.seq == 0  # nothing was started


def test_avg_accepts_bfloat16():
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    LocalCommunicator().allreduce(np.ones(3, bf16), ReduceOp.AVG).wait()


def test_launcher_claims():
    env = {
        "PMI_RANK": "1",
        "PMI_SIZE": "2",
        "MPI_LOCALRANKID": "1",
        "MPI_LOCALNRANKS": "2",
        "DISTGRAD_LOCAL_RANK": "1",
        "SLURM_PROCID": "0",
        "SLURM_STEP_ID": "3",
    }
    claims = {(c[0], c[1]): c[3] for c in launcher_claims(env)}
    assert claims[("MPICH", "world size")] == 2
    assert claims[("distgrad-run", "local rank")] == 1
    assert not any(launcher == "Slurm" for launcher, _ in claims)  # mpiexec started us
    slurm = launcher_claims(
        {
            "SLURM_PROCID": "3",
            "SLURM_STEP_ID": "0",
            "SLURM_LOCALID": "1",
            "SLURM_STEP_NUM_TASKS": "4",
        }
    )
    assert ("Slurm", "rank", "SLURM_PROCID", 3) in slurm
    assert launcher_claims({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) == []  # sbatch script


def test_cross_check():
    env = {
        "OMPI_COMM_WORLD_RANK": "1",
        "OMPI_COMM_WORLD_SIZE": "2",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "DISTGRAD_LOCAL_RANK": "0",
    }
    problems = cross_check(1, 2, 1, 2, env)
    assert problems == ["distgrad-run says local rank 0 (DISTGRAD_LOCAL_RANK) but MPI says 1"]
    with pytest.raises(RuntimeError, match="OMPI_COMM_WORLD_SIZE=2 says Open MPI started 2"):
        cross_check(0, 1, 0, 1, env, mpi_library="MPICH 5")
    assert cross_check(0, 1, 0, 1, {}) == []
