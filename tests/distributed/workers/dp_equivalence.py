"""DataParallel on N ranks against one process training on all ranks' batches (float64).

``python dp_equivalence.py SCENARIO [bucket_cap_mb]``: every rank trains its model, built from a
different seed (DataParallel must broadcast rank 0's), on its own batches, and also trains a
reference model (rank 0's initial weights) on every rank's batches, with the loss averaged over
ranks. Parameters and buffers must agree to 1e-12; the last line printed is ``OK <max diff>``.
"""

import contextlib
import sys

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
import distgrad.nn.functional as F
import distgrad.optim
from distgrad.distributed import DataParallel, SyncBatchNorm

distgrad.set_default_dtype(distgrad.float64)
dist.init()
W, R = dist.world_size(), dist.rank()
scenario = sys.argv[1]
cap = float(sys.argv[2]) if len(sys.argv) > 2 else 25.0
STEPS, TOL = 4, 1e-12


class Branchy(nn.Module):
    """``extra`` is used on rank 0 only, ``never`` by no rank."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        self.extra = nn.Linear(8, 3)
        self.never = nn.Linear(8, 3)

    def forward(self, x, use_extra=False):
        h = distgrad.tanh(self.body(x))
        out = self.head(h)
        return out + self.extra(h) if use_extra else out


def make_model(seed):
    distgrad.manual_seed(seed)
    if scenario == "unused":
        return Branchy()
    if scenario == "syncbn":
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def batch(step, rank, micro=0):
    rng = np.random.default_rng(1000 * step + 10 * rank + micro)
    x = distgrad.tensor(rng.normal(size=(5, 6)) + 1.5)  # offset: BatchNorm stats matter
    y = distgrad.tensor(rng.integers(0, 3, 5))
    return x, y


def loss_of(model, x, y, rank):
    out = model(x, use_extra=rank == 0) if scenario == "unused" else model(x)
    return F.cross_entropy(out, y)


def optimizer(params):
    if scenario == "adam":
        return distgrad.optim.Adam(params, lr=1e-3)
    return distgrad.optim.SGD(params, lr=0.1, momentum=0.9)


model, ref = make_model(seed=100 + R), make_model(seed=100)
if scenario == "syncbn":
    model = SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(model[1], SyncBatchNorm)
dp = DataParallel(model, bucket_cap_mb=cap, first_bucket_mb=min(cap, 1.0))
opt, ref_opt = optimizer(dp.parameters()), optimizer(ref.parameters())
n_params = len([p for p in model.parameters() if p.requires_grad])
if cap < 1e-6:
    assert len(dp.buckets) == n_params, [b.names for b in dp.buckets]
if cap > 100:
    assert len(dp.buckets) == 1

micro_steps = 3 if scenario == "no_sync" else 1
for step in range(STEPS):
    for k in range(micro_steps):
        seq = dp.comm.seq
        last = k == micro_steps - 1
        with contextlib.nullcontext() if last else dp.no_sync():
            loss_of(dp, *batch(step, R, k), R).backward()
        if not last:
            assert dp.comm.seq == seq, "no_sync communicated"
        if scenario == "syncbn":
            xs, ys = zip(*(batch(step, s, k) for s in range(W)))
            ref_loss = loss_of(ref, distgrad.cat(xs), distgrad.cat(ys), 0)
        else:
            ref_loss = sum(loss_of(ref, *batch(step, s, k), s) for s in range(W)) / W
        ref_loss.backward()
    assert dp.last_step_stats.buckets == len(dp.buckets)
    opt.step()
    ref_opt.step()
    set_to_none = step % 2 == 0  # both: .grad re-created, and zeroed in place in the buckets
    opt.zero_grad(set_to_none=set_to_none)
    ref_opt.zero_grad(set_to_none=set_to_none)


def max_diff(a, b):
    return max(
        (float(np.max(np.abs(x.detach().numpy() - y.detach().numpy()))) for x, y in zip(a, b)),
        default=0.0,
    )


diff = max(max_diff(model.parameters(), ref.parameters()), max_diff(model.buffers(), ref.buffers()))
assert diff <= TOL, f"rank {R}: DataParallel differs from the single process by {diff}"
everywhere = [None] * W
dist.all_gather_object(everywhere, [p.detach().numpy() for p in model.parameters()])
assert all(np.array_equal(a, b) for other in everywhere for a, b in zip(everywhere[0], other))

if scenario == "unused":
    assert model.never.weight.grad is None, "a parameter no rank used got a gradient"
    # A parameter no rank uses keeps .grad as it was (here: different on every rank, and for
    # `extra` a view of its bucket holding the previous step's reduced gradient).
    loss_of(dp, *batch(9, R), R).backward()  # extra used on rank 0: averaged everywhere
    model.extra.weight.grad.array[...] += R  # now different on every rank
    extra_before = model.extra.weight.grad.numpy().copy()
    mine = np.full((3, 8), float(R + 1))
    model.never.weight.grad = distgrad.tensor(mine.copy())
    F.cross_entropy(dp(batch(10, R)[0]), batch(10, R)[1]).backward()  # extra unused everywhere
    np.testing.assert_array_equal(model.extra.weight.grad.numpy(), extra_before)
    np.testing.assert_array_equal(model.never.weight.grad.numpy(), mine)
print("OK", diff, flush=True)
