"""Shared by the GPU tests: how many GPUs there are, and starting real MPI jobs whose ranks
use the GPU (``run_gpu_job``). The mpiexec is ``$DISTGRAD_MPIEXEC``, else the one next to this
Python, else the first on ``PATH``; it must belong to the MPI library mpi4py uses."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import distgrad as dg

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"


def gpu_count() -> int:
    return dg.cuda.device_count() if dg.cuda.is_available() else 0


def mpiexec() -> str | None:
    candidates = [
        os.environ.get("DISTGRAD_MPIEXEC"),
        str(Path(sys.executable).parent / "mpiexec"),
        shutil.which("mpiexec"),
    ]
    return next((c for c in candidates if c and os.path.exists(c)), None)


def _mpi_usable() -> bool:
    try:
        importlib.import_module("mpi4py.MPI")  # fails when mpi4py finds no MPI library
    except Exception:
        return False
    return mpiexec() is not None


requires_mpi = pytest.mark.skipif(
    not _mpi_usable(), reason="needs mpi4py with an MPI library and its mpiexec"
)
requires_2_gpus = pytest.mark.skipif(gpu_count() < 2, reason="needs two GPUs")


def run_gpu_job(n: int, script: str, *args, env: dict | None = None, timeout: float = 240):
    """``mpiexec -n n python workers/script args``; returns the finished process and fails
    the test (showing its output) unless it succeeded."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.setdefault("DISTGRAD_COLLECTIVE_TIMEOUT", "60")
    environ.update({k: str(v) for k, v in (env or {}).items()})
    command = [mpiexec(), "-n", str(n), sys.executable, str(WORKERS / script), *map(str, args)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=environ, cwd=ROOT
    )
    assert proc.returncode == 0, (
        f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc
