"""Collectives on tensors, with ``torch.distributed``'s names and semantics.

Each writes its result into the given tensors in place (bumping their version counters, as an
in-place op does) and returns None, or with ``async_op=True`` a ``Work`` whose ``wait()``
completes it. They act on the data only and are not recorded by autograd.
"""

from __future__ import annotations

from ..autograd import Tensor
from .communicator import ReduceOp, Work
from .process_group import communicator_for, get_communicator

__all__ = [
    "all_reduce",
    "broadcast",
    "all_gather",
    "all_gather_into_tensor",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "reduce",
    "gather",
    "scatter",
    "all_gather_object",
    "broadcast_object_list",
]


def _check_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")


def _check_list(op: str, name: str, tensors, like: Tensor, size: int) -> None:
    if len(tensors) != size:
        raise ValueError(f"{op}: {name} must hold world_size ({size}) tensors, got {len(tensors)}")
    for i, t in enumerate(tensors):
        _check_tensor(op, f"{name}[{i}]", t)
        if t.shape != like.shape or t._array.dtype != like._array.dtype:
            raise ValueError(
                f"{op}: {name}[{i}] has shape {list(t.shape)} and dtype {t.dtype}, "
                f"expected {list(like.shape)} and {like.dtype} like the tensor"
            )


def _finish(work: Work | None, written, async_op: bool, unpack=None):
    """Unpack the results (``unpack()``) and bump the versions of the written tensors once the
    collective has completed: now (blocking: ``work`` is None), or when ``work`` completes."""

    def done():
        if unpack is not None:
            unpack()
        for t in written:
            t._version.value += 1

    if not async_op:
        done()
        return None
    work._result = list(written)
    return work._then(done)


def _stack(xp, tensors):
    return xp.stack([t._array for t in tensors])


def _unstack(rows, tensors):
    def unpack():
        for row, t in zip(rows, tensors):
            t._array[...] = row.reshape(t.shape)

    return unpack


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, async_op: bool = False):
    """Reduce ``tensor`` over all ranks, in place on every rank."""
    _check_tensor("all_reduce", "tensor", tensor)
    work = communicator_for(tensor._array).allreduce(tensor._array, op, async_op)
    if async_op:
        return _finish(work, [tensor], True)
    tensor._version.value += 1  # the blocking path is kept short: it is the common one
    return None


def broadcast(tensor: Tensor, src: int, async_op: bool = False):
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every rank."""
    _check_tensor("broadcast", "tensor", tensor)
    return _finish(
        communicator_for(tensor._array).broadcast(tensor._array, src, async_op), [tensor], async_op
    )


def reduce(tensor: Tensor, dst: int, op: ReduceOp = ReduceOp.SUM, async_op: bool = False):
    """Reduce ``tensor`` over all ranks into rank ``dst``'s ``tensor`` (others unchanged)."""
    _check_tensor("reduce", "tensor", tensor)
    comm = communicator_for(tensor._array)
    written = [tensor] if comm.rank == dst else []
    return _finish(comm.reduce(tensor._array, dst, op, async_op), written, async_op)


def all_gather(tensor_list: list, tensor: Tensor, async_op: bool = False):
    """Rank r's ``tensor`` into ``tensor_list[r]`` on every rank."""
    _check_tensor("all_gather", "tensor", tensor)
    comm = communicator_for(tensor._array)
    _check_list("all_gather", "tensor_list", tensor_list, tensor, comm.world_size)
    xp = tensor.device.xp
    rows = xp.empty((comm.world_size,) + tensor.shape, tensor._array.dtype)
    return _finish(
        comm.allgather(tensor._array, rows, async_op),
        tensor_list,
        async_op,
        _unstack(rows, tensor_list),
    )


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, async_op: bool = False):
    """Every rank's ``input_tensor``, rank 0 first, into ``output_tensor`` (world_size times
    as many elements: stacked or concatenated along dim 0)."""
    _check_tensor("all_gather_into_tensor", "output_tensor", output_tensor)
    _check_tensor("all_gather_into_tensor", "input_tensor", input_tensor)
    work = communicator_for(input_tensor._array).allgather(
        input_tensor._array, output_tensor._array, async_op
    )
    return _finish(work, [output_tensor], async_op)


def reduce_scatter(
    output: Tensor, input_list: list, op: ReduceOp = ReduceOp.SUM, async_op: bool = False
):
    """Reduce ``input_list`` element-wise over ranks; rank r receives entry r in ``output``."""
    _check_tensor("reduce_scatter", "output", output)
    comm = communicator_for(output._array)
    _check_list("reduce_scatter", "input_list", input_list, output, comm.world_size)
    work = comm.reduce_scatter(_stack(output.device.xp, input_list), output._array, op, async_op)
    return _finish(work, [output], async_op)


def reduce_scatter_tensor(
    output: Tensor, input: Tensor, op: ReduceOp = ReduceOp.SUM, async_op: bool = False
):
    """``reduce_scatter`` with the inputs stacked (or concatenated) in one tensor."""
    _check_tensor("reduce_scatter_tensor", "output", output)
    _check_tensor("reduce_scatter_tensor", "input", input)
    work = communicator_for(input._array).reduce_scatter(input._array, output._array, op, async_op)
    return _finish(work, [output], async_op)


def gather(tensor: Tensor, gather_list: list | None = None, dst: int = 0, async_op: bool = False):
    """Rank r's ``tensor`` into ``gather_list[r]`` on rank ``dst`` (pass None elsewhere)."""
    _check_tensor("gather", "tensor", tensor)
    comm = communicator_for(tensor._array)
    if comm.rank != dst:
        return _finish(comm.gather(tensor._array, None, dst, async_op), [], async_op)
    if gather_list is None:
        raise ValueError(f"gather: rank {dst} (dst) must pass gather_list")
    _check_list("gather", "gather_list", gather_list, tensor, comm.world_size)
    rows = tensor.device.xp.empty((comm.world_size,) + tensor.shape, tensor._array.dtype)
    return _finish(
        comm.gather(tensor._array, rows, dst, async_op),
        gather_list,
        async_op,
        _unstack(rows, gather_list),
    )


def scatter(tensor: Tensor, scatter_list: list | None = None, src: int = 0, async_op: bool = False):
    """``scatter_list[r]`` of rank ``src`` into rank r's ``tensor`` (pass None elsewhere)."""
    _check_tensor("scatter", "tensor", tensor)
    comm = communicator_for(tensor._array)
    send = None
    if comm.rank == src:
        if scatter_list is None:
            raise ValueError(f"scatter: rank {src} (src) must pass scatter_list")
        _check_list("scatter", "scatter_list", scatter_list, tensor, comm.world_size)
        send = _stack(tensor.device.xp, scatter_list)
    return _finish(comm.scatter(send, tensor._array, src, async_op), [tensor], async_op)


def all_gather_object(object_list: list, obj) -> None:
    """Every rank's picklable ``obj`` into ``object_list`` (of world_size entries) by rank."""
    comm = get_communicator()
    if len(object_list) != comm.world_size:
        raise ValueError(
            f"all_gather_object: object_list must have world_size "
            f"({comm.world_size}) entries, got {len(object_list)}"
        )
    object_list[:] = comm.allgather_object(obj)


def broadcast_object_list(object_list: list, src: int = 0) -> None:
    """Replace ``object_list``'s entries on every rank by rank ``src``'s (picklable)."""
    comm = get_communicator()
    objects = comm.broadcast_object(list(object_list) if comm.rank == src else None, src)
    if len(objects) != len(object_list):
        raise ValueError(
            f"broadcast_object_list: rank {comm.rank} passed {len(object_list)} "
            f"entries but rank {src} sent {len(objects)}"
        )
    object_list[:] = objects
