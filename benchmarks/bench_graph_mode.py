"""Graph mode: an eager training step against the same step captured with
``distgrad.jit.trace_step`` and replayed (float32, SGD), timed interleaved in one process.

    python benchmarks/bench_graph_mode.py            # 30 repetitions
    python benchmarks/bench_graph_mode.py --quick    # fewer repetitions

Models: the MLP 784-1024-1024-10 (batch 128), where matmuls dominate; a deep narrow MLP
(32 x Linear(64, 64) + Tanh, batch 32); and a chain of 200 elementwise ops on 64 elements —
the last two are per-op Python overhead, which is what graph mode removes. Both versions
start from the same weights and are checked to agree before timing. Threads are pinned to 1
(OMP/OPENBLAS/MKL_NUM_THREADS) for stable numbers. With a GPU, ``--cuda`` adds a CUDA-graph
replay column.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import distgrad as dg  # noqa: E402
import distgrad.nn.functional as F  # noqa: E402
from distgrad import jit, nn  # noqa: E402

LR = 0.01


class Chain(nn.Module):
    """``depth`` rounds of ``y = tanh(y * w)``: 2 elementwise ops per round on small tensors."""

    def __init__(self, width, depth):
        super().__init__()
        self.w = nn.Parameter(dg.ones(width) * 0.9)
        self.depth = depth

    def forward(self, x):
        for _ in range(self.depth):
            x = (x * self.w).tanh()
        return x


def mlp():
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )


def deep_narrow():
    layers = []
    for _ in range(32):
        layers += [nn.Linear(64, 64), nn.Tanh()]
    return nn.Sequential(*layers)


def cases(device):
    rng = np.random.default_rng(0)

    def data(*shape, classes=None):
        if classes:
            return dg.from_numpy(rng.integers(0, classes, shape)).to(device)
        return dg.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(device)

    yield (
        "MLP 784-1024-1024-10, batch 128",
        mlp,
        F.cross_entropy,
        (data(128, 784), data(128, classes=10)),
    )
    yield (
        "deep narrow MLP 32x(Linear 64 + Tanh), batch 32",
        deep_narrow,
        F.mse_loss,
        (data(32, 64), data(32, 64)),
    )
    yield (
        "elementwise chain, 200 ops on 64 elements",
        lambda: Chain(64, 100),
        F.mse_loss,
        (data(64), data(64)),
    )


def eager_step(model, loss, opt):
    def step(x, y):
        opt.zero_grad()
        out = loss(model(x), y)
        out.backward()
        opt.step()
        return out.detach()

    return step


def timed(fns, repeats):
    """Median seconds of each function, run interleaved."""
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for fn, s in zip(fns, samples):
            t0 = time.perf_counter()
            fn()
            s.append(time.perf_counter() - t0)
    return [float(np.median(s)) for s in samples]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cuda", action="store_true", help="run on the GPU, add CUDA graphs")
    args = parser.parse_args()
    repeats = 8 if args.quick else args.repeats
    device = "cuda" if args.cuda else "cpu"
    sync = dg.cuda.synchronize if args.cuda else (lambda: None)
    head = f"{'model':<50} {'ops':>4} {'eager ms':>9} {'replay ms':>10} {'speed-up':>9}"
    print(
        f"Training step (forward, loss, backward, SGD), float32, {device}, {repeats} "
        f"interleaved repetitions, median"
    )
    print(head + (f" {'CUDA graph ms':>14}" if args.cuda else ""))
    for name, make, loss, (x, y) in cases(device):
        dg.manual_seed(0)
        model = make().to(device)
        twin = copy.deepcopy(model)
        opt = dg.optim.SGD(model.parameters(), lr=LR)
        twin_opt = dg.optim.SGD(twin.parameters(), lr=LR)
        eager = eager_step(model, loss, opt)
        traced = jit.trace_step(lambda a, b: loss(twin(a), b), (x, y), twin_opt)
        for _ in range(2):  # same weights, same data: the two must agree before timing
            le, lt = eager(x, y).item(), traced(x, y).item()
            assert abs(le - lt) <= 1e-5 * max(1.0, abs(le)), (name, le, lt)
        fns = [lambda: (eager(x, y), sync()), lambda: (traced(x, y), sync())]
        if args.cuda:
            graphed = jit.trace_step(
                lambda a, b: loss(twin(a), b), (x, y), twin_opt, cuda_graph=True
            )
            fns.append(lambda: (graphed(x, y), sync()))
        times = timed(fns, repeats)
        ops = len(traced.forward.graph)
        row = (
            f"{name:<50} {ops:>4} {times[0] * 1e3:>9.2f} {times[1] * 1e3:>10.2f} "
            f"{times[0] / times[1]:>8.2f}x"
        )
        print(row + (f" {times[2] * 1e3:>14.2f}" if args.cuda else ""))


if __name__ == "__main__":
    main()
