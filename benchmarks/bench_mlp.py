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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LR, make_distgrad_step, make_mlp, numpy_mlp_grads, numpy_params  # noqa: E402
from common import MLP_SIZES as SIZES


def numpy_step(params, x, y):
    """The hand-written step: forward, backward and the SGD update in numpy."""
    import numpy as np

    grads = [np.empty_like(p) for p in params]
    loss = numpy_mlp_grads(params, x, y, grads)
    for p, g in zip(params, grads):
        p -= LR * g
    return loss


def run_child(batch_sizes, repeats):
    import numpy as np

    import distgrad as dg

    rows = []
    for batch in batch_sizes:
        model = make_mlp()
        ref = numpy_params(model)
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
            for name, fn in (
                ("distgrad", lambda: step(x, y)),
                ("numpy", lambda: numpy_step(ref, x_np, y_np)),
            ):
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
    print(
        f"MLP {'-'.join(map(str, SIZES))} training step, float32, {args.repeats} interleaved "
        f"repetitions (median ms)"
    )
    print(f"{'threads':>7} {'batch':>6} {'distgrad':>9} {'p10-p90':>15} {'numpy':>9} {'ratio':>6}")
    for threads in args.threads:
        env = dict(
            os.environ,
            **{
                k: str(threads)
                for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            },
        )
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--repeats",
                str(args.repeats),
                "--batch",
                *map(str, args.batch),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            if line.startswith("ROW "):
                batch, d, n, p10, p90 = line.split()[1:]
                print(
                    f"{threads:>7} {batch:>6} {float(d):>9.2f} {p10:>7}-{p90:<7} "
                    f"{float(n):>9.2f} {float(d) / float(n):>6.3f}"
                )


if __name__ == "__main__":
    main()
