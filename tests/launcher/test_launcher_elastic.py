"""Elastic restarts (``--max-restarts``, ``--min-np``) and how failed ranks are named."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys

import numpy as np
import pytest
from launcher_testing import PROGRAMS, distgrad_run, needs_mpi

from launcher.cli import parse_args
from launcher.elastic import MAX_RESTARTS_VAR, RESTART_COUNT_VAR, run_with_restarts
from launcher.outcome import FailureScanner, RankFailure
from launcher.plan import Here
from launcher.rank_main import Placement, failure_text
from launcher.supervise import JobResult

TRAIN = str(PROGRAMS / "elastic_train.py")
PYTHON = sys.executable
MACHINE = Here(cpu_count=8, hostname="here", python="/usr/bin/python3", root=False)


# ---- naming the failed ranks (no processes) -----------------------------------------------------
def test_failure_text_names_rank_signal_and_status():
    place = Placement(rank=2, size=4, local_rank=0, local_size=2)
    killed = failure_text(place, 123, signal.SIGKILL)  # a wait status: killed by signal 9
    assert re.fullmatch(
        r"distgrad-run: rank 2 \(pid 123 on .+\) was killed by signal SIGKILL \(9\)", killed
    )
    exited = failure_text(place, 123, 3 << 8)
    assert exited.endswith("exited with status 3 without a Python exception")
    assert failure_text(place, 123, 3 << 8, python=False).endswith("exited with status 3")
    assert failure_text(place, 123, 0) is None


def test_scanner_reads_wrapper_lines_split_across_chunks():
    scanner = FailureScanner()
    text = (
        b"progress 10%\r[rank 1] distgrad-run: rank 1 (pid 77 on node-a) was killed by "
        b"signal SIGKILL (9)\n[0] [rank 0] uncaught exception: aborting all 2 ranks\n"
        b"[rank 1] distgrad-run: rank 1 (pid 77 on node-a) exited with status 1\n"
    )
    for start in range(0, len(text), 7):
        scanner.feed(text[start : start + 7])
    assert scanner.failures() == [
        RankFailure(1, "was killed by signal SIGKILL (9)", 77, "node-a"),
        RankFailure(0, "raised an uncaught exception"),
    ]
    assert (
        str(scanner.failures()[0]) == "rank 1 (pid 77 on node-a) was killed by signal SIGKILL (9)"
    )


# ---- the restart loop, with a stand-in for the job (no processes) -------------------------------
class Jobs:
    """Stands in for ``run_job``: returns the given results in turn and records each launch."""

    def __init__(self, *results: JobResult, on_launch=None):
        self.results, self.launches, self.on_launch = list(results), [], on_launch

    def __call__(self, command, env, timeout, grace):
        self.launches.append((command, dict(env)))
        if self.on_launch:
            self.on_launch(len(self.launches))
        return self.results.pop(0)


def _args(*argv: str) -> argparse.Namespace:
    return parse_args([*argv, "--mpiexec", "/bin/true", "--mpi-flavor", "mpich", "python", "t.py"])


def _ranks(command: list[str]) -> int:
    return int(command[command.index("-n") + 1])


KILLED = JobResult(9, failures=[RankFailure(1, "was killed by signal SIGKILL (9)", 5, "h")])


def test_restart_after_a_failure_with_torchelastic_variables(capsys):
    jobs = Jobs(KILLED, JobResult(0))
    code = run_with_restarts(_args("-np", "2", "--max-restarts", "2"), {}, MACHINE, jobs)
    assert code == 0
    assert [env[RESTART_COUNT_VAR] for _, env in jobs.launches] == ["0", "1"]
    assert {env[MAX_RESTARTS_VAR] for _, env in jobs.launches} == {"2"}
    for command, _ in jobs.launches:  # forwarded to the ranks by mpiexec
        assert RESTART_COUNT_VAR in command[command.index("-genvlist") + 1].split(",")
    err = capsys.readouterr().err
    assert (
        "distgrad-run: restart 1 of 2: rank 1 (pid 5 on h) was killed by signal SIGKILL (9); "
        "relaunching on 2 ranks" in err
    )
    assert "completed after 1 restart(s)" in err


def test_restarts_run_out_and_the_final_message_names_the_rank(capsys):
    jobs = Jobs(KILLED, KILLED)
    assert run_with_restarts(_args("-np", "2", "--max-restarts", "1"), {}, MACHINE, jobs) == 9
    assert len(jobs.launches) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "distgrad-run: the job failed with exit status 9 after 1 restart(s): "
        "rank 1 (pid 5 on h) was killed by signal SIGKILL (9)"
    )


def test_no_restart_after_timeout_or_a_signal_to_the_launcher():
    for stopped in (JobResult(124, stopped=True), JobResult(130, stopped=True)):
        jobs = Jobs(stopped)
        code = run_with_restarts(_args("-np", "2", "--max-restarts", "3"), {}, MACHINE, jobs)
        assert (code, len(jobs.launches)) == (stopped.code, 1)


def test_min_np_relaunches_on_the_slots_a_rewritten_hostfile_has_left(tmp_path, capsys):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1:2\nnode2:2\n")

    def lose_a_slot(launch: int) -> None:
        if launch == 1:
            hostfile.write_text("node1:2\nnode2:1\n")

    jobs = Jobs(KILLED, JobResult(0), on_launch=lose_a_slot)
    args = _args("--hostfile", str(hostfile), "--max-restarts", "1", "--min-np", "3")
    assert run_with_restarts(args, {}, MACHINE, jobs) == 0
    assert [_ranks(command) for command, _ in jobs.launches] == [4, 3]
    assert "relaunching on 3 ranks (was 4: --min-np 3)" in capsys.readouterr().err


def test_below_min_np_gives_up_with_the_reason(tmp_path, capsys):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1:4\n")
    jobs = Jobs(KILLED, on_launch=lambda _: hostfile.write_text("node1:2\n"))
    args = _args("--hostfile", str(hostfile), "--max-restarts", "1", "--min-np", "3")
    assert run_with_restarts(args, {}, MACHINE, jobs) == 9
    assert len(jobs.launches) == 1
    assert "only 2 slot(s) left on node1:2, fewer than --min-np 3" in capsys.readouterr().err


def test_min_np_above_np_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse_args(["-np", "2", "--min-np", "3", "python", "t.py"])
    assert "--min-np 3 is more than -np 2" in capsys.readouterr().err


# ---- real jobs -----------------------------------------------------------------------------------
def _final(out) -> dict:
    with np.load(out / "final.npz") as saved:
        return dict(saved)


def _rerun_from_snapshot(run_dir, ref_dir, ranks: int, steps: int) -> dict:
    """A clean run on ``ranks`` ranks from the checkpoint the restarted job resumed from."""
    shutil.copytree(run_dir / "resumed-from", ref_dir / "ckpt")
    args = ["-np", str(ranks), "--oversubscribe", PYTHON, TRAIN, str(ref_dir), str(steps)]
    result = distgrad_run(args, timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"attempt 0 on {ranks} ranks: starting at step 6" in result.stdout, result.stdout
    return _final(ref_dir)


def _assert_close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in got:
        assert got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-12, err_msg=name)


@needs_mpi
def test_rank_sigkilled_mid_training_restarts_and_completes(tmp_path):
    run = tmp_path / "run"
    args = ["-np", "2", "--oversubscribe", "--max-restarts", "1", "--timeout", "240"]
    result = distgrad_run([*args, PYTHON, TRAIN, str(run), "12", "--kill-at", "8"], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        r"distgrad-run: restart 1 of 1: rank 1 \(pid \d+ on \S+\) was killed by signal SIGKILL "
        r"\(9\); relaunching on 2 ranks",
        result.stderr,
    ), result.stderr
    assert "attempt 1 on 2 ranks: starting at step 6" in result.stdout  # the last checkpoint
    assert "taking over the lock of pid" in result.stderr  # the killed job's rank 0 held it
    _assert_close(_final(run), _rerun_from_snapshot(run, tmp_path / "ref", 2, 12))


@needs_mpi
def test_min_np_finishes_on_the_slots_left(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("localhost:4\n")
    run = tmp_path / "run"
    result = distgrad_run(
        [
            "--hostfile",
            str(hostfile),
            "--max-restarts",
            "1",
            "--min-np",
            "3",
            "--timeout",
            "240",
            PYTHON,
            TRAIN,
            str(run),
            "12",
            "--kill-at",
            "8",
            "--shrink",
            f"{hostfile}:3",
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "relaunching on 3 ranks (was 4: --min-np 3)" in result.stderr, result.stderr
    assert "attempt 0 on 4 ranks: starting at step 0" in result.stdout
    assert "attempt 1 on 3 ranks: starting at step 6" in result.stdout
    assert "finished 12 steps on 3 ranks" in result.stdout
    _assert_close(_final(run), _rerun_from_snapshot(run, tmp_path / "ref", 3, 12))
    assert not os.path.exists(run / "ckpt" / ".lock")  # released at the end


def test_shm_cleanup_removes_only_unused_recent_mpi_files(tmp_path):
    from launcher.shm import remove_stale_segments, stale_segments

    old, mine, held, other = (
        tmp_path / "mpich_shm_old_0",
        tmp_path / "mpich_shm_mine_0",
        tmp_path / "mpich_shm_held_0",
        tmp_path / "not_mpi",
    )
    old.write_bytes(b"x")
    os.utime(old, (0, 0))  # (ctime cannot be set: 'since' below is in the future for it)
    since = os.stat(old).st_ctime + 2
    import time

    while time.time() < since:
        time.sleep(0.1)
    for path in (mine, held, other):
        path.write_bytes(b"x")
    with open(held, "rb"):  # in use by a live process (this one): kept
        assert stale_segments(since, str(tmp_path)) == [str(mine)]
        assert remove_stale_segments(since, str(tmp_path), wait=0.2) == [str(mine)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mpich_shm_held_0",
        "mpich_shm_old_0",
        "not_mpi",
    ]
