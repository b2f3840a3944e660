"""Scenario 1: rank 1 SIGKILLs itself while an allreduce is in flight."""

import os
import signal

import numpy as np
from common import emit, mark_fault

import distgrad.distributed as dist

dist.init()
comm = dist.get_communicator()
data = np.ones(1 << 20, np.float32)
for step in range(50):
    work = comm.allreduce(data)
    if step == 3 and dist.rank() == 1:
        mark_fault("sigkill")
        os.kill(os.getpid(), signal.SIGKILL)
    work.wait()
    data /= 2
emit(finished=True)
