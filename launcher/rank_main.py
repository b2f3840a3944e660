"""Per-rank wrapper: ``python .../launcher/rank_main.py (SCRIPT | -c CODE) [ARGS...]``.

distgrad-run starts this in every process. It sets the per-rank variables
(:func:`rank_environment`) before the user program imports anything, makes
stdout and stderr line-buffered (output shows up live, in whole lines), runs the
program as ``__main__``, and gives ``python -m mpi4py`` semantics on failure: an
uncaught exception (or a non-zero ``sys.exit``) prints the traceback with every
line prefixed ``[rank N]`` and aborts the whole job, so no rank is left waiting
in a collective.

It runs by file path and imports only the standard library: ``python -m
distgrad.launcher.rank_main`` would import ``distgrad`` (and numpy with its
thread pool) before OMP_NUM_THREADS is set. ``--dry-run`` imports it as a module
to show what each rank will get.
"""

from __future__ import annotations

import os
import re
import runpy
import socket
import sys
import traceback
from dataclasses import dataclass
from typing import Mapping

USAGE = "usage: python rank_main.py (SCRIPT | -c CODE) [ARGS...]"

#: Set to ``none`` (``--no-gpu-bind``) to leave CUDA_VISIBLE_DEVICES alone.
GPU_BIND_VAR = "DISTGRAD_GPU_BIND"


@dataclass(frozen=True)
class Placement:
    """Where one process sits in the job."""

    rank: int
    size: int
    local_rank: int
    local_size: int


def _slurm_tasks_on_node(spec: str, node_index: int) -> int:
    """Tasks on node ``node_index`` from a Slurm count list such as ``'2(x3),1'``."""
    counts = []
    for item in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item)
        if not match:
            raise ValueError(f"unexpected Slurm task list {spec!r}")
        counts += [int(match[1])] * int(match[2] or 1)
    return counts[node_index]


def placement_from_env(environ: Mapping[str, str]) -> Placement:
    """This process's placement from Open MPI, MPICH hydra or Slurm variables.

    Checked in that order (hydra before Slurm because mpiexec may run inside a Slurm
    job); a process started without any launcher is rank 0 of 1.
    """
    if "OMPI_COMM_WORLD_RANK" in environ:
        keys = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE")
        return Placement(*(int(environ[key]) for key in keys))
    if "MPI_LOCALRANKID" in environ:
        keys = ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS")
        return Placement(*(int(environ[key]) for key in keys))
    if "SLURM_STEP_TASKS_PER_NODE" in environ and "SLURM_LOCALID" in environ:
        return Placement(
            int(environ["SLURM_PROCID"]),
            int(environ["SLURM_NTASKS"]),
            int(environ["SLURM_LOCALID"]),
            _slurm_tasks_on_node(environ["SLURM_STEP_TASKS_PER_NODE"],
                                 int(environ["SLURM_NODEID"])),
        )
    return Placement(0, 1, 0, 1)


def visible_gpus(environ: Mapping[str, str], proc_dir: str = "/proc/driver/nvidia/gpus") -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else the NVIDIA
    driver's device list (empty without a GPU)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [gpu.strip() for gpu in environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    try:
        return [str(index) for index in range(len(os.listdir(proc_dir)))]
    except OSError:
        return []


def rank_environment(
    place: Placement, environ: Mapping[str, str], cpu_count: int, gpus: list[str]
) -> dict[str, str]:
    """Variables to set for one rank before the user program starts.

    - ``DISTGRAD_LOCAL_RANK`` / ``DISTGRAD_LOCAL_SIZE`` from the placement;
    - ``OMP_NUM_THREADS``, unless set: ``SLURM_CPUS_PER_TASK`` under Slurm, else
      this node's cores divided by the ranks on it (at least 1);
    - ``CUDA_VISIBLE_DEVICES``: one of ``gpus``, picked by local rank (ranks share
      GPUs round-robin when there are more ranks than GPUs), unless there are no
      GPUs or ``DISTGRAD_GPU_BIND=none``.
    """
    result = {
        "DISTGRAD_LOCAL_RANK": str(place.local_rank),
        "DISTGRAD_LOCAL_SIZE": str(place.local_size),
    }
    if "OMP_NUM_THREADS" not in environ:
        threads = environ.get("SLURM_CPUS_PER_TASK") or max(1, cpu_count // place.local_size)
        result["OMP_NUM_THREADS"] = str(threads)
    if gpus and environ.get(GPU_BIND_VAR, "") != "none":
        result["CUDA_VISIBLE_DEVICES"] = gpus[place.local_rank % len(gpus)]
    return result


def _pmi_abort(code: int) -> None:
    """Ask the process manager to kill the job through the PMI-1 wire protocol.

    Used when MPI was never initialised (e.g. the program failed while importing):
    hydra would otherwise wait forever for the other ranks, which sit in MPI_Init.
    Does nothing without ``PMI_FD`` or when the server does not answer.
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
    """End the whole job with exit status ``code``: MPI_Abort through mpi4py when this
    process initialised MPI with it, else a PMI abort, else just exit (skipping atexit
    handlers, which could block in MPI_Finalize)."""
    sys.stdout.flush()
    sys.stderr.flush()
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.COMM_WORLD.Abort(code)
    _pmi_abort(code)
    os._exit(code)


def _run(argv: list[str]) -> None:
    if argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""  # as `python -c` does
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python SCRIPT` does
        runpy.run_path(argv[0], run_name="__main__")


def _tagged_traceback(error: BaseException, rank: int) -> str:
    """The traceback of ``error`` without this wrapper's and runpy's frames, each line
    prefixed ``[rank N]``."""
    tb = error.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == __file__ or tb.tb_frame.f_globals.get("__name__") == "runpy"
    ):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(error), error, tb))
    return "\n".join(f"[rank {rank}] {line}" for line in text.rstrip("\n").split("\n"))


def main(argv: list[str] | None = None) -> None:
    """Set up this rank's environment and run the program; abort the job if it fails."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0] == "-c" and len(argv) < 2) or argv[0] in ("-h", "--help"):
        sys.exit(USAGE)
    place = placement_from_env(os.environ)
    os.environ.update(
        rank_environment(place, os.environ, os.cpu_count() or 1, visible_gpus(os.environ))
    )
    for stream in (sys.stdout, sys.stderr):  # live, whole lines: tagged output stays readable
        stream.reconfigure(line_buffering=True, write_through=False)
    try:
        _run(argv)
    except SystemExit as exit_:
        if exit_.code in (None, 0):
            raise
        if not isinstance(exit_.code, int):
            print(f"[rank {place.rank}] {exit_.code}", file=sys.stderr)
        abort_job(exit_.code if isinstance(exit_.code, int) else 1)
    except BaseException as error:  # noqa: BLE001 - every failure must end the job
        print(_tagged_traceback(error, place.rank), file=sys.stderr)
        abort_job(1)


if __name__ == "__main__":
    main()
