"""Process groups: subsets of the world's ranks with communicators of their own
(``torch.distributed.new_group``).

``new_group(ranks)`` is called by every rank of the world, in the same order (as in PyTorch),
but only the members communicate: they first exchange ``(call number, ranks)`` point to point
on a private control communicator (a mismatch, i.e. groups created in a different order,
raises on the ranks that see it, naming both calls; a member that never comes is reported at
the collective deadline), then split MPI with ``Comm.Create_group``, which involves the
members only. Ranks outside a group are never blocked by it: a collective on a group that
does not contain the calling rank returns at once (PyTorch warns and returns too).

A ``ProcessGroup`` gives ``rank()``, ``size()``, ``ranks`` (the members' global ranks, in
increasing order: group rank i is ``ranks[i]``) and ``communicator_for(array)``: its MPI
communicator for host arrays, and for GPU arrays an NCCL communicator bootstrapped over that
MPI communicator at the group's first GPU array (or the MPI one, staging through host memory,
where NCCL cannot serve). ``group.WORLD`` is the world (the same as passing ``None``).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import process_group as _pg
from .communicator import Array, CollectiveTimeoutError, Communicator
from .contract import CollectiveMismatchError
from .desync import DesyncCheck, desync_requested

__all__ = ["ProcessGroup", "group", "new_group", "destroy_group", "resolve"]

_NEW_GROUP_TAG = 7101


class ProcessGroup:
    """A set of ranks that run collectives together (``torch.distributed.ProcessGroup``)."""

    is_world = False

    def __init__(self, ranks: Iterable[int], index: int, comm: Communicator | None, timeout: float):
        self.ranks: tuple[int, ...] = tuple(ranks)
        self.index = index
        self._comm = comm
        self._gpu: Communicator | None = None
        self._timeout = timeout
        self._destroyed = False

    # ---- membership -----------------------------------------------------------------------
    @property
    def is_member(self) -> bool:
        """Whether this process is one of the group's ranks."""
        return self._comm is not None

    def rank(self) -> int:
        """This process's rank in the group (-1 if it is not a member, as in PyTorch)."""
        return self._comm.rank if self._comm is not None else -1

    def size(self) -> int:
        """The number of ranks in the group."""
        return len(self.ranks)

    def group_rank(self, global_rank: int) -> int:
        """The group rank of world rank ``global_rank`` (ValueError if not a member)."""
        try:
            return self.ranks.index(global_rank)
        except ValueError:
            raise ValueError(
                f"rank {global_rank} is not in {self.label} (ranks {list(self.ranks)})"
            ) from None

    def global_rank(self, group_rank: int) -> int:
        """The world rank of group rank ``group_rank``."""
        if not 0 <= group_rank < len(self.ranks):
            raise ValueError(
                f"group rank {group_rank} is not in {self.label} of size {self.size()}"
            )
        return self.ranks[group_rank]

    @property
    def label(self) -> str:
        """A short name of the group for messages, e.g. ``process group #2`` (``WORLD``)."""
        return f"process group #{self.index}"

    # ---- communicators -------------------------------------------------------------------
    def communicator_for(self, array: Array | None) -> Communicator:
        """The group's communicator for ``array`` (host: MPI; GPU: NCCL when possible)."""
        if self._destroyed:
            raise RuntimeError(f"{self.label} has been destroyed (destroy_process_group)")
        if self._comm is None:
            raise RuntimeError(
                f"rank {_pg.rank()} is not a member of {self.label} (ranks {list(self.ranks)})"
            )
        if array is None or isinstance(array, np.ndarray):
            return self._comm
        if self._gpu is None:
            self._gpu = _pg.gpu_communicator_over(
                self._comm, array, self.index, self.ranks, self.label
            )
        return self._gpu

    def _communicators(self) -> list[Communicator]:
        return _pg.distinct([self._comm, self._gpu])

    def __repr__(self) -> str:
        member = f"rank {self.rank()} of {self.size()}" if self.is_member else "not a member"
        return f"<ProcessGroup #{self.index} ranks {list(self.ranks)}: {member}>"


class _World(ProcessGroup):
    """``group.WORLD``: every rank; resolves to the world of the current ``init()``."""

    is_world = True

    def __init__(self) -> None:
        super().__init__((), 0, None, 0.0)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(range(_pg.world_size()))

    @ranks.setter
    def ranks(self, value: tuple[int, ...]) -> None:
        pass

    @property
    def is_member(self) -> bool:
        return True

    @property
    def label(self) -> str:
        return "WORLD"

    def rank(self) -> int:
        return _pg.rank()

    def size(self) -> int:
        return _pg.world_size()

    def group_rank(self, global_rank: int) -> int:
        if not 0 <= global_rank < _pg.world_size():
            raise ValueError(f"rank {global_rank} is not in the world of size {_pg.world_size()}")
        return global_rank

    def global_rank(self, group_rank: int) -> int:
        return self.group_rank(group_rank)

    def communicator_for(self, array: Array | None) -> Communicator:
        return _pg.communicator_for(array)

    def __repr__(self) -> str:
        return "<ProcessGroup WORLD>"


class group:  # noqa: N801 - torch.distributed.group
    """``group.WORLD``: the group of every rank."""

    WORLD: ProcessGroup = _World()


def resolve(process_group: ProcessGroup | None) -> ProcessGroup:
    """``process_group``, or the world for None."""
    if process_group is None:
        return group.WORLD
    if not isinstance(process_group, ProcessGroup):
        raise TypeError(
            f"group must be a ProcessGroup from new_group() or None, got "
            f"{type(process_group).__name__}"
        )
    return process_group


def _timeout_seconds(timeout: float | datetime.timedelta | None, default: float) -> float:
    if timeout is None:
        return default
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if not float(timeout) > 0:
        raise ValueError(f"new_group: timeout must be positive, got {timeout}")
    return float(timeout)


def new_group(
    ranks: Iterable[int] | None = None,
    timeout: float | datetime.timedelta | None = None,
    backend: str | None = None,
    pg_options: object = None,
    use_local_synchronization: bool = False,
    group_desc: str | None = None,
) -> ProcessGroup:
    """A new process group of the world ranks ``ranks`` (None: all). Every rank of the world
    calls it, in the same order (``use_local_synchronization=True`` relaxes this to the
    members: non-members need not call it); non-members get a group they cannot use but
    are not blocked. ``timeout``: the group's collective deadline (default: the world's).
    ``backend`` and ``pg_options`` are accepted for PyTorch compatibility: arrays choose MPI
    or NCCL themselves."""
    world = _pg._require()
    size = world.comm.world_size
    ranks = None if ranks is None else list(ranks)  # (iterated twice below)
    members = sorted(range(size) if ranks is None else {int(r) for r in ranks})
    if not members or members[0] < 0 or members[-1] >= size:
        raise ValueError(
            f"new_group: ranks must be non-empty world ranks in 0..{size - 1}, got "
            f"{None if ranks is None else list(ranks)}"
        )
    seconds = _timeout_seconds(timeout, world.comm.timeout)
    me = world.comm.rank
    world.group_calls += 1
    index = world.group_calls
    if me not in members:
        result = ProcessGroup(members, index, None, seconds)
        world.groups.append(result)
        return result
    comm = _create(world, index, members, seconds)
    result = ProcessGroup(members, index, comm, seconds)
    world.groups.append(result)
    return result


def _create(world: _pg._World, index: int, members: list[int], seconds: float) -> Communicator:
    """The members' communicator of group call #``index`` (after agreeing on it)."""
    from .communicator import LocalCommunicator

    if world.ctrl is None:  # a world of one without mpi4py
        return LocalCommunicator(seconds)
    from .mpi import MPICommunicator

    if not isinstance(world.comm, MPICommunicator):  # (ctrl is set for MPI worlds only)
        raise TypeError(f"new_group: the world's communicator is not MPI's ({world.comm!r})")
    _agree(world, index, members, seconds)
    base = world.comm.comm
    mpi_group = base.Get_group().Incl(members)
    mpi_comm = base.Create_group(mpi_group, tag=index)
    mpi_group.Free()
    comm = MPICommunicator(mpi_comm, seconds)
    label = f"process group #{index}"
    comm.label = label
    if len(members) > 1:
        if desync_requested():
            comm.desync = DesyncCheck(mpi_comm.Dup(), index, members, label)
        _pg._watch(world, comm)
    return comm


def _agree(world: _pg._World, index: int, members: Sequence[int], seconds: float) -> None:
    """Every member tells every other member which group call it is making; raise if one
    makes another (groups created in a different order), or does not come in time."""
    ctrl, me = world.ctrl, world.comm.rank
    mine: tuple[Any, ...] = (index, tuple(members))
    others = [r for r in members if r != me]
    sends = [ctrl.isend(mine, dest=r, tag=_NEW_GROUP_TAG) for r in others]
    waiting, deadline = set(others), time.monotonic() + seconds
    while waiting:
        for r in sorted(waiting):
            message = ctrl.improbe(source=r, tag=_NEW_GROUP_TAG)
            if message is None:
                continue
            waiting.discard(r)
            theirs = message.recv()
            if theirs != mine:
                raise CollectiveMismatchError(
                    f"[rank {me}] new_group mismatch: rank {me} is in its new_group call "
                    f"#{index} for ranks {list(members)}, but rank {r} is in its call "
                    f"#{theirs[0]} for ranks {list(theirs[1])}. Every rank must create the "
                    f"same groups in the same order (call new_group on every rank, members "
                    f"or not)."
                )
        if waiting and time.monotonic() > deadline:
            raise CollectiveTimeoutError(
                f"[rank {me}] new_group call #{index} for ranks {list(members)}: rank(s) "
                f"{sorted(waiting)} did not reach it within {seconds:g} s"
            )
        if waiting:
            time.sleep(1e-4)
    for request in sends:
        request.wait()


def destroy_group(process_group: ProcessGroup) -> None:
    """Release a group made by ``new_group`` (its members call this together)."""
    if process_group.is_world:
        raise ValueError("destroy_group: use destroy_process_group() for the world")
    world = _pg._require()
    if process_group._destroyed:
        return
    comms = process_group._communicators()
    _pg.finish_communicators(world, comms, 0)
    process_group._destroyed = True
    if process_group in world.groups:
        world.groups.remove(process_group)
    if all(comm.failure is None for comm in comms):
        for comm in comms:
            mpi = getattr(comm, "comm", None)  # MPICommunicator's MPI communicator
            if mpi is not None:
                mpi.Free()
            if comm.desync is not None:
                comm.desync.mpi.Free()
