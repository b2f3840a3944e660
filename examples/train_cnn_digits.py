"""Train a small CNN on real images: scikit-learn's handwritten digits (8x8, bundled, no download).

    python examples/train_cnn_digits.py [--epochs 15] [--out runs/cnn]

Convolutions with batch normalisation, max pooling and global average pooling, trained with
AdamW and a one-cycle learning-rate schedule. Shows a progress bar, the loss and test accuracy
of every epoch, writes the weights and a PNG of the curves into ``--out``, and prints the
test accuracy per digit class at the end.
"""

import argparse
import os

import common  # first: sets the BLAS threads before numpy loads

import distgrad as dg
from distgrad import nn
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.datasets import load_digits


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def evaluate(model, x, y):
    model.eval()
    with dg.no_grad():
        predicted = model(x).argmax(1)
    model.train()
    return predicted


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2 if common.quick() else 15)
    parser.add_argument("--out", default="runs/cnn")
    args = parser.parse_args()
    dg.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits(as_images=True)  # (N, 1, 8, 8) in [0, 1]
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=64,
        shuffle=True,
        generator=dg.Generator().manual_seed(0),
    )
    model = SmallCNN()
    opt = dg.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = dg.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=args.epochs * len(loader)
    )
    print(
        f"{len(x_train)} training and {len(x_test)} test images of 8x8 pixels; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    curves = {"training loss": ([], []), "test accuracy": ([], [])}
    bar = common.progress(total=args.epochs * len(loader), desc="train", unit="batch")
    for epoch in range(args.epochs):
        total, count = 0.0, 0
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(yb), count + len(yb)
            bar.update(1)
        acc = (evaluate(model, x_test, y_test) == y_test).float().mean().item()
        for name, value in zip(curves, (total / count, acc)):
            curves[name][0].append(epoch + 1)
            curves[name][1].append(value)
        bar.set_postfix(loss=f"{total / count:.4f}", acc=f"{acc:.4f}")
        common.say(bar, f"epoch {epoch + 1:2d}  loss {total / count:.4f}  test accuracy {acc:.4f}")
    bar.close()

    predicted = evaluate(model, x_test, y_test)
    per_class = [
        (predicted[y_test == c] == c).float().mean().item() for c in range(10)
    ]  # recall of each digit
    print("per digit: " + "  ".join(f"{c}:{a:.2f}" for c, a in enumerate(per_class)))
    os.makedirs(args.out, exist_ok=True)
    weights = os.path.join(args.out, "model.safetensors")
    dg.save(model.state_dict(), weights)
    png = common.save_curves(
        os.path.join(args.out, "curves.png"), curves, xlabel="epoch", title="CNN on digits"
    )
    acc = curves["test accuracy"][1][-1]
    print(
        f"test accuracy {acc:.4f} after {args.epochs} epochs; weights {weights}"
        + (f"; curves {png}" if png else "")
    )
    return acc


if __name__ == "__main__":
    main()
