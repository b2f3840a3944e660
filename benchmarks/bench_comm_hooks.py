"""DDP communication hooks and hierarchical allreduce on the MLP benchmark: step time, bytes
sent and compression error against plain allreduce, with the cost model's predictions.

    python benchmarks/bench_comm_hooks.py                  # 2 ranks: none/fp16/bf16/PowerSGD
    python benchmarks/bench_comm_hooks.py --hierarchical   # 4 ranks as 2 fake nodes x 2
    python benchmarks/bench_comm_hooks.py --quick

The MLP 784-1024-1024-10 (float32, per-rank batch 128, SGD), one model copy per variant (the
same weights), every variant stepped in turn each round (interleaved), one thread per rank.
Prints per variant the median step time (the slowest rank's), the median communication span of
the reducer (``last_step_stats.communication_s``), the bytes sent per step
(``StepStats.sent_bytes``, traffic.py's accounting: an allreduce of n bytes counts 2n) against
``ddp_comm_hooks.cost.predicted_step_bytes``, the relative compression error, and the cost
model's predicted communication time on this machine (the ``here`` presets). Needs the hooks of
``distgrad.distributed.algorithms.ddp_comm_hooks``; without them it says so and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import make_mlp, spawn_mpi  # noqa: E402


def variants(hierarchical: bool, rank: int):
    """``name -> (hook setup, DataParallel kwargs, cost-model mode)``."""
    from distgrad.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    if hierarchical:
        return {
            "flat allreduce": (None, {"hierarchical_allreduce": False}, "ddp"),
            "hierarchical (2 nodes x 2)": (
                None,
                {"hierarchical_allreduce": True, "ranks_per_node": 2},
                "ddp",
            ),
        }

    def power(ddp):
        state = powerSGD_hook.PowerSGDState(
            None, matrix_approximation_rank=rank, start_powerSGD_iter=2
        )
        ddp.register_comm_hook(state, powerSGD_hook.powerSGD_hook)

    return {
        "allreduce (no hook)": (None, {}, "ddp"),
        "fp16_compress_hook": (
            lambda ddp: ddp.register_comm_hook(None, default_hooks.fp16_compress_hook),
            {},
            "fp16",
        ),
        "bf16_compress_hook": (
            lambda ddp: ddp.register_comm_hook(None, default_hooks.bf16_compress_hook),
            {},
            "bf16",
        ),
        f"powerSGD_hook r={rank}": (power, {}, "powersgd"),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hierarchical", action="store_true")
    parser.add_argument("--rank", type=int, default=4, help="PowerSGD's matrix rank")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    launched = any(
        v in os.environ for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "DISTGRAD_BENCH_CHILD")
    )
    try:
        importlib.import_module("distgrad.distributed.algorithms.ddp_comm_hooks")
    except ImportError:
        print("bench_comm_hooks: distgrad.distributed.algorithms.ddp_comm_hooks is not there yet")
        return
    if not launched:
        sys.exit(spawn_mpi(4 if args.hierarchical else 2))

    import numpy as np

    import distgrad as dg
    import distgrad.distributed as dist
    import distgrad.nn.functional as F
    from distgrad.distributed import cost_model
    from distgrad.distributed.communicator import ReduceOp

    cost = importlib.import_module("distgrad.distributed.algorithms.ddp_comm_hooks.cost")

    comm = dist.init()
    n = comm.world_size
    rng = np.random.default_rng(comm.rank)
    x = dg.from_numpy(rng.standard_normal((args.batch, 784)).astype(np.float32))
    y = dg.from_numpy(rng.integers(0, 10, args.batch))
    runs = {}
    for name, (setup, kwargs, mode) in variants(args.hierarchical, args.rank).items():
        model = make_mlp(0)
        ddp = dist.DataParallel(model, **kwargs)
        if setup is not None:
            setup(ddp)
        runs[name] = (ddp, dg.optim.SGD(model.parameters(), lr=0.01), mode)

    def step(ddp, optimizer):
        optimizer.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        optimizer.step()

    warmup, rounds = 3, 10 if args.quick else 40
    times = {name: [] for name in runs}
    comm_s = {name: [] for name in runs}
    for r in range(warmup + rounds):
        names = list(runs)
        names = names[r % len(names) :] + names[: r % len(names)]
        for name in names:
            ddp, optimizer, _ = runs[name]
            comm.barrier(async_op=False)
            t0 = time.perf_counter()
            step(ddp, optimizer)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
                comm_s[name].append(ddp.last_step_stats.communication_s)
    medians = np.array([[np.median(times[k]), np.median(comm_s[k])] for k in runs])
    comm.allreduce(medians, ReduceOp.MAX).wait()
    if comm.rank != 0:
        return
    here = cost_model.PRESETS["here" if n <= (os.cpu_count() or 1) else "here-oversubscribed"]
    base = medians[0, 0]
    print(
        f"MLP 784-1024-1024-10, float32, batch {args.batch}/rank, {n} ranks, {rounds} "
        f"interleaved rounds, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        "| variant | step ms | vs plain | comm span ms | sent bytes/step | predicted bytes | "
        "compression error | model comm ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    hook_names = {"ddp": None, "fp16": "fp16", "bf16": "bf16", "powersgd": "powerSGD"}
    for (name, (ddp, _, mode)), (step_s, span_s) in zip(runs.items(), medians):
        stats = ddp.last_step_stats
        shapes = [[tuple(p.shape) for p in b.params] for b in ddp.buckets]
        hook = hook_names[mode] if mode != "ddp" or "hook" in name else None
        predicted = cost.predicted_step_bytes(
            shapes,
            4,
            hook,
            matrix_approximation_rank=args.rank,
            ranks_per_node=2 if "hierarchical" in name else None,
        )["total"]
        error = stats.compression_error
        if "hierarchical" in name:
            nodes = dataclasses.replace(here, gpus_per_node=2)
            model_s = cost_model.step_time(mode, "mlp", n, nodes, "hierarchical")
        else:
            model_s = cost_model.step_time(mode, "mlp", n, here, "ring", rank=args.rank)
        print(
            f"| {name} | {step_s * 1e3:.2f} | {step_s / base:.2f} | {span_s * 1e3:.2f} | "
            f"{stats.sent_bytes} | {predicted} | "
            f"{'-' if error is None else f'{error:.2e}'} | {model_s * 1e3:.2f} |"
        )


if __name__ == "__main__":
    main()
