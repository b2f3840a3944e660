"""Scenario 6: a parameter used on one rank only (alternating which), SGD and Adam; the
replicas must stay bit-identical after every step and match the single-process average."""

from common import Net, assert_replicas_equal, batch, emit

import distgrad
import distgrad.distributed as dist
import distgrad.optim as optim

dist.init()
rank = dist.rank()
for name in ("SGD", "Adam"):
    distgrad.manual_seed(0)
    model = dist.DataParallel(Net())
    opt = getattr(optim, name)(model.parameters(), lr=0.05)
    for step in range(4):
        use_extra = rank == step % 2  # 'extra' is used on exactly one rank
        model(batch(step, rank), use_extra=use_extra).square().mean().backward()
        opt.step()
        opt.zero_grad()
        assert_replicas_equal(model, f"{name} step {step}")
    emit(optimizer=name, ok=True)
emit(finished=True)
