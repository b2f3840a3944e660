"""The test job runner itself (``tests/mpijob.py``): orphans are found and killed, a job past
its timeout is killed and reported as such, each rank's output is kept apart, and a job sees
only the environment its test gives it."""

import signal
import sys
import time

import pytest

from tests import mpijob

pytestmark = pytest.mark.multiprocess


def test_orphans_are_found_and_killed():
    job = mpijob.run_command(
        ["bash", "-c", "setsid sleep 30 >/dev/null 2>&1 </dev/null &"], timeout=20
    )
    assert job.returncode == 0 and job.orphans == 1
    assert mpijob.tagged_pids(job.tag) == []


def test_timeout_kills_the_job():
    job = mpijob.run_command(["bash", "-c", "echo started; sleep 30"], timeout=1)
    assert job.timed_out and not job.failed
    assert job.stdout == "started\n" and job.elapsed < 20
    assert "timed out (killed)" in job.describe()
    assert mpijob.tagged_pids(job.tag) == []


def test_environment_is_the_tests_own(monkeypatch):
    monkeypatch.setenv("DISTGRAD_SOMETHING", "leaks")
    monkeypatch.setenv("PMI_RANK", "3")
    code = "import os; print(sorted(k for k in os.environ if k.startswith(('DISTGRAD_', 'PMI_'))))"
    job = mpijob.run_command([sys.executable, "-c", code], env={"DISTGRAD_MINE": 1}).check()
    names = eval(job.stdout)
    assert names == [
        "DISTGRAD_COLLECTIVE_TIMEOUT",
        "DISTGRAD_FAULT_DIR",
        "DISTGRAD_FAULT_TAG",
        "DISTGRAD_MINE",
        "DISTGRAD_WATCHDOG_DIR",
    ]


@mpijob.requires_mpi
def test_each_ranks_output_is_kept_apart(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text(
        "import os, sys\n"
        "rank = os.environ['PMI_RANK']\n"
        "print('out of', rank)\n"
        "print('err of', rank, file=sys.stderr)\n"
        "sys.exit(3 if rank == '1' else 0)\n"
    )
    job = mpijob.run(script, n=3)
    assert job.failed
    if not mpijob.hydra():
        return  # only hydra writes each rank's output to its own file
    assert [job.rank_stdout(r) for r in range(3)] == [f"out of {r}\n" for r in range(3)]
    assert [job.rank_stderr(r) for r in range(3)] == [f"err of {r}\n" for r in range(3)]
    assert job.stdout.startswith("out of 0\nout of 1\nout of 2\n")


def test_a_killed_test_process_takes_its_job_along(tmp_path):
    """A job runs in its own session; when the process that started it dies (a test run
    killed), the job gets SIGTERM instead of running on. (The killed process cannot remove its
    job's scratch directory: it makes it in this test's tmp_path, not in the run's TMPDIR,
    where the temp-file check would find it.)"""
    tag = mpijob.new_tag()
    code = (
        "import os, signal, sys, threading\n"
        f"sys.path.insert(0, {str(mpijob.ROOT)!r})\n"
        "from tests import mpijob\n"
        "threading.Timer(2, os.kill, (os.getpid(), signal.SIGKILL)).start()\n"
        f"mpijob.run_command(['sleep', '60'], tag={tag!r}, timeout=120)\n"
    )
    job = mpijob.run_command([sys.executable, "-c", code], timeout=60, env={"TMPDIR": tmp_path})
    assert job.returncode == -9, job.describe()
    deadline = time.monotonic() + 10
    while mpijob.tagged_pids(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mpijob.tagged_pids(tag) == []


def test_an_interrupted_test_kills_its_job():
    """Ctrl-C (or any exception) while a job runs ends the job before it propagates."""
    tag = mpijob.new_tag()

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            mpijob.run_command(["sleep", "60"], tag=tag, timeout=60)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert mpijob.tagged_pids(tag) == []
