"""Activation checkpointing: peak memory and time of a forward+backward of a deep MLP, without
checkpointing and with ``checkpoint_sequential`` in several segment counts (timed
interleaved).

    python benchmarks/bench_checkpoint.py            # 10 timed repetitions
    python benchmarks/bench_checkpoint.py --quick

The model is 16 x (Linear(256, 256) + ReLU), float32, batch 2048: each layer keeps 2 MB of
activations for backward. Memory is the peak of live numpy arrays during one step above what
was live before it (numpy reports its allocations to ``tracemalloc``), so it counts
activations, gradients and temporaries, not the parameters. Time is measured separately,
without tracemalloc. Threads are pinned to 1 for stable numbers.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import distgrad as dg  # noqa: E402
from distgrad import nn  # noqa: E402
from distgrad.utils import checkpoint_sequential  # noqa: E402

WIDTH, DEPTH, BATCH = 256, 16, 2048


def step(model, x, segments):
    model.zero_grad()
    out = model(x) if segments is None else checkpoint_sequential(model, segments, x)
    out.pow(2).mean().backward()


def peak_mb(model, x, segments):
    step(model, x, segments)  # warm caches
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    step(model, x, segments)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def median_ms(model, x, configs, repeats):
    """Median milliseconds of a step per configuration, timed interleaved."""
    samples = {c: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            t0 = time.perf_counter()
            step(model, x, c)
            samples[c].append(time.perf_counter() - t0)
    return {c: float(np.median(s)) * 1e3 for c, s in samples.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    dg.manual_seed(0)
    layers = []
    for _ in range(DEPTH):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    model = nn.Sequential(*layers)
    x = dg.randn(BATCH, WIDTH, requires_grad=True)
    print(
        f"{DEPTH} x (Linear({WIDTH}, {WIDTH}) + ReLU), float32, batch {BATCH}: forward + "
        f"backward, peak of live arrays above the step's start, median of {repeats} "
        f"interleaved"
    )
    print(f"{'checkpointing':<28} {'peak MB':>8} {'saved':>6} {'ms':>8} {'overhead':>9}")
    configs = (None, 2, 4, 8, 16)
    peaks = {c: peak_mb(model, x, c) for c in configs}
    times = median_ms(model, x, configs, repeats)
    for c in configs:
        name = "none" if c is None else f"checkpoint_sequential({c})"
        print(
            f"{name:<28} {peaks[c]:>8.1f} {1 - peaks[c] / peaks[None]:>6.0%} {times[c]:>8.1f} "
            f"{times[c] / times[None] - 1:>+9.0%}"
        )


if __name__ == "__main__":
    main()
