"""Train a small CNN on scikit-learn's digits (8x8 images, bundled, no download).

python examples/train_cnn_digits.py [--epochs 15]
"""

import argparse

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    dg.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits(as_images=True)
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
    for epoch in range(args.epochs):
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.4f}")
    model.eval()
    with dg.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"test accuracy {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()
