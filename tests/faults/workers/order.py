"""Scenario 5: ranks issue collectives in a different order ("order") or with different sizes
("shape") or dtypes ("dtype") at run time. Under DISTGRAD_DEBUG=1 every rank raises
CollectiveMismatchError before running it; without, see the test."""

import sys
import time

import numpy as np
from common import emit, mark_fault

import distgrad.distributed as dist

mode = sys.argv[1]
dist.init()
rank = dist.rank()
comm = dist.get_communicator()
comm.allreduce(np.ones(8, np.float32), async_op=False)
a = np.full(
    100 if (mode != "shape" or rank == 0) else 200,
    rank + 1.0,
    np.float32 if (mode != "dtype" or rank == 0) else np.float64,
)
mark_fault(mode)
start = time.perf_counter()
try:
    if mode == "order" and rank == 1:
        comm.broadcast(a, 0, async_op=False)
        comm.allreduce(a, async_op=False)
    else:
        comm.allreduce(a, async_op=False)
        comm.broadcast(a, 0, async_op=False)
except dist.CollectiveMismatchError as e:
    emit(raised=True, message=str(e), detection_s=time.perf_counter() - start)
    dist.barrier()
    sys.exit(0)
# without debug mode a size or dtype mismatch can complete: say whether the data is right
emit(raised=False, correct=bool(a.size == 100 and a.dtype == np.float32 and (a == 3).all()))
