"""Fault scenarios that take a job down: 1 a rank SIGKILLed in an allreduce, 2 an exception on
one rank, 3 a rank hanging before a collective (deadline + watchdog), 10 launcher
misconfiguration. Every job must end promptly, say why, and leave no process behind."""

import json
import sys

import pytest

import distgrad
from tests import mpijob
from tests.mpijob import requires_mpi, run_command

from .faultlib import DEADLINE_S, REPS, WORKERS

pytestmark = [requires_mpi, pytest.mark.multiprocess]
COLLECTIVE_TIMEOUT = 30.0  # the jobs' deadline where it is not what should catch the fault


def assert_went_down(job, within: float):
    assert job.returncode not in (0, None), job.describe()
    assert job.detection_s is not None and job.detection_s < within, job.describe()
    assert job.orphans == 0, job.describe()


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("launcher", ["mpiexec", "distgrad-run"])
def test_sigkill_during_allreduce(launcher, rep, fault_record):
    """hydra notices the dead rank and kills the others (no deadline needed)."""
    job = mpijob.run(WORKERS / "kill.py", launcher=launcher, timeout=60)
    fault_record(
        f"1 SIGKILL during allreduce ({launcher})",
        rep,
        detection_s=job.detection_s,
        deadline_s=COLLECTIVE_TIMEOUT,
        guard="hydra kills the job",
        orphans=job.orphans,
    )
    assert_went_down(job, within=5)
    assert "signal 9" in job.output or "Killed" in job.output, job.describe()
    assert not job.results(finished=True)


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("where", ["forward", "hook", "optimizer", "save"])
def test_exception_on_one_rank(where, rep, fault_record, tmp_path):
    """The failing rank prints its traceback and MPI_Aborts; the other, waiting in a
    collective, is killed; earlier saves stay intact."""
    job = mpijob.run(WORKERS / "exception.py", where, tmp_path, timeout=60)
    fault_record(
        f"2 exception on one rank ({where})",
        rep,
        detection_s=job.detection_s,
        deadline_s=COLLECTIVE_TIMEOUT,
        guard="excepthook -> MPI_Abort",
        orphans=job.orphans,
    )
    assert_went_down(job, within=5)
    error = "FileNotFoundError" if where == "save" else f"RuntimeError: injected fault in {where}"
    assert f"[rank 1] {error}" in job.stderr, job.describe()
    assert "[rank 1] uncaught exception: aborting all 2 ranks" in job.stderr
    assert not job.results(finished=True)
    # nothing lost: what was saved before the fault loads, and the replicas were equal
    for step in range(2):
        saved = [distgrad.load(tmp_path / f"rank{r}-step{step}.dgt") for r in (0, 1)]
        for name, value in saved[0].items():
            assert (value == saved[1][name]).all(), f"step {step}: {name} differs"


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("variant", ["collective", "bucket"])
def test_hang_before_collective(variant, rep, fault_record, tmp_path):
    """The deadline fires on the waiting rank; the watchdog collects both ranks' states
    (the hung one answers from its watchdog thread) into report.json; the job is aborted."""
    job = mpijob.run(
        WORKERS / "hang.py",
        variant,
        timeout=60,
        env={"DISTGRAD_COLLECTIVE_TIMEOUT": DEADLINE_S, "DISTGRAD_WATCHDOG_DIR": tmp_path},
    )
    fault_record(
        f"3 rank hangs before a collective ({variant})",
        rep,
        detection_s=job.detection_s,
        deadline_s=DEADLINE_S,
        guard="deadline + watchdog",
        orphans=job.orphans,
    )
    assert_went_down(job, within=DEADLINE_S + 4)
    assert job.detection_s > DEADLINE_S - 0.5
    assert "[rank 0] distgrad.distributed.communicator.CollectiveTimeoutError" in job.stderr
    assert "[rank 0] distgrad watchdog: collective #" in job.stderr, job.describe()
    reports = list(tmp_path.glob("distgrad-watchdog-*/report.json"))
    assert len(reports) == 1, job.describe()
    report = json.loads(reports[0].read_text())
    assert report["deadline_s"] == DEADLINE_S and report["reporter"] == 0
    seq = report["timed_out"]["seq"]
    assert report["verdict"].startswith(
        f"rank 1 has issued {seq - 1} collectives and not reached #{seq}"
    ), report["verdict"]
    hung, waiting = report["ranks"]["1"], report["ranks"]["0"]
    assert hung["communicators"][0]["pending"] == [] and "time.sleep(60)" in hung["where"][-1]
    assert hung["communicators"][0]["last_completed"]["seq"] == seq - 1
    pending = waiting["communicators"][0]["pending"]
    assert str(reports[0]) in job.stderr
    if variant == "collective":
        assert [p["seq"] for p in pending] == [seq]
    else:  # both buckets were launched; the first one's wait timed out
        assert [p["seq"] for p in pending] == [seq, seq + 1]
        for i, p in enumerate(pending):
            assert p["label"].startswith(f"DataParallel bucket {i} of 2"), p
        states = [b["state"] for b in waiting["context"]["DataParallel"]["buckets"]]
        assert states == [f"collective #{seq} in flight", f"collective #{seq + 1} in flight"]


@pytest.mark.parametrize("rep", range(REPS))
def test_foreign_mpiexec_makes_singletons(rep, fault_record):
    """Open MPI's mpirun starting ranks of an MPICH-linked mpi4py: each process is a world
    of one; init() refuses instead of training 2 unrelated models."""
    script = WORKERS / "misconfig.py"
    job = run_command(
        [
            "bash",
            "-c",
            f"for r in 0 1; do OMPI_COMM_WORLD_RANK=$r "
            f'"{sys.executable}" "{script}" & done; s=0; for j in $(jobs -p); '
            f"do wait $j || s=$?; done; exit $s",
        ],
        env={"OMPI_COMM_WORLD_SIZE": "2"},
        timeout=60,
    )
    fault_record(
        "10 foreign mpiexec: singletons",
        rep,
        detection_s=job.detection_s,
        guard="init() cross-check",
        orphans=job.orphans,
    )
    assert job.returncode == 1 and job.orphans == 0, job.describe()
    assert (
        job.output.count(
            "MPI reports a world of 1 process, but OMPI_COMM_WORLD_SIZE=2 says Open MPI started 2"
        )
        == 2
    ), job.describe()
    assert not job.results()


@pytest.mark.parametrize("rep", range(REPS))
def test_stale_launcher_world_size(rep, fault_record):
    """A launcher variable claiming another world size than MPI's: a warning, MPI's values
    are used and the job runs."""
    job = mpijob.run(WORKERS / "misconfig.py", env={"OMPI_COMM_WORLD_SIZE": "4"}, timeout=60)
    fault_record(
        "10 wrong world size in the environment", rep, guard="init() warning", orphans=job.orphans
    )
    assert job.returncode == 0 and job.orphans == 0, job.describe()
    assert len(job.results(world_size=2)) == 2
    assert (
        job.stderr.count(
            "Open MPI says world size 4 (OMPI_COMM_WORLD_SIZE) but MPI says 2; using MPI's values"
        )
        == 2
    ), job.describe()


@pytest.mark.parametrize("rep", range(REPS))
def test_more_ranks_than_slots(rep, fault_record):
    """distgrad-run refuses -np above the slots before starting anything."""
    job = mpijob.run(
        WORKERS / "misconfig.py",
        n=3,
        launcher="distgrad-run",
        launcher_args=["-H", "localhost:2"],
        timeout=60,
    )
    fault_record(
        "10 distgrad-run -np above the slots", rep, guard="distgrad-run check", orphans=job.orphans
    )
    assert job.returncode == 2 and job.orphans == 0, job.describe()
    assert "-np 3 is more than the 2 slots available" in job.stderr
    assert not job.fault_marks()  # no rank was started
