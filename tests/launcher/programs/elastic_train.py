"""Training program for the elastic-restart tests: ``elastic_train.py OUT STEPS [options]``.

Data-parallel float64 regression with ``DataParallel`` + ``CheckpointManager`` (saved every
``--save-every`` steps in OUT/ckpt, resumed by ``restore()``). The global batch of step s is
samples [12 s, 12 s + 12) of a fixed data set, split in equal contiguous shares over the ranks
(12 divides among 1, 2, 3, 4 and 6 ranks), so a resumed run's data order is that of a clean run
on the same number of ranks from that step. Rank 0 writes the final parameters to OUT/final.npz.

Fault injection on the first launch only (``TORCHELASTIC_RESTART_COUNT`` 0):
``--kill-at STEP --kill-rank R`` SIGKILLs rank R after step STEP; ``--shrink HOSTFILE:SLOTS``
first rewrites HOSTFILE to ``localhost:SLOTS`` (a host that lost slots). On a restart, rank 0
copies the checkpoint directory it resumed from to OUT/resumed-from (the tests rerun that).
"""

import argparse
import os
import shutil
import signal

import numpy as np

import distgrad as dg
import distgrad.distributed as dist
from distgrad import nn
from distgrad.checkpoint import CheckpointManager

GLOBAL_BATCH = 12

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("steps", type=int)
parser.add_argument("--save-every", type=int, default=3)
parser.add_argument("--kill-at", type=int)
parser.add_argument("--kill-rank", type=int, default=1)
parser.add_argument("--shrink")
args = parser.parse_args()

dist.init()
rank, world = dist.rank(), dist.world_size()
attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
data = np.random.default_rng(0).standard_normal((GLOBAL_BATCH * args.steps, 6))
target = np.sin(data @ np.linspace(-1, 1, 6))[:, None]

dg.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1)).double()
model = dist.DataParallel(model)
opt = dg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
ckpt = CheckpointManager(os.path.join(args.out, "ckpt"), model=model, optimizer=opt)
state = ckpt.restore()
start = state.step if state else 0
if rank == 0:
    print(f"attempt {attempt} on {world} ranks: starting at step {start}", flush=True)
    if attempt > 0 and state is not None:
        copy = os.path.join(args.out, "resumed-from")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(ckpt.directory, copy, ignore=shutil.ignore_patterns(".lock*"))
share = GLOBAL_BATCH // world
for step in range(start, args.steps):
    rows = slice(step * GLOBAL_BATCH + rank * share, step * GLOBAL_BATCH + (rank + 1) * share)
    x, y = dg.tensor(data[rows]), dg.tensor(target[rows])
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (step + 1) % args.save_every == 0:
        ckpt.save(step + 1)
    if attempt == 0 and step + 1 == args.kill_at and rank == args.kill_rank:
        if args.shrink:
            path, slots = args.shrink.rsplit(":", 1)
            with open(path + ".new", "w") as f:
                f.write(f"localhost:{slots}\n")
            os.replace(path + ".new", path)
        os.kill(os.getpid(), signal.SIGKILL)
if rank == 0:
    params = {name: p.detach().numpy() for name, p in model.named_parameters()}
    np.savez(os.path.join(args.out, "final.npz"), **params)
    print(f"finished {args.steps} steps on {world} ranks", flush=True)
ckpt.close()
dist.barrier()
