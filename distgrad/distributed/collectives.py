"""Collectives on tensors, with ``torch.distributed``'s names, signatures and semantics.

Each writes its result into the given tensors in place (bumping their version counters, as an
in-place op does) and returns None, or with ``async_op=True`` a ``Work`` whose ``wait()``
completes it. They act on the data only and are not recorded by autograd. Every one takes
``group=`` (None: the world); ``src``/``dst`` are world ranks (``group_src``/``group_dst``:
ranks in the group), as in PyTorch. On a rank that is not a member of ``group`` a call does
nothing and returns None (PyTorch warns and returns too; ``recv`` returns -1).
"""

from __future__ import annotations

import datetime
import pickle
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..autograd import Tensor
from .communicator import (
    Array,
    Callback,
    CollectiveTimeoutError,
    Communicator,
    P2PWork,
    ReduceOp,
    Work,
)
from .groups import ProcessGroup, resolve
from .mpi import MPICommunicator

__all__ = [
    "all_reduce",
    "broadcast",
    "reduce",
    "all_gather",
    "all_gather_into_tensor",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "gather",
    "scatter",
    "all_to_all",
    "all_to_all_single",
    "send",
    "recv",
    "isend",
    "irecv",
    "barrier",
    "monitored_barrier",
    "all_gather_object",
    "broadcast_object_list",
    "gather_object",
]


# ---- helpers ---------------------------------------------------------------------------------
def _bump(t: Tensor) -> None:
    t.bump_version()  # an in-place write, as far as autograd's checks are concerned


def _check_tensor(op: str, name: str, t: object) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")


def _check_list(op: str, name: str, tensors: Sequence[Tensor], like: Tensor, size: int) -> None:
    if len(tensors) != size:
        raise ValueError(f"{op}: {name} must hold group size ({size}) tensors, got {len(tensors)}")
    for i, t in enumerate(tensors):
        _check_tensor(op, f"{name}[{i}]", t)
        if t.shape != like.shape or t.array.dtype != like.array.dtype:
            raise ValueError(
                f"{op}: {name}[{i}] has shape {list(t.shape)} and dtype {t.dtype}, "
                f"expected {list(like.shape)} and {like.dtype} like the tensor"
            )


def _comm(group: ProcessGroup | None, array: Array | None) -> Communicator | None:
    """The group's communicator for ``array``, or None on a rank outside the group."""
    g = resolve(group)
    return g.communicator_for(array) if g.is_member else None


def _root(
    op: str, group: ProcessGroup | None, rank: int | None, group_rank: int | None, name: str
) -> int:
    """The group rank of the root, from a world rank (``src``/``dst``) or a group rank."""
    g = resolve(group)
    if (rank is None) == (group_rank is None):
        if rank is None and group_rank is None:
            rank = 0  # PyTorch's default for dst/src where it has one
        else:
            raise ValueError(f"{op}: pass {name} or group_{name}, not both")
    try:
        if group_rank is not None:
            g.global_rank(group_rank)  # (validates)
            return int(group_rank)
        assert rank is not None  # (one of the two is given or defaulted above)
        return g.group_rank(int(rank))
    except ValueError as error:
        raise ValueError(f"{op}: {name} {error}") from None


def _finish(
    work: Work | None,
    written: Sequence[Tensor],
    async_op: bool,
    unpack: Callback | None = None,
) -> Work | None:
    """Unpack the results (``unpack()``) and bump the versions of the written tensors once the
    collective has completed: now (blocking: ``work`` is None), or when ``work`` completes."""

    def done() -> None:
        if unpack is not None:
            unpack()
        for t in written:
            _bump(t)

    if not async_op:
        done()
        return None
    if work is None:
        raise RuntimeError("an async_op=True collective returned no Work")
    work._result = list(written)
    return work._then(done)


def _stack(xp: Any, tensors: Sequence[Tensor]) -> Array:
    return xp.stack([t.array for t in tensors])


def _unstack(rows: Array, tensors: Sequence[Tensor]) -> Callback:
    def unpack() -> None:
        for row, t in zip(rows, tensors):
            t.array[...] = row.reshape(t.shape)

    return unpack


# ---- collectives -------------------------------------------------------------------------------
def all_reduce(
    tensor: Tensor,
    op: ReduceOp = ReduceOp.SUM,
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Work | None:
    """Reduce ``tensor`` over the group's ranks, in place on every one of them."""
    _check_tensor("all_reduce", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    work = comm.allreduce(tensor.array, op, async_op)
    if async_op:
        return _finish(work, [tensor], True)
    _bump(tensor)  # the blocking path is kept short: it is the common one
    return None


def broadcast(
    tensor: Tensor,
    src: int | None = None,
    group: ProcessGroup | None = None,
    async_op: bool = False,
    group_src: int | None = None,
) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every rank of the group."""
    _check_tensor("broadcast", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    root = _root("broadcast", group, src, group_src, "src")
    return _finish(comm.broadcast(tensor.array, root, async_op), [tensor], async_op)


def reduce(
    tensor: Tensor,
    dst: int | None = None,
    op: ReduceOp = ReduceOp.SUM,
    group: ProcessGroup | None = None,
    async_op: bool = False,
    group_dst: int | None = None,
) -> Work | None:
    """Reduce ``tensor`` over the group into rank ``dst``'s ``tensor`` (others unchanged)."""
    _check_tensor("reduce", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    root = _root("reduce", group, dst, group_dst, "dst")
    written = [tensor] if comm.rank == root else []
    return _finish(comm.reduce(tensor.array, root, op, async_op), written, async_op)


def all_gather(
    tensor_list: list[Tensor],
    tensor: Tensor,
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Work | None:
    """Group rank r's ``tensor`` into ``tensor_list[r]`` on every rank of the group."""
    _check_tensor("all_gather", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    _check_list("all_gather", "tensor_list", tensor_list, tensor, comm.world_size)
    rows = tensor.device.xp.empty((comm.world_size,) + tensor.shape, tensor.array.dtype)
    work = comm.allgather(tensor.array, rows, async_op)
    return _finish(work, tensor_list, async_op, _unstack(rows, tensor_list))


def all_gather_into_tensor(
    output_tensor: Tensor,
    input_tensor: Tensor,
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Work | None:
    """Every group rank's ``input_tensor``, rank 0 first, into ``output_tensor`` (group size
    times as many elements: stacked or concatenated along dim 0)."""
    _check_tensor("all_gather_into_tensor", "output_tensor", output_tensor)
    _check_tensor("all_gather_into_tensor", "input_tensor", input_tensor)
    comm = _comm(group, input_tensor.array)
    if comm is None:
        return None
    work = comm.allgather(input_tensor.array, output_tensor.array, async_op)
    return _finish(work, [output_tensor], async_op)


def reduce_scatter(
    output: Tensor,
    input_list: list[Tensor],
    op: ReduceOp = ReduceOp.SUM,
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Work | None:
    """Reduce ``input_list`` element-wise over the group; rank r receives entry r in
    ``output``."""
    _check_tensor("reduce_scatter", "output", output)
    comm = _comm(group, output.array)
    if comm is None:
        return None
    _check_list("reduce_scatter", "input_list", input_list, output, comm.world_size)
    work = comm.reduce_scatter(_stack(output.device.xp, input_list), output.array, op, async_op)
    return _finish(work, [output], async_op)


def reduce_scatter_tensor(
    output: Tensor,
    input: Tensor,
    op: ReduceOp = ReduceOp.SUM,
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Work | None:
    """``reduce_scatter`` with the inputs stacked (or concatenated) in one tensor."""
    _check_tensor("reduce_scatter_tensor", "output", output)
    _check_tensor("reduce_scatter_tensor", "input", input)
    comm = _comm(group, input.array)
    if comm is None:
        return None
    work = comm.reduce_scatter(input.array, output.array, op, async_op)
    return _finish(work, [output], async_op)


def gather(
    tensor: Tensor,
    gather_list: list[Tensor] | None = None,
    dst: int | None = None,
    group: ProcessGroup | None = None,
    async_op: bool = False,
    group_dst: int | None = None,
) -> Work | None:
    """Group rank r's ``tensor`` into ``gather_list[r]`` on rank ``dst`` (None elsewhere)."""
    _check_tensor("gather", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    root = _root("gather", group, dst, group_dst, "dst")
    if comm.rank != root:
        return _finish(comm.gather(tensor.array, None, root, async_op), [], async_op)
    if gather_list is None:
        raise ValueError(
            f"gather: rank {resolve(group).global_rank(root)} (dst) must pass gather_list"
        )
    _check_list("gather", "gather_list", gather_list, tensor, comm.world_size)
    rows = tensor.device.xp.empty((comm.world_size,) + tensor.shape, tensor.array.dtype)
    work = comm.gather(tensor.array, rows, root, async_op)
    return _finish(work, gather_list, async_op, _unstack(rows, gather_list))


def scatter(
    tensor: Tensor,
    scatter_list: list[Tensor] | None = None,
    src: int | None = None,
    group: ProcessGroup | None = None,
    async_op: bool = False,
    group_src: int | None = None,
) -> Work | None:
    """``scatter_list[r]`` of rank ``src`` into group rank r's ``tensor`` (None elsewhere)."""
    _check_tensor("scatter", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    root = _root("scatter", group, src, group_src, "src")
    send: Array | None = None
    if comm.rank == root:
        if scatter_list is None:
            raise ValueError(
                f"scatter: rank {resolve(group).global_rank(root)} (src) must pass scatter_list"
            )
        _check_list("scatter", "scatter_list", scatter_list, tensor, comm.world_size)
        send = _stack(tensor.device.xp, scatter_list)
    return _finish(comm.scatter(send, tensor.array, root, async_op), [tensor], async_op)


def all_to_all_single(
    output: Tensor,
    input: Tensor,
    output_split_sizes: list[int] | None = None,
    input_split_sizes: list[int] | None = None,
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Work | None:
    """Split ``input`` along dim 0 (equally, or by ``input_split_sizes``), send piece r to
    group rank r, and concatenate what each rank sent into ``output`` (split by
    ``output_split_sizes``)."""
    _check_tensor("all_to_all_single", "output", output)
    _check_tensor("all_to_all_single", "input", input)
    comm = _comm(group, input.array)
    if comm is None:
        return None
    if output_split_sizes is None and input_split_sizes is None:
        if input.shape and input.shape[0] % comm.world_size:
            raise ValueError(
                f"all_to_all_single: dim 0 of input ({input.shape[0]}) is not divisible by "
                f"the group size ({comm.world_size}); pass input/output_split_sizes"
            )
        work = comm.alltoall(input.array, output.array, async_op)
        return _finish(work, [output], async_op)

    def counts(t: Tensor, sizes: list[int] | None, name: str) -> list[int]:
        row = int(np.prod(t.shape[1:], dtype=np.int64)) if t.ndim else 1
        if sizes is None:
            sizes = [t.shape[0] // comm.world_size] * comm.world_size
        if len(sizes) != comm.world_size or sum(sizes) != (t.shape[0] if t.ndim else 1):
            raise ValueError(
                f"all_to_all_single: {name}_split_sizes {list(sizes)} must be group size "
                f"({comm.world_size}) numbers adding up to dim 0 of {name} ({t.shape[0]})"
            )
        return [int(s) * row for s in sizes]

    send_counts = counts(input, input_split_sizes, "input")
    recv_counts = counts(output, output_split_sizes, "output")
    work = comm.alltoallv(input.array, send_counts, output.array, recv_counts, async_op)
    return _finish(work, [output], async_op)


def all_to_all(
    output_tensor_list: list[Tensor],
    input_tensor_list: list[Tensor],
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Work | None:
    """Send ``input_tensor_list[r]`` to group rank r; receive rank r's into
    ``output_tensor_list[r]`` (entries may differ in shape; one dtype)."""
    if not input_tensor_list:
        raise ValueError("all_to_all: input_tensor_list is empty")
    first = input_tensor_list[0]
    _check_tensor("all_to_all", "input_tensor_list[0]", first)
    comm = _comm(group, first.array)
    if comm is None:
        return None
    for name, tensors in (("input", input_tensor_list), ("output", output_tensor_list)):
        if len(tensors) != comm.world_size:
            raise ValueError(
                f"all_to_all: {name}_tensor_list must hold group size ({comm.world_size}) "
                f"tensors, got {len(tensors)}"
            )
        for i, t in enumerate(tensors):
            _check_tensor("all_to_all", f"{name}_tensor_list[{i}]", t)
    xp = first.device.xp
    send = xp.concatenate([t.array.reshape(-1) for t in input_tensor_list])
    recv = xp.empty(sum(t.numel() for t in output_tensor_list), send.dtype)
    send_counts = [t.numel() for t in input_tensor_list]
    recv_counts = [t.numel() for t in output_tensor_list]

    def unpack() -> None:
        start = 0
        for t, n in zip(output_tensor_list, recv_counts):
            t.array[...] = recv[start : start + n].reshape(t.shape)
            start += n

    work = comm.alltoallv(send, send_counts, recv, recv_counts, async_op)
    return _finish(work, output_tensor_list, async_op, unpack)


# ---- point to point --------------------------------------------------------------------------
def isend(
    tensor: Tensor,
    dst: int | None = None,
    group: ProcessGroup | None = None,
    tag: int = 0,
    group_dst: int | None = None,
) -> P2PWork | None:
    """Start sending ``tensor`` to rank ``dst``; returns a handle to ``wait()`` on."""
    _check_tensor("isend", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    return comm.send(tensor.array, _root("isend", group, dst, group_dst, "dst"), tag)


def irecv(
    tensor: Tensor,
    src: int | None = None,
    group: ProcessGroup | None = None,
    tag: int = 0,
    group_src: int | None = None,
) -> P2PWork | None:
    """Start receiving into ``tensor`` from rank ``src`` (None: any rank); returns a
    handle to ``wait()`` on (its ``source`` is the sender's group rank)."""
    _check_tensor("irecv", "tensor", tensor)
    comm = _comm(group, tensor.array)
    if comm is None:
        return None
    peer = (
        None if src is None and group_src is None else _root("irecv", group, src, group_src, "src")
    )
    work = comm.recv(tensor.array, peer, tag)
    work._then = (*work._then, lambda: _bump(tensor))
    return work


def send(
    tensor: Tensor,
    dst: int | None = None,
    group: ProcessGroup | None = None,
    tag: int = 0,
    group_dst: int | None = None,
) -> None:
    """Send ``tensor`` to rank ``dst`` (returns once it has been sent)."""
    work = isend(tensor, dst, group, tag, group_dst)
    if work is not None:
        work.wait()


def recv(
    tensor: Tensor,
    src: int | None = None,
    group: ProcessGroup | None = None,
    tag: int = 0,
    group_src: int | None = None,
) -> int:
    """Receive into ``tensor`` from rank ``src`` (None: any rank); returns the sender's world
    rank (-1 on a rank outside ``group``)."""
    work = irecv(tensor, src, group, tag, group_src)
    if work is None:
        return -1
    work.wait()
    if work.source is None:
        raise RuntimeError("recv: the completed receive did not report its sender")
    return resolve(group).global_rank(work.source)


# ---- barriers ----------------------------------------------------------------------------------
def barrier(
    group: ProcessGroup | None = None,
    async_op: bool = False,
    device_ids: list[int] | None = None,
) -> Work | None:
    """Wait until every rank of the group has reached the barrier (``device_ids`` is
    accepted for PyTorch compatibility)."""
    comm = _comm(group, None)
    return None if comm is None else comm.barrier(async_op)


_BARRIER_TAGS = (32001, 32002)  # (arrived, verdict): reserved for monitored_barrier


def monitored_barrier(
    group: ProcessGroup | None = None,
    timeout: float | datetime.timedelta | None = None,
    wait_all_ranks: bool = False,
) -> None:
    """A barrier that names the ranks that did not reach it: group rank 0 waits up to
    ``timeout`` (seconds or a ``timedelta``; default: the collective deadline) for every other
    rank, then raises ``RuntimeError`` naming the missing world ranks (all of them; PyTorch
    names the first unless ``wait_all_ranks``), and tells the ranks that came, which raise too.
    Ranks that never hear from rank 0 raise at twice the timeout."""
    g = resolve(group)
    comm = _comm(group, None)
    if comm is None or comm.world_size == 1:
        return
    if timeout is None:
        seconds = comm.timeout
    else:
        seconds = (
            timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)
        )
    if not isinstance(comm, MPICommunicator):  # (a world of more than one rank is MPI's)
        raise TypeError(f"monitored_barrier: needs an MPI communicator, got {comm!r}")
    arrived_tag, verdict_tag = _BARRIER_TAGS
    mpi = comm.comm
    me = g.ranks[comm.rank] if not g.is_world else comm.rank
    deadline = time.monotonic() + seconds
    if comm.rank == 0:
        tokens = {r: np.zeros(1, np.int64) for r in range(1, comm.world_size)}
        requests = {r: mpi.Irecv(tokens[r], r, arrived_tag) for r in tokens}
        while requests and time.monotonic() < deadline:
            for r in [r for r, req in requests.items() if req.Test()]:
                del requests[r]
            time.sleep(1e-4)
        missing = sorted(g.global_rank(r) for r in requests)
        for request in requests.values():
            request.Cancel()
        verdict = np.array([len(missing)], np.int64)
        for r in tokens:
            if g.global_rank(r) not in missing:
                mpi.Send(verdict, r, verdict_tag)
        if missing:
            raise RuntimeError(
                f"[rank {me}] monitored_barrier: rank(s) {missing} did not reach the barrier "
                f"within {seconds:g} s"
            )
        return
    mpi.Send(np.zeros(1, np.int64), 0, arrived_tag)
    verdict = np.zeros(1, np.int64)
    request = mpi.Irecv(verdict, 0, verdict_tag)
    deadline += seconds
    while not request.Test():
        if time.monotonic() > deadline:
            raise CollectiveTimeoutError(
                f"[rank {me}] monitored_barrier: rank {g.global_rank(0)} (group rank 0) did "
                f"not answer within {2 * seconds:g} s"
            )
        time.sleep(1e-4)
    if verdict[0]:
        raise RuntimeError(
            f"[rank {me}] monitored_barrier: {int(verdict[0])} rank(s) did not reach the "
            f"barrier within {seconds:g} s (rank {g.global_rank(0)} names them)"
        )


# ---- Python objects ----------------------------------------------------------------------------
# Objects travel pickled: unpickling runs code chosen by the sending rank, so these trust every
# rank of the job (as PyTorch's do). Use them for small metadata, not for arrays.
def all_gather_object(
    object_list: list[Any], obj: object, group: ProcessGroup | None = None
) -> None:
    """Every group rank's picklable ``obj`` into ``object_list`` (group size entries), by
    rank. Objects are pickled, so this trusts every rank (unpickling can run code)."""
    comm = _comm(group, None)
    if comm is None:
        return
    if len(object_list) != comm.world_size:
        raise ValueError(
            f"all_gather_object: object_list must have group size "
            f"({comm.world_size}) entries, got {len(object_list)}"
        )
    object_list[:] = comm.allgather_object(obj)


def broadcast_object_list(
    object_list: list[Any],
    src: int | None = None,
    group: ProcessGroup | None = None,
    device: object = None,
    group_src: int | None = None,
) -> None:
    """Replace ``object_list``'s entries on every rank of the group by rank ``src``'s.
    Objects are pickled, so this trusts rank ``src`` (unpickling can run code)."""
    comm = _comm(group, None)
    if comm is None:
        return
    root = _root("broadcast_object_list", group, src, group_src, "src")
    objects = comm.broadcast_object(list(object_list) if comm.rank == root else None, root)
    if len(objects) != len(object_list):
        raise ValueError(
            f"broadcast_object_list: rank {comm.rank} passed {len(object_list)} "
            f"entries but rank {src} sent {len(objects)}"
        )
    object_list[:] = objects


def gather_object(
    obj: object,
    object_gather_list: list[Any] | None = None,
    dst: int | None = None,
    group: ProcessGroup | None = None,
    group_dst: int | None = None,
) -> None:
    """Every group rank's picklable ``obj`` into ``object_gather_list`` on rank ``dst`` (pass
    None elsewhere). Objects are pickled, so ``dst`` trusts every rank (unpickling can run
    code)."""
    comm = _comm(group, None)
    if comm is None:
        return
    root = _root("gather_object", group, dst, group_dst, "dst")
    is_root = comm.rank == root
    if is_root and (object_gather_list is None or len(object_gather_list) != comm.world_size):
        raise ValueError(
            f"gather_object: the destination rank must pass object_gather_list with group size "
            f"({comm.world_size}) entries"
        )
    data = np.frombuffer(pickle.dumps(obj), np.uint8)
    sizes = np.empty(comm.world_size, np.int64)
    comm.allgather(np.array([data.size], np.int64), sizes, async_op=False)
    width = int(sizes.max())
    padded = np.zeros(width, np.uint8)
    padded[: data.size] = data
    rows = np.empty((comm.world_size, width), np.uint8) if is_root else None
    comm.gather(padded, rows, root, async_op=False)
    if rows is not None and object_gather_list is not None:  # (the root, checked above)
        object_gather_list[:] = [
            pickle.loads(rows[r, : sizes[r]].tobytes()) for r in range(comm.world_size)
        ]
