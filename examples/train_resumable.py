"""Resumable data-parallel training with ``distgrad.checkpoint``: kill it, run it again.

    distgrad-run -np 2 python examples/train_resumable.py --out runs/resumable
    # ... press Ctrl-C, or kill -9 any process of the job, then run the same command again:
    distgrad-run -np 2 python examples/train_resumable.py --out runs/resumable

The second run finds the last committed checkpoint in ``--out`` and continues from the next
batch as if nothing had happened: the final parameters are bit-identical to those of a run that
was never interrupted (the summary prints their SHA-256 so you can compare;
``tests/test_examples.py`` does exactly that with a SIGKILL).

What makes it exact: ``CheckpointManager`` saves the model, optimizer (Adam moments), scheduler,
the step and epoch, every rank's random streams (dropout masks here), and, through
``ResumableLoader``, the position inside the epoch of the shuffled, ``DistributedSampler``-split
data. A checkpoint is committed atomically (files fsynced, then the ``LATEST`` pointer renamed),
so a kill in the middle of a save leaves the previous one intact. Resuming needs the same number
of ranks.
"""

import argparse
import hashlib
import os

import common  # first: sets the BLAS threads before numpy loads

import distgrad as dg
import distgrad.distributed as dist
from distgrad import nn
from distgrad.checkpoint import CheckpointManager, ResumableLoader
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.datasets import load_digits
from distgrad.data.distributed import DistributedSampler

SEED = 0


def build(rank, args):
    """Everything the run needs, made from the seed alone (the same in a fresh and a resumed
    run; the checkpoint then overwrites what has changed)."""
    dg.manual_seed(SEED + rank)  # each rank's own dropout stream
    x_train, y_train, x_test, y_test = load_digits()
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10)
    )  # rank 0's initial weights are broadcast by DataParallel
    model = dist.DataParallel(model)
    opt = dg.optim.Adam(model.parameters(), lr=2e-3)
    sched = dg.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.7)
    train = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(train, shuffle=True, seed=SEED)
    loader = ResumableLoader(DataLoader(train, batch_size=args.batch_size, sampler=sampler))
    return model, opt, sched, sampler, loader, (x_test, y_test)


def digest(model):
    """SHA-256 of all parameters, to compare runs bit for bit."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2 if common.quick() else 8)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--save-every", type=int, default=10, help="steps between checkpoints")
    parser.add_argument("--out", default="runs/resumable")
    args = parser.parse_args()

    dist.init()
    rank, world = dist.rank(), dist.world_size()
    model, opt, sched, sampler, loader, (x_test, y_test) = build(rank, args)
    ckpt = CheckpointManager(
        os.path.join(args.out, "checkpoints"),
        model=model,
        optimizer=opt,
        scheduler=sched,
        loader=loader,
        keep=2,
    )
    state = ckpt.restore()  # None on a fresh start
    step, epoch = (state.step, state.epoch) if state else (0, 0)
    losses = list(state.extra["losses"]) if state else []
    if rank == 0:
        if state:
            print(
                f"resumed from {state.path}: step {step}, epoch {epoch + 1}, batch "
                f"{state.batches_done} of {len(loader)}",
                flush=True,
            )
        else:
            print(f"fresh start on {world} rank(s); checkpoints in {ckpt.directory}", flush=True)

    total = args.epochs * len(loader)
    bar = common.progress(total=total, desc="train", enabled=rank == 0, unit="step")
    bar.update(step)
    while epoch < args.epochs:
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
            if step % args.save_every == 0 and loader.batches_done < len(loader):
                ckpt.save(step, epoch, seed=SEED, extra={"losses": losses})  # mid-epoch
                if rank == 0:
                    common.say(bar, f"checkpoint saved at step {step}")
        epoch += 1
        ckpt.save(step, epoch, seed=SEED, extra={"losses": losses})  # resumes in the next epoch
        if rank == 0:
            common.say(bar, f"checkpoint saved at step {step} (end of epoch {epoch})")
    bar.close()

    if rank == 0:
        model.eval()
        with dg.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        png = common.save_curves(
            os.path.join(args.out, "loss.png"),
            {"training loss (rank 0's batches)": (list(range(1, len(losses) + 1)), losses)},
            xlabel="step",
            title="resumable training on digits",
        )
        print(
            f"test accuracy {acc:.4f} after {step} steps ({args.epochs} epochs); parameters "
            f"sha256 {digest(model)}; checkpoints {ckpt.directory}"
            + (f"; curve {png}" if png else "")
        )
    dist.barrier()


if __name__ == "__main__":
    main()
