"""Scenario 9 worker: training that is interrupted and resumed from a checkpoint.

    resume_train.py first  DIR STEPS HALF OPT [--dist] [--epoch-end] [--crash] [--workers]
        train STEPS steps straight and write DIR/straight.safetensors (rank 0); then start
        over from the same seed, train HALF steps, save a checkpoint into DIR/ckpt and (with
        --crash) train two more steps and SIGKILL itself, losing them.
    resume_train.py resume DIR STEPS HALF OPT [--dist] [--workers]
        build everything afresh, load DIR/ckpt, train up to STEPS steps and compare the
        parameters bit for bit with DIR/straight.safetensors; prints RESUME-IDENTICAL.

The model has dropout; the DataLoader shuffles (with --dist: DistributedSampler); the loss
also draws from numpy's global RNG and Python's random, so every stream must be restored.
``--epoch-end``: when HALF ends an epoch, save after the epoch (with epoch + 1) instead of
inside it. ``--workers``: load batches in 2 worker processes.
"""

import os
import random
import signal
import sys

import numpy as np

import distgrad as dg
from distgrad import checkpoint, nn, optim
from distgrad.data import DataLoader, DistributedSampler, TensorDataset

mode, directory, steps, half, opt_name = sys.argv[1:6]
steps, half = int(steps), int(half)
flags = set(sys.argv[6:])
distributed = "--dist" in flags
if distributed:
    dg.distributed.init()
rank = dg.distributed.rank() if distributed else 0
SEED = 1234


def build():
    """Everything a run needs, from the seed alone."""
    dg.manual_seed(SEED + rank)  # per-rank dropout streams
    np.random.seed(SEED + rank)
    random.seed(SEED + rank)
    data = np.random.default_rng(7)  # the data set is the same on every rank
    x = dg.tensor(data.standard_normal((45, 8)).astype(np.float32))
    y = dg.tensor(data.integers(0, 3, 45))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    if distributed:
        model = dg.distributed.DataParallel(model)
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    else:
        opt = optim.Adam(model.parameters(), lr=0.01)
    sched = optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.8)
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, seed=SEED) if distributed else None
    loader = DataLoader(
        dataset,
        batch_size=4,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=2 if "--workers" in flags else 0,
    )
    return model, opt, sched, sampler, checkpoint.ResumableLoader(loader)


def train(model, opt, sched, sampler, loader, step, epoch, stop, save_at=None):
    """Train from (step, epoch) until ``stop`` steps; save a checkpoint at step ``save_at``."""
    ckpt = os.path.join(directory, "ckpt")
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for xb, yb in loader:
            noise = np.random.normal(0, 0.01, xb.shape).astype(np.float32)  # numpy's stream
            out = model(xb + dg.tensor(noise))
            loss = nn.functional.cross_entropy(out, yb) * (1 + 0.1 * random.random())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            deferred = "--epoch-end" in flags and loader.batches_done == len(loader)
            if step == save_at and not deferred:
                checkpoint.save(
                    ckpt,
                    model=model,
                    optimizer=opt,
                    scheduler=sched,
                    loader=loader,
                    step=step,
                    epoch=epoch,
                    seed=SEED,
                )
            if step == stop and not (deferred and step == save_at):
                return
        epoch += 1
        if step == save_at and "--epoch-end" in flags:  # saved between epochs
            checkpoint.save(
                ckpt,
                model=model,
                optimizer=opt,
                scheduler=sched,
                loader=loader,
                step=step,
                epoch=epoch,
                seed=SEED,
            )
        if step == stop:
            return


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


if mode == "first":
    model, *rest = build()
    train(model, *rest, step=0, epoch=0, stop=steps)
    if rank == 0:
        dg.save(params(model), os.path.join(directory, "straight.safetensors"))
    model, *rest = build()
    crash = "--crash" in flags and not distributed
    train(model, *rest, step=0, epoch=0, stop=half + 2 if crash else half, save_at=half)
    if crash:
        os.kill(os.getpid(), signal.SIGKILL)  # the two steps after the checkpoint are lost
else:
    model, opt, sched, sampler, loader = build()
    state = checkpoint.load(
        os.path.join(directory, "ckpt"), model=model, optimizer=opt, scheduler=sched, loader=loader
    )
    assert state.step == half and state.seed == SEED, state
    train(model, opt, sched, sampler, loader, step=state.step, epoch=state.epoch, stop=steps)
    want = dg.load(os.path.join(directory, "straight.safetensors"))
    bad = [n for n, p in params(model).items() if not np.array_equal(p.numpy(), want[n].numpy())]
    if bad:
        diff = max(float(np.abs(params(model)[n].numpy() - want[n].numpy()).max()) for n in bad)
        print(f"rank {rank}: RESUME-DIFFERS in {bad} (max abs diff {diff:g})", flush=True)
        sys.exit(3)
    print(
        f"rank {rank}: RESUME-IDENTICAL after {steps} steps (resumed at {half}, epoch "
        f"{state.epoch}, batch {state.batches_done})",
        flush=True,
    )
