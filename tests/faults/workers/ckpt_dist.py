"""Scenario 7 worker on 2 ranks: a checkpoint failure on one rank is reported on every rank.

    ckpt_dist.py ROOT save-fails-on-rank0 | load-fails-on-rank1 | corrupt

``save-fails-on-rank0``: rank 0's disk is full (ENOSPC injected into its writes) during the
second save; every rank must raise, and the first checkpoint must still load everywhere.
``load-fails-on-rank1``: only rank 1 finds the checkpoint damaged (its verification is made to
fail); both ranks must raise and neither may change its model.
``corrupt``: the committed checkpoint's model file is damaged on disk; both ranks must raise,
and with fallback=True both load the previous one.
Each rank prints ``RANK r OK: <message>`` when it saw what it must."""

import errno
import os
import sys
import time

import numpy as np
from common import mark_fault

import distgrad as dg
from distgrad import checkpoint, nn, optim
from distgrad.checkpoint import store

root, mode = sys.argv[1:3]
dg.distributed.init()
rank = dg.distributed.rank()
dg.manual_seed(0)
model = dg.distributed.DataParallel(nn.Linear(16, 4))
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def train_step():
    model(dg.randn(8, 16)).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()


def params():
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}


def same(a, b):
    return all(np.array_equal(a[n], b[n]) for n in a)


train_step()
checkpoint.save(root, model=model, optimizer=opt, step=1)
first = params()
train_step()
before = params()
start = time.monotonic()
if mode == "save-fails-on-rank0":
    if rank == 0:
        real = os.write

        def full(fd, data):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(root):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data)

        os.write = full
    mark_fault("enospc")
    try:
        checkpoint.save(root, model=model, optimizer=opt, step=2)
        sys.exit(f"rank {rank}: the failed save did not raise")
    except (OSError, checkpoint.CheckpointError) as exc:
        message = f"{type(exc).__name__}: {exc}"
    assert "No space left on device" in message, message
    assert rank == 0 or "rank 0 failed to save" in message, message
    if rank == 0:
        os.write = real
    state = checkpoint.load(root, model=model, optimizer=opt)
    assert state.step == 1 and same(params(), first), state
else:
    if mode == "load-fails-on-rank1" and rank == 1:

        def damaged(path):
            raise checkpoint.CheckpointError(
                f"cannot load checkpoint {path!r}: checksum mismatch (injected on rank 1)"
            )

        store.verify = damaged
    checkpoint.save(root, model=model, optimizer=opt, step=2)
    if mode == "corrupt" and rank == 0:
        path = os.path.join(root, "ckpt-000000002", "model.safetensors")
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) - 3)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x10]))
    dg.distributed.barrier()
    train_step()
    before = params()
    mark_fault(mode)
    try:
        checkpoint.load(root, model=model, optimizer=opt)
        sys.exit(f"rank {rank}: the damaged checkpoint was accepted")
    except checkpoint.CheckpointError as exc:
        message = str(exc)
    assert same(params(), before), "a failed load changed the model"
    if mode == "load-fails-on-rank1":
        assert ("injected on rank 1" if rank == 1 else "failed on other ranks") in message, message
    else:
        assert "checksum mismatch" in message and "model.safetensors" in message, message
        state = checkpoint.load(root, model=model, optimizer=opt, fallback=True)
        assert state.step == 1 and same(params(), first), state
print(
    f"RANK {rank} OK after {time.monotonic() - start:.3f}s: {message.splitlines()[0]}", flush=True
)
