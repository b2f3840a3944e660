"""Helpers for the launcher tests: running distgrad-run, finding leftover processes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import LaunchError
from launcher.mpi_flavor import find_program

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"


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
    """Environment for a distgrad-run subprocess: ours, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def distgrad_run(
    args: list[str],
    timeout: float = 60,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run ``distgrad-run ARGS`` (as ``python -m launcher.cli``, after the ``prefix``
    command such as ``ip netns exec NS``) and capture its output."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "launcher.cli", *args],
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
