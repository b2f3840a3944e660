"""Scenario 2: a Python exception on rank 1 only, at step 2, in the place argv[1] names:
forward, hook (a gradient hook during backward), optimizer, save."""

import os
import sys

from common import Net, assert_replicas_equal, batch, emit, mark_fault

import distgrad
import distgrad.distributed as dist
import distgrad.optim as optim

where, out = sys.argv[1], sys.argv[2]
dist.init()
rank = dist.rank()
distgrad.manual_seed(0)
model = dist.DataParallel(Net())
FAULT_STEP = 2


def inject(place):
    if place == where and rank == 1 and step == FAULT_STEP:
        mark_fault(place)
        raise RuntimeError(f"injected fault in {place}")


class FailingSGD(optim.SGD):
    def step(self, closure=None):
        inject("optimizer")
        return super().step(closure)


opt = FailingSGD(model.parameters(), lr=0.1)
model.module.head.weight.register_hook(lambda g: inject("hook"))
for step in range(4):
    inject("forward")
    loss = model(batch(step, rank)).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    assert_replicas_equal(model, f"step {step}")
    # every rank saves its own file; a failing save must not damage the earlier one
    path = os.path.join(out, f"rank{rank}-step{step}.dgt")
    if where == "save" and rank == 1 and step == FAULT_STEP:
        mark_fault("save")
        path = os.path.join(out, "missing-directory", "x.dgt")
    distgrad.save(model.state_dict(), path)
emit(finished=True)
