"""Failures take the whole job down promptly, with the failing rank's traceback."""

import time

import pytest

from tests import mpijob

from .faultlib import WORKERS

pytestmark = [mpijob.requires_mpi, pytest.mark.multiprocess]


def run_fault(mode, python_args=()):
    start = time.monotonic()
    proc = mpijob.run(WORKERS / "abort.py", mode, n=2, timeout=60, python_args=python_args)
    return proc, time.monotonic() - start


@pytest.mark.parametrize("python_args", [(), ("-m", "mpi4py")], ids=["python", "mpi4py"])
def test_uncaught_exception_aborts_job(python_args):
    proc, elapsed = run_fault("raise", python_args)
    assert proc.failed, proc.describe()
    assert "[rank 1] Traceback (most recent call last):" in proc.stderr
    assert "[rank 1] ValueError: boom on purpose" in proc.stderr
    assert "finished" not in proc.stdout  # rank 0 was stuck in a barrier and got killed
    assert elapsed < 15


def test_uncaught_exception_in_thread_aborts_job():
    proc, elapsed = run_fault("thread")
    assert proc.failed, proc.describe()
    assert "[rank 1] Exception in thread loader:" in proc.stderr
    assert "[rank 1] KeyError: 'boom in a thread'" in proc.stderr
    assert elapsed < 15


def test_deadline_names_the_collective():
    proc, elapsed = run_fault("timeout")
    assert proc.failed, proc.describe()
    assert (
        "CollectiveTimeoutError: [rank 0] collective #2 allreduce op=SUM (1000 x float32, "
        "4000 bytes) on rank 0 of 2 did not complete" in proc.stderr
    )
    assert elapsed < 15  # the sleeping rank would take 30 s


def test_swallowed_timeout_still_takes_job_down():
    proc, elapsed = run_fault("swallow_timeout")
    assert proc.failed, proc.describe()
    assert "swallowed" in proc.stdout
    assert "communicator is broken since collective #2 allreduce" in proc.stdout
    assert "exiting after collective #2 allreduce" in proc.stderr
    assert elapsed < 15
