"""Look at a model's backward graph and its training loss curve.

    python examples/visualize_graph.py [--out runs/viz] [--epochs 8]

Writes, in --out: graph.dot (Graphviz source) and graph.mmd (Mermaid, renders in GitHub
markdown) always; graph.png and graph.svg when Graphviz's `dot` is installed; loss.png, the
training loss of a small MLP on scikit-learn's digits (bundled, no download), when matplotlib
is installed. Runs in a few seconds.
"""

import argparse
import os
import shutil

import distgrad as dg
from distgrad import nn, viz
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.datasets import load_digits


def save_loss_curve(losses, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no loss curve")
        return
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="epoch", ylabel="training loss", title="MLP on digits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/viz")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    dg.manual_seed(0)
    x_train, y_train, _, _ = load_digits()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))
    params = dict(model.named_parameters())

    # the graph of one loss: parameters (named) at the top, the loss at the bottom
    loss = nn.functional.cross_entropy(model(x_train[:8]), y_train[:8])
    for name, text in (
        ("graph.dot", viz.to_dot(loss, params=params, show_saved=True)),
        ("graph.mmd", viz.to_mermaid(loss, params=params)),
    ):
        with open(os.path.join(args.out, name), "w") as f:
            f.write(text)
        print(f"wrote {os.path.join(args.out, name)}")
    if shutil.which("dot"):
        for ext in ("png", "svg"):
            print(
                "wrote",
                viz.render(
                    loss, os.path.join(args.out, f"graph.{ext}"), params=params, show_saved=True
                ),
            )
    else:
        print("Graphviz's `dot` not found: no graph.png/graph.svg (apt install graphviz)")

    opt = dg.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=64,
        shuffle=True,
        generator=dg.Generator().manual_seed(0),
    )
    losses = []
    for epoch in range(args.epochs):
        total = 0.0
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        losses.append(total / len(x_train))
        print(f"epoch {epoch + 1:2d}  loss {losses[-1]:.4f}")
    save_loss_curve(losses, os.path.join(args.out, "loss.png"))


if __name__ == "__main__":
    main()
