"""What ``import distgrad`` does first when an MPI launcher (a plain ``mpiexec``/``mpirun``,
or ``srun``) started this process as one of several ranks, before numpy is imported:

- an uncaught exception, in any thread, prints its traceback tagged ``[rank N]`` and aborts
  the whole job (a PMI abort while MPI is not up yet, so ranks waiting in ``MPI_Init`` go
  too); ``sys.exit(status)`` with a non-zero status before ``distributed.init()`` does the
  same. From ``init()`` on, ``distgrad.distributed`` takes over (``process_group.py``).
- BLAS/OpenMP threads: if none of ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``MKL_NUM_THREADS`` is set, each rank gets ``cores // ranks on this node`` threads (at least
  1) instead of every rank starting one thread per core; if numpy was imported before
  distgrad it is too late, and a warning says so.

Otherwise (a plain ``python``) it costs a few environment lookups and imports nothing.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import MutableMapping
from types import ModuleType, TracebackType

__all__ = ["prepare", "THREAD_VARS"]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
_placement: tuple[int, int] | None = None
failure: ModuleType | None = None  # distgrad.launcher.failure, imported when launched as a rank


_LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")


def _distributed_is_up() -> bool:
    module = sys.modules.get("distgrad.distributed.process_group")
    return module is not None and module.is_initialized()


def _launched() -> tuple[ModuleType, int, int]:
    """``(distgrad.launcher.failure, rank, size)``: set by ``prepare`` before it installs the
    hooks that call this."""
    if failure is None or _placement is None:
        raise RuntimeError("distgrad._launched: a failure hook ran before prepare() set it up")
    return failure, _placement[0], _placement[1]


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    failure, rank, size = _launched()
    code = 130 if issubclass(exc_type, KeyboardInterrupt) else 1
    failure.die(failure.traceback_text(exc_type, exc, tb), rank, size, code)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        threading.__excepthook__(args)
        return
    failure, rank, size = _launched()
    name = args.thread.name if args.thread is not None else "?"
    text = f"Exception in thread {name}:\n" + failure.traceback_text(
        args.exc_type, args.exc_value, args.exc_traceback
    )
    failure.die(text, rank, size, 1)


def _exit_before_init() -> None:
    failure, rank, size = _launched()
    status = failure.exit_status()
    if status and not _distributed_is_up():
        failure.die(f"exited with status {status}", rank, size, status, reason="exit")


def limit_threads(
    environ: MutableMapping[str, str] | None = None, cpu_count: int | None = None, warn: bool = True
) -> int | None:
    """Set one BLAS/OpenMP thread count per rank (see the module docstring); returns it, or
    None when nothing was set."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in THREAD_VARS):
        return None  # chosen by the user or by distgrad-run
    local = next((environ[v] for v in _LOCAL_SIZE_VARS if environ.get(v, "").isdigit()), None)
    if local is None or int(local) < 2:
        return None
    cores = cpu_count or len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    threads = max(1, cores // int(local))
    if "numpy" in sys.modules:
        if warn:
            import logging

            logging.getLogger("distgrad").warning(
                "%s ranks on this node and numpy was imported before distgrad, so each may "
                "start %d BLAS threads: set OMP_NUM_THREADS=%d (or import distgrad first)",
                local,
                cores,
                threads,
            )
        return None
    for name in THREAD_VARS:
        environ[name] = str(threads)
    return threads


def prepare() -> None:
    """Install the failure hooks and the thread limit when launched as one of several ranks."""
    global _placement, failure
    if not any(name in os.environ for name in _LAUNCHER_RANK_VARS):
        return  # a plain python: nothing to do, nothing imported
    from .launcher import failure as module

    failure = module
    place = module.launched_placement()
    if place is None or place[1] < 2:
        return
    _placement = place
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _excepthook
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _thread_excepthook
    module.record_exit_status()
    atexit.register(_exit_before_init)
    limit_threads()


prepare()  # at import: ``import distgrad`` imports this module first
