"""Slurm: a real two-node cluster on this machine (cluster/ci/start_slurm.sh).

One slurmctld and two slurmd daemons (n1, n2; 2 CPUs each) share this host. The tests
train the example through the cluster/slurm batch scripts with sbatch and through
distgrad-run inside an allocation, and compare the result with the same training on 2
ranks without Slurm; they also check rank placement and failure handling under srun.
SLURM_CONF is in the environment of every Slurm command. Needs root and Debian's
slurm-wlm and munge (cluster/ci/install_slurm.sh, run by .ci/run, installs them); skipped
when the cluster cannot be started, with the script's output as the reason. The daemons
are stopped by pid (cluster/ci/stop_slurm.sh).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launcher_testing import (
    PROGRAMS,
    ROOT,
    Training,
    distgrad_run,
    launcher_env,
    needs_mpi,
    pids_with,
    training_command,
)

pytestmark = needs_mpi
START = ROOT / "cluster" / "ci" / "start_slurm.sh"
STOP = ROOT / "cluster" / "ci" / "stop_slurm.sh"
ALLREDUCE = str(PROGRAMS / "allreduce.py")
PYTHON = sys.executable


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
    env = launcher_env(SLURM_CI_PORT=str(_free_port_triple()), SLURM_CONF=str(state / "slurm.conf"))
    try:
        started = subprocess.run(
            ["bash", str(START), str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        reason = f"exit status {started.returncode}: {(started.stdout + started.stderr)[-1500:]}"
    except subprocess.TimeoutExpired:
        started, reason = None, "start_slurm.sh took more than 90 s"
    if started is None or started.returncode != 0:
        subprocess.run(["bash", str(STOP), str(state)], env=env, timeout=60, check=False)
        pytest.skip(f"cannot start the test Slurm cluster ({reason})")
    yield env
    subprocess.run(["bash", str(STOP), str(state)], env=env, timeout=120, check=False)


def _sbatch(args: list[str], env: dict[str, str], timeout: float = 90) -> str:
    """Submit with sbatch, wait for the job (polling faster than ``sbatch --wait``), and
    return its ``ExitCode`` as ``scontrol`` reports it, e.g. ``'0:0'``."""
    job = subprocess.run(
        ["sbatch", "--parsable", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = subprocess.run(
            ["scontrol", "show", "job", "--oneliner", job],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        if not re.search(r"JobState=(PENDING|CONFIGURING|RUNNING|COMPLETING) ", info):
            return re.search(r" ExitCode=(\S+)", info)[1]
        time.sleep(0.2)
    subprocess.run(["scancel", job], env=env, timeout=30, check=False)
    raise AssertionError(f"job {job} still running after {timeout} s")


@pytest.mark.parametrize(
    "script, layout, nodes",
    [
        ("multi_node.sbatch", ["--nodes=2", "--ntasks-per-node=1"], "n[1-2]"),
        ("single_node.sbatch", ["--nodes=1", "--ntasks-per-node=2"], "n1"),
    ],
)
def test_sbatch_trains_with_the_cluster_script(
    slurm_env, reference_training, tmp_path, script, layout, nodes
):
    venv = Path(sys.prefix)  # the scripts' VENV: its bin/ must hold python and distgrad-run
    if not (venv / "bin" / "distgrad-run").exists():
        pytest.skip(f"distgrad-run is not installed in {venv} (pip install -e .)")
    output, out = tmp_path / "job.out", tmp_path / "run"
    exit_code = _sbatch(
        [
            "--gpus-per-node=0",
            "--cpus-per-task=1",
            "--time=2",
            *layout,
            f"--output={output}",
            str(ROOT / "cluster" / "slurm" / script),
            *training_command(out)[2:],
        ],
        {**slurm_env, "VENV": str(venv)},
    )
    text = output.read_text() if output.exists() else ""
    assert exit_code == "0:0", text
    assert re.search(rf"^distgrad: job \d+, 2 ranks on {re.escape(nodes)}$", text, re.M), text
    assert "srun --mpi=pmi2 --kill-on-bad-exit=1 --cpus-per-task=1 python " in text, text
    Training.read(text, out).assert_same_as(reference_training)


def test_distgrad_run_in_an_allocation_trains_across_both_nodes(
    slurm_env, reference_training, tmp_path
):
    out = tmp_path / "run"
    salloc = ("salloc", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--time=2")
    result = distgrad_run(
        ["--tag-output", "--timeout", "60", *training_command(out)],
        env=slurm_env,
        timeout=90,
        prefix=salloc,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # --launcher auto chose srun (its --label tags, not hydra's [0]), one task per node.
    assert re.search(r"^0: test accuracy ", result.stdout, re.M), result.stdout
    Training.read(result.stdout, out).assert_same_as(reference_training)


def test_distgrad_run_through_srun_places_ranks(slurm_env):
    result = distgrad_run(
        ["--launcher", "srun", "-np", "3", "--tag-output", "--timeout", "60", PYTHON, ALLREDUCE],
        env=slurm_env,
        timeout=90,
    )
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
    args = [
        "--launcher",
        "srun",
        "-np",
        "3",
        "--tag-output",
        "--timeout",
        "60",
        PYTHON,
        str(PROGRAMS / "misbehave.py"),
        "raise",
        "2",
        token,
    ]
    result = distgrad_run(args, env=slurm_env, timeout=90)
    assert result.returncode != 0
    assert "2: [rank 2] RuntimeError: rank 2 fails on purpose" in result.stderr
    assert time.monotonic() - started < 20
    assert pids_with(token) == []
