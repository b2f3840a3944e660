"""Data-parallel training of an MLP on scikit-learn's digits (1,797 real 8x8 images, bundled).

    mpiexec -n 2 python examples/train_data_parallel.py      # or: distgrad-run -np 2 python ...
    python examples/train_data_parallel.py                   # one process works too

Every rank trains a replica on its share of each epoch (``DistributedSampler``);
``DataParallel`` averages the gradients over ranks during backward, so the replicas stay
identical. Rank 0 prints the progress and the test accuracy and writes the checkpoint.
"""

import argparse
import os
import time

import distgrad as dg
import distgrad.distributed as dist
from distgrad import nn
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.datasets import load_digits
from distgrad.data.distributed import DistributedSampler


def make_model():
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", default="runs/data_parallel")
    args = parser.parse_args()

    dist.init()
    rank, world = dist.rank(), dist.world_size()
    dg.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits()
    train = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(train, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)
    model = dist.DataParallel(make_model())  # rank 0's initial weights everywhere
    opt = dg.optim.Adam(model.parameters(), lr=args.lr * world)  # the global batch grows
    if rank == 0:
        print(
            f"{world} rank(s), {len(sampler)} samples and {len(loader)} batches of "
            f"{args.batch_size} per rank and epoch"
        )

    start = time.perf_counter()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total = dg.zeros(2, dtype=dg.float64)  # loss sum, sample count
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += dg.tensor([loss.item() * len(yb), len(yb)], dtype=dg.float64)
        dist.all_reduce(total)
        stats = model.last_step_stats
        if rank == 0 and (epoch % 5 == 4 or epoch == args.epochs - 1):
            comm = f", last step: {stats.communication_s * 1e3:.2f} ms in flight" if stats else ""
            print(
                f"epoch {epoch + 1:3d}  loss {(total[0] / total[1]).item():.4f}{comm}", flush=True
            )

    if rank == 0:
        model.eval()
        with dg.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        os.makedirs(args.out, exist_ok=True)
        checkpoint = os.path.join(args.out, "checkpoint.safetensors")
        dg.save(
            {
                "model": model.module.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": args.epochs,
            },
            checkpoint,
        )
        print(
            f"test accuracy {acc:.4f} after {args.epochs} epochs in "
            f"{time.perf_counter() - start:.1f} s; checkpoint {checkpoint}"
        )
    dist.barrier()


if __name__ == "__main__":
    main()
