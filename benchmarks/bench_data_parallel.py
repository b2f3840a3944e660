"""A data-parallel training step of the MLP 784-1024-1024-10 (float32, per-rank batch 128, one
thread per rank): distgrad ``DataParallel`` against a hand-written numpy + mpi4py step, timed
interleaved in the same job.

    python benchmarks/bench_data_parallel.py            # starts itself on 2 ranks
    python benchmarks/bench_data_parallel.py --quick    # fewer repetitions

The hand-written step is the floor: manual backward writing the gradients into one reused flat
buffer, one in-place ``Allreduce``, SGD with the 1/world_size folded into the learning rate.
Both are also compared with the local step (distgrad, no DataParallel, no communication) run on
every rank at the same time, and with DataParallel over a communicator without the desync
check (the fingerprint that travels with every collective, on by default): its cost. Prints
medians (ms), DataParallel's communication time and the share of it that ran before backward
ended. Goals: distgrad / hand-written <= 1.05; desync check < 2% of the step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LR, make_distgrad_step, make_mlp, numpy_mlp_grads, numpy_params, spawn_mpi  # noqa: E402
from common import MLP_SIZES as SIZES

BATCH = 128


def make_numpy_step(model, comm):
    """The hand-written data-parallel step on copies of ``model``'s parameters: gradients in
    one reused flat buffer, one in-place Allreduce, 1/world_size folded into the lr."""
    import numpy as np
    from mpi4py import MPI

    params = numpy_params(model)
    flat = np.empty(sum(p.size for p in params), np.float32)
    offsets = np.cumsum([0] + [p.size for p in params])
    grads = [flat[a:b].reshape(p.shape) for a, b, p in zip(offsets[:-1], offsets[1:], params)]
    scale = LR / comm.Get_size()

    def step(x, y):
        loss = numpy_mlp_grads(params, x, y, grads)
        comm.Allreduce(MPI.IN_PLACE, flat)
        for p, g in zip(params, grads):
            p -= scale * g
        return loss

    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ranks", type=int, default=2, help="ranks to start (if not under MPI)")
    parser.add_argument("--steps", type=int, default=60)
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

    from distgrad.distributed.mpi import MPICommunicator

    dp = dist.DataParallel(make_mlp())
    unchecked = MPICommunicator(MPI.COMM_WORLD.Dup())  # the same, without desync fingerprints
    steps = {
        "hand-written numpy+mpi4py": make_numpy_step(make_mlp(), comm),
        "distgrad DataParallel": make_distgrad_step(dp),
        "local step (no communication)": make_distgrad_step(make_mlp()),
        "DataParallel, desync check off": make_distgrad_step(
            dist.DataParallel(make_mlp(), communicator=unchecked)
        ),
    }
    rng = np.random.default_rng(rank)
    x_np = rng.normal(size=(BATCH, SIZES[0])).astype(np.float32)
    y_np = rng.integers(0, SIZES[-1], BATCH)
    inputs = {
        name: (x_np, y_np)
        if name.startswith("hand")
        else (dg.from_numpy(x_np), dg.from_numpy(y_np))
        for name in steps
    }
    for name, step in steps.items():  # warm up
        for _ in range(3):
            step(*inputs[name])
    reps = 15 if args.quick else args.steps
    times = {name: [] for name in steps}
    comm_s, share, done_early, wait_s = [], [], [], []
    names = list(steps)
    for i in range(reps):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate the order
            comm.Barrier()
            start = time.perf_counter()
            steps[name](*inputs[name])
            times[name].append(time.perf_counter() - start)
            if name == "distgrad DataParallel":
                stats = dp.last_step_stats
                comm_s.append(stats.communication_s)
                share.append(stats.overlap_share)
                done_early.append(stats.completed_in_backward)
                wait_s.append(stats.wait_s)
    medians = {name: comm.allreduce(float(np.median(t)), op=MPI.MAX) for name, t in times.items()}
    stats = dp.last_step_stats
    if rank == 0:
        hand, ours, local, unchecked_s = (medians[n] for n in names)
        print(
            f"MLP {'-'.join(map(str, SIZES))}, float32, per-rank batch {BATCH}, {world} ranks, "
            f"1 thread per rank, {reps} interleaved steps each, "
            f"{stats.buckets} buckets / {stats.bytes / 2**20:.1f} MiB of gradients"
        )
        print(f"{'step':<32} {'median ms':>10} {'vs hand-written':>16} {'vs local step':>14}")
        for name in names:
            print(
                f"{name:<32} {medians[name] * 1e3:10.2f} {medians[name] / hand:16.3f} "
                f"{medians[name] / local:14.3f}"
            )
        print(
            f"DataParallel per step (medians): allreduces in flight {np.median(comm_s) * 1e3:.2f}"
            f" ms, {np.median(share):.0%} of that before backward ended, "
            f"{np.median(wait_s) * 1e3:.2f} ms waiting after backward; buckets finished before "
            f"backward ended: {np.mean(done_early):.2f} of {stats.buckets}"
        )
        print(
            f"desync check: {(ours - unchecked_s) * 1e3:+.3f} ms per step, "
            f"{(ours / unchecked_s - 1) * 100:+.2f}% of the step (goal < 2%)"
        )
        print(
            f"distgrad / hand-written = {ours / hand:.3f} (goal <= 1.05); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
