"""distgrad.distributed in a plain process (not started by mpiexec): a world of one."""

import datetime

import numpy as np

import distgrad
import distgrad.distributed as dist

comm = dist.init()
assert dist.init() is comm  # idempotent
assert dist.get_timeout() == 30  # DISTGRAD_COLLECTIVE_TIMEOUT, set by the test
dist.init(timeout=datetime.timedelta(seconds=7))
assert dist.get_timeout() == 7
assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.local_world_size()) == (0, 1, 0, 1)
t = distgrad.tensor([1.0, 2.0])
dist.all_reduce(t, op=dist.ReduceOp.AVG)
dist.broadcast(t, src=0)
out = [distgrad.zeros(2)]
dist.all_gather(out, t)
np.testing.assert_array_equal(out[0].numpy(), [1.0, 2.0])
objs = [None]
dist.all_gather_object(objs, "x")
assert objs == ["x"]
dist.barrier()
dist.finalize()
assert not dist.is_initialized()
print("single process ok", comm.kind)
