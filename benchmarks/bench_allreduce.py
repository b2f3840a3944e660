"""``distgrad.distributed.all_reduce`` against raw mpi4py ``Allreduce`` on the same buffers.

    python benchmarks/bench_allreduce.py            # starts itself on 2 ranks with mpiexec
    python benchmarks/bench_allreduce.py --quick    # fewer repetitions, up to 64 MiB
    mpiexec -n 4 python benchmarks/bench_allreduce.py

float32 buffers of 4 KiB to 256 MiB, sum, in place, one thread per rank. Both run on the same
(duplicated) communicator and the same array, interleaved. Prints medians and bus bandwidth
(algorithm bandwidth x 2(n-1)/n, as nccl-tests); goal: distgrad >= 95% of raw from 1 MiB.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import spawn_mpi  # noqa: E402

SIZES = [4 << 10 << 2 * i for i in range(0, 10)]  # 4 KiB, 16 KiB, ..., 1 GiB (cut by --max)


def fmt_size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ranks", type=int, default=2, help="ranks to start (if not under MPI)")
    parser.add_argument("--max-mib", type=int, default=256)
    args = parser.parse_args()
    launched = any(
        v in os.environ for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "DISTGRAD_BENCH_CHILD")
    )
    if not launched:
        sys.exit(spawn_mpi(args.ranks))

    import numpy as np
    from mpi4py import MPI

    import distgrad as dg
    import distgrad.distributed as dist

    dist.init()
    comm = dist.get_communicator().comm  # the same communicator for both
    n, rank = comm.Get_size(), comm.Get_rank()
    max_bytes = (64 if args.quick else args.max_mib) << 20
    budget = 0.25 if args.quick else 1.0  # seconds per size and variant
    if rank == 0:
        print(
            f"allreduce (sum, float32, in place), {n} ranks, "
            f"{' '.join(MPI.Get_library_version().splitlines()[0].split())}, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"{'size':>8} {'raw ms':>9} {'distgrad ms':>12} {'raw busbw':>10} "
            f"{'distgrad busbw':>15} {'distgrad/raw':>13}"
        )
    for nbytes in (s for s in SIZES if s <= max_bytes):
        array = np.zeros(nbytes // 4, np.float32)  # zeros: the sums never overflow
        tensor = dg.from_numpy(array)

        def raw():
            comm.Allreduce(MPI.IN_PLACE, array)

        def ours():
            dist.all_reduce(tensor)

        raw(), ours()  # warm up
        comm.Barrier()
        start = time.perf_counter()
        raw()
        once = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
        reps = int(min(200, max(5, budget / max(once, 1e-6))))
        times = {raw: [], ours: []}
        for i in range(reps):
            for fn in (raw, ours) if i % 2 == 0 else (ours, raw):
                comm.Barrier()
                start = time.perf_counter()
                fn()
                times[fn].append(time.perf_counter() - start)
        medians = {fn: comm.allreduce(float(np.median(t)), op=MPI.MAX) for fn, t in times.items()}
        if rank == 0:
            factor = 2 * (n - 1) / n
            bw = {fn: nbytes / t * factor / 1e9 for fn, t in medians.items()}
            print(
                f"{fmt_size(nbytes):>8} {medians[raw] * 1e3:9.3f} {medians[ours] * 1e3:12.3f} "
                f"{bw[raw]:8.2f}GB/s {bw[ours]:13.2f}GB/s {bw[ours] / bw[raw]:12.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
