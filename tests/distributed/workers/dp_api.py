"""DataParallel's module API on 2 ranks: buffers broadcast at forward (train mode with grad
only), a rank evaluating alone, state_dict with torch DDP's ``module.`` prefix."""

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
from distgrad.distributed import DataParallel

dist.init()
R = dist.rank()


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.register_buffer("scale", distgrad.tensor([float(R + 1)]))

    def forward(self, x):
        return self.fc(x) * self.scale


for broadcast in (True, False):
    model = Scaled()
    dp = DataParallel(model, broadcast_buffers=broadcast)
    assert model.scale.item() == 1.0  # construction always broadcasts rank 0's state
    model.scale.array[...] = R + 5
    dp(distgrad.ones(1, 3)).sum().backward()
    assert model.scale.item() == (5.0 if broadcast else R + 5), (broadcast, model.scale)

dp.eval()
assert not model.training and not model.fc.training
if R == 0:  # alone: an eval-mode forward must not communicate
    dp(distgrad.ones(1, 3))
dp.train()
with distgrad.no_grad():
    if R == 1:
        dp(distgrad.ones(1, 3))
assert dp.module is model
assert list(dp.state_dict()) == ["module.scale", "module.fc.weight", "module.fc.bias"]
assert [n for n, _ in dp.named_parameters()] == ["module.fc.weight", "module.fc.bias"]
dp.load_state_dict({k: v * 0 for k, v in model.state_dict().items()})  # a plain module's keys
assert np.all(model.fc.weight.detach().numpy() == 0)
dp.load_state_dict({k: v + 1 for k, v in dp.state_dict().items()})  # torch DDP's keys
assert np.all(model.fc.weight.detach().numpy() == 1)

# wrapping the same module again: only the new wrapper's hooks fire, and it averages once
model.zero_grad()
with distgrad.no_grad():
    model.scale.fill_(2.0)
rewrapped = DataParallel(model)
rewrapped(distgrad.full((1, 3), float(R + 1))).sum().backward()
assert rewrapped.last_step_stats is not None
# d/dW of sum(scale * W x) on rank r is 2 (r + 1); the average over 2 ranks is 3
np.testing.assert_allclose(model.fc.weight.grad.numpy(), np.full((2, 3), 3.0), rtol=1e-6)
dist.barrier()
print("OK", flush=True)
