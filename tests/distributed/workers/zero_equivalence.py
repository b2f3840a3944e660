"""ZeRO-1/2/3 on N ranks against one process training on all ranks' batches (float64).

``python zero_equivalence.py STAGE OPTIMIZER``: STAGE 1 is DistributedDataParallel +
ZeroRedundancyOptimizer, 2 and 3 are fully_shard (reshard_after_forward False / True) on every
layer, the tied embedding and the root, 4 is 3 on a (2, world / 2) device mesh (hybrid). OPTIMIZER is ``adam`` or ``sgd`` (momentum). The model
has shapes that do not divide by the world size (Linear(7, 15)), an unused layer and an
embedding tied to the output layer (a tie across units for fully_shard); every step
accumulates two micro-batches, the first under ``no_sync``, and clips the gradients to a global
norm of 0.5 (which must be the single process's). After 10 steps the parameters
must equal the single process's to 1e-12. Prints ``OK <max diff> <sha256 of the parameters>``.
"""

import contextlib
import hashlib
import os
import sys

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
import distgrad.nn.functional as F
import distgrad.optim
from distgrad.distributed.optim import ZeroRedundancyOptimizer
from distgrad.nn.utils import clip_grad_norm_

distgrad.set_default_dtype(distgrad.float64)
dist.init()
W, R = dist.world_size(), dist.rank()
stage, which = int(sys.argv[1]), sys.argv[2]
STEPS, MICRO, TOL = 10, 2, 1e-12
VOCAB, DIM = 11, 7


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.body = nn.Linear(DIM, 15)
        self.mid = nn.Linear(15, DIM)
        self.unused = nn.Linear(3, 5)
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, idx):
        h = distgrad.tanh(self.body(self.embed(idx)))
        return self.head(self.mid(h))


DEVICE = os.environ.get("ZERO_DEVICE", "cpu")  # "cuda": the same on cupy arrays (GPU tests)


def make_model():
    distgrad.manual_seed(7)  # the same initial weights on every rank
    return Net().to(DEVICE)


def batch(step, rank, micro):
    rng = np.random.default_rng(1000 * step + 10 * rank + micro)
    x, y = rng.integers(0, VOCAB, 5), rng.integers(0, VOCAB, 5)
    return distgrad.tensor(x).to(DEVICE), distgrad.tensor(y).to(DEVICE)


def optimizer(params, zero=False, ddp=None):
    kwargs = (
        {"lr": 1e-2} if which == "adam" else {"lr": 0.1, "momentum": 0.9}
    )  # both: hyperparameters per optimizer
    cls = distgrad.optim.Adam if which == "adam" else distgrad.optim.SGD
    if zero:
        return ZeroRedundancyOptimizer(params, optimizer_class=cls, ddp=ddp, **kwargs)
    return cls(params, **kwargs)


model, ref = make_model(), make_model()
if stage in (1, 5):
    wrapped = dist.DistributedDataParallel(model)
    opt = optimizer(wrapped.parameters(), zero=True, ddp=wrapped if stage == 5 else None)
else:
    from distgrad.distributed.fsdp import fully_shard

    mesh = None
    if stage == 4:  # hybrid: shard within rows of the mesh, all-reduce across them (ZeRO-3)
        from distgrad.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", (2, W // 2), mesh_dim_names=("replicate", "shard"))
    for unit in (model.embed, model.body, model.mid):
        fully_shard(unit, mesh=mesh, reshard_after_forward=stage >= 3)
    wrapped = fully_shard(model, mesh=mesh, reshard_after_forward=stage >= 3)
    opt = optimizer(model.parameters())
ref_opt = optimizer(ref.parameters())

for step in range(STEPS):
    for k in range(MICRO):
        last = k == MICRO - 1
        with contextlib.nullcontext() if last else wrapped.no_sync():
            x, y = batch(step, R, k)
            F.cross_entropy(wrapped(x), y).backward()
        ref_loss = sum(
            F.cross_entropy(ref(*batch(step, s, k)[:1]), batch(step, s, k)[1]) for s in range(W)
        )
        (ref_loss / W).backward()
    # one global norm for sharded and replicated parameters alike, the same on every rank
    mine = wrapped.parameters() if stage == 1 else model.parameters()
    if stage == 5:  # .grad stays None: the optimizer's rows hold the reduced gradients
        assert all(p.grad is None for p in model.parameters())
        norm = opt.clip_grad_norm_(max_norm=0.5).item()
    else:
        norm = clip_grad_norm_(mine, max_norm=0.5).item()
    ref_norm = clip_grad_norm_(ref.parameters(), max_norm=0.5).item()
    assert abs(norm - ref_norm) <= TOL * max(1.0, ref_norm), (step, norm, ref_norm)
    opt.step()
    ref_opt.step()
    opt.zero_grad()
    ref_opt.zero_grad()


def full(p):
    return p.full_tensor().detach().numpy() if hasattr(p, "full_tensor") else p.detach().numpy()


names = [n for n, _ in ref.named_parameters()]
mine = dict(model.named_parameters())
if stage in (1, 5):
    mine = dict(wrapped.module.named_parameters())
diff = 0.0
digest = hashlib.sha256()
for name, p in ref.named_parameters():
    value = full(mine[name])
    digest.update(value.tobytes())
    diff = max(diff, float(np.max(np.abs(value - p.detach().numpy()))))
assert diff <= TOL, f"rank {R}: ZeRO-{stage} differs from the single process by {diff}"
assert np.all(full(mine["unused.weight"]) == ref.unused.weight.detach().numpy())
if stage in (1, 5):  # the optimizer state: consolidated equals the single process's; round trips
    opt.consolidate_state_dict(to=0)
    full_state = opt.state_dict() if R == 0 else None
    if R == 0:
        theirs = ref_opt.state_dict()["state"]
        extra = sorted(set(full_state["state"]) - set(theirs))
        if stage == 5:  # reduce-scatter has no 'used' flags: the unused layer got zero gradients
            unused = [i for i, (n, _) in enumerate(ref.named_parameters()) if "unused" in n]
            assert extra == unused, (extra, unused)
            for i in extra:  # moments of zero gradients: zero
                for key, value in full_state["state"][i].items():
                    assert key == "step" or not np.any(value.numpy()), (i, key)
            extra = []
        assert not extra and set(theirs) <= set(full_state["state"]), (extra, theirs.keys())
        for i, entry in theirs.items():
            for key, value in entry.items():
                if key != "step":
                    got = full_state["state"][i][key].numpy()
                    assert np.max(np.abs(got - value.numpy())) <= TOL, (i, key)
    full_state = dist.get_communicator().broadcast_object(full_state, 0)
    again = optimizer(wrapped.parameters(), zero=True)
    again.load_state_dict(full_state)
    for a, b in zip(
        again.sharded_state_dict()["state"].values(), opt.sharded_state_dict()["state"].values()
    ):
        for key in a:
            if key != "step":
                np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    third = optimizer(wrapped.parameters(), zero=True)
    third.load_sharded_state_dict(opt.sharded_state_dict())
    assert len(third.sharded_state_dict()["state"]) == len(opt.sharded_state_dict()["state"])
print(f"OK {diff} {digest.hexdigest()}", flush=True)
