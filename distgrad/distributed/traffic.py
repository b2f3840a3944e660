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

__all__ = ["CountingCommunicator"]


def _nbytes(array) -> int:
    return 0 if array is None else int(array.size) * array.dtype.itemsize


class CountingCommunicator:
    """``comm`` with ``calls`` and ``bytes`` (``Counter``s by collective name); ``total_bytes``
    sums them, ``reset()`` starts again."""

    def __init__(self, comm):
        self.inner = comm
        self.calls, self.bytes = Counter(), Counter()

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

    def allreduce(self, array, *args, **kwargs):
        """Count 2 x the array's bytes, then all-reduce."""
        self._count("allreduce", 2 * _nbytes(array))
        return self.inner.allreduce(array, *args, **kwargs)

    def reduce_scatter(self, send, recv, *args, **kwargs):
        """Count the whole input's bytes, then reduce-scatter."""
        self._count("reduce_scatter", _nbytes(send))
        return self.inner.reduce_scatter(send, recv, *args, **kwargs)

    def allgather(self, send, recv, *args, **kwargs):
        """Count the whole output's bytes, then all-gather."""
        self._count("allgather", _nbytes(recv))
        return self.inner.allgather(send, recv, *args, **kwargs)

    def broadcast(self, array, *args, **kwargs):
        """Count the array's bytes, then broadcast."""
        self._count("broadcast", _nbytes(array))
        return self.inner.broadcast(array, *args, **kwargs)

    def reduce(self, array, *args, **kwargs):
        """Count the array's bytes, then reduce."""
        self._count("reduce", _nbytes(array))
        return self.inner.reduce(array, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name in ("inner", "calls", "bytes"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)
