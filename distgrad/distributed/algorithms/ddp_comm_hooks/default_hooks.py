"""``allreduce_hook``, ``fp16_compress_hook``, ``bf16_compress_hook``
(``torch.distributed.algorithms.ddp_comm_hooks.default_hooks``).

``process_group`` (the hook's state) None means the DDP's own group, reduced the way DDP
reduces without a hook (flat or hierarchical allreduce); a ``ProcessGroup`` reduces over that
group with ``all_reduce``.

The compressing hooks divide by the group size in the gradients' own dtype BEFORE casting
(PyTorch casts first, then divides in half precision): a float32 gradient of 1e5 on 4 ranks
is sent as 2.5e4 instead of overflowing float16's 65504 at the cast, and the sum of the ranks'
shares cannot exceed the largest |gradient|. bfloat16 is ``ml_dtypes.bfloat16`` on numpy
(2 bytes per element on the wire: MPI reduces it with an operation of distgrad's that rounds
each partial sum to bfloat16, as NCCL does); cupy has no bfloat16 array type, so
``bf16_compress_hook`` takes host (numpy) gradients only.
"""

from __future__ import annotations

import numpy as np

from ....autograd import Tensor
from ....backend import array_module_for
from ....backend.dtypes import bfloat16
from ....futures import Future
from ...collectives import all_reduce
from ...grad_bucket import GradBucket
from ...groups import ProcessGroup, resolve

__all__ = ["allreduce_hook", "fp16_compress_hook", "bf16_compress_hook"]


def _is_own_group(process_group: ProcessGroup | None) -> bool:
    return process_group is None or getattr(process_group, "is_world", False)


def group_size(process_group: ProcessGroup | None, bucket: GradBucket) -> int:
    """The number of ranks the hook reduces over (None: the DDP's group)."""
    if _is_own_group(process_group) and getattr(bucket, "_world_size", None):
        return bucket._world_size
    return resolve(process_group).size()


def allreduce_sum(process_group: ProcessGroup | None, tensor: Tensor, bucket: GradBucket) -> Future:
    """Start summing ``tensor`` in place over the hook's group: a Future of ``[tensor]``."""
    if _is_own_group(process_group) and bucket._allreduce is not None:
        return bucket._allreduce(tensor)
    work = all_reduce(tensor, group=process_group, async_op=True)
    if work is None:  # all_reduce does nothing on a rank outside the group
        raise ValueError(
            f"communication hook: this rank is not a member of the hook's process group "
            f"{process_group!r}; pass a group holding every rank of the DDP model"
        )
    return work.get_future()


def _first(fut: Future) -> Tensor:
    return fut.value()[0]


def allreduce_hook(process_group: ProcessGroup | None, bucket: GradBucket) -> Future:
    """Average the bucket over the ranks with one allreduce: what DDP does without a hook
    (bitwise: the buffer is multiplied by 1/world size exactly as DDP's own path does)."""
    buffer = bucket.buffer()
    array = buffer.array
    array_module_for(array).multiply(array, 1.0 / group_size(process_group, bucket), out=array)
    bucket._report_error(0.0, 0.0)
    return allreduce_sum(process_group, buffer, bucket).then(_first)


def _compress_hook(
    dtype: type | np.dtype, process_group: ProcessGroup | None, bucket: GradBucket
) -> Future:
    buffer = bucket.buffer()
    array = buffer.array
    xp = array_module_for(array)
    xp.multiply(array, 1.0 / group_size(process_group, bucket), out=array)  # before the cast
    compressed = array.astype(dtype)
    error = compressed.astype(array.dtype)
    error -= array
    flat_error, flat = error.reshape(-1), array.reshape(-1)
    bucket._report_error(float(xp.dot(flat_error, flat_error)), float(xp.dot(flat, flat)))
    del error, flat_error

    def decompress(fut: Future) -> Tensor:
        array[...] = fut.value()[0].array  # cast back into the bucket (in place)
        return buffer

    return allreduce_sum(process_group, Tensor(compressed), bucket).then(decompress)


def fp16_compress_hook(process_group: ProcessGroup | None, bucket: GradBucket) -> Future:
    """Divide the bucket by the group size, cast it to float16, allreduce it (2 bytes per
    element) and cast the sum back into the bucket."""
    return _compress_hook(np.float16, process_group, bucket)


def bf16_compress_hook(process_group: ProcessGroup | None, bucket: GradBucket) -> Future:
    """Divide the bucket by the group size, cast it to bfloat16 (round to nearest even),
    allreduce it (2 bytes per element) and cast the sum back into the bucket. Needs the
    ``ml_dtypes`` package and host (numpy) gradients."""
    array = bucket.buffer().array
    if bfloat16 is None:
        raise RuntimeError(
            "bf16_compress_hook needs the ml_dtypes package for bfloat16 arrays on numpy "
            "(pip install ml_dtypes)"
        )
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"bf16_compress_hook: the bucket is a {type(array).__module__} array; bfloat16 "
            f"compression works on host (numpy) gradients only (cupy has no bfloat16 type): use "
            f"fp16_compress_hook on the GPU"
        )
    return _compress_hook(bfloat16.np, process_group, bucket)
