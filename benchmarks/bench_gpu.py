"""GPU benchmarks: training steps on the GPU against the same model on the CPU, NCCL
all_reduce bandwidth, and the per-op launch overhead.

    python benchmarks/bench_gpu.py                 # everything (one process)
    python benchmarks/bench_gpu.py --quick         # fewer repetitions, all_reduce up to 64 MiB
    python benchmarks/bench_gpu.py --only nccl     # one part: steps, nccl or overhead
    mpiexec -n 2 python benchmarks/bench_gpu.py --only nccl   # one rank per GPU

* steps: one training step (forward, softmax cross-entropy, backward, SGD update) of the MLP
  784-1024-1024-10 (batch 128 and 512) and of the CNN of bench_cnn.py (28x28, batch 64), float32,
  same weights on both devices; median ms (the GPU timed with a synchronize per step) and the
  speed-up.
* nccl: ``NCCLCommunicator.allreduce`` of float32 buffers, 1 MiB to 1 GiB, median time,
  algorithm bandwidth (bytes / time) and bus bandwidth (x 2(n-1)/n, as nccl-tests; undefined
  for one rank, where NCCL only copies on the GPU).
* overhead: a chain of 1000 adds on a 1-element tensor, distgrad against raw cupy (and
  distgrad/numpy on the CPU), forward and forward+backward, microseconds per op.

Without a GPU (or without cupy) it prints why and exits with status 0.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import numpy as np

import distgrad as dg
import distgrad.nn.functional as F
from distgrad import nn
from distgrad.backend import cuda_unavailable_reason, cupy_or_none


def median_time(fn, repeats: int, sync=None) -> float:
    """Median seconds of ``fn()`` after one warm-up call; ``sync()`` ends each timing."""
    fn()
    if sync:
        sync()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


# ---- training steps ---------------------------------------------------------------------------
def mlp():
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


def step_fn(model, x, y):
    opt = dg.optim.SGD(model.parameters(), lr=0.01)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def bench_steps(repeats: int) -> None:
    print("training step, float32: median ms")
    print(f"{'model':<28}{'cpu ms':>10}{'gpu ms':>10}{'speed-up':>10}")
    for name, make, shape in (
        ("MLP 784-1024-1024-10, b128", mlp, (128, 784)),
        ("MLP 784-1024-1024-10, b512", mlp, (512, 784)),
        ("CNN 28x28, b64", cnn, (64, 1, 28, 28)),
    ):
        dg.manual_seed(0)
        model = make()
        x, y = dg.randn(*shape), dg.randint(0, 10, (shape[0],))
        times = {}
        for device in ("cpu", "cuda"):
            replica = copy.deepcopy(model).to(device)
            step = step_fn(replica, x.to(device), y.to(device))
            sync = dg.cuda.synchronize if device == "cuda" else None
            times[device] = median_time(step, repeats, sync) * 1e3
        print(
            f"{name:<28}{times['cpu']:>10.2f}{times['cuda']:>10.2f}"
            f"{times['cpu'] / times['cuda']:>9.1f}x"
        )


# ---- NCCL all_reduce ----------------------------------------------------------------------------
def bench_nccl(repeats: int, max_mib: int) -> None:
    from distgrad.distributed import LocalCommunicator, ReduceOp
    from distgrad.distributed import nccl as nc
    from distgrad.distributed.process_group import communicator_for, init

    problem = nc.local_nccl_problem()
    if problem is not None:
        print(f"nccl: skipped ({problem})")
        return
    cp = cupy_or_none()
    if any(name in os.environ for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")):
        init()  # started by mpiexec: one rank per GPU
        comm = communicator_for(cp.zeros(1, cp.float32))
    else:
        comm = nc.NCCLCommunicator(LocalCommunicator(), cp.cuda.runtime.getDevice())
    n = comm.world_size
    if not isinstance(comm, nc.NCCLCommunicator):
        print(f"nccl: skipped (GPU tensors use {comm.kind} with host staging here)")
        return
    if comm.rank == 0:
        print(f"NCCL all_reduce (sum, float32, in place) on {n} rank(s): median over {repeats}")
        print(f"{'size':>10}{'ms':>10}{'algbw GB/s':>12}{'busbw GB/s':>12}")
    size = 1 << 20
    while size <= max_mib << 20:
        x = cp.ones(size // 4, cp.float32)
        seconds = median_time(lambda: comm.allreduce(x, ReduceOp.SUM, async_op=False), repeats)
        algbw = size / seconds / 1e9
        busbw = f"{algbw * 2 * (n - 1) / n:>12.1f}" if n > 1 else f"{'-':>12}"
        if comm.rank == 0:
            label = f"{size >> 20} MiB" if size < 1 << 30 else f"{size >> 30} GiB"
            print(f"{label:>10}{seconds * 1e3:>10.3f}{algbw:>12.1f}{busbw}")
        del x
        size <<= 2 if size < 1 << 26 else 1


# ---- per-op overhead ----------------------------------------------------------------------------
CHAIN = 1000


def bench_overhead(repeats: int) -> None:
    cp = cupy_or_none()

    def distgrad_chain(device, backward):
        def run():
            x = dg.ones(1, device=device, requires_grad=backward)
            y = x
            for _ in range(CHAIN):
                y = y + 1.0
            if backward:
                y.sum().backward()

        return run

    def raw_chain(xp):
        def run():
            y = xp.ones(1, xp.float32)
            for _ in range(CHAIN):
                y = y + xp.float32(1.0)

        return run

    sync = dg.cuda.synchronize
    rows = [
        ("cpu: numpy", raw_chain(np), None),
        ("cpu: distgrad forward", distgrad_chain("cpu", False), None),
        ("cpu: distgrad fwd+bwd", distgrad_chain("cpu", True), None),
        ("gpu: cupy", raw_chain(cp), sync),
        ("gpu: distgrad forward", distgrad_chain("cuda", False), sync),
        ("gpu: distgrad fwd+bwd", distgrad_chain("cuda", True), sync),
    ]
    print(f"per-op overhead: a chain of {CHAIN} adds on 1 element, us per op")
    for name, fn, s in rows:
        print(f"{name:<26}{median_time(fn, repeats, s) / CHAIN * 1e6:>8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("steps", "nccl", "overhead"))
    args = parser.parse_args()
    if not dg.cuda.is_available():
        print(f"no GPU: {cuda_unavailable_reason()}; nothing to benchmark")
        return 0
    print(f"GPU: {dg.cuda.get_device_name()}")
    repeats = 5 if args.quick else 20
    if args.only in (None, "steps"):
        bench_steps(repeats)
    if args.only in (None, "nccl"):
        bench_nccl(repeats, 64 if args.quick else 1024)
    if args.only in (None, "overhead"):
        bench_overhead(3 if args.quick else 10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
