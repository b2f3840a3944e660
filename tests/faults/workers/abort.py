"""A job that fails on purpose; the mode (argv[1]) says how."""

import sys
import threading
import time

import distgrad
import distgrad.distributed as dist

mode = sys.argv[1]
dist.init()
rank = dist.rank()
dist.barrier()
if "timeout" in mode:
    dist.set_timeout(1.5)
if mode == "raise":
    if rank == 1:
        raise ValueError("boom on purpose")
    dist.barrier()
elif mode == "thread":
    if rank == 1:

        def work():
            raise KeyError("boom in a thread")

        threading.Thread(target=work, name="loader").start()
        time.sleep(30)
    dist.barrier()
elif mode.endswith("timeout"):
    if rank == 1:
        time.sleep(30)
    t = distgrad.ones(1000)
    if mode == "timeout":
        dist.all_reduce(t)
    else:  # the user swallows the error and exits normally: the job must still go down
        try:
            dist.all_reduce(t)
        except dist.CollectiveTimeoutError:
            print("swallowed", flush=True)
        try:
            dist.barrier()
        except dist.CommunicatorBrokenError as e:
            print("broken:", e, flush=True)
print(f"rank {rank} finished", flush=True)
