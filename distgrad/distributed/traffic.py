"""``CountingCommunicator``: a communicator that counts the bytes of the collectives it issues.

Wraps any ``Communicator`` (same interface, same ranks; every call is forwarded) and adds, per
collective kind, the number of calls and the bytes in the ZeRO paper's accounting (Rajbhandari
et al. 2020), so that the counts can be compared with its formulas: an all-reduce of n bytes
counts 2n (a reduce-scatter plus an all-gather), a reduce-scatter counts its whole input n, an
all-gather its whole output n, a broadcast, reduce, gather or scatter its n bytes. The ring
factor (world - 1) / world that real bandwidth use carries is left out, as in the paper.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .communicator import Array, Communicator, Work

__all__ = ["CountingCommunicator", "Tally", "collective_bytes"]

TALLIES: list[Tally] = []  # the open tallies (Communicator._issue reports to each)


def _nbytes(array: Array | None) -> int:
    return 0 if array is None else int(array.size) * array.dtype.itemsize


def collective_bytes(op: str, nbytes: int, world_size: int) -> int:
    """The bytes counted for collective ``op`` whose array argument (allgather, gather: the
    per-rank input; reduce_scatter: the whole input) holds ``nbytes``."""
    if op == "allreduce":
        return 2 * nbytes
    if op in ("allgather", "gather"):
        return world_size * nbytes
    return nbytes


def record(comm: Communicator, op: str, array: Array | None) -> None:
    """Add a collective issued by ``comm`` to every open ``Tally``."""
    nbytes = collective_bytes(op, _nbytes(array), comm.world_size)
    label = getattr(comm, "label", "")
    for tally in TALLIES:
        tally.calls[op] += 1
        tally.bytes[op] += nbytes
        tally.by_label[label] += nbytes


class Tally:
    """Counts every collective issued while it is open (a context manager, or ``open()`` /
    ``close()``): ``calls`` and ``bytes`` by collective, ``by_label`` by communicator label,
    ``total_bytes``."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.by_label: Counter[str] = Counter()

    @property
    def total_bytes(self) -> int:
        """All bytes counted."""
        return sum(self.bytes.values())

    def open(self) -> Tally:
        """Start counting."""
        if self not in TALLIES:
            TALLIES.append(self)
        return self

    def close(self) -> None:
        """Stop counting."""
        if self in TALLIES:
            TALLIES.remove(self)

    def __enter__(self) -> Tally:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class CountingCommunicator:
    """``comm`` with ``calls`` and ``bytes`` (``Counter``s by collective name); ``total_bytes``
    sums them, ``reset()`` starts again."""

    def __init__(self, comm: Communicator):
        self.inner = comm
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget the counts so far."""
        self.calls.clear()
        self.bytes.clear()

    @property
    def total_bytes(self) -> int:
        """All bytes counted since the last ``reset``."""
        return sum(self.bytes.values())

    def _count(self, op: str, nbytes: int) -> None:
        self.calls[op] += 1
        self.bytes[op] += nbytes

    def allreduce(self, array: Array, *args: Any, **kwargs: Any) -> Work | None:
        """Count 2 x the array's bytes, then all-reduce."""
        self._count("allreduce", 2 * _nbytes(array))
        return self.inner.allreduce(array, *args, **kwargs)

    def reduce_scatter(self, send: Array, recv: Array, *args: Any, **kwargs: Any) -> Work | None:
        """Count the whole input's bytes, then reduce-scatter."""
        self._count("reduce_scatter", _nbytes(send))
        return self.inner.reduce_scatter(send, recv, *args, **kwargs)

    def allgather(self, send: Array, recv: Array, *args: Any, **kwargs: Any) -> Work | None:
        """Count the whole output's bytes, then all-gather."""
        self._count("allgather", _nbytes(recv))
        return self.inner.allgather(send, recv, *args, **kwargs)

    def broadcast(self, array: Array, *args: Any, **kwargs: Any) -> Work | None:
        """Count the array's bytes, then broadcast."""
        self._count("broadcast", _nbytes(array))
        return self.inner.broadcast(array, *args, **kwargs)

    def reduce(self, array: Array, *args: Any, **kwargs: Any) -> Work | None:
        """Count the array's bytes, then reduce."""
        self._count("reduce", _nbytes(array))
        return self.inner.reduce(array, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("inner", "calls", "bytes"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)
