"""fully_shard / ZeRO checks on real ranks: ``python fsdp_checks.py SCENARIO [STAGE]``.

- ``overlap``: ZeRO-3 over 4 units; the event log of the second step must show unit g+1's
  all-gather issued before unit g's forward compute ends, and reduce-scatters issued before
  backward ends. Prints ``OK``.
- ``bytes STAGE``: bytes per step counted by the communicator for ZeRO-STAGE (0 = DDP, 5 =
  ZeRO-1 with ``ddp=``: reduce-scatter) on
  4 x Linear(128, 128); prints ``BYTES <counted> <estimate> <psi>``.
- ``memory STAGE``: tracemalloc over one Adam step of 4 x Linear(1024, 1024) (float32, batch
  1); prints ``MEM <persistent> <peak> <estimated persistent> <estimated peak>``.
- ``diverge``: rank 1 skips a unit in the second step; every rank must raise
  ShardingDesyncError. Prints ``rank R raised: <message>``.
"""

import sys
import tracemalloc

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
import distgrad.optim
from distgrad.distributed.fsdp import ShardingDesyncError, fully_shard, record_events
from distgrad.distributed.fsdp.estimate import estimate
from distgrad.distributed.optim import ZeroRedundancyOptimizer
from distgrad.distributed.traffic import CountingCommunicator

dist.init()
W, R = dist.world_size(), dist.rank()
scenario = sys.argv[1]
stage = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def layers(width, count=4, dtype=distgrad.float64):
    distgrad.manual_seed(3)
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(count)]).to(dtype)


def wrap(model, stage, comm=None):
    """(module to call, optimizer) for ZeRO-stage (0 = DDP, 5 = ZeRO-1 with ``ddp=``)."""
    if stage <= 1 or stage == 5:
        ddp = dist.DistributedDataParallel(model, process_group=comm)
        if stage == 0:
            return ddp, distgrad.optim.Adam(ddp.parameters(), lr=1e-3)
        return ddp, ZeroRedundancyOptimizer(
            ddp.parameters(),
            distgrad.optim.Adam,
            process_group=comm,
            ddp=ddp if stage == 5 else None,
            lr=1e-3,
        )
    for layer in model:
        fully_shard(layer, mesh=comm, reshard_after_forward=stage == 3)
    fully_shard(model, mesh=comm, reshard_after_forward=stage == 3)
    return model, distgrad.optim.Adam(model.parameters(), lr=1e-3)


def step(module, opt, x):
    module(x).square().sum().backward()
    opt.step()
    opt.zero_grad()


if scenario == "overlap":
    model = layers(16)
    module, opt = wrap(model, 3)
    x = distgrad.randn(2, 16, dtype=distgrad.float64)
    step(module, opt, x)  # records the order
    with record_events(model) as events:
        step(module, opt, x)
    issues = [i for i, e in enumerate(events) if e[0] == "allgather_issue" and e[2] == "forward"]
    ends = [i for i, e in enumerate(events) if e[0] == "compute_end" and e[2] == "forward"]
    assert len(ends) == 5 and len(issues) == 4, events  # 4 units + the root
    for g in range(3):  # unit g+1's gather was issued before unit g's compute ended
        assert issues[g + 1] < ends[g], (g, events)
    backward_end = next(i for i, e in enumerate(events) if e[0] == "backward_end")
    scatters = [i for i, e in enumerate(events) if e[0] == "reduce_scatter_issue"]
    assert len(scatters) == 4 and all(i < backward_end for i in scatters), events
    bw_issues = [
        i for i, e in enumerate(events) if e[0] == "allgather_issue" and e[2] == "backward"
    ]
    assert len(bw_issues) == 4, events
    print("OK", flush=True)

elif scenario == "bytes":
    comm = CountingCommunicator(dist.get_communicator())
    model = layers(128)
    predicted = estimate(
        model, W, "adam", 1 if stage == 5 else stage, zero1_reduce_scatter=stage == 5
    ).wire_bytes
    psi = sum(p.numel() * 8 for p in model.parameters())
    module, opt = wrap(model, stage, comm)
    x = distgrad.randn(2, 128, dtype=distgrad.float64)
    step(module, opt, x)
    comm.reset()
    step(module, opt, x)
    print(f"BYTES {comm.total_bytes} {predicted} {psi}", flush=True)

elif scenario == "memory":
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = layers(1024, dtype=distgrad.float32)
    predicted = estimate(model, W, "adam", stage)
    module, opt = wrap(model, stage)
    x = distgrad.randn(1, 1024)
    step(module, opt, x)  # optimizer state exists from here on
    module(x).square().sum().backward()
    opt.step()  # gradients kept: parameters + gradients + optimizer state
    persistent = tracemalloc.get_traced_memory()[0] - base
    opt.zero_grad()
    tracemalloc.reset_peak()
    module(x).square().sum().backward()
    opt.step()
    peak = tracemalloc.get_traced_memory()[1] - base
    print(f"MEM {persistent} {peak} {predicted.persistent} {predicted.peak}", flush=True)

elif scenario == "diverge":
    model = layers(8, count=3)
    module, opt = wrap(model, 3)
    x = distgrad.randn(2, 8, dtype=distgrad.float64)
    step(module, opt, x)
    try:
        if R == 1:  # data-dependent control flow: this rank skips the middle unit
            out = model[2](model[0](x))
        else:
            out = model(x)
        out.sum().backward()
        opt.step()
        dist.barrier()
        print(f"rank {R} finished without an error", flush=True)
    except ShardingDesyncError as error:
        print(f"rank {R} raised: {error}", flush=True)
