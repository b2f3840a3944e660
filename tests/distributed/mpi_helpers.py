"""Deprecated: the old job runner's names, kept as thin aliases of ``tests.mpijob`` while other
branches still import them. New tests call ``mpijob.run`` / ``mpijob.run_python`` directly."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests import mpijob
from tests.mpijob import MPIEXEC, ROOT, requires_mpi

HERE = Path(__file__).resolve().parent

__all__ = ["HERE", "MPIEXEC", "ROOT", "check", "requires_mpi", "run_mpi", "run_python"]


def _script(script) -> Path:
    script = Path(script)
    return script if script.is_absolute() else HERE / "workers" / script


def _finished(job: mpijob.Job, timeout: float) -> mpijob.Job:
    if job.timed_out:  # as subprocess.run did
        raise subprocess.TimeoutExpired(job.command, timeout, job.stdout, job.stderr)
    return job


def run_mpi(n: int, script, *args, timeout: float = 60, env=None, python_args=()) -> mpijob.Job:
    """``mpijob.run(script, *args, n=n)``, a bare file name looked up in ``workers/``."""
    job = mpijob.run(_script(script), *args, n=n, timeout=timeout, env=env, python_args=python_args)
    return _finished(job, timeout)


def run_python(script, *args, timeout: float = 60, env=None) -> mpijob.Job:
    """``mpijob.run_python(script, *args)``, a bare file name looked up in ``workers/``."""
    return _finished(mpijob.run_python(_script(script), *args, timeout=timeout, env=env), timeout)


def check(job: mpijob.Job) -> mpijob.Job:
    """``job.check()``."""
    return job.check()
