"""Step time while ``distgrad.distributed.checkpoint.async_save`` writes in the background,
against step time with no save in flight (interleaved blocks, one process, 1 BLAS thread).

Model: MLP 784-1024-1024-10 float32 (~7.2 MB of parameters + 14.5 MB of Adam state), batch 128,
Adam. Each repetition: a block of STEPS steps with no save, then a block that starts an
async_save of model + optimizer (get_state_dict) before its first step and runs STEPS steps
while it is written; the step times of the second block that overlap the write are compared
with the first block's. Prints medians and the ratio (goal <= 1.25x)."""

import os
import statistics
import sys
import tempfile
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

import distgrad  # noqa: E402
import distgrad.distributed.checkpoint as dcp  # noqa: E402
import distgrad.nn as nn  # noqa: E402
import distgrad.nn.functional as F  # noqa: E402
from distgrad.distributed.checkpoint.state_dict import get_state_dict  # noqa: E402

QUICK = "--quick" in sys.argv
REPS, STEPS = (3, 8) if QUICK else (8, 10)

distgrad.manual_seed(0)
model = nn.Sequential(
    nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
)
opt = distgrad.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
x = distgrad.tensor(rng.standard_normal((128, 784)).astype(np.float32))
y = distgrad.tensor(rng.integers(0, 10, 128))


def step() -> float:
    t = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t


root = tempfile.mkdtemp(prefix="bench-async-")
for _ in range(3):
    step()
plain, during, call, write = [], [], [], []
for _ in range(REPS):
    plain += [step() for _ in range(STEPS)]
    msd, osd = get_state_dict(model, opt)
    t = time.perf_counter()
    future = dcp.async_save({"model": msd, "optim": osd}, checkpoint_id=root, keep=1)
    call.append(time.perf_counter() - t)
    for _ in range(STEPS):
        if future.done():
            break
        during.append(step())
    future.result()
    write.append(time.perf_counter() - t)
p, d = statistics.median(plain), statistics.median(during)
print(f"steps without a save: median {p * 1e3:.2f} ms ({len(plain)} steps)")
print(f"steps during a write: median {d * 1e3:.2f} ms ({len(during)} steps)")
print(f"async_save call (snapshot, blocking): median {statistics.median(call) * 1e3:.2f} ms")
print(f"call to commit: median {statistics.median(write) * 1e3:.2f} ms")
print(f"ratio during/without: {d / p:.3f} (goal <= 1.25)")
