"""Side-by-side timing against torch: interleaved blocks in one process, medians and ratios.

Each case is a dict of named zero-argument callables (``{"distgrad": f, "torch": g}``). The
callables run in alternating blocks (``a`` block, ``b`` block, ``a`` block, ...) so that load
changes on a shared machine hit both sides alike; each block times ``per_block`` calls and
records the per-call mean. The report gives, per side, the median and min-max over blocks, and
the ratio of medians against the reference side (``torch`` by default).

    from sidebyside import compare, report, torch_or_none
    rows = [compare("LeNet step", {"distgrad": dg_step, "torch": torch_step})]
    report(rows)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def torch_or_none():
    """The imported ``torch`` module limited to the thread count of the run, or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return torch


@dataclass
class Row:
    name: str
    # side -> per-call seconds, one entry per block
    blocks: dict[str, list[float]] = field(default_factory=dict)
    reference: str = "torch"

    def median(self, side: str) -> float:
        return statistics.median(self.blocks[side])

    def ratio(self, side: str) -> float | None:
        if self.reference not in self.blocks or side == self.reference:
            return None
        return self.median(side) / self.median(self.reference)


def compare(
    name: str,
    sides: dict[str, Callable[[], object]],
    *,
    blocks: int = 15,
    per_block: int | None = None,
    warmup: int = 3,
    reference: str = "torch",
    min_block_s: float = 0.02,
    clock: Callable[[], float] = time.perf_counter,
) -> Row:
    """Time every side of one case in interleaved blocks; sides whose callable is None are
    skipped (for example torch when it is not installed). ``clock=time.process_time`` measures
    the process's CPU time instead of wall time: steadier on a shared machine, but blind to
    work done in parallel threads (use wall time for multi-threaded cases)."""
    sides = {k: f for k, f in sides.items() if f is not None}
    for f in sides.values():
        for _ in range(warmup):
            f()
    if per_block is None:  # enough calls that a block lasts about min_block_s on the slowest side
        slowest = 0.0
        for f in sides.values():
            t0 = clock()
            f()
            slowest = max(slowest, clock() - t0)
        per_block = max(1, int(min_block_s / max(slowest, 1e-7)))
    row = Row(name, {k: [] for k in sides}, reference)
    for b in range(blocks):
        order = list(sides.items())
        if b % 2:
            order.reverse()
        for side, f in order:
            t0 = clock()
            for _ in range(per_block):
                f()
            row.blocks[side].append((clock() - t0) / per_block)
    return row


def _fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def report(rows: list[Row], title: str = "") -> str:
    """Print and return a markdown table: median (min-max) per side and the ratio to torch."""
    sides: list[str] = []
    for r in rows:
        sides += [s for s in r.blocks if s not in sides]
    head = "| case | " + " | ".join(f"{s} median (min-max)" for s in sides) + " | ratio |"
    lines = [f"### {title}" if title else "", head, "|" + " --- |" * (len(sides) + 2)]
    for r in rows:
        cells = []
        for s in sides:
            if s in r.blocks:
                t = r.blocks[s]
                cells.append(f"{_fmt(r.median(s))} ({_fmt(min(t))}-{_fmt(max(t))})")
            else:
                cells.append("skipped")
        ratios = [f"{s}/{r.reference} {r.ratio(s):.2f}" for s in r.blocks if r.ratio(s) is not None]
        lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {', '.join(ratios) or '-'} |")
    text = "\n".join(line for line in lines if line)
    print(text, flush=True)
    return text
