"""Every tensor collective on GPU tensors, on each rank of an MPI job; the last line printed
is ``OK <communicator kind>`` (nccl, or mpi where GPU tensors are staged through the host)."""

import os

import numpy as np

import distgrad as dg
import distgrad.distributed as dist
from distgrad.distributed import ReduceOp
from distgrad.distributed.process_group import communicator_for

dist.init()
W, R = dist.world_size(), dist.rank()
dev = dg.device(os.environ.get("DISTGRAD_TEST_DEVICE", "cuda"))  # "cpu": check this script


def host(t):
    return t.cpu().numpy()


x = dg.tensor([R + 1.0, 2.0 * R], device=dev)
kind = communicator_for(x.array).kind
dist.all_reduce(x)
np.testing.assert_allclose(host(x), [W * (W + 1) / 2, W * (W - 1)])

avg = dg.full((3,), float(R), device=dev, dtype=dg.float64)
dist.all_reduce(avg, ReduceOp.AVG)
np.testing.assert_allclose(host(avg), (W - 1) / 2)

for op, want in ((ReduceOp.MAX, W - 1), (ReduceOp.MIN, 0)):
    t = dg.tensor([R], device=dev)
    dist.all_reduce(t, op)
    assert host(t).tolist() == [want], (op, host(t))

flags = dg.tensor([R == 0, True, False], device=dev)
dist.all_reduce(flags)  # logical or
assert host(flags).tolist() == [True, True, False]

half = dg.ones(4, device=dev, dtype=dg.float16)
work = dist.all_reduce(half, async_op=True)
work.wait()
np.testing.assert_array_equal(host(half), W)

base = dg.zeros(3, 4, device=dev)
base[:, 1] = R + 1.0
column = base[:, 1]  # not contiguous
dist.all_reduce(column)
np.testing.assert_allclose(host(base)[:, 1], W * (W + 1) / 2)
np.testing.assert_allclose(host(base)[:, 0], 0)

b = dg.full((5,), float(R), device=dev)
dist.broadcast(b, src=W - 1)
np.testing.assert_array_equal(host(b), W - 1)

out = [dg.zeros(2, device=dev) for _ in range(W)]
dist.all_gather(out, dg.tensor([R, -R], device=dev, dtype=dg.float32))
assert [host(o).tolist() for o in out] == [[r, -r] for r in range(W)]

rs = dg.zeros(2, device=dev)
dist.reduce_scatter(rs, [dg.full((2,), float(r + R), device=dev) for r in range(W)])
np.testing.assert_allclose(host(rs), W * R + W * (W - 1) / 2)

red = dg.tensor([1.0 + R], device=dev)
dist.reduce(red, dst=0)
assert host(red).tolist() == ([W * (W + 1) / 2] if R == 0 else [1.0 + R])

gathered = [dg.zeros(1, device=dev) for _ in range(W)] if R == 0 else None
dist.gather(dg.tensor([10.0 * R], device=dev), gathered, dst=0)
if R == 0:
    assert [host(g).tolist() for g in gathered] == [[10.0 * r] for r in range(W)]

mine = dg.zeros(2, device=dev)
blocks = [dg.full((2,), float(r), device=dev) for r in range(W)] if R == 0 else None
dist.scatter(mine, blocks, src=0)
np.testing.assert_array_equal(host(mine), R)

objects = [None] * W
dist.all_gather_object(objects, {"rank": R})
assert objects == [{"rank": r} for r in range(W)]
dist.barrier()
print("OK", kind, flush=True)
