"""The collective contract: every rank must issue the same collectives, in the same order, with
the same sizes, dtypes and roots. MPI does not check it (mismatched sizes of one operation can
complete with wrong data; a different order hangs until the deadline), so distgrad does:

- ``check_agreement(comm, description, explain)``: the ranks exchange a sha256 digest of a
  description (one 32-byte allgather); if any differs, every rank gathers all descriptions and
  raises ``CollectiveMismatchError`` with a per-rank diff. DataParallel describes its
  parameters, buffers, bucket plan and the number of collectives issued so far.
- Debug mode (``DISTGRAD_DEBUG=1``, or ``enable_debug(comm)``): before every collective the
  ranks allgather a fixed-size fingerprint (sequence number, operation, dtype, count, root,
  reduction) and raise on every rank, naming each rank's collective, if they differ. It costs
  one small blocking allgather per collective and hides its own numbers, so sequence numbers
  are the same with and without it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .communicator import Array, CollectiveInfo, Communicator, ReduceOp

__all__ = [
    "CollectiveMismatchError",
    "check_agreement",
    "enable_debug",
    "debug_requested",
    "DEBUG_ENV",
]

DEBUG_ENV = "DISTGRAD_DEBUG"
_OPS = (
    "allreduce",
    "broadcast",
    "allgather",
    "reduce_scatter",
    "reduce",
    "gather",
    "scatter",
    "barrier",
)
_REDUCTIONS = ("SUM", "AVG", "PRODUCT", "MAX", "MIN")
_ARRAY_ARGUMENT = {
    "scatter": "recv",
    "allgather": "send",
    "reduce_scatter": "send",
    "gather": "send",
}  # others: "array"; barrier: none


class CollectiveMismatchError(RuntimeError):
    """The ranks were about to issue different collectives (raised on every rank)."""


def debug_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``DISTGRAD_DEBUG`` asks for debug mode (set, and not 0/false/no/off)."""
    value = (os.environ if environ is None else environ).get(DEBUG_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


# ---- agreement on a description ------------------------------------------------------------------
def check_agreement(
    comm: Communicator,
    description: dict[str, Any],
    explain: Callable[[list[Any]], str],
) -> None:
    """Raise ``CollectiveMismatchError`` on every rank unless every rank passed an equal
    ``description`` (JSON-serialisable). ``explain(descriptions)`` turns the list of every
    rank's description into the error message, naming which rank differs and in what."""
    if comm.world_size == 1:
        return
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).digest()
    mine = np.frombuffer(digest, np.uint8)
    every = np.empty((comm.world_size, mine.size), np.uint8)
    comm.allgather(mine, every, async_op=False)
    if (every == every[0]).all():
        return
    raise CollectiveMismatchError(explain(comm.allgather_object(description)))


# ---- debug mode: a fingerprint before every collective -------------------------------------------
def _dtype_code(array: Array | None) -> list[int]:
    """The array's dtype name in two int64s (``[-1, -1]`` without an array)."""
    if array is None:
        return [-1, -1]
    raw = np.dtype(array.dtype).name.encode()[:16].ljust(16, b"\0")
    return np.frombuffer(raw, np.int64).tolist()


def _fingerprint(
    seq: int, op: str, array: Array | None, root: int | None, reduce_op: ReduceOp | None
) -> np.ndarray:
    return np.array(
        [
            seq,
            _OPS.index(op),
            *_dtype_code(array),
            -1 if array is None else array.size,
            -1 if root is None else root,
            -1 if reduce_op is None else _REDUCTIONS.index(reduce_op.name),
        ],
        np.int64,
    )


def _describe(fp: np.ndarray, rank: int, world_size: int) -> str:
    seq, op, count, root, reduction = (int(v) for v in (fp[0], fp[1], *fp[4:]))
    dtype = (
        None
        if fp[2] == -1
        else fp[2:4].astype(np.int64).tobytes().rstrip(b"\0").decode(errors="replace")
    )
    info = CollectiveInfo(
        _OPS[op] if 0 <= op < len(_OPS) else f"op {op}",
        seq,
        rank,
        world_size,
        root=None if root < 0 else root,
        reduce_op=None if reduction < 0 else getattr(ReduceOp, _REDUCTIONS[reduction]),
    )
    text = info.describe().rsplit(" on rank", 1)[0]
    return text if dtype is None else f"{text} ({count} x {dtype})"


def enable_debug(comm: Communicator) -> None:
    """Fingerprint every collective of ``comm`` before it runs (see the module docstring).
    Wraps the collectives of this instance; idempotent."""
    if getattr(comm, "debug", False) or comm.world_size == 1:
        return
    comm.debug = True
    original = {op: getattr(comm, op) for op in _OPS}
    # fingerprints travel on the host communicator (an NCCL one has it as .host), unwrapped
    host = getattr(comm, "host", comm)
    exchange = type(host).allgather.__get__(host)

    def wrap(op: str, method: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(method)

        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            array = None if op == "barrier" else arguments[_ARRAY_ARGUMENT.get(op, "array")]
            reduce_op = arguments.get("op")
            mine = _fingerprint(comm.seq + 1, op, array, arguments.get("root"), reduce_op)
            every = np.empty((comm.world_size, mine.size), np.int64)
            seq, last = host.seq, host.last_done
            exchange(mine, every, async_op=False)
            host.seq, host.last_done = seq, last  # the check is not one of the user's
            if not (every == every[0]).all():
                raise CollectiveMismatchError(_mismatch(comm, every))
            return method(*args, **kwargs)

        checked.__name__ = checked.__qualname__ = op
        checked.__doc__ = method.__doc__
        return checked

    for op, method in original.items():
        setattr(comm, op, wrap(op, method))


def _mismatch(comm: Communicator, every: np.ndarray) -> str:
    lines = []
    for r, fp in enumerate(every):
        text = _describe(fp, r, comm.world_size)
        marker = "" if (fp == every[0]).all() else "   <- differs from rank 0"
        lines.append(f"rank {r}: {text}{marker}")
    return (
        f"[rank {comm.rank}] {DEBUG_ENV}: the ranks are about to run different collectives "
        f"(#{comm.seq + 1} on this rank):\n  "
        + "\n  ".join(lines)
        + "\nEvery rank must issue the same collectives in the same order, with the same "
        "sizes, dtypes and roots."
    )
