"""SIGKILL of one rank during a multi-rank ``async_save`` loop. ``python async_kill_ranks.py DIR
DELAY``: every rank trains (the same replicated tensors; two, so both ranks write a file) and
async-saves every step; rank 0 records each step's values before its save starts; after the
first commit, rank 1 SIGKILLs itself DELAY seconds later (mpiexec then ends the job). The test
loads DIR/root afterwards."""

import os
import signal
import sys
import threading

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.distributed.checkpoint as dcp

dist.init()
R = dist.rank()
top, delay = sys.argv[1], float(sys.argv[2])
root = os.path.join(top, "root")
distgrad.set_default_dtype(distgrad.float64)
distgrad.manual_seed(0)
a, b = distgrad.randn(256, 256), distgrad.randn(256, 256)
step = 0
while True:
    step += 1
    a.array[...] = a.array * 0.999 + 0.001
    b.array[...] = b.array * 0.998 - 0.001
    if R == 0:
        np.savez(os.path.join(top, f"params-{step}.npz"), a=a.numpy(), b=b.numpy())
    dist.barrier()  # the record exists before any rank can commit this step
    future = dcp.async_save({"a": a, "b": b, "step": step}, checkpoint_id=root, step=step)
    if step == 1:
        future.result()
        if R == 1:
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
