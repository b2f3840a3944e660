"""Scenario 3: rank 1 hangs (sleeps) before a collective: a plain allreduce ("collective") or
the backward of a DataParallel step, so rank 0 waits for a bucket ("bucket")."""

import sys
import time

import numpy as np
from common import Net, batch, emit, mark_fault

import distgrad.distributed as dist

variant = sys.argv[1]
dist.init()
rank = dist.rank()
model = dist.DataParallel(Net(), first_bucket_mb=1e-9)  # several buckets
for step in range(3):
    hang = rank == 1 and step == 2
    if variant == "collective":
        if hang:
            mark_fault("hang")
            time.sleep(60)
        dist.get_communicator().allreduce(np.ones(1000, np.float32), async_op=False)
    else:
        loss = model(batch(step, rank)).square().mean()
        if hang:
            mark_fault("hang")
            time.sleep(60)
        loss.backward()
emit(finished=True)
