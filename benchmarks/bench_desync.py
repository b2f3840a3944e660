"""Cost of the desync check per collective: a blocking small allreduce (8 x float32) on the
world communicator (fingerprinted) and on a plain ``MPICommunicator`` over a duplicate of
COMM_WORLD (not), interleaved, 2 ranks, one thread each.

    python benchmarks/bench_desync.py [--calls 4000]      # starts itself on 2 ranks
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import spawn_mpi  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    if not any(v in os.environ for v in ("PMI_RANK", "DISTGRAD_BENCH_CHILD")):
        sys.exit(spawn_mpi(2))

    import numpy as np
    from mpi4py import MPI

    import distgrad.distributed as dist
    from distgrad.distributed.mpi import MPICommunicator

    dist.init()
    comms = {"checked": dist.get_communicator(), "plain": MPICommunicator(MPI.COMM_WORLD.Dup())}
    a = np.ones(8, np.float32)
    times = {name: [] for name in comms}
    order = list(comms)
    for i in range(args.calls):
        for name in order if i % 2 else order[::-1]:
            start = time.perf_counter()
            comms[name].allreduce(a, async_op=False)
            times[name].append(time.perf_counter() - start)
    if MPI.COMM_WORLD.Get_rank() == 0:
        warm = args.calls // 8
        m = {name: np.median(t[warm:]) * 1e6 for name, t in times.items()}
        print(
            f"blocking allreduce of 8 x float32, 2 ranks, {args.calls} interleaved calls: "
            f"with desync check {m['checked']:.1f} us, without {m['plain']:.1f} us, "
            f"cost {m['checked'] - m['plain']:+.1f} us per collective"
        )


if __name__ == "__main__":
    main()
