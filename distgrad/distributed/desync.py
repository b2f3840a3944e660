"""Desync detection, on by default: every collective carries a fingerprint that the ranks
compare, so ranks that issue different collectives raise a named error within moments instead
of failing inside MPI, completing with wrong data or hanging until the deadline.

The fingerprint (sequence number, operation, dtype, element count, root, reduction, group) is
all-gathered on a private duplicate of the group's MPI communicator, started together with
the collective itself (no extra round trip: the two travel side by side); the collective is
reported complete only once the fingerprints have arrived and agree (sequence numbers are
shown but not compared: collectives issued outside distgrad, e.g. on raw MPI, shift them
without harm; DataParallel's contract check counts them). The n-th fingerprint of
a rank meets the n-th of every other rank, so a rank that skipped a collective, issued an extra
one or a different one is seen at the first collective where the ranks differ. A rank that
finishes (``destroy_process_group()``, or the end of the program) sends an *exit* fingerprint:
a rank still issuing collectives then meets it, and every rank raises
``CollectiveDesyncError`` naming what each one issued (which is how a rank that ran out of
data, skipped a backward and so has one step fewer, or left with ``sys.exit`` is caught).

A caller may label its next collective on a communicator (``comm.next_tag = int``, consumed by
that collective; -1 when unset) and give ``comm.tag_error(tags) -> Exception`` (``tags``: every
rank's label): the labels travel in the fingerprint, and when they differ that exception is
raised on every rank (``fully_shard`` names its units this way, at no extra round trip).

``DISTGRAD_DESYNC_CHECK=0`` turns it off (then such a job fails as MPI decides, or hangs until
the collective deadline). ``DISTGRAD_DEBUG=1`` (``contract.py``) checks before each collective
instead, so nothing of a mismatched collective runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NoReturn, overload

import numpy as np

from .communicator import Array, CollectiveInfo, ReduceOp, Test

if TYPE_CHECKING:
    from .communicator import Communicator
from .contract import CollectiveMismatchError

__all__ = ["CollectiveDesyncError", "DesyncCheck", "DESYNC_ENV", "desync_requested", "finish"]

DESYNC_ENV = "DISTGRAD_DESYNC_CHECK"
_OPS = (
    "allreduce",
    "broadcast",
    "allgather",
    "reduce_scatter",
    "reduce",
    "gather",
    "scatter",
    "barrier",
    "alltoall",
    "exit",
)
_CODE = {op: i for i, op in enumerate(_OPS)}
_EXIT = _CODE["exit"]
_REDUCTIONS = ("SUM", "AVG", "PRODUCT", "MAX", "MIN")
_FIELDS = 8  # seq, op, dtype, count, root (exit: status), reduction, group, caller's tag


class CollectiveDesyncError(CollectiveMismatchError):
    """The ranks issued different collectives (raised on every rank that took part)."""


def desync_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether desync detection is on (``DISTGRAD_DESYNC_CHECK`` unset or not 0/false/no/off)."""
    value = (os.environ if environ is None else environ).get(DESYNC_ENV, "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


def _dtype_name(code: int) -> str | None:
    if code < 0:
        return None
    try:
        return np.dtype(chr(code)).name
    except TypeError:
        return chr(code)


def _describe(fp: Iterable[Any]) -> str:
    seq, op, dtype, count, root, reduction, *_ = (int(v) for v in fp)
    if op == _EXIT:
        return f"nothing: it has finished (exit status {root}) after collective #{seq - 1}"
    info = CollectiveInfo(
        _OPS[op] if 0 <= op < len(_OPS) else f"op {op}",
        seq,
        0,
        0,
        root=None if root < 0 else root,
        reduce_op=None if reduction < 0 else getattr(ReduceOp, _REDUCTIONS[reduction]),
    )
    text = info.describe().rsplit(" on rank", 1)[0]
    name = _dtype_name(dtype)
    return text if name is None else f"{text} ({count} x {name})"


class DesyncCheck:
    """The fingerprint channel of one communicator: ``mpi_comm`` (a private duplicate of its
    MPI communicator), the group's ``index`` (0: the world) and its global ``ranks``."""

    def __init__(self, mpi_comm: Any, index: int, ranks: Sequence[int], label: str):
        from mpi4py import MPI

        self.mpi = mpi_comm
        self.index, self.ranks, self.label = index, tuple(ranks), label
        self.size = mpi_comm.Get_size()
        self._int64 = MPI.INT64_T

    def _start(self, fields: Sequence[int]) -> tuple[Any, np.ndarray, np.ndarray]:
        mine = np.array(fields, np.int64)
        every = np.empty(self.size * _FIELDS, np.int64)
        return self.mpi.Iallgather([mine, self._int64], [every, self._int64]), mine, every

    def guard(
        self,
        comm: Communicator,
        test: Test,
        op: str,
        array: Array | None,
        root: int | None,
        reduce_op: ReduceOp | None,
    ) -> Test:
        """``test`` of a collective just started on ``comm``, preceded by the fingerprint
        check (raises ``CollectiveDesyncError`` on a difference, or ``comm.tag_error``'s
        exception when the callers' tags differ)."""
        tag = getattr(comm, "next_tag", None)
        comm.next_tag = None
        request, mine, every = self._start(
            (
                comm.seq + 1,
                _CODE[op],
                -1 if array is None else ord(array.dtype.char),
                -1 if array is None else array.size,
                -1 if root is None else root,
                -1 if reduce_op is None else _REDUCTIONS.index(reduce_op.name),
                self.index,
                -1 if tag is None else int(tag),
            )
        )
        pending = [request]

        def guarded() -> bool:
            if pending:
                if not pending[0].Test():
                    return False
                pending.clear()
                if every.tobytes() != mine.tobytes() * self.size:  # (the common case: equal)
                    rows = every.reshape(self.size, _FIELDS)
                    explain = getattr(comm, "tag_error", None)
                    if explain is not None and (rows[:, 7] != rows[0, 7]).any():
                        # the ranks are still aligned (each issued this many collectives):
                        # the caller's error, every rank raises it, the group stays usable
                        raise explain(rows[:, 7].tolist())
                    if (rows[:, 1:] != rows[0, 1:]).any():  # sequence numbers aside
                        self._raise(comm, rows)
            return test()

        return guarded

    @overload
    def _raise(self, comm: Communicator, every: np.ndarray, exiting: Literal[True]) -> str: ...

    @overload
    def _raise(
        self, comm: Communicator, every: np.ndarray, exiting: Literal[False] = False
    ) -> NoReturn: ...

    def _raise(self, comm: Communicator, every: np.ndarray, exiting: bool = False) -> str:
        lines = []
        for r, fp in enumerate(every):
            who = f"rank {self.ranks[r]}" + (f" (group rank {r})" if self.index else "")
            marker = "" if (fp[1:] == every[0, 1:]).all() else "   <- differs"
            lines.append(f"{who}: {_describe(fp)}{marker}")
        first = int(every[:, 0].min())
        message = (
            f"desync on {self.label}: the ranks issued different "
            f"collectives at collective #{first}:\n  "
            + "\n  ".join(lines)
            + "\nEvery rank must issue the same collectives in the same order, with the same "
            "sizes, dtypes and roots (a rank that skipped a backward, ran out of data, left "
            f"early or issued an extra collective does not). Checked by default; {DESYNC_ENV}=0 "
            "turns the check off."
        )
        comm.failure = f"desync at collective #{first}"
        if exiting:
            return message
        raise CollectiveDesyncError(f"[rank {self.ranks[comm.rank]}] {message}")


def finish(comms: Iterable[Communicator], status: int, timeout: float) -> str | None:
    """Send the exit fingerprint on every communicator of ``comms`` that checks desyncs and
    wait (up to ``timeout`` seconds) for the other ranks' fingerprints. Returns None when
    every rank finished too, else the error message (a rank is still issuing collectives, or
    did not finish in time)."""
    pending: list[tuple[Communicator, DesyncCheck, Any, np.ndarray]] = []
    for comm in comms:
        check = comm.desync
        if check is None or comm.failure is not None:
            continue
        request, _, every = check._start((comm.seq + 1, _EXIT, -1, -1, status, -1, check.index, -1))
        pending.append((comm, check, request, every))
    deadline = time.monotonic() + timeout
    while pending:
        for item in list(pending):
            comm, check, request, every = item
            if not request.Test():
                continue
            pending.remove(item)
            rows = every.reshape(check.size, _FIELDS)
            if (rows[:, 1] != _EXIT).any():
                return check._raise(comm, rows, exiting=True)
        if pending and time.monotonic() > deadline:
            comm, check = pending[0][:2]
            comm.failure = "exit timed out"
            return (
                f"finished, but the other ranks of "
                f"{check.label} did not finish or issue a collective within {timeout:g} s "
                f"(the collective deadline): they are stuck or still working."
            )
        time.sleep(1e-4)
    return None
