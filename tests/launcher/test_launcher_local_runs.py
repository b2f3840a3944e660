"""Real runs of distgrad-run on this machine with the pip MPICH (hydra mpiexec)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
from launcher_testing import (
    PROGRAMS,
    ROOT,
    distgrad_run,
    kill_launcher,
    launcher_env,
    needs_mpi,
    pids_with,
)

pytestmark = needs_mpi
ALLREDUCE = str(PROGRAMS / "allreduce.py")
MISBEHAVE = str(PROGRAMS / "misbehave.py")
PYTHON = sys.executable


@pytest.mark.parametrize("nprocs, tag", [(2, True), (3, False)])
def test_allreduce_on_n_ranks(nprocs, tag, token):
    args = [
        "-np",
        str(nprocs),
        "--oversubscribe",
        *(["--tag-output"] if tag else []),
        PYTHON,
        ALLREDUCE,
        "1000",
        token,
    ]
    result = distgrad_run(args)
    assert result.returncode == 0, result.stderr
    lines = sorted(re.findall(r"^(?:\[\d+\] )?rank \d+/\d+ .*$", result.stdout, re.M))
    expected_sum = nprocs * (nprocs + 1) / 2
    assert len(lines) == nprocs, result.stdout
    for rank, line in enumerate(lines):  # launcher and MPI agree on the local ranks
        assert line.startswith(
            f"{f'[{rank}] ' if tag else ''}rank {rank}/{nprocs} "
            f"local {rank}/{nprocs} mpi-local {rank}/{nprocs} "
        ), line
        assert line.endswith(f"allreduce ok {expected_sum:g}"), line
    assert pids_with(token) == []


def test_any_program_gets_the_rank_variables():
    result = distgrad_run(
        [
            "-np",
            "2",
            "--oversubscribe",
            "--threads-per-rank",
            "3",
            "sh",
            "-c",
            'echo "$PMI_RANK: $DISTGRAD_LOCAL_RANK/$DISTGRAD_LOCAL_SIZE '
            '$OMP_NUM_THREADS $OPENBLAS_NUM_THREADS $MKL_NUM_THREADS"',
        ]
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["0: 0/2 3 3 3", "1: 1/2 3 3 3"]


@pytest.mark.parametrize(
    "mode, status, message",
    [
        ("raise", 1, "RuntimeError: rank 1 fails on purpose"),
        ("raise-before-mpi", 1, "RuntimeError: rank 1 fails on purpose before MPI"),
        ("exit3", 3, None),
    ],
)
def test_failing_rank_ends_the_job(mode, status, message, token):
    result = distgrad_run(
        ["-np", "3", "--oversubscribe", PYTHON, MISBEHAVE, mode, "1", token], timeout=30
    )
    assert result.returncode == status, result.stdout + result.stderr
    if message:
        assert "[rank 1] Traceback (most recent call last):" in result.stderr
        assert f"[rank 1] {message}" in result.stderr
        assert "rank_main.py" not in result.stderr  # the wrapper's frames are hidden
    # (no bound on the time: the team asserts no times; the subprocess timeout bounds it)
    assert pids_with(token) == []


def test_timeout_stops_the_job(token):
    result = distgrad_run(
        [
            "-np",
            "2",
            "--oversubscribe",
            "--timeout",
            "2",
            "--grace",
            "2",
            PYTHON,
            MISBEHAVE,
            "hang",
            "0",
            token,
        ],
        timeout=30,
    )
    assert result.returncode == 124, result.stderr
    assert "distgrad-run: timeout: job still running after 2 s; stopping it" in result.stderr
    # (no bound on elapsed: the team asserts no times; timeout=30 above bounds the run)
    assert pids_with(token) == []


def test_ctrl_c_stops_the_job(token):
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "distgrad.launcher",
            "-np",
            "2",
            "--oversubscribe",
            PYTHON,
            MISBEHAVE,
            "hang",
            "0",
            token,
        ],
        cwd=ROOT,
        env=launcher_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(2):  # both ranks are up
            assert "ready" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "distgrad-run: got SIGINT; stopping the job" in stderr
    assert pids_with(token) == []


def test_check_passes_here():
    result = distgrad_run(["--check"], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "distgrad-run --check: OK"
    assert "allreduce ok: 2 ranks" in result.stdout


def test_check_names_a_missing_interface():
    result = distgrad_run(["--check", "--iface", "nosuchif0"], timeout=60)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith(
        "distgrad-run --check: FAILED: network interface 'nosuchif0' does not exist here (have: "
    )


def test_sigkill_to_the_launcher_takes_the_job_down(token):
    """The job's mpiexec dies with distgrad-run (PR_SET_PDEATHSIG), its proxy then ends the
    ranks, and every rank dies with its proxy: nothing is left 2 s later, 10 times of 10."""
    args = ["-np", "2", "--oversubscribe", PYTHON, MISBEHAVE, "hang", "0", token]
    for attempt in range(10):
        job, left = kill_launcher(args, ready=2)
        assert len(job) >= 5, f"try {attempt}: expected launcher, mpiexec, proxy, 2 ranks: {job}"
        assert left == [], f"try {attempt}: still running 2 s after the SIGKILL: {left}"
    assert pids_with(token) == []
