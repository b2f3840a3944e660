"""The process group: the world of ranks this process belongs to, read from MPI.

``init()`` works under any launcher of the MPI library mpi4py uses (mpiexec, mpirun, srun,
distgrad-run) and in a plain ``python`` process (a world of one; without mpi4py installed, a
local communicator stands in). It also makes failures fatal to the whole job: an uncaught
exception on any rank, in any thread, prints its traceback with every line prefixed
``[rank N]`` and calls ``MPI_Abort``. A collective that misses its deadline has the hang
watchdog (``watchdog.py``) report every rank's state first; ``DISTGRAD_DEBUG=1`` checks every
collective against the other ranks' before it runs (``contract.py``).
"""

from __future__ import annotations

import atexit
import datetime
import importlib.util
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend.logconfig import set_log_rank
from ..launcher import failure
from .communicator import DEFAULT_TIMEOUT, Array, Communicator, LocalCommunicator, Work
from .contract import debug_requested, enable_debug
from .desync import DesyncCheck, desync_requested, finish
from .env import cross_check, launcher_claims
from .nccl import GpuArray, gpu_communicator, select_local_gpu
from .shm_files import unlink_mapped_mpich_files
from .watchdog import Watchdog

if TYPE_CHECKING:
    from .groups import ProcessGroup
    from .hierarchical import HierarchicalAllreduce

__all__ = [
    "init",
    "is_available",
    "is_initialized",
    "finalize",
    "rank",
    "world_size",
    "get_rank",
    "get_world_size",
    "local_rank",
    "local_world_size",
    "barrier",
    "get_communicator",
    "communicator_for",
    "set_timeout",
    "get_timeout",
]

TIMEOUT_ENV = "DISTGRAD_COLLECTIVE_TIMEOUT"


class _World:
    def __init__(self, comm: Communicator, local_rank: int, local_size: int):
        self.comm = comm
        self.local_rank = local_rank
        self.local_size = local_size
        self.hooks = (sys.excepthook, threading.excepthook)
        # made by communicator_for at the first GPU array
        self.gpu_comm: Communicator | None = None
        self.watchdog: Watchdog | None = None  # for a world of more than one rank
        # ProcessGroups made by new_group (groups.py), in creation order
        self.groups: list[ProcessGroup] = []
        self.group_calls = 0  # new_group calls so far (members or not)
        # private MPI communicator for control messages (groups.py); None without mpi4py
        self.ctrl: Any = None
        # hierarchical.all_reduce's reducers, by (ranks_per_node, DISTGRAD_FAKE_NODES)
        self.hierarchical_allreduce: dict[tuple[int | None, str | None], HierarchicalAllreduce] = {}


_world: _World | None = None


def is_available() -> bool:
    """Whether multi-process runs are possible here (mpi4py is installed)."""
    return importlib.util.find_spec("mpi4py") is not None


def _seconds(timeout: float | str | datetime.timedelta) -> float:
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    timeout = float(timeout)
    if not timeout > 0:
        raise ValueError(
            f"the collective timeout must be a positive number of seconds, got {timeout}"
        )
    return timeout


def _default_timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        return _seconds(value)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={value!r} is not a positive number of seconds") from None


def init(timeout: float | datetime.timedelta | None = None) -> Communicator:
    """Join the world of ranks (idempotent) and return its communicator.

    ``timeout`` (seconds or a ``timedelta``; default ``$DISTGRAD_COLLECTIVE_TIMEOUT`` or 1800)
    is the deadline of every collective: one that has not completed by then raises an error
    naming it and takes the job down instead of hanging.
    """
    global _world
    if _world is not None:
        if timeout is not None:
            _world.comm.timeout = _seconds(timeout)
        return _world.comm
    seconds = _seconds(timeout) if timeout is not None else _default_timeout()
    if is_available():
        _world = _mpi_world(seconds)
        select_local_gpu(_world.local_rank, _world.local_size)
    else:
        claimed = [c for c in launcher_claims() if c[1] == "world size" and c[3] > 1]
        if claimed:
            launcher, _, name, value = claimed[0]
            raise RuntimeError(
                f"{launcher} started {value} processes ({name}={value}) but "
                f"mpi4py is not installed, so they cannot talk to each other: "
                f"pip install 'distgrad[mpi]'"
            )
        _world = _World(LocalCommunicator(seconds), 0, 1)
    set_log_rank(_world.comm.rank if _world.comm.world_size > 1 else None)
    _install_failure_handlers(_world)
    return _world.comm


def _mpi_world(seconds: float) -> _World:
    from mpi4py import MPI

    from .mpi import MPICommunicator

    world = MPI.COMM_WORLD
    local = world.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, local_size = local.Get_rank(), local.Get_size()
    local.Barrier()  # every rank of this node has mapped MPICH's shared memory
    if local_rank == 0:
        unlink_mapped_mpich_files()  # a job that fails later leaves nothing in /dev/shm
    local.Free()
    library = MPI.Get_library_version().strip().splitlines()[0]
    problems = cross_check(
        world.Get_rank(), world.Get_size(), local_rank, local_size, mpi_library=library
    )
    for problem in problems:
        warnings.warn(
            f"distgrad.distributed.init (rank {world.Get_rank()}): {problem}; using MPI's values",
            RuntimeWarning,
            stacklevel=3,
        )
    # A private duplicate: users' own traffic on COMM_WORLD cannot interleave with ours.
    result = _World(MPICommunicator(world.Dup(), seconds), local_rank, local_size)
    result.ctrl = world.Dup()
    if world.Get_size() > 1 and desync_requested():
        result.comm.desync = DesyncCheck(world.Dup(), 0, range(world.Get_size()), "WORLD")
    if world.Get_size() > 1:  # (on COMM_WORLD: the job id takes none of our sequence numbers)
        job = world.bcast(
            f"{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}-{os.getpid()}"
            if world.Get_rank() == 0
            else None,
            root=0,
        )
        result.watchdog = Watchdog(world.Get_rank(), world.Get_size(), job)
        _watch(result, result.comm)
    return result


def _watch(world: _World, comm: Communicator) -> None:
    """Put ``comm`` under the world's watchdog, and in debug mode if asked for."""
    if world.watchdog is None:
        return
    world.watchdog.watch(comm)
    if debug_requested():
        enable_debug(comm)


def gpu_communicator_over(
    host: Communicator, array: GpuArray, index: int, ranks: Sequence[int], label: str
) -> Communicator:
    """The communicator for GPU ``array`` over the ranks of ``host`` (all of them call this
    together), with its own desync channel and under the watchdog."""
    world = _require()
    comm = gpu_communicator(host, array.device.id)
    if comm is not host:
        comm.label = label
        mpi_host = getattr(host, "comm", None)
        if host.desync is not None and mpi_host is not None:
            comm.desync = DesyncCheck(mpi_host.Dup(), index, ranks, label)
        _watch(world, comm)
    return comm


def _require() -> _World:
    if _world is None:
        raise RuntimeError(
            "distgrad.distributed is not initialized: call distgrad.distributed.init() first"
        )
    return _world


def is_initialized() -> bool:
    """Whether :func:`init` has run in this process."""
    return _world is not None


def get_communicator() -> Communicator:
    """The world's communicator (after ``init()``)."""
    world = _world
    return world.comm if world is not None else _require().comm


def communicator_for(array: Array | None, group: ProcessGroup | None = None) -> Communicator:
    """The communicator of ``group`` (None: the world) for ``array``: the host communicator
    for host arrays; for GPU arrays, NCCL (set up by the group's ranks together at its first
    GPU array) or, where NCCL cannot be used, the host one, which stages them through host
    memory."""
    if group is not None and not getattr(group, "is_world", False):
        return group.communicator_for(array)
    world = _require()
    if array is None or isinstance(array, np.ndarray):
        return world.comm
    if world.gpu_comm is None:
        ranks = range(world.comm.world_size)
        world.gpu_comm = gpu_communicator_over(world.comm, array, 0, ranks, "WORLD")
    return world.gpu_comm


def rank() -> int:
    """This process's rank in the world (0 .. world_size() - 1)."""
    return _require().comm.rank


def world_size() -> int:
    """The number of processes in the job."""
    return _require().comm.world_size


get_rank, get_world_size = rank, world_size


def local_rank() -> int:
    """This process's rank among the ranks on its node."""
    return _require().local_rank


def local_world_size() -> int:
    """How many ranks run on this node."""
    return _require().local_size


def barrier(async_op: bool = False) -> Work | None:
    """Wait until every rank has reached the barrier."""
    return get_communicator().barrier(async_op)


def set_timeout(timeout: float | datetime.timedelta) -> None:
    """Change the deadline of collectives (seconds or a ``timedelta``)."""
    _require().comm.timeout = _seconds(timeout)


def get_timeout() -> float:
    """The deadline of each collective in seconds."""
    return _require().comm.timeout


def distinct(comms: Iterable[Communicator | None]) -> list[Communicator]:
    """The communicators of ``comms``, each once, without None."""
    out: list[Communicator] = []
    for comm in comms:
        if comm is not None and all(comm is not c for c in out):
            out.append(comm)
    return out


def _communicators(world: _World) -> list[Communicator]:
    comms = [world.comm, world.gpu_comm]
    for group in world.groups:
        comms += group._communicators()
    return distinct(comms)


def finalize() -> None:
    """Leave the world: check that every rank finishes here too (desync detection: a rank
    still issuing collectives gets a named error on every rank), then release distgrad's
    communicators and failure handlers. MPI itself is finalized by mpi4py when the
    interpreter exits."""
    global _world
    if _world is None:
        return
    _finish(_world, 0)
    world, _world = _world, None
    sys.excepthook, threading.excepthook = world.hooks
    atexit.unregister(_at_exit)
    if world.watchdog is not None:
        world.watchdog.stop()
    if world.comm.failure is None:
        for comm in _communicators(world):
            mpi = getattr(comm, "comm", None)
            if mpi is not None:
                mpi.Free()
            if comm.desync is not None:
                comm.desync.mpi.Free()
        if world.ctrl is not None:
            world.ctrl.Free()


def _finish(world: _World, status: int) -> None:
    """The exit fingerprints (desync.py); a difference or a timeout takes the job down."""
    if world.comm.world_size == 1 or world.comm.failure is not None:
        return
    finish_communicators(world, _communicators(world), status)


def finish_communicators(world: _World, comms: Iterable[Communicator], status: int) -> None:
    """Exit fingerprints on ``comms``; a difference or a timeout takes the job down."""
    problem = finish(comms, status, world.comm.timeout)
    if problem is not None:
        comm = world.comm
        failure.die(problem, comm.rank, comm.world_size, status or 1, comm.abort, "desync")


# ---- failures take the whole job down ---------------------------------------------------------
def _die(text: str, code: int) -> None:
    comm = _require().comm
    failure.die(text, comm.rank, comm.world_size, code, comm.abort)


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    world = _world
    if world is None or world.comm.world_size == 1:
        (world.hooks[0] if world else sys.__excepthook__)(exc_type, exc, tb)
        return
    _die(
        failure.traceback_text(exc_type, exc, tb),
        130 if issubclass(exc_type, KeyboardInterrupt) else 1,
    )


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    world = _world
    if world is None or world.comm.world_size == 1 or args.exc_type is SystemExit:
        (world.hooks[1] if world else threading.__excepthook__)(args)
        return
    name = args.thread.name if args.thread is not None else "?"
    _die(
        f"Exception in thread {name}:\n"
        + failure.traceback_text(args.exc_type, args.exc_value, args.exc_traceback),
        1,
    )


def _at_exit() -> None:
    """At exit: a communicator left broken by a timeout may have collectives in flight that
    would hang MPI_Finalize: abort. Otherwise check that the other ranks finish too."""
    world = _world
    if world is None or world.comm.world_size == 1:
        return
    comm = world.comm
    if comm.failure is not None:  # (flushed, and a moment for the launcher to forward output)
        failure.die("", comm.rank, comm.world_size, 1, comm.abort, f"exiting after {comm.failure}")
    _finish(world, failure.exit_status())


def _install_failure_handlers(world: _World) -> None:
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    failure.record_exit_status()
    atexit.register(_at_exit)
