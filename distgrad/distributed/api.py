"""``torch.distributed``'s process-group functions: ``init_process_group``,
``destroy_process_group``, ``get_rank(group)``, ``get_world_size(group)``, ``get_backend``...

distgrad's own short names stay as aliases, one way: ``init()`` is ``init_process_group()``
with only the timeout, ``finalize()`` is ``destroy_process_group()``, ``rank()`` and
``world_size()`` are ``get_rank()`` and ``get_world_size()`` of the world.
"""

from __future__ import annotations

import datetime

from . import process_group as _pg
from .groups import ProcessGroup, destroy_group, resolve

__all__ = [
    "init_process_group",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "get_backend",
    "get_global_rank",
    "get_group_rank",
    "get_process_group_ranks",
    "BACKENDS",
]

#: Backend names accepted by ``init_process_group``. distgrad picks the transport from each
#: array (MPI for host arrays, NCCL for GPU arrays when every rank can use it), so all of them
#: mean the same; ``"gloo"`` (PyTorch's CPU backend, used by most tutorials) is accepted too.
BACKENDS = ("mpi", "nccl", "gloo", "cpu:gloo,cuda:nccl", "cuda:nccl,cpu:gloo")
_backend = {"name": "mpi"}


def init_process_group(
    backend: str | None = None,
    init_method: str | None = None,
    timeout: float | datetime.timedelta | None = None,
    world_size: int = -1,
    rank: int = -1,
    store: object = None,
    group_name: str = "",
    pg_options: object = None,
    device_id: object = None,
) -> None:
    """Join the world of ranks (``torch.distributed.init_process_group``).

    The ranks and their number come from MPI (whatever launched the job: distgrad-run,
    ``distgrad.multiprocessing.spawn``, mpiexec/mpirun, srun), so ``init_method`` and
    ``store`` are not needed (``"env://"`` and the like are accepted and ignored);
    ``world_size`` and ``rank``, if given, must agree with MPI's. ``timeout`` (seconds or a
    ``timedelta``) is the deadline of every collective: default 1800 s, or
    ``$DISTGRAD_COLLECTIVE_TIMEOUT`` (PyTorch's NCCL default is 600 s, Gloo's 1800 s).
    ``backend``: None or one of ``BACKENDS`` (all equivalent, see there)."""
    if backend is not None and str(backend).lower() not in BACKENDS:
        raise ValueError(
            f"init_process_group: unknown backend {backend!r}; distgrad uses MPI for host "
            f"tensors and NCCL for GPU tensors, so pass None or one of {list(BACKENDS)}"
        )
    if _pg.is_initialized():
        raise RuntimeError(
            "trying to initialize the default process group twice! (distgrad: "
            "init_process_group was already called; destroy_process_group() first)"
        )
    comm = _pg.init(timeout)
    for name, given, actual in (
        ("world_size", world_size, comm.world_size),
        ("rank", rank, comm.rank),
    ):
        if given is not None and int(given) >= 0 and int(given) != actual:
            problem = (
                f"init_process_group: {name}={given} was passed but MPI says this process has "
                f"{name} {actual}. distgrad takes the world from MPI: start the job with "
                f"distgrad-run -np N (or distgrad.multiprocessing.spawn, mpiexec -n N) and "
                f"drop the argument, or pass the values MPI gives"
            )
            _pg.finalize()
            raise ValueError(problem)
    _backend["name"] = "mpi" if backend is None else str(backend).lower()


def destroy_process_group(group: ProcessGroup | None = None) -> None:
    """Release ``group`` (None: the world, and with it every group). Destroying the world
    first checks that every rank got there (desync detection), so a rank that still issues
    collectives gets a named error instead of a hang."""
    if group is None or group.is_world:
        _pg.finalize()
    else:
        destroy_group(group)


def get_rank(group: ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (None: the world); -1 if it is not a member."""
    return resolve(group).rank()


def get_world_size(group: ProcessGroup | None = None) -> int:
    """The number of ranks in ``group`` (None: the world); -1 on a rank that is not a
    member (as in PyTorch)."""
    g = resolve(group)
    return g.size() if g.is_member else -1


def get_backend(group: ProcessGroup | None = None) -> str:
    """The backend name given to ``init_process_group`` (``"mpi"`` by default). The
    transport is chosen per array, whatever the name: MPI for host arrays, NCCL (or MPI with
    host staging) for GPU arrays."""
    resolve(group)
    _pg._require()
    return _backend["name"]


def get_global_rank(group: ProcessGroup, group_rank: int) -> int:
    """The world rank of ``group_rank`` in ``group``."""
    return resolve(group).global_rank(group_rank)


def get_group_rank(group: ProcessGroup, global_rank: int) -> int:
    """The rank in ``group`` of world rank ``global_rank``."""
    return resolve(group).group_rank(global_rank)


def get_process_group_ranks(group: ProcessGroup | None) -> list:
    """The world ranks of ``group``, in group-rank order."""
    return list(resolve(group).ranks)
