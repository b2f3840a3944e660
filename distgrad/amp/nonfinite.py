"""The rank-agreed inf/NaN check used by ``GradScaler`` and ``DistributedDataParallel.step``.

Both skip an optimizer step whose gradients hold inf/NaN; under distributed training every rank
must skip the same steps (or the replicas drift apart), so the local finding is or'ed over the
ranks with one small all-reduce (MAX of an int32 flag).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module_for

__all__ = ["any_nonfinite"]


def any_nonfinite(arrays, comm=None) -> bool:
    """Whether any of ``arrays`` holds inf/NaN on any rank. ``comm``: the communicator of the
    ranks that must agree; None means the world's when distributed training is initialised
    (else this process alone). Every rank of ``comm`` must call it (a collective)."""
    arrays = list(arrays)
    bad = np.zeros(1, np.int32)
    if arrays:
        xp = array_module_for(arrays[0])
        bad[0] = not bool(xp.all(xp.stack([xp.isfinite(a).all() for a in arrays])))
    if comm is None:
        from .. import distributed as dist  # the layer below; only when asked to agree

        if not dist.is_initialized() or dist.get_world_size() <= 1:
            return bool(bad[0])
        comm = dist.get_communicator()
    if comm.world_size > 1:
        from ..distributed.communicator import ReduceOp

        comm.allreduce(bad, ReduceOp.MAX, async_op=False)
    return bool(bad[0])
