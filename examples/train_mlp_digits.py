"""Train an MLP on scikit-learn's digits (1,797 real 8x8 images, bundled, no download):
progress bar, test accuracy, checkpoint save + resume, loss-curve PNG.

    python examples/train_mlp_digits.py [--epochs 30] [--out runs/mlp]
    python examples/train_mlp_digits.py --resume runs/mlp/checkpoint.safetensors --epochs 35
"""

import argparse
import os

import distgrad as dg
from distgrad import nn
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


def save_loss_curve(losses, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no loss curve")
        return
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(losses) + 1), losses)
    ax.set(xlabel="epoch", ylabel="training loss", title="MLP on digits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="runs/mlp")
    parser.add_argument("--resume", default=None, help="checkpoint to continue from")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    dg.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits()
    model = make_model()
    opt = dg.optim.Adam(model.parameters(), lr=2e-3)
    sched = dg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    generator = dg.Generator().manual_seed(0)
    loader = DataLoader(
        TensorDataset(x_train, y_train), batch_size=64, shuffle=True, generator=generator
    )
    start_epoch, losses = 0, []
    if args.resume:
        state = dg.load(args.resume)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        start_epoch, losses = state["epoch"], list(state["losses"])
        print(f"resumed from {args.resume} at epoch {start_epoch}")

    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    epochs = range(start_epoch, args.epochs)
    bar = tqdm(epochs, desc="train", disable=args.no_progress) if tqdm else epochs
    for _epoch in bar:
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
        if tqdm:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")

    checkpoint = os.path.join(args.out, "checkpoint.safetensors")
    dg.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "generator": generator.get_state(),
            "epoch": args.epochs,
            "losses": losses,
        },
        checkpoint,
    )
    save_loss_curve(losses, os.path.join(args.out, "loss.png"))
    acc = accuracy(model, x_test, y_test)
    print(f"test accuracy {acc:.4f} after {args.epochs} epochs; checkpoint {checkpoint}")
    return acc


if __name__ == "__main__":
    main()
