"""Test program: allreduce N doubles (argv[1], default 1000) and report per rank.

Every rank prints one line: its rank, the local rank the launcher gave it next to
the one MPI derives (COMM_TYPE_SHARED), its thread count and the allreduce verdict.
Further arguments are ignored (tests pass a token to find the processes).
"""

import os
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
result = np.empty(count)
comm.Allreduce(np.full(count, comm.rank + 1.0), result)
expected = comm.size * (comm.size + 1) / 2
node = comm.Split_type(MPI.COMM_TYPE_SHARED)
print(
    f"rank {comm.rank}/{comm.size}"
    f" local {os.environ['DISTGRAD_LOCAL_RANK']}/{os.environ['DISTGRAD_LOCAL_SIZE']}"
    f" mpi-local {node.rank}/{node.size}"
    f" threads {os.environ['OMP_NUM_THREADS']}"
    f" allreduce {'ok' if np.all(result == expected) else 'WRONG'} {result[0]:g}"
)
