"""``distgrad.distributed``: ``torch.distributed``'s API (``init_process_group``, process
groups, collectives on tensors with ``group=``/``async_op=``, point to point, object
collectives), communicators, ``DataParallel`` (communication hooks: ``algorithms.ddp_comm_hooks``;
``hierarchical`` allreduce) and ``SyncBatchNorm``.

distgrad's short names are aliases, one way: ``init`` = ``init_process_group`` (timeout only),
``finalize`` = ``destroy_process_group()``, ``rank``/``world_size`` = ``get_rank``/
``get_world_size`` of the world. mpi4py is imported only by ``init()``, so
``import distgrad.distributed`` needs numpy alone. docs/coming_from_torch_distributed.md maps
torch.distributed, torchrun and Horovod names to distgrad's.
"""

from ..futures import Future
from . import algorithms, hierarchical
from .api import (
    destroy_process_group,
    get_backend,
    get_global_rank,
    get_group_rank,
    get_process_group_ranks,
    get_rank,
    get_world_size,
    init_process_group,
)
from .collectives import (
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    all_to_all,
    all_to_all_single,
    barrier,
    broadcast,
    broadcast_object_list,
    gather,
    gather_object,
    irecv,
    isend,
    monitored_barrier,
    recv,
    reduce,
    reduce_scatter,
    reduce_scatter_tensor,
    scatter,
    send,
)
from .communicator import (
    CollectiveInfo,
    CollectiveTimeoutError,
    Communicator,
    CommunicatorBrokenError,
    LocalCommunicator,
    P2PWork,
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
from .desync import CollectiveDesyncError
from .device_mesh import DeviceMesh, init_device_mesh
from .grad_bucket import GradBucket
from .groups import ProcessGroup, group, new_group
from .process_group import (
    finalize,
    get_communicator,
    get_timeout,
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
    "Future",
    "GradBucket",
    "algorithms",
    "hierarchical",
    "init_process_group",
    "destroy_process_group",
    "get_backend",
    "get_global_rank",
    "get_group_rank",
    "get_process_group_ranks",
    "new_group",
    "group",
    "ProcessGroup",
    "all_to_all",
    "all_to_all_single",
    "send",
    "recv",
    "isend",
    "irecv",
    "monitored_barrier",
    "gather_object",
    "P2PWork",
    "CollectiveDesyncError",
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
    "DeviceMesh",
    "init_device_mesh",
    "DataParallel",
    "StepStats",
    "NonFiniteGradientError",
    "SyncBatchNorm",
]
