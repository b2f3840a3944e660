"""Issue 13: faults under a plain ``mpiexec -n 2`` (no distgrad-run wrapper) that used to hang,
and desyncs that used to fail inside MPI or hang. ``sys.argv[1]`` picks the case; rank 1 is
the faulty one unless said otherwise:

- ``raise_before_init``: rank 1 raises after ``import distgrad``, before ``init()``;
- ``exit_mid``: rank 1 calls ``sys.exit(3)`` at step 3 of training;
- ``sigstop``: rank 1 stops itself (SIGSTOP) at step 3;
- ``skip_backward``: rank 1 skips its backward at step 2, so it has one step fewer;
- ``out_of_data``: rank 1 has 3 batches, rank 0 has 5 (no sampler, no join);
- ``extra_collective``: rank 0 issues one all_reduce more than rank 1 at the end.
"""

import os
import signal
import sys

from common import Net, batch, emit, mark_fault

import distgrad
import distgrad.distributed as dist
import distgrad.optim as optim

mode = sys.argv[1]
if mode == "raise_before_init" and os.environ.get("PMI_RANK") == "1":
    mark_fault("raise")
    raise RuntimeError("rank 1 fails before init")
dist.init_process_group()
rank = dist.get_rank()
distgrad.manual_seed(0)
model = dist.DataParallel(Net())
opt = optim.SGD(model.parameters(), lr=0.1)
steps = 5 if not (mode == "out_of_data" and rank == 1) else 3
if mode == "out_of_data" and rank == 1:
    mark_fault("exhausted")
for step in range(steps):
    if rank == 1 and step == 3 and mode == "exit_mid":
        mark_fault("exit")
        sys.exit(3)
    if rank == 1 and step == 3 and mode == "sigstop":
        mark_fault("sigstop")
        os.kill(os.getpid(), signal.SIGSTOP)
    loss = model(batch(step, rank)).square().mean()
    if rank == 1 and step == 2 and mode == "skip_backward":
        mark_fault("skip")
        continue
    loss.backward()
    opt.step()
    opt.zero_grad()
if mode == "extra_collective" and rank == 0:
    mark_fault("extra")
    dist.all_reduce(distgrad.ones(3))
emit(steps=steps)
