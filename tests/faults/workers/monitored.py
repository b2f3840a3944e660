"""Issue 13: monitored_barrier names the ranks that did not arrive (3 ranks; rank 2 is busy
elsewhere): rank 0 raises naming rank 2, rank 1 raises too, and the job is taken down."""

import time

from common import mark_fault

import distgrad.distributed as dist

dist.init_process_group()
rank = dist.get_rank()
if rank == 2:
    mark_fault("absent")
    time.sleep(60)  # never reaches the barrier (the abort ends it)
dist.monitored_barrier(timeout=2)
print(f"rank {rank} passed the barrier", flush=True)
