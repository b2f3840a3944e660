"""``GradBucket``: what a DDP communication hook receives (``torch.distributed.GradBucket``),
and the reducer's side of a hook: the handle it polls and waits on while the hook's future
runs (``HookWork``).

A hook is ``hook(state, bucket) -> Future`` whose value is a tensor of the bucket buffer's shape
(the reduced gradients; the reducer copies it back unless it is the buffer itself). The
buffer holds this rank's gradients, NOT divided by the world size (as in PyTorch: the hook
divides). The hook runs from the gradient hooks during backward, the moment the bucket is
complete (and every earlier bucket has been launched), so the collective it starts overlaps
the rest of backward. The reducer only tests the collectives behind the future during backward
(which drives MPI); ``then`` callbacks run when the reducer waits for the future at the end of
backward, in bucket order, so a callback that starts another collective (PowerSGD) starts it
at the same point on every rank.
"""

from __future__ import annotations

from collections.abc import Callable

from ..autograd import Tensor
from ..futures import Future

__all__ = ["GradBucket", "HookWork"]


class GradBucket:
    """One bucket of gradients handed to a communication hook: ``index()``, ``buffer()`` (the
    flat gradients), ``gradients()`` (per-parameter views of it), ``parameters()``,
    ``is_last()``, ``set_buffer(tensor)``."""

    def __init__(
        self,
        index: int,
        count: int,
        buffer: Tensor,
        gradients: list[Tensor],
        parameters: list[Tensor],
    ):
        self._index, self._count = index, count
        self._buffer, self._gradients, self._parameters = buffer, gradients, parameters
        # the DDP's allreduce (flat or hierarchical), set by the reducer
        self._allreduce: Callable[[Tensor], Future] | None = None
        self._world_size = 0  # the DDP group's size, set by the reducer
        # (|error|^2, |input|^2) that a built-in hook reports
        self._error: tuple[float, float] | None = None

    def index(self) -> int:
        """The bucket's index in launch order (the first bucket launched is 0)."""
        return self._index

    def buffer(self) -> Tensor:
        """The bucket's gradients, flattened into one 1-D tensor (not divided by the world
        size)."""
        return self._buffer

    def gradients(self) -> list:
        """One tensor per parameter, views of ``buffer()`` in the parameters' shapes."""
        return list(self._gradients)

    def parameters(self) -> list:
        """The bucket's parameters, in the order of ``gradients()``."""
        return list(self._parameters)

    def is_last(self) -> bool:
        """Whether this is the last bucket of the backward pass (its hook runs last)."""
        return self._index == self._count - 1

    def set_buffer(self, buffer: Tensor) -> None:
        """Write ``buffer`` (same shape and dtype) into the bucket's buffer."""
        mine = self._buffer
        if not isinstance(buffer, Tensor):
            raise TypeError(
                f"GradBucket.set_buffer: expected a Tensor, got {type(buffer).__name__}"
            )
        if tuple(buffer.shape) != tuple(mine.shape) or buffer.dtype != mine.dtype:
            raise ValueError(
                f"GradBucket.set_buffer: the buffer holds {list(mine.shape)} {mine.dtype}, got "
                f"{list(buffer.shape)} {buffer.dtype}"
            )
        mine.array[...] = buffer.array
        mine.bump_version()

    def _report_error(self, error_sq: float, input_sq: float) -> None:
        """A built-in hook's compression error on this rank: squared norms of what compressing
        changed and of the input, summed into ``StepStats.compression_error``."""
        self._error = (float(error_sq), float(input_sq))

    def __repr__(self) -> str:
        return (
            f"<GradBucket {self._index} of {self._count}: {len(self._parameters)} parameter(s), "
            f"{self._buffer.numel()} elements>"
        )


class HookWork:
    """The reducer's handle on a hook's future, shaped like a collective's ``Work``:
    ``is_completed()`` makes progress on the collective behind it (without running callbacks)
    and says whether that collective has finished; ``wait()`` and ``value()`` complete the
    future (running its callbacks) and return the reduced tensor."""

    def __init__(self, future: Future, bucket: GradBucket, hook_name: str):
        self.future, self.bucket, self.hook_name = future, bucket, hook_name
        self.seq = -1  # not one collective: the watchdog shows no number

    def is_completed(self) -> bool:
        """Whether the work behind the future has finished (makes progress)."""
        return self.future._poll()

    def wait(self) -> bool:
        """Complete the future (its callbacks run here)."""
        self.value()
        return True

    def value(self) -> Tensor:
        """The hook's result, checked to be a tensor shaped like the buffer."""
        result = self.future.wait()
        if isinstance(result, list) and len(result) == 1:
            result = result[0]  # a Work's future: [tensor]
        buffer = self.bucket.buffer()
        if not isinstance(result, Tensor) or result.numel() != buffer.numel():
            shown = (
                f"a tensor of shape {list(result.shape)}"
                if isinstance(result, Tensor)
                else type(result).__name__
            )
            raise ValueError(
                f"DistributedDataParallel: the communication hook {self.hook_name} must return a "
                f"Future holding one tensor of the bucket buffer's shape "
                f"{list(buffer.shape)}; bucket {self.bucket.index()}'s future held {shown}"
            )
        return result
