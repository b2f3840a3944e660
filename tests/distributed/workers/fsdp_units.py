"""fully_shard unit variants on real ranks: ``python fsdp_units.py SCENARIO [ARG]``.

- ``group STAGE``: ``fully_shard([l0, l1])``, ``fully_shard([l2, l3])`` and the root (ZeRO-STAGE,
  2 or 3), float64, 10 SGD-momentum steps against one process: equal to 1e-12; per step each
  group is all-gathered once in forward and (ZeRO-3) once in backward, and is resharded
  between forward and backward (ZeRO-3). Prints ``OK``.
- ``hpz K``: ``reshard_after_forward=K`` (hpZ: after forward keep the parameters sharded over
  groups of K ranks; backward gathers within the group), float64, 10 Adam steps against one
  process: equal to 1e-12; bytes on the world communicator per step = forward all-gather +
  reduce-scatter (2 Psi), the backward all-gathers (Psi) go over the K-rank groups. Prints ``OK``.
- ``mp CAST``: ``MixedPrecisionPolicy(param_dtype=float16, reduce_dtype=float32,
  output_dtype=float32, cast_forward_inputs=CAST)`` on a float32 model: the first layer sees float16
  inputs (CAST=1) or the caller's float32 (CAST=0), the output is float32, and 5 SGD steps
  stay within float16 precision of one float32 process. Prints ``OK``.
"""

import dataclasses
import os
import sys

if sys.argv[1] == "hpz":  # count the data collectives only, not the per-collective header check
    os.environ["DISTGRAD_FSDP_CHECK"] = "0"

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
import distgrad.optim
from distgrad.distributed.fsdp import MixedPrecisionPolicy, fully_shard, record_events
from distgrad.distributed.traffic import CountingCommunicator

dist.init()
W, R = dist.world_size(), dist.rank()
scenario = sys.argv[1]
arg = int(sys.argv[2]) if len(sys.argv) > 2 else 3


seen = []


class Probe(nn.Linear):
    """Records the dtype its forward receives, then computes in its weight's dtype."""

    def forward(self, x):
        seen.append(x.dtype)
        return super().forward(x.to(self.weight.dtype))


def make(dtype):
    distgrad.manual_seed(11)
    return nn.Sequential(
        Probe(6, 9), nn.Tanh(), nn.Linear(9, 5), nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)
    ).to(dtype)


def batch(step, rank, dtype):
    rng = np.random.default_rng(10 * step + rank)
    return distgrad.tensor(rng.standard_normal((4, 6))).to(dtype)


def train_step(module, opt, ref, ref_opt, step, dtype):
    module(batch(step, R, dtype)).square().mean().backward()
    (sum(ref(batch(step, r, dtype)).square().mean() for r in range(W)) / W).backward()
    for o in (opt, ref_opt):
        o.step()
        o.zero_grad()


def max_diff(model, ref):
    diff = 0.0
    for p, q in zip(model.parameters(), ref.parameters()):
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        diff = max(diff, float(np.max(np.abs(full.numpy() - q.detach().numpy()))))
    return diff


if scenario == "group":
    model, ref = make(distgrad.float64), make(distgrad.float64)
    fully_shard([model[0], model[2]], reshard_after_forward=arg == 3)
    fully_shard([model[3], model[5]], reshard_after_forward=arg == 3)
    fully_shard(model, reshard_after_forward=arg == 3)
    opt = distgrad.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ref_opt = distgrad.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    for step in range(10):
        if step == 5:
            with record_events(model) as events:
                out = model(batch(step, R, distgrad.float64))
                gathered_after_forward = [u.gathered for u in model._fsdp_unit.root.units[:2]]
                out.square().mean().backward()
            (
                sum(ref(batch(step, r, distgrad.float64)).square().mean() for r in range(W)) / W
            ).backward()
            for o in (opt, ref_opt):
                o.step()
                o.zero_grad()
            continue
        train_step(model, opt, ref, ref_opt, step, distgrad.float64)
    gathers = [e for e in events if e[0] == "allgather_issue"]
    forward = [e for e in gathers if e[2] == "forward"]
    backward = [e for e in gathers if e[2] == "backward"]
    assert len(forward) == 2 and len({e[1] for e in forward}) == 2, events
    assert len(backward) == (2 if arg == 3 else 0), events
    assert gathered_after_forward == [arg == 2, arg == 2], gathered_after_forward
    assert len([e for e in events if e[0] == "reduce_scatter_issue"]) == 2, events
    diff = max_diff(model, ref)
    assert diff <= 1e-12, f"rank {R}: grouped units differ from one process by {diff}"
    print("OK", diff, flush=True)

elif scenario == "hpz":
    comm = CountingCommunicator(dist.get_communicator())
    model, ref = make(distgrad.float64), make(distgrad.float64)
    for bad in (W, 1, W + 1):  # not a non-trivial divisor of the world size
        try:
            fully_shard(nn.Linear(2, 2), reshard_after_forward=bad)
            raise AssertionError(f"reshard_after_forward={bad} was accepted")
        except ValueError as error:
            assert "non-trivial divisor" in str(error), error
    for i in (0, 2, 3, 5):
        fully_shard(model[i], mesh=comm, reshard_after_forward=arg)
    fully_shard(model, mesh=comm, reshard_after_forward=arg)
    opt = distgrad.optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = distgrad.optim.Adam(ref.parameters(), lr=1e-2)
    units = model._fsdp_unit.root.units
    padded = sum(u.comm.world_size * u.layout.block * 8 for u in units if u.full)  # Psi, padded
    for step in range(10):
        comm.reset()
        train_step(model, opt, ref, ref_opt, step, distgrad.float64)
        # on the world: the forward all-gather and the reduce-scatter (2 Psi), not backward's
        # (step 0 also agrees on the reducers)
        assert step == 0 or comm.total_bytes == 2 * padded, (step, comm.total_bytes, padded)
    diff = max_diff(model, ref)
    assert diff <= 1e-12, f"rank {R}: hpZ differs from one process by {diff}"
    print("OK", diff, flush=True)

elif scenario == "mp":
    model, ref = make(distgrad.float32), make(distgrad.float32)
    policy = MixedPrecisionPolicy(
        param_dtype=distgrad.float16,
        reduce_dtype=distgrad.float32,
        output_dtype=distgrad.float32,
        cast_forward_inputs=bool(arg),
    )
    fully_shard(model[0], mp_policy=policy)  # the unit under test; the others cast inputs
    for i in (2, 3, 5):
        fully_shard(model[i], mp_policy=dataclasses.replace(policy, cast_forward_inputs=True))
    fully_shard(model, mp_policy=policy)
    opt = distgrad.optim.SGD(model.parameters(), lr=0.05)
    ref_opt = distgrad.optim.SGD(ref.parameters(), lr=0.05)
    seen.clear()
    out = model(batch(0, R, distgrad.float32))
    assert out.dtype == distgrad.float32, out.dtype
    assert seen == [distgrad.float16 if arg else distgrad.float32], seen
    out.square().mean().backward()
    opt.zero_grad()
    for step in range(5):
        train_step(model, opt, ref, ref_opt, step, distgrad.float32)
    diff = max_diff(model, ref)
    scale = max(float(np.max(np.abs(q.detach().numpy()))) for q in ref.parameters())
    assert diff <= 5e-3 * scale, f"rank {R}: float16 compute off by {diff} (scale {scale})"
    assert all(p.dtype == distgrad.float32 for p in model.parameters())
    print("OK", diff, flush=True)
