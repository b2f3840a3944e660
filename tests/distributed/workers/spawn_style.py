"""A script written for torch.multiprocessing.spawn: the parent spawns N workers that call
init_process_group(rank=, world_size=) and train. ``fail`` as argv[2]: rank 1 raises."""

import os
import sys

from tiny_training import check, train

import distgrad.distributed as dist
import distgrad.multiprocessing as mp


def worker(rank, world_size, fail):
    os.environ.setdefault("MASTER_ADDR", "localhost")
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    if fail and rank == 1:
        raise RuntimeError("worker 1 gives up")
    losses, params = train(rank, world_size)
    check(rank, world_size, losses, params)
    dist.destroy_process_group()


if __name__ == "__main__":
    world_size = int(sys.argv[1])
    fail = len(sys.argv) > 2 and sys.argv[2] == "fail"
    try:
        mp.spawn(worker, args=(world_size, fail), nprocs=world_size, join=True)
    except mp.ProcessExitedException as error:
        print(f"spawn failed: exit code {error.exit_code}", flush=True)
        sys.exit(5)
    print("spawn done", flush=True)
