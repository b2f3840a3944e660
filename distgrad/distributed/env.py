"""What the launcher's environment variables say about this process, used only to cross-check
the world MPI reports (MPI is the authority)."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["launcher_claims", "cross_check"]

# (launcher, rank, world size, local rank, local size); None where the launcher sets none.
_SOURCES = (
    ("distgrad-run", None, None, "DISTGRAD_LOCAL_RANK", "DISTGRAD_LOCAL_SIZE"),
    ("MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    (
        "Open MPI",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
    ),
    ("Slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", None),
)
_FIELDS = ("rank", "world size", "local rank", "local world size")


def launcher_claims(
    environ: Mapping[str, str] | None = None,
) -> list[tuple[str, str, str | None, int]]:
    """``(launcher, field, variable, value)`` for every integer variable a launcher set.
    Slurm's count only inside an ``srun`` step that no mpiexec started (an ``sbatch`` script
    and the processes an mpiexec starts inside an allocation inherit stale Slurm values)."""
    environ = os.environ if environ is None else environ
    mpi_launched = any(name in environ for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK"))
    claims = []
    for launcher, *names in _SOURCES:
        if launcher == "Slurm" and (mpi_launched or "SLURM_STEP_ID" not in environ):
            continue
        for field, name in zip(_FIELDS, names):
            value = environ.get(name) if name else None
            if value is not None and value.strip().lstrip("-").isdigit():
                claims.append((launcher, field, name, int(value)))
    return claims


def cross_check(
    rank: int,
    size: int,
    local_rank: int,
    local_size: int,
    environ: Mapping[str, str] | None = None,
    mpi_library: str = "",
) -> list[str]:
    """Compare MPI's view with the launcher's variables. Raise when MPI sees a world of one
    while a launcher started several processes (an mpiexec of another MPI library starts
    unrelated singletons); return a message per other disagreement."""
    actual = dict(zip(_FIELDS, (rank, size, local_rank, local_size)))
    problems = []
    for launcher, field, name, value in launcher_claims(environ):
        if value == actual[field]:
            continue
        if field == "world size" and size == 1 and value > 1:
            library = f" ({mpi_library})" if mpi_library else ""
            raise RuntimeError(
                f"distgrad.distributed.init: MPI reports a world of 1 process, but {name}={value} "
                f"says {launcher} started {value} processes. The mpiexec/mpirun that started "
                f"this job does not belong to the MPI library mpi4py uses{library}, so every "
                f"process came up alone. Start the job with that library's launcher (for the "
                f"pip 'mpich' wheel: the mpiexec next to this Python, "
                f"'python -m mpi4py --mpi-library' names the library), or rebuild mpi4py "
                f"against the MPI whose launcher you use."
            )
        problems.append(f"{launcher} says {field} {value} ({name}) but MPI says {actual[field]}")
    return problems
