"""Starting real multi-process jobs from tests: ``run_mpi(n, script, *args)``.

The mpiexec is the one next to the test's Python (the pip ``mpich`` wheel's in the project
venv), so it always belongs to the MPI library mpi4py uses. Ranks get the repository on
``PYTHONPATH``, one BLAS thread each, and a short collective deadline so a broken test fails
in seconds instead of hanging.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"

requires_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
    reason="needs mpi4py and an mpiexec next to the Python executable",
)


def rank_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("DISTGRAD_COLLECTIVE_TIMEOUT", "30")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_mpi(
    n: int, script, *args, timeout: float = 60, env: dict | None = None, python_args=()
) -> subprocess.CompletedProcess:
    """Run ``python [python_args] script args`` on ``n`` ranks; return the finished process
    (stdout and stderr as text). ``script`` is a path or a file name in ``workers/``."""
    script = Path(script)
    if not script.is_absolute():
        script = HERE / "workers" / script
    command = [
        str(MPIEXEC),
        "-n",
        str(n),
        sys.executable,
        *python_args,
        str(script),
        *map(str, args),
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=rank_env(**(env or {})),
        cwd=ROOT,
    )


def run_python(script, *args, timeout: float = 60, env: dict | None = None):
    """Run ``script`` as one plain process (not launched by mpiexec)."""
    script = Path(script)
    if not script.is_absolute():
        script = HERE / "workers" / script
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=rank_env(**(env or {})),
        cwd=ROOT,
    )


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert a job succeeded, showing its output if not."""
    assert proc.returncode == 0, (
        f"exit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc
