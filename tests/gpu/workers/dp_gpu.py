"""DataParallel on GPU tensors against one process training on every rank's batches (on the
same GPU, float64). The last line printed is ``OK <kind> <max diff> <overlap share>``."""

import os

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
import distgrad.nn.functional as F
from distgrad.distributed import DataParallel

distgrad.set_default_dtype(distgrad.float64)
dist.init()
W, R = dist.world_size(), dist.rank()
dev = distgrad.device(os.environ.get("DISTGRAD_TEST_DEVICE", "cuda"))  # "cpu": check the script
STEPS, TOL = 4, 1e-10


def make_model(seed):
    distgrad.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)
    ).to(dev)


def batch(step, rank):
    rng = np.random.default_rng(1000 * step + rank)
    return (
        distgrad.tensor(rng.normal(size=(5, 6)), device=dev),
        distgrad.tensor(rng.integers(0, 3, 5), device=dev),
    )


model, ref = make_model(100 + R), make_model(100)
dp = DataParallel(model, bucket_cap_mb=0.01, first_bucket_mb=0.01)  # several buckets
assert all(isinstance(b.flat, np.ndarray) == (dev.type == "cpu") for b in dp.buckets), (
    "the buckets are not where the parameters are"
)
opt = distgrad.optim.SGD(dp.parameters(), lr=0.1, momentum=0.9)
ref_opt = distgrad.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
for step in range(STEPS):
    F.cross_entropy(dp(batch(step, R)[0]), batch(step, R)[1]).backward()
    (
        sum(F.cross_entropy(ref(batch(step, s)[0]), batch(step, s)[1]) for s in range(W)) / W
    ).backward()
    opt.step()
    ref_opt.step()
    opt.zero_grad()
    ref_opt.zero_grad()
    stats = dp.last_step_stats
    assert stats.buckets == len(dp.buckets) > 1
    assert 0.0 <= stats.overlap_s <= stats.communication_s + 1e-9, stats

diff = max(
    float(np.max(np.abs(p.detach().cpu().numpy() - q.detach().cpu().numpy())))
    for p, q in zip(model.parameters(), ref.parameters())
)
assert diff <= TOL, f"rank {R}: DataParallel on GPU differs by {diff}"
print("OK", dp.comm.kind, diff, round(stats.overlap_share, 3), flush=True)
