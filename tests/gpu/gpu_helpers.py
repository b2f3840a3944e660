"""Shared by the GPU tests: how many GPUs there are, and starting real MPI jobs whose ranks
use the GPU (``run_gpu_job``, through ``tests.mpijob``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import distgrad as dg
from tests import mpijob

ROOT = mpijob.ROOT
WORKERS = Path(__file__).resolve().parent / "workers"


def gpu_count() -> int:
    return dg.cuda.device_count() if dg.cuda.is_available() else 0


def _mpi_usable() -> bool:
    try:
        importlib.import_module("mpi4py.MPI")  # fails when mpi4py finds no MPI library
    except Exception:
        return False
    return mpijob.MPIEXEC is not None


requires_mpi = pytest.mark.skipif(
    not _mpi_usable(), reason="needs mpi4py with an MPI library and its mpiexec"
)
requires_2_gpus = pytest.mark.skipif(gpu_count() < 2, reason="needs two GPUs")


def run_gpu_job(n: int, script: str, *args, env: dict | None = None, timeout: float = 240):
    """``mpiexec -n n python workers/script args`` with the GPU visible and a 60 s collective
    deadline; returns the finished job and fails the test (showing its output) unless it
    succeeded."""
    env = {"DISTGRAD_COLLECTIVE_TIMEOUT": 60, **(env or {})}
    return mpijob.run(WORKERS / script, *args, n=n, env=env, gpu=True, timeout=timeout).check()
