"""``distgrad.distributed``: the process group, collectives on tensors (``torch.distributed``
names), communicators, ``DataParallel`` and ``SyncBatchNorm``.

mpi4py is imported only by ``init()``, so ``import distgrad.distributed`` needs numpy alone.
"""

from .collectives import (
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    broadcast,
    broadcast_object_list,
    gather,
    reduce,
    reduce_scatter,
    reduce_scatter_tensor,
    scatter,
)
from .communicator import (
    CollectiveInfo,
    CollectiveTimeoutError,
    Communicator,
    CommunicatorBrokenError,
    LocalCommunicator,
    ReduceOp,
    Work,
)
from .contract import CollectiveMismatchError
from .data_parallel import (
    DataParallel,
    DistributedDataParallel,
    NonFiniteGradientError,
    StepStats,
)
from .process_group import (
    barrier,
    finalize,
    get_communicator,
    get_rank,
    get_timeout,
    get_world_size,
    init,
    is_available,
    is_initialized,
    local_rank,
    local_world_size,
    rank,
    set_timeout,
    world_size,
)
from .sync_batchnorm import SyncBatchNorm

__all__ = [
    "init",
    "is_available",
    "is_initialized",
    "finalize",
    "rank",
    "world_size",
    "get_rank",
    "get_world_size",
    "local_rank",
    "local_world_size",
    "barrier",
    "get_communicator",
    "set_timeout",
    "get_timeout",
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
    "ReduceOp",
    "Work",
    "Communicator",
    "LocalCommunicator",
    "CollectiveInfo",
    "CollectiveTimeoutError",
    "CommunicatorBrokenError",
    "CollectiveMismatchError",
    "DistributedDataParallel",
    "DataParallel",
    "StepStats",
    "NonFiniteGradientError",
    "SyncBatchNorm",
]
