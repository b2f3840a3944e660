"""What jit buffer planning buys: the eager training step against its ``jit.trace_step`` replay
with buffer planning (the default) and without (``graph.buffer_planning = False``), three
sides interleaved in one process (so the three see the same machine state), from the same
weights, on the models of ``bench_vs_torch.py``.

    OMP_NUM_THREADS=1 python benchmarks/bench_replay_buffers.py [--blocks 9] [--cpu-time]
        [--models lenet,resnet,lm] [--after-torch]

Prints per model the median per side, the ratios replay/eager and planned/unplanned, and each
side's minor page faults per step. What a replay saves depends on the process's history:
``--after-torch`` first runs ``bench_vs_torch.py``'s model rows (distgrad and torch steps side
by side, as that script does before its replay row), after which glibc serves the convolution
nets' eager allocations without page faults.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from bench_vs_torch import BUILDERS, LR, MOMENTUM, TITLES, _data  # noqa: E402
from sidebyside import compare  # noqa: E402

import distgrad as dg  # noqa: E402
from distgrad import jit  # noqa: E402


def sides_for(name: str, rng) -> dict:
    """Three identical models: eager, replay with planning, replay without."""
    F = dg.nn.functional
    xn, yn = _data(name, rng)
    x, y = dg.from_numpy(xn), dg.from_numpy(yn)
    dg.manual_seed(0)
    models = [BUILDERS[name](dg)]
    models += [copy.deepcopy(models[0]) for _ in range(2)]
    opts = [dg.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM) for m in models]

    def eager():
        opts[0].zero_grad()
        loss = F.cross_entropy(models[0](x), y)
        loss.backward()
        opts[0].step()
        return loss.detach()

    steps = [
        jit.trace_step(lambda a, b, m=m: F.cross_entropy(m(a), b), (x, y), opt)
        for m, opt in zip(models[1:], opts[1:])
    ]
    steps[1].forward.graph.buffer_planning = False
    losses = [eager().item(), steps[0](x, y).item(), steps[1](x, y).item()]
    if len(set(losses)) != 1:
        raise AssertionError(f"{name}: the three sides disagree: {losses}")
    return {
        "eager": eager,
        "planned": lambda: steps[0](x, y),
        "unplanned": lambda: steps[1](x, y),
    }


def faults_per_step(step, steps: int = 5) -> float:
    """Minor page faults per call of ``step``."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--models", default="lenet,resnet,lm")
    parser.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall")
    parser.add_argument(
        "--after-torch", action="store_true", help="run bench_vs_torch.py's model rows first"
    )
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.after_torch:
        import torch
        from bench_vs_torch import model_rows

        model_rows(args.models.split(","), torch, 3)
    rng = np.random.default_rng(2)
    print(
        "| model | eager ms | replay ms (/eager) | replay, no planning ms (/eager) "
        "| planned/unplanned | faults/step eager / replay / no planning |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        sides = sides_for(name, rng)
        row = compare(
            TITLES[name],
            sides,
            blocks=args.blocks,
            reference="eager",
            min_block_s=0.2,
            clock=clock,
        )
        e, p, u = (row.median(k) * 1e3 for k in ("eager", "planned", "unplanned"))
        faults = " / ".join(f"{faults_per_step(sides[k]):.0f}" for k in sides)
        print(
            f"| {TITLES[name]} | {e:.2f} | {p:.2f} ({p / e:.3f}) | {u:.2f} ({u / e:.3f}) "
            f"| {p / u:.3f} | {faults} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
