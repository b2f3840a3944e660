"""Run on 2 MPI ranks: only rank 1's gradients hold an inf; GradScaler must skip the step and
back off the scale on both ranks (the found-inf flag is all-reduced)."""

import numpy as np

import distgrad as dg
import distgrad.distributed as dist
from distgrad import amp, nn

dist.init()
rank = dist.rank()
dg.manual_seed(0)
model = nn.Linear(3, 2)
opt = dg.optim.SGD(model.parameters(), lr=0.1)
scaler = amp.GradScaler(init_scale=64.0)
before = model.weight.detach().numpy().copy()
scaler.scale((model(dg.randn(4, 3)) ** 2).mean()).backward()
if rank == 1:
    model.weight.grad.array[0, 0] = np.inf
assert scaler.step(opt) is None, f"rank {rank} stepped"
scaler.update()
assert np.array_equal(model.weight.detach().numpy(), before), f"rank {rank} changed its parameters"
assert scaler.get_scale() == 32.0, f"rank {rank} has scale {scaler.get_scale()}"

opt.zero_grad()  # a clean step afterwards: both ranks step
scaler.scale((model(dg.randn(4, 3)) ** 2).mean()).backward()
scaler.step(opt)
scaler.update()
assert not np.array_equal(model.weight.detach().numpy(), before), f"rank {rank} did not step"
print(f"rank {rank} ok")
dist.finalize()
