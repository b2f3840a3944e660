"""How a failing rank takes its whole job down: the one implementation of "uncaught exception
-> traceback tagged ``[rank N]`` -> abort every rank", used by the per-rank wrapper of
distgrad-run (``rank_main.py``), by ``import distgrad`` under a plain mpiexec/mpirun/srun
launch (before MPI is up), and by ``distgrad.distributed`` once it is.

Standard library only (``rank_main.py`` runs before numpy may be imported).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping

__all__ = [
    "OUTPUT_GRACE_S",
    "abort_job",
    "die",
    "exit_status",
    "record_exit_status",
    "launched_placement",
    "pmi_abort",
    "tagged",
    "traceback_text",
]

# MPI_Abort makes the process manager kill every rank at once; output this rank wrote just
# before, still in the pipe to the manager, would be lost without a moment's grace.
OUTPUT_GRACE_S = 0.2


def tagged(text: str, rank: int) -> str:
    """``text`` with every line prefixed ``[rank N] ``."""
    return "\n".join(f"[rank {rank}] {line}" for line in text.rstrip("\n").split("\n"))


def traceback_text(exc_type, exc, tb, skip: Callable | None = None) -> str:
    """The traceback of ``exc`` as text; leading frames for which ``skip(frame)`` is true
    (a wrapper's own) are left out."""
    while tb is not None and skip is not None and skip(tb.tb_frame):
        tb = tb.tb_next
    return "".join(traceback.format_exception(exc_type, exc, tb))


def pmi_abort(code: int) -> None:
    """Ask the process manager to kill the job through the PMI-1 wire protocol.

    Used when MPI was never initialised (e.g. the program failed while importing): hydra
    would otherwise wait forever for the other ranks, which sit in MPI_Init. Does nothing
    without ``PMI_FD`` or when the server does not answer.
    """
    fd = os.environ.get("PMI_FD")
    if fd is None or not fd.isdigit():
        return
    try:
        with socket.socket(fileno=int(fd)) as conn:
            conn.settimeout(5)
            conn.sendall(b"cmd=init pmi_version=1 pmi_subversion=1\n")
            if b"rc=0" in conn.recv(1024):
                conn.sendall(f"cmd=abort exitcode={code}\n".encode())
                conn.recv(1024)  # the process manager kills us before an answer comes
    except OSError:
        pass


def abort_job(code: int) -> None:
    """End the whole job with exit status ``code`` now: MPI_Abort through mpi4py when this
    process initialised MPI, else a PMI abort, else just exit (skipping atexit handlers,
    which could block in MPI_Finalize)."""
    sys.stdout.flush()
    sys.stderr.flush()
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.COMM_WORLD.Abort(code)
    pmi_abort(code)
    os._exit(code)


def die(
    text: str,
    rank: int,
    size: int,
    code: int,
    abort: Callable[[int], None] = abort_job,
    reason: str = "uncaught exception",
):
    """Print ``text`` tagged with the rank, say why the job is being aborted, give the
    process manager a moment to forward it, and ``abort(code)`` (never returns)."""
    if text:
        sys.stderr.write(tagged(text, rank) + "\n")
    if size > 1:
        sys.stderr.write(f"[rank {rank}] {reason}: aborting all {size} ranks\n")
    sys.stderr.flush()
    sys.stdout.flush()
    time.sleep(OUTPUT_GRACE_S)
    abort(code)
    os._exit(code)  # (an abort that returned)


def launched_placement(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(rank, world size)`` when an MPI launcher (MPICH hydra, Open MPI, Slurm's srun)
    started this process, read from its variables; None otherwise."""
    environ = os.environ if environ is None else environ
    for rank_name, size_name in (
        ("PMI_RANK", "PMI_SIZE"),
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("SLURM_PROCID", "SLURM_NTASKS"),
    ):
        if rank_name == "SLURM_PROCID" and "SLURM_STEP_ID" not in environ:
            continue  # an sbatch script, not an srun step
        rank, size = environ.get(rank_name, ""), environ.get(size_name, "")
        if rank.isdigit() and size.isdigit():
            return int(rank), int(size)
    return None


_exit_status: list[int] = []


def record_exit_status() -> None:
    """Make ``sys.exit(status)`` remember an integer status (for messages and abort codes at
    exit, which Python does not otherwise tell atexit handlers). Idempotent."""
    if getattr(sys.exit, "_records_status", False):
        return
    real_exit = sys.exit

    def exit(status=None):  # noqa: A001 - stands in for sys.exit
        _exit_status[:] = [status if isinstance(status, int) else (0 if status is None else 1)]
        real_exit(status)

    exit._records_status = True  # type: ignore[attr-defined]
    exit.__doc__ = real_exit.__doc__
    sys.exit = exit


def exit_status() -> int:
    """The status of the last ``sys.exit`` (after :func:`record_exit_status`), else 0."""
    return _exit_status[0] if _exit_status else 0
