"""ZeRO-2 and ZeRO-3 (``fully_shard``) training steps against DistributedDataParallel on the
MLP 784-1024-1024-10 (float32, per-rank batch 128, one thread per rank, 2 ranks), timed
interleaved in the same job (order rotated, barrier before each step), medians (max over
ranks) of the wall time and of the process CPU time (less sensitive to other load; it includes
the busy-polling of waits). Goals: ZeRO-2 / DDP <= 1.15, ZeRO-3 / DDP <= 1.3.

    python benchmarks/bench_zero.py            # starts itself on 2 ranks
    python benchmarks/bench_zero.py --steps 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MLP_SIZES, make_distgrad_step, make_mlp, spawn_mpi  # noqa: E402

BATCH = 128


def sharded(reshard_after_forward: bool):
    from distgrad.distributed.fsdp import fully_shard

    model = make_mlp()
    for layer in model:
        if any(True for _ in layer.parameters()):
            fully_shard(layer, reshard_after_forward=reshard_after_forward)
    return fully_shard(model, reshard_after_forward=reshard_after_forward)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    if not any(
        v in os.environ for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "DISTGRAD_BENCH_CHILD")
    ):
        sys.exit(spawn_mpi(args.ranks))

    import numpy as np
    from mpi4py import MPI

    import distgrad as dg
    import distgrad.distributed as dist

    dist.init()
    comm = dist.get_communicator().comm
    rank, world = comm.Get_rank(), comm.Get_size()
    steps = {
        "DDP": make_distgrad_step(dist.DistributedDataParallel(make_mlp())),
        "ZeRO-2": make_distgrad_step(sharded(False)),
        "ZeRO-3": make_distgrad_step(sharded(True)),
    }
    rng = np.random.default_rng(rank)
    x = dg.from_numpy(rng.normal(size=(BATCH, MLP_SIZES[0])).astype(np.float32))
    y = dg.from_numpy(rng.integers(0, MLP_SIZES[-1], BATCH))
    for step in steps.values():  # warm up (and record the forward order)
        for _ in range(3):
            step(x, y)
    names = list(steps)
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for i in range(args.steps):
        for name in names[i % 3 :] + names[: i % 3]:
            comm.Barrier()
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[name](x, y)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    medians = {n: comm.allreduce(float(np.median(t)), op=MPI.MAX) for n, t in times.items()}
    cpu_medians = {n: comm.allreduce(float(np.median(t)), op=MPI.MAX) for n, t in cpu.items()}
    if rank == 0:
        print(
            f"MLP {'-'.join(map(str, MLP_SIZES))}, float32, per-rank batch {BATCH}, {world} "
            f"ranks, 1 thread per rank, {args.steps} interleaved steps each"
        )
        for name in names:
            print(
                f"{name:<8} {medians[name] * 1e3:8.2f} ms  {medians[name] / medians['DDP']:.3f}x"
                f"   CPU {cpu_medians[name] * 1e3:8.2f} ms  "
                f"{cpu_medians[name] / cpu_medians['DDP']:.3f}x"
            )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
