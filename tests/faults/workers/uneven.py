"""Scenario 11: ranks with different numbers of batches. "join": dp.join stops every rank at
the shortest; "sampler": DistributedSampler pads every rank to the same length; "naive": no
protection, so the longer rank waits in its next allreduce until the deadline."""

import sys
import warnings

import numpy as np
from common import Net, assert_replicas_equal, batch, emit, mark_fault

import distgrad
import distgrad.distributed as dist
import distgrad.optim as optim
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.distributed import DistributedSampler

mode = sys.argv[1]
dist.init()
rank = dist.rank()
distgrad.manual_seed(0)
model = dist.DataParallel(Net())
opt = optim.SGD(model.parameters(), lr=0.1)
if mode == "sampler":
    data = TensorDataset(
        distgrad.tensor(np.random.default_rng(0).standard_normal((11, 6)).astype(np.float32))
    )  # 11 samples: 6 + 5 without padding
    batches = [
        x for (x,) in DataLoader(data, batch_size=2, sampler=DistributedSampler(data, shuffle=True))
    ]
else:
    batches = [batch(step, rank) for step in range(5 if rank == 0 else 3)]
steps = 0
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for x in model.join(batches) if mode == "join" else batches:
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        steps += 1
        assert_replicas_equal(model, f"step {steps}")
if len(batches) == 3:
    mark_fault("exhausted")
emit(steps=steps, batches=len(batches), warnings=[str(w.message) for w in caught])
