"""An alpha-beta model of gradient communication: what a training step's collectives cost at
8 to 1,024 GPUs, for DDP (with or without a compression hook), ZeRO-1/2/3, and which allreduce
algorithm ``auto`` would pick.

    python -m distgrad.distributed.cost_model --model gpt2 --cluster nvlink-ib400
    python -m distgrad.distributed.cost_model --model mlp --cluster here --gpus 2 4

**Collectives** (n ranks, message of M bytes, a link of latency alpha per hop and bandwidth B):

- ring allreduce: ``2 (n-1) alpha + 2 (n-1)/n * M / B``
- tree allreduce (pipelined double binary tree, as NCCL's): ``2 ceil(log2 n) alpha + 2 M / B``
- ring reduce-scatter or all-gather (M = the whole buffer): ``(n-1) alpha + (n-1)/n * M / B``
- hierarchical allreduce (g ranks per node, N nodes): reduce-scatter inside each node, ring
  allreduce of the 1/g shards among the N ranks of the same local rank (the g of them share the
  node's network), all-gather inside the node:
  ``2 [(g-1) a_in + (g-1)/g * M / B_in] + 2 (N-1) a_out + 2 (N-1)/N * M / B_out``

A flat collective that spans nodes runs at the pace of its slowest hop: alpha = max of the two
latencies, B = min(B_in, B_out) with B_out the node's whole network bandwidth (NCCL runs one
ring per network card, so all of them carry the ring's traffic). Within one node only the
inside link counts. Reductions' arithmetic is folded into B (what calibration measures).

**Modes** (Psi = the gradient bytes; buckets as DDP cuts them, ``first_bucket_mb`` = 1, then
``bucket_cap_mb`` = 25, in backward order; one allreduce per bucket):

- ``ddp``: one allreduce per bucket; ``fp16``/``bf16`` hooks halve each bucket's bytes;
  ``powersgd`` (rank r, after ``start_powerSGD_iter``): per bucket three allreduces, the
  uncompressed tensors (vectors, and matrices where ``(m + n) r * min_compression_rate >=
  m n``), then every P (``m r`` values per m x n matrix, a parameter viewed as dim 0 x the rest,
  r at most min(m, n)), then every Q (``n r``). With a hook the parameters' 'used' flags
  travel in one more (float32) allreduce after the last bucket.
- ``zero1``: ``ZeroRedundancyOptimizer`` over DDP: the DDP allreduces plus one all-gather of
  Psi after the step (3 Psi on the wire, as torch's).
- ``zero2``: ``fully_shard(reshard_after_forward=False)``: per unit one all-gather in forward
  and one reduce-scatter in backward (2 Psi).
- ``zero3``: per unit all-gathers in forward and again in backward, one reduce-scatter (3 Psi).

The prediction is the time the step's collectives take end to end, one after the other, not
the part of it left exposed after overlap with backward (the timeline shows that part).

**Clusters** (``PRESETS``): ``here`` is fitted from this machine (``benchmarks/
calibrate_cost_model.py``: MPI shared memory, 2 and 4 ranks); the others are named assumptions
about GPU clusters (8 GPUs per node, NVLink-class inside, 200 or 400 Gb/s per node or 400 Gb/s
per GPU between nodes), not measurements.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .communicator import Array, Communicator


@runtime_checkable
class _HasParameters(Protocol):
    """A module (distgrad's or another framework's): its named parameters."""

    def named_parameters(self) -> Iterable[tuple[str, Any]]: ...


# ``(name, shape)`` of every parameter; a model: a name in ``MODELS``, a module, or its shapes.
Shapes = list[tuple[str, tuple[int, ...]]]
ModelLike = str | _HasParameters | Iterable[tuple[str, Sequence[int]]]

__all__ = [
    "Link",
    "Cluster",
    "PRESETS",
    "MODELS",
    "MODES",
    "ring_allreduce",
    "tree_allreduce",
    "hierarchical_allreduce",
    "reduce_scatter",
    "all_gather",
    "allreduce",
    "ALGORITHMS",
    "auto_algorithm",
    "buckets",
    "step_time",
    "step_bytes",
    "collectives",
    "fit",
    "measure",
    "calibrate",
    "calibrated_cluster",
    "SWEEP",
    "model_shapes",
    "table",
    "main",
]

_MB = 1024 * 1024
GB = 1e9


@dataclass(frozen=True)
class Link:
    """A hop: ``latency_s`` (alpha, seconds per message step) and ``bandwidth`` (bytes/s)."""

    latency_s: float
    bandwidth: float


@dataclass(frozen=True)
class Cluster:
    """``gpus_per_node`` ranks share a node joined by ``intra`` links; nodes are joined by
    ``inter`` (``bandwidth``: the node's whole network bandwidth)."""

    name: str
    gpus_per_node: int
    intra: Link
    inter: Link
    description: str = ""
    #: measured links per collective kind (``allreduce``, ``reduce_scatter``, ``all_gather``)
    #: that replace the flat link within one node: implementations (MPI's especially) differ
    #: per collective, so a calibrated cluster fits each kind on its own.
    kinds: dict = field(default_factory=dict)

    def nodes(self, n: int) -> int:
        """Nodes that ``n`` ranks occupy."""
        return -(-n // self.gpus_per_node)

    def flat_link(self, n: int, kind: str = "allreduce") -> Link:
        """The link a flat (ring or tree) collective of ``kind`` over ``n`` ranks runs at."""
        if self.nodes(n) <= 1:
            return self.kinds.get(kind, self.intra)
        return Link(
            max(self.intra.latency_s, self.inter.latency_s),
            min(self.intra.bandwidth, self.inter.bandwidth),
        )


def _gbit(gbps: float) -> float:
    return gbps * 1e9 / 8


#: Calibrated on this machine by benchmarks/calibrate_cost_model.py (MPICH shared memory,
#: float32, 1 KiB - 64 MiB, the fastest of 15 interleaved rounds, 04:30 UTC at load average
#: ~10 on 2 cores; see benchmarks/README.md): 2 ranks, and 4 ranks on the 2 cores.
HERE = Cluster(
    "here",
    4,
    Link(17.9e-6, 3.09 * GB),
    Link(17.9e-6, 3.09 * GB),
    "this machine (2 cores, MPICH shared memory), fitted from 2-rank collectives",
    {
        "allreduce": Link(17.9e-6, 3.09 * GB),
        "reduce_scatter": Link(74.0e-6, 2.23 * GB),
        "all_gather": Link(35.1e-6, 2.27 * GB),
    },
)

HERE_OVERSUBSCRIBED = Cluster(
    "here-oversubscribed",
    4,
    Link(21.4e-6, 0.57 * GB),
    Link(21.4e-6, 0.57 * GB),
    "this machine with 4 ranks on its 2 cores, fitted from 4-rank collectives",
    {
        "allreduce": Link(21.4e-6, 0.57 * GB),
        "reduce_scatter": Link(50.0e-6, 0.57 * GB),
        "all_gather": Link(36.8e-6, 1.06 * GB),
    },
)

PRESETS = {
    "here": HERE,
    "here-oversubscribed": HERE_OVERSUBSCRIBED,
    "nvlink-ib200": Cluster(
        "nvlink-ib200",
        8,
        Link(3e-6, 300 * GB),
        Link(8e-6, _gbit(200)),
        "8 GPUs/node, NVLink-class 300 GB/s and 3 us per hop inside; one 200 Gb/s NIC per "
        "node (25 GB/s), 8 us per hop between nodes",
    ),
    "nvlink-ib400": Cluster(
        "nvlink-ib400",
        8,
        Link(3e-6, 300 * GB),
        Link(8e-6, _gbit(400)),
        "8 GPUs/node, NVLink-class 300 GB/s and 3 us per hop inside; 400 Gb/s per node "
        "(50 GB/s), 8 us per hop between nodes",
    ),
    "nvlink-8x400": Cluster(
        "nvlink-8x400",
        8,
        Link(3e-6, 300 * GB),
        Link(8e-6, 8 * _gbit(400)),
        "8 GPUs/node, NVLink-class 300 GB/s inside; one 400 Gb/s NIC per GPU (rail-optimised, "
        "400 GB/s per node), 8 us per hop between nodes",
    ),
}


# ---- collectives ------------------------------------------------------------------------------
def ring_allreduce(n: int, nbytes: float, link: Link) -> float:
    """Seconds for a ring allreduce of ``nbytes`` over ``n`` ranks on ``link``."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) * link.latency_s + 2 * (n - 1) / n * nbytes / link.bandwidth


def tree_allreduce(n: int, nbytes: float, link: Link) -> float:
    """Seconds for a pipelined (double binary) tree allreduce."""
    if n <= 1:
        return 0.0
    return 2 * math.ceil(math.log2(n)) * link.latency_s + 2 * nbytes / link.bandwidth


def reduce_scatter(n: int, nbytes: float, link: Link) -> float:
    """Seconds for a ring reduce-scatter of a ``nbytes`` buffer (each rank keeps 1/n)."""
    if n <= 1:
        return 0.0
    return (n - 1) * link.latency_s + (n - 1) / n * nbytes / link.bandwidth


all_gather = reduce_scatter  # the same traffic, the other way round (``nbytes``: the output)


def hierarchical_allreduce(n: int, nbytes: float, cluster: Cluster) -> float:
    """Reduce-scatter in the node, allreduce across nodes, all-gather in the node."""
    g, nodes = min(n, cluster.gpus_per_node), cluster.nodes(n)
    inside = reduce_scatter(g, nbytes, cluster.intra)
    if nodes <= 1:
        return 2 * inside
    across = Link(cluster.inter.latency_s, cluster.inter.bandwidth / g)  # g rings share the NICs
    return 2 * inside + ring_allreduce(nodes, nbytes / g, across)


ALGORITHMS = ("ring", "tree", "hierarchical")


def allreduce(n: int, nbytes: float, cluster: Cluster, algorithm: str = "auto") -> float:
    """Seconds for one allreduce by ``algorithm`` (one of ``ALGORITHMS`` or ``auto``: the
    cheapest)."""
    if algorithm == "auto":
        algorithm = auto_algorithm(n, nbytes, cluster)
    if algorithm == "ring":
        return ring_allreduce(n, nbytes, cluster.flat_link(n))
    if algorithm == "tree":
        return tree_allreduce(n, nbytes, cluster.flat_link(n))
    if algorithm == "hierarchical":
        return hierarchical_allreduce(n, nbytes, cluster)
    raise ValueError(f"cost_model: unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def auto_algorithm(n: int, nbytes: float, cluster: Cluster) -> str:
    """The allreduce algorithm the model predicts fastest for this size and world."""
    return min(ALGORITHMS, key=lambda a: allreduce(n, nbytes, cluster, a))


# ---- models and modes -----------------------------------------------------------------------
def _transformer(d: int, layers: int, vocab: int, ffn: int, context: int) -> list:
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("embed.weight", (vocab, d)),
        ("pos.weight", (context, d)),
    ]
    for i in range(layers):
        p = f"h{i}."
        shapes += [
            (p + "ln1.weight", (d,)),
            (p + "ln1.bias", (d,)),
            (p + "qkv.weight", (3 * d, d)),
            (p + "qkv.bias", (3 * d,)),
            (p + "proj.weight", (d, d)),
            (p + "proj.bias", (d,)),
            (p + "ln2.weight", (d,)),
            (p + "ln2.bias", (d,)),
            (p + "fc1.weight", (ffn, d)),
            (p + "fc1.bias", (ffn,)),
            (p + "fc2.weight", (d, ffn)),
            (p + "fc2.bias", (d,)),
        ]
    return shapes + [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]


def _mlp(*sizes: int) -> list:
    shapes = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes += [(f"{2 * i}.weight", (b, a)), (f"{2 * i}.bias", (b,))]
    return shapes


#: Named models: ``(name, shape)`` of every parameter in registration order.
MODELS = {
    "mlp": lambda: _mlp(784, 1024, 1024, 10),  # benchmarks/bench_mlp.py's network
    "gpt2": lambda: _transformer(768, 12, 50257, 3072, 1024),  # GPT-2 small, 124 M
    "gpt-1.3b": lambda: _transformer(2048, 24, 50257, 8192, 2048),
    "gpt-6.7b": lambda: _transformer(4096, 32, 50257, 16384, 2048),
}


def model_shapes(model: ModelLike) -> Shapes:
    """``(name, shape)`` pairs of ``model``: a name in ``MODELS``, a module (its parameters
    that require gradients), or such a list already."""
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"cost_model: unknown model {model!r}; expected one of {list(MODELS)}")
        return MODELS[model]()
    if isinstance(model, _HasParameters):
        return [(n, tuple(p.shape)) for n, p in model.named_parameters() if p.requires_grad]
    return [(n, tuple(s)) for n, s in model]


def buckets(
    shapes: list, itemsize: int = 4, bucket_cap_mb: float = 25, first_bucket_mb: float = 1
) -> list:
    """DDP's bucket plan over ``shapes`` (registration order; cut in backward order, the
    first bucket closing at ``first_bucket_mb``, later ones at ``bucket_cap_mb``): a list of
    buckets, each a list of ``(name, shape)``."""
    plan: list[list[tuple[str, tuple[int, ...]]]] = []
    current: list[tuple[str, tuple[int, ...]]] = []
    size = 0
    for name, shape in reversed(shapes):
        current.append((name, shape))
        size += int(np.prod(shape)) * itemsize
        if size >= (bucket_cap_mb if plan else first_bucket_mb) * _MB:
            plan.append(current)
            current, size = [], 0
    return plan + ([current] if current else [])


def _powersgd_parts(bucket: list, rank: int, min_compression_rate: float) -> tuple:
    """Element counts of a bucket's three PowerSGD allreduces: uncompressed, Ps, Qs."""
    plain = ps = qs = 0
    for _, shape in bucket:
        numel = int(np.prod(shape))
        if len(shape) < 2:
            plain += numel
            continue
        m, n = shape[0], numel // shape[0]
        r = min(m, n, rank)
        if (m + n) * r * min_compression_rate < m * n:
            ps, qs = ps + m * r, qs + n * r
        else:
            plain += numel
    return plain, ps, qs


MODES = ("ddp", "fp16", "bf16", "powersgd", "zero1", "zero2", "zero3")


def _units(shapes: list) -> list:
    """fully_shard units: one per top-level child (the first component of the name)."""
    units: dict = {}
    for name, shape in shapes:
        units.setdefault(name.split(".")[0], []).append(int(np.prod(shape)))
    return [sum(sizes) for sizes in units.values()]


def collectives(
    mode: str, model: ModelLike, itemsize: int = 4, rank: int = 4, min_compression_rate: float = 2.0
) -> list:
    """The step's collectives in order: ``(kind, bytes)``, kind ``allreduce``,
    ``reduce_scatter`` or ``all_gather``, bytes the buffer reduced (the whole, gathered buffer
    for the latter two)."""
    shapes = model_shapes(model)
    min_rate = min_compression_rate
    plan = buckets(shapes, itemsize)
    out = []
    if mode in ("ddp", "zero1"):
        out = [("allreduce", sum(int(np.prod(s)) for _, s in b) * itemsize) for b in plan]
        if mode == "zero1":
            out.append(("all_gather", sum(int(np.prod(s)) for _, s in shapes) * itemsize))
    elif mode in ("fp16", "bf16"):
        out = [("allreduce", sum(int(np.prod(s)) for _, s in b) * 2) for b in plan]
    elif mode == "powersgd":
        for b in plan:
            for count in _powersgd_parts(b, rank, min_rate):
                if count:
                    out.append(("allreduce", count * itemsize))
    elif mode in ("zero2", "zero3"):
        for unit in _units(shapes):
            gathers = 1 if mode == "zero2" else 2
            out += [("all_gather", unit * itemsize)] * gathers + [
                ("reduce_scatter", unit * itemsize)
            ]
    else:
        raise ValueError(f"cost_model: unknown mode {mode!r}; expected one of {MODES}")
    if mode in ("fp16", "bf16", "powersgd"):  # with a hook, the 'used' flags go on their own
        out.append(("allreduce", 4 * len(shapes)))
    return out


def step_bytes(
    mode: str, model: ModelLike, itemsize: int = 4, rank: int = 4, min_compression_rate: float = 2.0
) -> int:
    """Bytes the step's collectives reduce or gather (each collective's buffer, summed: an
    allreduce of M counts M, as the hooks' ``bytes`` statistic)."""
    shapes = model_shapes(model)
    return sum(b for _, b in collectives(mode, shapes, itemsize, rank, min_compression_rate))


def step_time(
    mode: str,
    model: ModelLike,
    n: int,
    cluster: Cluster | str = "nvlink-ib400",
    algorithm: str = "auto",
    itemsize: int = 4,
    rank: int = 4,
    min_compression_rate: float = 2.0,
) -> float:
    """Predicted seconds of one step's communication for ``mode`` (one of ``MODES``) on ``n``
    ranks of ``cluster``, allreduces by ``algorithm``; reduce-scatters and all-gathers are
    rings. ``rank``/``min_compression_rate``: PowerSGD's."""
    cluster = PRESETS[cluster] if isinstance(cluster, str) else cluster
    total = 0.0
    for kind, nbytes in collectives(
        mode, model_shapes(model), itemsize, rank, min_compression_rate
    ):
        if kind == "allreduce":
            total += allreduce(n, nbytes, cluster, algorithm)
        else:
            total += reduce_scatter(n, nbytes, cluster.flat_link(n, kind))
    return total


# ---- calibration ------------------------------------------------------------------------------
def fit(samples: Sequence[tuple[int, int, float]], kind: str = "allreduce") -> Link:
    """The ``Link`` whose ring ``kind`` (allreduce, or reduce_scatter / all_gather) best fits
    ``samples`` (``(n, bytes, seconds)`` triples): least squares on relative error, so small and
    large messages weigh alike; samples off the first fit by more than 2x (a burst of load on
    a shared machine) are dropped and the rest fitted again."""
    hops = 2 if kind == "allreduce" else 1
    rows = np.array([[hops * (n - 1), hops * (n - 1) / n * b] for n, b, _ in samples], float)
    times = np.array([t for _, _, t in samples], float)
    keep = np.ones(len(times), bool)
    for _ in range(2):
        weights = 1.0 / times[keep]
        coef, *_ = np.linalg.lstsq(rows[keep] * weights[:, None], times[keep] * weights, rcond=None)
        coef = np.maximum(coef, [0.0, 1e-15])
        ratio = rows @ coef / times
        inliers = (ratio > 0.5) & (ratio < 2.0)
        if inliers.sum() < 2 or inliers.all():
            break
        keep = inliers
    return Link(float(coef[0]), 1.0 / float(coef[1]))


def _buffers(
    xp: Any, kind: str, nbytes: int, n: int, dtype: Any = np.float32
) -> tuple[Array, Array | None]:
    count = max(1, nbytes // np.dtype(dtype).itemsize)
    rows = -(-count // n)
    if kind == "allreduce":
        return xp.zeros(count, dtype), None
    if kind == "reduce_scatter":
        return xp.zeros(rows * n, dtype), xp.zeros(rows, dtype)
    return xp.zeros(rows, dtype), xp.zeros(rows * n, dtype)


def _issue(comm: Communicator, kind: str, send: Array, recv: Array | None) -> None:
    from .communicator import ReduceOp, started

    if kind == "allreduce":
        started(comm.allreduce(send, ReduceOp.SUM)).wait()
    elif recv is None:
        raise ValueError(f"cost_model: a {kind} needs a receive buffer")
    elif kind == "reduce_scatter":
        started(comm.reduce_scatter(send, recv, ReduceOp.SUM)).wait()
    else:
        started(comm.allgather(send, recv)).wait()


def measure(
    comm: Communicator,
    jobs: dict[str, list[tuple[str, int]]],
    repeats: int = 15,
    xp: Any = np,
) -> dict[str, float]:
    """Seconds of each job of ``jobs`` (a name -> list of ``(kind, bytes)`` collectives issued
    one after the other on ``comm``, float32 buffers of ``xp``): every job once per round,
    rounds interleaved (a shifted order each round) so that a change of load on the machine
    affects all alike; per job the fastest round (the time without preemption by other
    processes, which is what the model describes), the slowest rank's. Every rank must call
    it."""
    from .communicator import ReduceOp, started

    prepared = {
        name: [(kind, *_buffers(xp, kind, nbytes, comm.world_size)) for kind, nbytes in job]
        for name, job in jobs.items()
    }
    names = list(prepared)
    times: dict = {name: [] for name in names}
    for round_ in range(repeats + 1):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            comm.barrier(async_op=False)
            t0 = time.perf_counter()
            for kind, send, recv in prepared[name]:
                _issue(comm, kind, send, recv)
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
    best = np.array([min(times[name]) for name in names])
    started(comm.allreduce(best, ReduceOp.MAX)).wait()
    return dict(zip(names, best.tolist()))


SWEEP = tuple(1 << 10 << 2 * i for i in range(9))  # 1 KiB, 4 KiB, ..., 64 MiB


def calibrate(
    comm: Communicator,
    sizes: Sequence[int] = SWEEP,
    repeats: int = 15,
    extra: dict[str, list[tuple[str, int]]] | None = None,
) -> tuple[dict[str, Link], dict[str, list[tuple[int, int, float]]], dict[str, float]]:
    """Measure each collective kind at ``sizes`` on ``comm`` (plus the ``extra`` jobs, see
    ``measure``, interleaved with them) and fit one link per kind. Returns ``(kinds, samples,
    measured)``: ``{kind: Link}``, ``{kind: [(n, bytes, seconds)]}`` and the medians of every
    job by name. Every rank must call it."""
    kinds = ("allreduce", "reduce_scatter", "all_gather")
    jobs = {f"{kind}:{size}": [(kind, size)] for kind in kinds for size in sizes}
    jobs.update(extra or {})
    measured = measure(comm, jobs, repeats)
    n = comm.world_size
    samples = {k: [(n, size, measured[f"{k}:{size}"]) for size in sizes] for k in kinds}
    return {k: fit(samples[k], k) for k in kinds}, samples, measured


def calibrated_cluster(links: dict, name: str = "calibrated", description: str = "") -> Cluster:
    """A one-node cluster whose collectives run at the fitted ``links`` (from ``calibrate``)."""
    base = links["allreduce"]
    return Cluster(name, 1 << 20, base, base, description, dict(links))


# ---- the table --------------------------------------------------------------------------------
def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def table(
    model: ModelLike, cluster: Cluster | str, gpus: Sequence[int], itemsize: int = 4, rank: int = 4
) -> str:
    """A markdown table: per mode, the predicted ms per step at each GPU count (allreduces by
    the algorithm ``auto`` picks), and for DDP each allreduce algorithm with ``auto``'s pick."""
    cluster = PRESETS[cluster] if isinstance(cluster, str) else cluster
    shapes = model_shapes(model)
    psi = sum(int(np.prod(s)) for _, s in shapes)
    head = "| mode | MiB/step | " + " | ".join(f"{n} GPUs" for n in gpus) + " |"
    lines = [
        f"{cluster.name}: {cluster.description}",
        f"model: {psi / 1e6:.2f} M parameters, {psi * itemsize / _MB:.1f} MiB of gradients "
        f"({len(buckets(shapes, itemsize))} DDP buckets); predicted ms of communication per step",
        "",
        head,
        "|---|---:|" + "---:|" * len(gpus),
    ]
    for mode in MODES:
        mb = step_bytes(mode, shapes, itemsize, rank) / _MB
        cells = [_fmt_ms(step_time(mode, shapes, n, cluster, "auto", itemsize, rank)) for n in gpus]
        label = f"powersgd r={rank}" if mode == "powersgd" else mode
        lines.append(f"| {label} | {mb:.1f} | " + " | ".join(cells) + " |")
    for algorithm in ALGORITHMS:
        cells = [_fmt_ms(step_time("ddp", shapes, n, cluster, algorithm, itemsize)) for n in gpus]
        lines.append(f"| ddp, {algorithm} allreduce | | " + " | ".join(cells) + " |")
    picks = []
    for n in gpus:
        sizes = [b for _, b in collectives("ddp", shapes, itemsize, rank, 2.0)]
        chosen = sorted({auto_algorithm(n, b, cluster) for b in sizes})
        picks.append("/".join(chosen))
    lines.append("| auto picks (ddp buckets) | | " + " | ".join(picks) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line: print the table for a model and cluster."""
    parser = argparse.ArgumentParser(
        prog="python -m distgrad.distributed.cost_model",
        description="Predicted communication time per training step (alpha-beta model).",
    )
    parser.add_argument("--model", default="gpt2", choices=sorted(MODELS))
    parser.add_argument("--cluster", default="nvlink-ib400", choices=sorted(PRESETS))
    parser.add_argument("--gpus", type=int, nargs="+", default=[8, 16, 64, 256, 1024])
    parser.add_argument("--dtype-bytes", type=int, default=4, help="gradient itemsize (4: fp32)")
    parser.add_argument("--rank", type=int, default=4, help="PowerSGD's matrix rank")
    parser.add_argument("--gpus-per-node", type=int, help="override the cluster's")
    args = parser.parse_args(argv)
    cluster = PRESETS[args.cluster]
    if args.gpus_per_node:
        cluster = replace(cluster, gpus_per_node=args.gpus_per_node)
    print(table(args.model, cluster, args.gpus, args.dtype_bytes, args.rank))
    return 0


if __name__ == "__main__":
    sys.exit(main())
