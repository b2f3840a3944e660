"""Buckets are launched during backward: those of the later layers before the gradient of the
first layer's output is even computed. An unused parameter in the first bucket does not hold
it back (it is known unused from the graph at the first hook)."""

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
from distgrad.distributed import DataParallel

dist.init()
distgrad.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(32, 64)
        self.rest = nn.Sequential(
            nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4)
        )
        self.unused = nn.Linear(4, 4)  # registered last: its parameters fill the first buckets
        self.seen = []

    def forward(self, x):
        h = self.first(x)
        h.register_hook(lambda g: self.seen.append([b.work for b in dp.buckets]))
        return self.rest(h)


model = Net()
dp = DataParallel(model, bucket_cap_mb=1e-9, first_bucket_mb=1e-9)
names = [b.names[0] for b in dp.buckets]
assert names[:2] == ["unused.bias", "unused.weight"] and len(names) == 10, names
for _step in range(3):
    model.seen.clear()
    dp(distgrad.randn(16, 32)).pow(2).mean().backward()
    # when backward reached the first layer's output, all but its two buckets were in flight
    launched = [seen is b.work for seen, b in zip(model.seen[0], dp.buckets)]
    assert launched == [True] * 8 + [False] * 2, launched
    stats = dp.last_step_stats
    assert stats.buckets == 10 and stats.launched_in_backward == 10, stats
    assert 0 <= stats.overlap_share <= 1 and stats.wait_s >= 0 and stats.communication_s >= 0
    model.zero_grad()
print("OK", dist.rank(), stats, flush=True)
