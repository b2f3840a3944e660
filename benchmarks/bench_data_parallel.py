"""A data-parallel training step of the MLP 784-1024-1024-10 (float32, per-rank batch 128, one
thread per rank): distgrad ``DataParallel`` against a hand-written numpy + mpi4py step, timed
interleaved in the same job.

    python benchmarks/bench_data_parallel.py            # starts itself on 2 ranks
    python benchmarks/bench_data_parallel.py --quick    # fewer repetitions

The hand-written step is the floor: manual backward writing the gradients into one reused flat
buffer, one in-place ``Allreduce``, SGD with the 1/world_size folded into the learning rate.
Both are also compared with the local step (distgrad, no DataParallel, no communication) run on
every rank at the same time. Prints medians (ms), DataParallel's communication time and the
share of it that ran before backward ended. Goal: distgrad / hand-written <= 1.05.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SIZES = (784, 1024, 1024, 10)
BATCH = 128
LR = 0.01


def spawn(ranks: int) -> int:
    """Re-run this script under the mpiexec that belongs to this Python's mpi4py."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               DISTGRAD_BENCH_CHILD="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.call([mpiexec, "-n", str(ranks), sys.executable, *sys.argv], env=env)


def make_numpy_step(model, comm):
    """The hand-written data-parallel step on copies of ``model``'s parameters."""
    import numpy as np
    from mpi4py import MPI

    params = [p.detach().numpy().copy() for p in model.parameters()]  # w1 b1 w2 b2 w3 b3
    flat = np.empty(sum(p.size for p in params), np.float32)
    offsets = np.cumsum([0] + [p.size for p in params])
    grads = [flat[a:b].reshape(p.shape) for a, b, p in zip(offsets[:-1], offsets[1:], params)]
    w1, b1, w2, b2, w3, b3 = params
    gw1, gb1, gw2, gb2, gw3, gb3 = grads
    scale = LR / comm.Get_size()

    def step(x, y):
        h1 = x @ w1.T + b1
        a1 = np.maximum(h1, 0)
        h2 = a1 @ w2.T + b2
        a2 = np.maximum(h2, 0)
        logits = a2 @ w3.T + b3
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sums = exp.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = float(np.log(sums[:, 0]).sum() - shifted[np.arange(n), y].sum()) / n
        g3 = exp / sums
        g3[np.arange(n), y] -= 1
        g3 /= n
        np.matmul(g3.T, a2, out=gw3)
        np.sum(g3, axis=0, out=gb3)
        g2 = (g3 @ w3) * (h2 > 0)
        np.matmul(g2.T, a1, out=gw2)
        np.sum(g2, axis=0, out=gb2)
        g1 = (g2 @ w2) * (h1 > 0)
        np.matmul(g1.T, x, out=gw1)
        np.sum(g1, axis=0, out=gb1)
        comm.Allreduce(MPI.IN_PLACE, flat)
        for p, g in zip(params, grads):
            p -= scale * g
        return loss
    return step


def make_distgrad_step(model):
    import distgrad as dg
    import distgrad.nn.functional as F

    params = list(model.parameters())

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with dg.no_grad():
            for p in params:
                p -= LR * p.grad
                p.grad = None
        return loss.item()
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ranks", type=int, default=2, help="ranks to start (if not under MPI)")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    if not any(v in os.environ for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK",
                                         "DISTGRAD_BENCH_CHILD")):
        sys.exit(spawn(args.ranks))

    import numpy as np
    from mpi4py import MPI

    import distgrad as dg
    import distgrad.distributed as dist
    from distgrad import nn

    dist.init()
    comm = dist.get_communicator().comm
    rank, world = comm.Get_rank(), comm.Get_size()

    def mlp():
        dg.manual_seed(0)
        return nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(),
                             nn.Linear(SIZES[1], SIZES[2]), nn.ReLU(),
                             nn.Linear(SIZES[2], SIZES[3]))

    dp = dist.DataParallel(mlp())
    steps = {"hand-written numpy+mpi4py": make_numpy_step(mlp(), comm),
             "distgrad DataParallel": make_distgrad_step(dp),
             "local step (no communication)": make_distgrad_step(mlp())}
    rng = np.random.default_rng(rank)
    x_np = rng.normal(size=(BATCH, SIZES[0])).astype(np.float32)
    y_np = rng.integers(0, SIZES[-1], BATCH)
    inputs = {name: (x_np, y_np) if name.startswith("hand") else
              (dg.from_numpy(x_np), dg.from_numpy(y_np)) for name in steps}
    for name, step in steps.items():  # warm up
        for _ in range(3):
            step(*inputs[name])
    reps = 15 if args.quick else args.steps
    times = {name: [] for name in steps}
    comm_s, share, done_early, wait_s = [], [], [], []
    names = list(steps)
    for i in range(reps):
        for name in names[i % 3:] + names[:i % 3]:  # rotate the order
            comm.Barrier()
            start = time.perf_counter()
            steps[name](*inputs[name])
            times[name].append(time.perf_counter() - start)
            if name.startswith("distgrad"):
                stats = dp.last_step_stats
                comm_s.append(stats.communication_s)
                share.append(stats.overlap_share)
                done_early.append(stats.completed_in_backward)
                wait_s.append(stats.wait_s)
    medians = {name: comm.allreduce(float(np.median(t)), op=MPI.MAX)
               for name, t in times.items()}
    stats = dp.last_step_stats
    if rank == 0:
        hand, ours, local = (medians[n] for n in names)
        print(f"MLP {'-'.join(map(str, SIZES))}, float32, per-rank batch {BATCH}, {world} ranks, "
              f"1 thread per rank, {reps} interleaved steps each, "
              f"{stats.buckets} buckets / {stats.bytes / 2**20:.1f} MiB of gradients")
        print(f"{'step':<32} {'median ms':>10} {'vs hand-written':>16} {'vs local step':>14}")
        for name in names:
            print(f"{name:<32} {medians[name] * 1e3:10.2f} {medians[name] / hand:16.3f} "
                  f"{medians[name] / local:14.3f}")
        print(f"DataParallel per step (medians): allreduces in flight {np.median(comm_s) * 1e3:.2f}"
              f" ms, {np.median(share):.0%} of that before backward ended, "
              f"{np.median(wait_s) * 1e3:.2f} ms waiting after backward; buckets finished before "
              f"backward ended: {np.mean(done_early):.2f} of {stats.buckets}")
        print(f"distgrad / hand-written = {ours / hand:.3f} (goal <= 1.05); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
