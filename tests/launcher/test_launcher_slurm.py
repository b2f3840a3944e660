"""Slurm: a real two-node cluster on this machine (cluster/ci/start_slurm.sh).

One slurmctld and two slurmd daemons (n1, n2) share this host; the test submits the
cluster/slurm batch scripts with sbatch and runs distgrad-run --launcher srun.
SLURM_CONF is in the environment of every Slurm command. Needs root; the script
installs Debian's slurm packages with apt-get when they are missing. Skipped when the
cluster cannot be started, with the script's output as the reason.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from launcher.plan import RANK_MAIN
from launcher_testing import PROGRAMS, ROOT, distgrad_run, launcher_env, needs_mpi, pids_with

pytestmark = needs_mpi
START = ROOT / "cluster" / "ci" / "start_slurm.sh"
STOP = ROOT / "cluster" / "ci" / "stop_slurm.sh"
ALLREDUCE = str(PROGRAMS / "allreduce.py")


def _free_port_triple() -> int:
    """A port p with p, p+1 and p+2 free on 127.0.0.1 (controller, n1, n2)."""
    for base in range(21000 + os.getpid() % 2000 * 3, 30000, 3):
        try:
            for port in range(base, base + 3):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for Slurm")


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """Environment (with SLURM_CONF) for a running two-node test cluster."""
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root")
    state = tmp_path_factory.mktemp("slurm")
    env = launcher_env(SLURM_CI_PORT=str(_free_port_triple()),
                       SLURM_CONF=str(state / "slurm.conf"))
    try:
        started = subprocess.run([str(START), str(state)], env=env, capture_output=True,
                                 text=True, timeout=600, check=False)
        reason = f"exit status {started.returncode}: {(started.stdout + started.stderr)[-1500:]}"
    except subprocess.TimeoutExpired:
        started, reason = None, "start_slurm.sh took more than 600 s"
    if started is None or started.returncode != 0:
        subprocess.run([str(STOP), str(state)], env=env, timeout=60, check=False)
        pytest.skip(f"cannot start the test Slurm cluster ({reason})")
    yield env
    subprocess.run([str(STOP), str(state)], env=env, timeout=120, check=False)


def _sbatch(args: list[str], env: dict[str, str], timeout: float = 60) -> str:
    """Submit with sbatch, wait for the job (polling faster than ``sbatch --wait``), and
    return its ``ExitCode`` as ``scontrol`` reports it, e.g. ``'0:0'``."""
    job = subprocess.run(["sbatch", "--parsable", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=30, check=True).stdout.strip()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = subprocess.run(["scontrol", "show", "job", "--oneliner", job], env=env,
                              capture_output=True, text=True, timeout=30, check=True).stdout
        if not re.search(r"JobState=(PENDING|CONFIGURING|RUNNING|COMPLETING) ", info):
            return re.search(r" ExitCode=(\S+)", info)[1]
        time.sleep(0.2)
    subprocess.run(["scancel", job], env=env, timeout=30, check=False)
    raise AssertionError(f"job {job} still running after {timeout} s")


@pytest.mark.parametrize(
    "script, layout, local_sizes",
    [
        ("multi_node.sbatch", ["--nodes=2", "--ntasks-per-node=1"], [1, 1]),
        ("single_node.sbatch", ["--nodes=1", "--ntasks-per-node=2"], [2, 2]),
    ],
)
def test_sbatch_runs_the_cluster_script(slurm_env, tmp_path, script, layout, local_sizes):
    output = tmp_path / "job.out"
    env = {**slurm_env, "PROGRAM": ALLREDUCE, "RANK_MAIN": RANK_MAIN,
           "PYTHON": sys.executable}
    exit_code = _sbatch(
        ["--gpus-per-node=0", "--cpus-per-task=1", "--time=2", *layout, f"--output={output}",
         str(ROOT / "cluster" / "slurm" / script), "1000"],
        env,
    )
    text = output.read_text() if output.exists() else ""
    assert exit_code == "0:0", text
    lines = sorted(re.findall(r"^rank \d+/2 .*", text, re.M))
    assert len(lines) == 2, text
    for rank, (line, local_size) in enumerate(zip(lines, local_sizes)):
        local = rank % local_size
        assert line.startswith(f"rank {rank}/2 local {local}/{local_size} "
                               f"mpi-local {local}/{local_size} threads 1 "), line
        assert line.endswith("allreduce ok 3"), line


def test_distgrad_run_through_srun(slurm_env):
    result = distgrad_run(["--launcher", "srun", "-np", "3", "--timeout", "60", ALLREDUCE],
                          env=slurm_env, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = sorted(re.findall(r"^\d+: (rank \d+/3 .*)$", result.stdout, re.M))
    assert len(lines) == 3, result.stdout
    assert all(line.endswith("allreduce ok 6") for line in lines), lines
    # Slurm fills n1 (2 CPUs) first, then n2; the launcher and MPI agree on local ranks.
    assert [line.split(" threads")[0] for line in lines] == [
        "rank 0/3 local 0/2 mpi-local 0/2",
        "rank 1/3 local 1/2 mpi-local 1/2",
        "rank 2/3 local 0/1 mpi-local 0/1",
    ]


def test_failing_rank_ends_the_srun_job(slurm_env, token):
    started = time.monotonic()
    args = ["--launcher", "srun", "-np", "3", "--timeout", "60",
            str(PROGRAMS / "misbehave.py"), "raise", "2", token]
    result = distgrad_run(args, env=slurm_env, timeout=90)
    assert result.returncode != 0
    assert "2: [rank 2] RuntimeError: rank 2 fails on purpose" in result.stderr
    assert time.monotonic() - started < 20
    assert pids_with(token) == []
