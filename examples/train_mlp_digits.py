"""Train an MLP on scikit-learn's digits (1,797 real 8x8 images, bundled, no download), with a
progress bar, a checkpoint after every epoch, automatic resume, and a loss-curve PNG.

    python examples/train_mlp_digits.py [--epochs 30] [--out runs/mlp]

Stop it at any time (Ctrl-C) and run the same command again: it resumes after the last
completed epoch, and the result is the same as that of an uninterrupted run, bit for bit
(the checkpoint holds the model, the Adam moments, the learning-rate schedule, and every random
stream: dropout, shuffling). ``--stop-after N`` stops after epoch N on purpose, to try it;
``--fresh`` ignores an existing checkpoint.
"""

import argparse
import hashlib
import os
import shutil

import common  # first: sets the BLAS threads before numpy loads

import distgrad as dg
from distgrad import nn
from distgrad.checkpoint import CheckpointManager
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.datasets import load_digits


def make_model():
    return nn.Sequential(
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def accuracy(model, x, y):
    model.eval()
    with dg.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def digest(model):
    """SHA-256 of the parameters, to compare two runs bit for bit."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()[:16]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3 if common.quick() else 30)
    parser.add_argument("--out", default="runs/mlp")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this epoch")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    directory = os.path.join(args.out, "checkpoints")
    if args.fresh:
        shutil.rmtree(directory, ignore_errors=True)

    dg.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits()
    model = make_model()
    opt = dg.optim.Adam(model.parameters(), lr=2e-3)
    sched = dg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=64,
        shuffle=True,
        generator=dg.Generator().manual_seed(0),
    )
    ckpt = CheckpointManager(directory, model=model, optimizer=opt, scheduler=sched, loader=loader)
    state = ckpt.restore()
    start, losses = (state.epoch, list(state.extra["losses"])) if state else (0, [])
    if state:
        print(f"resumed from {state.path} at epoch {start}")

    bar = common.progress(
        range(start, args.epochs), desc="train", enabled=not args.no_progress, unit="epoch"
    )
    bar.update(0)
    for epoch in bar:
        total, count = 0.0, 0
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
            count += len(yb)
        sched.step()
        losses.append(total / count)
        ckpt.save(step=epoch + 1, epoch=epoch + 1, extra={"losses": losses})
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if args.stop_after is not None and epoch + 1 == args.stop_after:
            print(f"stopped after epoch {epoch + 1} (--stop-after); run again to resume")
            return None

    png = common.save_curves(
        os.path.join(args.out, "loss.png"),
        {"training loss": (list(range(1, len(losses) + 1)), losses)},
        xlabel="epoch",
        title="MLP on digits",
    )
    acc = accuracy(model, x_test, y_test)
    print(
        f"test accuracy {acc:.4f} after {args.epochs} epochs; parameters sha256 "
        f"{digest(model)}; checkpoints {directory}" + (f"; loss curve {png}" if png else "")
    )
    return acc


if __name__ == "__main__":
    main()
