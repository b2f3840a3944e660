"""Per-op overhead of distgrad on tiny tensors: a chain of 1000 adds (and muls) on a
1-element tensor, forward and forward+backward, in microseconds per op, against the same
chain in raw numpy.

    python benchmarks/bench_overhead.py
"""

from __future__ import annotations

import time

import numpy as np

import distgrad as dg

CHAIN = 1000


def timed(fn, repeats=20):
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def chain(op, requires_grad, backward):
    def run():
        x = dg.tensor([1.0], requires_grad=requires_grad)
        y = x
        for _ in range(CHAIN):
            y = op(y)
        if backward:
            y.sum().backward()

    return run


def numpy_chain(op):  # the same chain on a numpy array
    def run():
        y = np.ones(1, np.float32)
        for _ in range(CHAIN):
            y = op(y)

    return run


def main():
    ops = {
        "add": (lambda t: t + 1.0, lambda a: a + 1.0),
        "mul": (lambda t: t * 1.0001, lambda a: a * 1.0001),
        "tanh": (lambda t: t.tanh(), np.tanh),
    }
    print(
        f"Per-op overhead, chain of {CHAIN} ops on a 1-element float32 tensor (median, "
        f"microseconds per op)"
    )
    print(
        f"{'op':>9} {'numpy':>8} {'no grad':>8} {'fwd(grad)':>10} {'fwd+bwd':>8} "
        f"{'fwd+bwd / numpy':>16}"
    )
    for name, (op, np_op) in ops.items():
        per_op = [
            timed(f) / CHAIN * 1e6
            for f in (
                numpy_chain(np_op),
                chain(op, False, False),
                chain(op, True, False),
                chain(op, True, True),
            )
        ]
        n, ng, fg, fb = per_op
        print(f"{name:>9} {n:>8.2f} {ng:>8.2f} {fg:>10.2f} {fb:>8.2f} {fb / n:>16.1f}")


if __name__ == "__main__":
    main()
