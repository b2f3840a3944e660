"""``ShardedTensor``: this rank's rows of a tensor sharded on dim 0, as sharded state dicts
(``fully_shard`` models, ``ZeroRedundancyOptimizer``) return them for checkpoints.

The tensor's array is the rank's piece, rows ``[start, stop)`` of dim 0 of the global tensor,
unpadded, sharing storage with the live parameter or optimizer state (writing into it loads in
place). Unlike torch's DTensor, ``.shape`` is the local shape; ``full_shape`` is the global
one. A 0-d global tensor is viewed as one row: local shape ``(1,)`` on the rank owning it,
``(0,)`` elsewhere. The layout is ``reducer.ShardLayout``'s: rank r owns rows
``[r * ceil(d0 / world), ...)``, so the pieces of all ranks tile dim 0 once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..autograd import Tensor

if TYPE_CHECKING:
    from .communicator import Communicator

__all__ = ["ShardedTensor"]


class ShardedTensor(Tensor):
    """This rank's piece of a dim-0-sharded tensor (see the module docstring):
    ``full_shape``, ``rows`` = ``(start, stop)``, ``offsets`` (global index of the piece's first
    element per dim), ``full_tensor()`` (a collective), ``to_local()``."""

    def __init__(
        self,
        local: Tensor | Any,
        full_shape: Sequence[int],
        rows: Sequence[int],
        comm: Communicator | None = None,
    ):
        array = local.array if isinstance(local, Tensor) else local
        super().__init__(array)
        start, stop = int(rows[0]), int(rows[1])
        shape = tuple(int(s) for s in full_shape)
        expected = (stop - start, *shape[1:])
        if not 0 <= start <= stop <= (shape[0] if shape else 1) or (tuple(array.shape) != expected):
            raise ValueError(
                f"ShardedTensor: a piece of shape {tuple(array.shape)} cannot be rows "
                f"[{start}, {stop}) of a tensor of shape {shape} (expected {expected})"
            )
        self.full_shape: tuple[int, ...] = shape
        self.rows: tuple[int, int] = (start, stop)
        self._comm = comm

    @property
    def offsets(self) -> tuple[int, ...]:
        """Global index of the piece's first element in every dim: ``(start, 0, ...)``."""
        return (self.rows[0],) + (0,) * (len(self.full_shape) - 1) if self.full_shape else (0,)

    def to_local(self) -> Tensor:
        """This rank's piece as a plain tensor (same storage)."""
        return self.detach()

    def covers(self, rows: tuple[int, int]) -> bool:
        """Whether this piece holds every row of ``rows`` = ``(start, stop)``."""
        return rows[0] >= rows[1] or (self.rows[0] <= rows[0] and rows[1] <= self.rows[1])

    def take(self, rows: tuple[int, int]) -> Any:
        """The array of global rows ``(start, stop)`` (which this piece must cover)."""
        return self.array[rows[0] - self.rows[0] : rows[1] - self.rows[0]]

    def full_tensor(self) -> Tensor:
        """The whole tensor, gathered from every rank's piece (every rank must call it)."""
        if self._comm is None:
            raise RuntimeError(
                "ShardedTensor.full_tensor(): this tensor has no process group (it was "
                "unpickled or built without one); load it into a model and call it there"
            )
        comm, xp = self._comm, self.device.xp
        dim0 = self.full_shape[0] if self.full_shape else 1
        per = -(-dim0 // comm.world_size)
        inner = int(np.prod(self.full_shape[1:])) if len(self.full_shape) > 1 else 1
        send = xp.zeros((per, inner), self.array.dtype)
        send[: self.array.shape[0]] = self.array.reshape(self.array.shape[0], inner)
        recv = xp.empty((comm.world_size, per, inner), send.dtype)
        comm.allgather(send, recv, async_op=False)
        return Tensor(recv.reshape(-1, inner)[:dim0].reshape(self.full_shape).copy())

    def __reduce__(self) -> tuple[Callable[..., ShardedTensor], tuple[Any, ...]]:
        return (_rebuild, (Tensor.__reduce__(self), self.full_shape, self.rows))

    def __repr__(self) -> str:
        return (
            f"ShardedTensor(rows={list(self.rows)} of {list(self.full_shape)}, "
            f"local={Tensor.__repr__(self)})"
        )


def _rebuild(
    tensor_reduce: tuple[Callable[..., Tensor], tuple[Any, ...]],
    full_shape: tuple[int, ...],
    rows: tuple[int, int],
) -> ShardedTensor:
    rebuild, args = tensor_reduce
    return ShardedTensor(rebuild(*args), full_shape, rows)
