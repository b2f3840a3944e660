"""Test program that fails on purpose: ``misbehave.py MODE RANK [TOKEN]``.

MODE is one of
  raise             rank RANK raises once MPI is up; the others wait in an allreduce
  raise-before-mpi  rank RANK raises before importing mpi4py; the others enter MPI_Init
  exit3             rank RANK calls sys.exit(3) once MPI is up; the others wait
  hang              every rank prints 'ready' and sleeps (for --timeout and Ctrl-C)
"""

import os
import sys
import time

mode, failing = sys.argv[1], int(sys.argv[2])
rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
if mode == "raise-before-mpi" and rank == failing:
    raise RuntimeError(f"rank {rank} fails on purpose before MPI")
if mode == "hang":
    print(f"rank {rank} ready")
    time.sleep(600)

from mpi4py import MPI  # noqa: E402

comm = MPI.COMM_WORLD
if comm.rank == failing and mode == "raise":
    raise RuntimeError(f"rank {rank} fails on purpose")
if comm.rank == failing and mode == "exit3":
    sys.exit(3)
comm.allreduce(1)
