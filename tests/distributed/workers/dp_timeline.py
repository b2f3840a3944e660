"""A few DataParallel steps with the timeline on: through ``DISTGRAD_TIMELINE`` (argument
``env``, written at exit) or the API (argument ``api``, ``recording(dir)``); on the device
``DISTGRAD_TEST_DEVICE`` (default cpu; tests/gpu runs it on cuda)."""

import os
import sys

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
from distgrad.distributed import DataParallel, timeline

mode, directory = sys.argv[1], sys.argv[2]
device = distgrad.device(os.environ.get("DISTGRAD_TEST_DEVICE", "cpu"))
dist.init()
distgrad.manual_seed(0)
model = nn.Sequential(
    nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 8)
).to(device)
dp = DataParallel(model, bucket_cap_mb=1e-9, first_bucket_mb=1e-9)  # one per parameter
optimizer = distgrad.optim.SGD(dp.parameters(), lr=0.01)
assert timeline.is_recording() == (mode == "env"), (mode, timeline.is_recording())


def train(steps):
    for _ in range(steps):
        optimizer.zero_grad()
        dp(distgrad.randn(32, 64).to(device)).pow(2).mean().backward()
        optimizer.step()


if mode == "api":
    train(1)  # not recorded
    with timeline.recording(directory):
        train(3)
    train(1)  # not recorded
else:
    train(3)
print("OK", dist.rank(), len(dp.buckets), flush=True)
