"""Helpers for the launcher tests: running distgrad-run, finding leftover processes, and
the training example every real multi-node run trains (compared with one host)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from distgrad.launcher import LaunchError
from distgrad.launcher.mpi_flavor import find_program

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
EXAMPLE = ROOT / "examples" / "train_data_parallel.py"
DISTGRAD_RUN = Path(sys.executable).parent / "distgrad-run"  # the installed entry point


def _mpi_missing() -> str | None:
    """Why real MPI runs cannot happen here, or None."""
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    try:
        find_program("mpiexec")
    except LaunchError as error:
        return str(error)
    return None


MPI_MISSING = _mpi_missing()
needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=f"no MPI: {MPI_MISSING}")


def launcher_env(**extra: str) -> dict[str, str]:
    """Environment for a distgrad-run subprocess: ours with the repository importable, no
    Slurm job variables (so ``--launcher auto`` means mpiexec even when the suite runs in
    a Slurm job) and no GPUs (the ranks of these tests run on the CPU)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


def distgrad_run(
    args: list[str],
    timeout: float = 60,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run ``distgrad-run ARGS`` (the console script installed next to this Python, as
    users run it; after the ``prefix`` command such as ``ip netns exec NS``) and capture
    its output."""
    return subprocess.run(
        [*prefix, str(DISTGRAD_RUN), *args],
        env=env or launcher_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pids_with(token: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``token``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state != "Z":
            pids.append(int(entry))
    return pids


def training_command(out_dir: Path) -> list[str]:
    """COMMAND that trains the data-parallel example for one epoch (seeded: the same
    result on any 2 ranks) and writes its checkpoint into ``out_dir``."""
    return [sys.executable, str(EXAMPLE), "--epochs", "1", "--out", str(out_dir)]


@dataclass(frozen=True)
class Training:
    """What a run of :func:`training_command` printed and saved."""

    loss: str  # the last epoch's mean loss, as printed
    accuracy: str  # the test accuracy, as printed
    params: dict[str, np.ndarray]  # the trained parameters, from the checkpoint
    steps: int  # optimizer steps (each one allreduced every gradient)

    @staticmethod
    def read(output: str, out_dir: Path) -> Training:
        import distgrad  # only here: the launcher itself never imports distgrad

        losses = re.findall(r"epoch +\d+ +loss (\S+?),?\s", output)
        accuracy = re.search(r"test accuracy (\S+)", output)
        assert losses and accuracy, f"no loss or accuracy in the output:\n{output}"
        checkpoint = distgrad.load(str(out_dir / "checkpoint.safetensors"))
        params = {name: tensor.numpy() for name, tensor in checkpoint["model"].items()}
        first_state = next(iter(checkpoint["optimizer"]["state"].values()))
        return Training(losses[-1], accuracy[1], params, int(first_state["step"].item()))

    @property
    def gradient_bytes(self) -> int:
        """Bytes of gradients each rank contributes to allreduces over the run."""
        return sum(param.nbytes for param in self.params.values()) * self.steps

    def assert_same_as(self, reference: Training) -> None:
        """Same printed loss and accuracy, bit-identical parameters."""
        assert (self.loss, self.accuracy, self.steps) == (
            reference.loss,
            reference.accuracy,
            reference.steps,
        )
        assert self.params.keys() == reference.params.keys()
        for name, value in self.params.items():
            assert np.array_equal(value, reference.params[name]), f"parameter {name} differs"


def _parent_of(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(entry)
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are still running (not zombies: a zombie has ended)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            running.append(pid)
    return running


def kill_launcher(
    args: list[str],
    ready: int,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    within: float = 2.0,
) -> tuple[list[int], list[int]]:
    """Start ``distgrad-run ARGS`` (a program whose ranks print ``ready``), wait for ``ready``
    such lines, SIGKILL distgrad-run and give its job ``within`` seconds to end. Returns
    (the job's processes just before the kill, those still alive after ``within`` s)."""
    import select
    import signal
    import time

    proc = subprocess.Popen(
        [*prefix, str(DISTGRAD_RUN), *args],
        env=env or launcher_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    job: list[int] = []
    try:
        seen, text, deadline = 0, b"", time.monotonic() + 60
        while seen < ready:
            assert time.monotonic() < deadline, f"ranks not ready after 60 s: {text!r}"
            if select.select([proc.stdout], [], [], 1)[0]:
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, f"the job ended before its ranks were ready: {text!r}"
                text += chunk
                seen = text.count(b"ready")
        job = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + within
        while alive(job) and time.monotonic() < deadline:
            time.sleep(0.05)
        return job, alive(job)
    finally:
        proc.kill()
        proc.wait()
        for pid in alive(job):  # never leave them to the next test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.stdout.close()
