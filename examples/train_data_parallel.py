"""Data-parallel training of an MLP on scikit-learn's digits (1,797 real 8x8 images, bundled).

    distgrad-run -np 2 python examples/train_data_parallel.py    # what `make demo` runs
    mpiexec -n 4 python examples/train_data_parallel.py          # any MPI launcher works
    python examples/train_data_parallel.py                       # one process works too

Every rank holds a replica of the model and trains on its own share of each epoch
(``DistributedSampler``). ``DataParallel`` averages the gradients over the ranks *during*
backward: the parameters' gradients are packed into buckets, and a bucket's allreduce starts as
soon as all its gradients are computed, while backward goes on with earlier layers. The
replicas stay identical. Rank 0 shows the progress, the throughput, how much of the
communication overlapped with backward, and the test accuracy; it writes the checkpoint and a
PNG of the curves next to it.
"""

import argparse
import os
import socket
import statistics
import time

import common  # first: sets the BLAS threads before numpy loads

import distgrad as dg
import distgrad.distributed as dist
from distgrad import nn
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.datasets import load_digits
from distgrad.data.distributed import DistributedSampler


def make_model():
    # Small enough that numpy's BLAS runs each product on one thread, whatever the thread
    # count: the result is then bit-identical however the ranks are placed (the launcher's
    # multi-node test compares 1 rank per host with 2 ranks on one host).
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def accuracy(model, x, y):
    model.eval()
    with dg.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def introduce(rank, world, sampler, loader, batch_size):
    """Every rank says where it runs; rank 0 prints the roll call."""
    me = (rank, socket.gethostname(), os.getpid(), os.environ.get("OMP_NUM_THREADS", "?"))
    everyone = [None] * world
    dist.all_gather_object(everyone, me)
    if rank == 0:
        print(
            f"{world} rank(s), {len(sampler)} samples and {len(loader)} batches of "
            f"{batch_size} per rank and epoch"
        )
        for r, host, pid, threads in everyone:
            print(f"  rank {r}: host {host}, pid {pid}, {threads} BLAS thread(s)")


def explain_overlap(steps, parameters, world):
    """The overlap of communication with backward, in words (medians over the steps)."""
    if world == 1 or not steps:
        return "overlap: one process, so there is no gradient communication to overlap."
    buckets = steps[-1].buckets
    launched = statistics.median(s.launched_in_backward for s in steps)
    comm = statistics.median(s.communication_s for s in steps) * 1e3
    share = statistics.median(s.overlap_share for s in steps)
    wait = statistics.median(s.wait_s for s in steps) * 1e3
    backward = statistics.median(s.backward_s for s in steps) * 1e3
    return (
        f"overlap: the gradients of {parameters:,} parameters ({steps[-1].bytes / 1024:.0f} KiB) "
        f"are averaged over {world} ranks in {buckets} bucket(s), each an allreduce that starts "
        f"as soon as its gradients are computed. On the median step {launched:g} of {buckets} "
        f"started while backward ({backward:.2f} ms) was still computing earlier layers' "
        f"gradients; {share:.0%} of the {comm:.2f} ms of communication ran during backward, "
        f"and after backward each rank waited {wait:.2f} ms for the rest."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2 if common.quick() else 20)
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
    # Small buckets so that this small model still has several: the first bucket is sent while
    # backward computes the gradients of the layers before it.
    model = dist.DataParallel(make_model(), bucket_cap_mb=0.05, first_bucket_mb=0.02)
    opt = dg.optim.Adam(model.parameters(), lr=args.lr * world)  # the global batch grows
    introduce(rank, world, sampler, loader, args.batch_size)

    curves = {"training loss": ([], []), "test accuracy": ([], []), "samples/s": ([], [])}
    steps, start = [], time.perf_counter()
    bar = common.progress(
        total=args.epochs * len(loader), desc=f"{world} rank(s)", enabled=rank == 0, unit="step"
    )
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total = dg.zeros(2, dtype=dg.float64)  # loss sum, sample count
        epoch_start = time.perf_counter()
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += dg.tensor([loss.item() * len(yb), len(yb)], dtype=dg.float64)
            if model.last_step_stats is not None:
                steps.append(model.last_step_stats)
            bar.update(1)
        dist.all_reduce(total)  # every rank's loss sum and count
        seconds = time.perf_counter() - epoch_start
        loss_value, rate = (total[0] / total[1]).item(), total[1].item() / seconds
        acc = accuracy(model, x_test, y_test)
        for name, value in zip(curves, (loss_value, acc, rate)):
            curves[name][0].append(epoch + 1)
            curves[name][1].append(value)
        bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{acc:.3f}", samples_s=f"{rate:,.0f}")
        if rank == 0:
            common.say(
                bar,
                f"epoch {epoch + 1:3d}  loss {loss_value:.4f}  accuracy on the test set {acc:.4f}  "
                f"{rate:,.0f} samples/s",
            )
    bar.close()

    if rank == 0:
        elapsed = time.perf_counter() - start
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
        png = common.save_curves(
            os.path.join(args.out, "curves.png"),
            curves,
            xlabel="epoch",
            title=f"MLP on digits, data-parallel on {world} rank(s)",
        )
        parameters = sum(p.numel() for p in model.parameters())
        print(
            f"throughput: {statistics.median(curves['samples/s'][1]):,.0f} samples/s over all "
            f"ranks (median epoch; the first epoch includes start-up)"
        )
        print(explain_overlap(steps, parameters, world))
        print(
            f"test accuracy {curves['test accuracy'][1][-1]:.4f} after {args.epochs} epochs in "
            f"{elapsed:.1f} s; checkpoint {checkpoint}" + (f"; curves {png}" if png else "")
        )
    dist.barrier()


if __name__ == "__main__":
    main()
