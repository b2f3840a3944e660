"""Training step of an MLP 784-1024-1024-10 (float32): distgrad against a hand-written numpy
forward/backward of the same network, timed interleaved in the same process.

    python benchmarks/bench_mlp.py            # batch 128 and 512, 1 and 2 threads
    python benchmarks/bench_mlp.py --quick    # fewer repetitions

Each thread count runs in a child process with OMP/OPENBLAS/MKL_NUM_THREADS set before numpy
is imported. Prints medians (ms) and the distgrad/numpy ratio (goal: <= 1.05).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SIZES = (784, 1024, 1024, 10)
LR = 0.01


def numpy_step(params, x, y):
    """Forward, softmax cross-entropy, backward and SGD update, written by hand."""
    import numpy as np

    (w1, b1), (w2, b2), (w3, b3) = params
    h1 = x @ w1.T + b1
    a1 = np.maximum(h1, 0)
    h2 = a1 @ w2.T + b2
    a2 = np.maximum(h2, 0)
    logits = a2 @ w3.T + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(np.log(sums[:, 0]).sum() - shifted[np.arange(n), y].sum()) / n
    g3 = exp / sums
    g3[np.arange(n), y] -= 1
    g3 /= n
    gw3, gb3 = g3.T @ a2, g3.sum(0)
    g2 = (g3 @ w3) * (h2 > 0)
    gw2, gb2 = g2.T @ a1, g2.sum(0)
    g1 = (g2 @ w2) * (h1 > 0)
    gw1, gb1 = g1.T @ x, g1.sum(0)
    for (w, b), gw, gb in zip(params, (gw1, gw2, gw3), (gb1, gb2, gb3)):
        w -= LR * gw
        b -= LR * gb
    return loss


def make_distgrad_step(model):
    import distgrad as dg
    import distgrad.nn.functional as F

    params = list(model.parameters())

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with dg.no_grad():
            for p in params:
                p -= LR * p.grad
                p.grad = None
        return loss.item()
    return step


def run_child(batch_sizes, repeats):
    import numpy as np

    import distgrad as dg
    from distgrad import nn

    rows = []
    for batch in batch_sizes:
        dg.manual_seed(0)
        model = nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(),
                              nn.Linear(SIZES[1], SIZES[2]), nn.ReLU(),
                              nn.Linear(SIZES[2], SIZES[3]))
        ref = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
               for m in model if isinstance(m, nn.Linear)]
        rng = np.random.default_rng(0)
        x_np = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
        y_np = rng.integers(0, SIZES[-1], batch)
        x, y = dg.from_numpy(x_np), dg.from_numpy(y_np)
        step = make_distgrad_step(model)
        # same weights, same data: both implementations must agree before we time them
        l_dg, l_np = step(x, y), numpy_step(ref, x_np, y_np)
        assert abs(l_dg - l_np) < 1e-4, (l_dg, l_np)
        for _ in range(3):
            step(x, y), numpy_step(ref, x_np, y_np)
        times = {"distgrad": [], "numpy": []}
        for _ in range(repeats):
            for name, fn in (("distgrad", lambda: step(x, y)),
                             ("numpy", lambda: numpy_step(ref, x_np, y_np))):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        rows.append((batch, times))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="*", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeats = 8
    if args.child:
        import numpy as np

        for batch, times in run_child(args.batch, args.repeats):
            d, n = (np.median(times[k]) * 1e3 for k in ("distgrad", "numpy"))
            p10, p90 = (np.percentile(times["distgrad"], q) * 1e3 for q in (10, 90))
            print(f"ROW {batch} {d:.3f} {n:.3f} {p10:.3f} {p90:.3f}")
        return
    print(f"MLP {'-'.join(map(str, SIZES))} training step, float32, {args.repeats} interleaved "
          f"repetitions (median ms)")
    print(f"{'threads':>7} {'batch':>6} {'distgrad':>9} {'p10-p90':>15} {'numpy':>9} "
          f"{'ratio':>6}")
    for threads in args.threads:
        env = dict(os.environ, **{k: str(threads) for k in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        out = subprocess.run([sys.executable, __file__, "--child", "--repeats",
                              str(args.repeats), "--batch", *map(str, args.batch)],
                             env=env, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("ROW "):
                batch, d, n, p10, p90 = line.split()[1:]
                print(f"{threads:>7} {batch:>6} {float(d):>9.2f} {p10:>7}-{p90:<7} "
                      f"{float(n):>9.2f} {float(d) / float(n):>6.3f}")


if __name__ == "__main__":
    main()
