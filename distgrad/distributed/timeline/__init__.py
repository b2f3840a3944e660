"""A Chrome-trace timeline of training steps, per rank and merged over ranks (Horovod's
timeline, for distgrad)::

    DISTGRAD_TIMELINE=/tmp/tl distgrad-run -np 2 python train.py     # the whole run
    with distgrad.distributed.timeline.recording("/tmp/tl"):          # or part of it
        ...

Each rank writes ``rank<r>.trace.json`` into the directory when recording stops (``stop()``,
the context manager's exit, or the end of the process under ``DISTGRAD_TIMELINE``); rank 0
then waits for the other ranks' files and merges them into ``timeline.json`` (one process per
rank, ``pid`` = rank; threads ``compute``, ``comm`` and, on a GPU, ``gpu comm``), which
opens in https://ui.perfetto.dev or chrome://tracing, and draws ``overlap.png`` (matplotlib,
optional: without it the chart is skipped). ``python -m distgrad.distributed.timeline DIR``
merges and draws again.

What is recorded: ``forward`` (``DataParallel``'s), ``backward`` (from the gradient of the
model's output to the end of the reduction callback), each bucket's ``ready`` and ``launch``
(instants on ``compute``) and its collective from launch to the moment the reducer saw it
complete (``comm``; MPI progresses inside MPI calls, so this is an upper bound), the ``wait``
after backward for the reductions and the write-back, every optimizer's ``step``, and for
``fully_shard`` units their all-gathers (issue to done) and their reducers' reduce-scatters. For GPU
buckets reduced on an NCCL stream, the reductions are also drawn from CUDA events on the GPU
clock (``gpu comm``: from the bucket's gradients being ready on the compute stream to the
reduction's end). Times are ``time.perf_counter`` per process, put on a common clock through
each process's wall-clock offset (exact on one host; across hosts as good as their clocks).

Off, the cost is one module-level flag test at each instrumentation point.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from ...optim.optimizer import Optimizer
    from ..nccl import OverlapTimeline
    from ..reducer import Reducer

_T = TypeVar("_T")

__all__ = [
    "ENABLED",
    "start",
    "stop",
    "stop_quietly",
    "recording",
    "is_recording",
    "span",
    "complete",
    "instant",
    "merge",
    "draw_overlap",
]

logger = logging.getLogger(__name__)

#: True while this process records; every instrumentation point tests it first.
ENABLED = False

STREAMS = {"compute": 0, "comm": 1, "gpu comm": 2}
MERGED_NAME = "timeline.json"
CHART_NAME = "overlap.png"
_NULL = contextlib.nullcontext()
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")


class _Recorder:
    """The events of one recording in this process."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.events: list = []
        self.started_wall = time.time()
        # wall clock minus perf_counter, in microseconds: the common clock of the merge
        self.offset_us = (time.time_ns() - time.perf_counter_ns()) / 1000.0
        self.backward_t0: float | None = None
        self.ready: dict = {}  # id(bucket) -> perf_counter when its last gradient arrived
        self.gathers: dict = {}  # (unit, phase) -> perf_counter of the all-gather's issue
        self.handles: list = []
        self.optimizer_t0: float | None = None  # when the optimizer step in progress began


_rec: _Recorder | None = None


def _env_int(names: Iterable[str], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return default


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size: from ``distgrad.distributed`` once initialized,
    else from the launcher's variables."""
    from .. import process_group

    if process_group.is_initialized():
        comm = process_group.get_communicator()
        return comm.rank, comm.world_size
    return _env_int(_RANK_VARS, 0), _env_int(_SIZE_VARS, 1)


def is_recording() -> bool:
    """Whether this process is recording a timeline."""
    return ENABLED


def start(directory: str | os.PathLike[str]) -> None:
    """Start recording this process's timeline into ``directory`` (created if needed). Every
    rank calls it (or sets ``DISTGRAD_TIMELINE``); ``stop()`` writes the files."""
    global ENABLED, _rec
    if ENABLED:
        raise RuntimeError(
            f"distgrad timeline: already recording into {_rec.directory if _rec else '?'}; "
            f"call stop() first"
        )
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    rank, _ = _rank_and_world()
    with contextlib.suppress(FileNotFoundError):
        (path / _rank_file(rank)).unlink()  # a previous run's file must not be merged
    _rec = _Recorder(path)
    from ...optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    _rec.handles = [
        register_optimizer_step_pre_hook(_optimizer_pre),
        register_optimizer_step_post_hook(_optimizer_post),
    ]
    ENABLED = True


def stop(merge_timeout: float = 60.0) -> Path | None:
    """Stop recording and write ``rank<r>.trace.json``. On rank 0, wait up to
    ``merge_timeout`` seconds for every rank's file, merge them into ``timeline.json`` and draw
    ``overlap.png``; returns the merged file's path on rank 0, this rank's file elsewhere, and
    None when nothing was recording."""
    global ENABLED, _rec
    rec = _rec
    if not ENABLED or rec is None:
        return None
    ENABLED, _rec = False, None
    for handle in rec.handles:
        handle.remove()
    rank, world = _rank_and_world()
    own = _write_rank_file(rec, rank, world)
    if rank != 0:
        return own
    files = _wait_for_ranks(rec, world, merge_timeout)
    merged = merge(rec.directory, files)
    draw_overlap(merged, rec.directory / CHART_NAME)
    return merged


@contextlib.contextmanager
def recording(directory: str | os.PathLike[str], merge_timeout: float = 60.0) -> Iterator[None]:
    """``start(directory)`` ... ``stop()`` around the block (every rank enters it)."""
    start(directory)
    try:
        yield
    finally:
        stop(merge_timeout)


def _rank_file(rank: int) -> str:
    return f"rank{rank}.trace.json"


def _write_rank_file(rec: _Recorder, rank: int, world: int) -> Path:
    meta = [
        {
            "ph": "M",
            "name": "process_name",
            "pid": rank,
            "tid": 0,
            "args": {"name": f"rank {rank}"},
        },
        {
            "ph": "M",
            "name": "process_sort_index",
            "pid": rank,
            "tid": 0,
            "args": {"sort_index": rank},
        },
    ]
    for name, tid in STREAMS.items():
        meta.append(
            {"ph": "M", "name": "thread_name", "pid": rank, "tid": tid, "args": {"name": name}}
        )
    for event in rec.events:
        event["pid"] = rank
    document = {
        "traceEvents": meta + rec.events,
        "displayTimeUnit": "ms",
        "otherData": {
            "rank": rank,
            "world_size": world,
            "host": socket.gethostname(),
            "offset_us": rec.offset_us,
            "started": rec.started_wall,
            "stopped": time.time(),
        },
    }
    target = rec.directory / _rank_file(rank)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    os.replace(partial, target)  # the merging rank never reads half a file
    return target


def _wait_for_ranks(rec: _Recorder, world: int, timeout: float) -> list[Path]:
    """The rank files of this recording (written after it started), waiting up to
    ``timeout`` seconds for the missing ones."""
    deadline = time.monotonic() + timeout
    paths = [rec.directory / _rank_file(r) for r in range(world)]
    while True:
        present = [p for p in paths if p.exists() and p.stat().st_mtime >= rec.started_wall - 5]
        if len(present) == world or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if len(present) < world:
        missing = sorted(set(paths) - set(present))
        logger.warning(
            "timeline: merged %d of %d ranks; missing after %.0f s: %s",
            len(present),
            world,
            timeout,
            ", ".join(p.name for p in missing),
        )
    return present


def merge(directory: str | os.PathLike[str], files: Sequence[Path] | None = None) -> Path:
    """Merge the rank files in ``directory`` (or ``files``) into ``directory/timeline.json``:
    each rank's events moved onto the common clock (its wall-clock offset), the earliest event
    at 0. Returns the merged file's path."""
    directory = Path(directory)
    if files is None:
        files = sorted(directory.glob("rank*.trace.json"))
    documents = [json.loads(Path(f).read_text()) for f in files]
    if not documents:
        raise FileNotFoundError(f"distgrad timeline: no rank*.trace.json files in {directory}")
    timed = [
        (e, d["otherData"]["offset_us"]) for d in documents for e in d["traceEvents"] if "ts" in e
    ]
    base = min((e["ts"] + off for e, off in timed), default=0.0)
    events = []
    for document in documents:
        offset = document["otherData"]["offset_us"]
        for event in document["traceEvents"]:
            if "ts" in event:
                event = dict(event, ts=round(event["ts"] + offset - base, 3))
            events.append(event)
    ranks = sorted(d["otherData"]["rank"] for d in documents)
    merged = {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"ranks": ranks, "hosts": sorted({d["otherData"]["host"] for d in documents})},
    }
    target = directory / MERGED_NAME
    target.write_text(json.dumps(merged))
    return target


# ---- recording ------------------------------------------------------------------------------
def _us(t: float) -> float:
    return round(t * 1e6, 3)


def complete(name: str, stream: str, t0: float, t1: float, args: dict | None = None) -> None:
    """Record a span from ``t0`` to ``t1`` (``time.perf_counter`` seconds) on ``stream``."""
    if _rec is None:
        return
    event = {"name": name, "ph": "X", "ts": _us(t0), "dur": _us(max(0.0, t1 - t0))}
    event.update(cat=stream, tid=STREAMS[stream], args=args or {})
    _rec.events.append(event)


def instant(name: str, stream: str, t: float | None = None, args: dict | None = None) -> None:
    """Record an instant on ``stream`` (now, or at ``t`` in ``time.perf_counter`` seconds)."""
    if _rec is None:
        return
    t = time.perf_counter() if t is None else t
    _rec.events.append(
        {
            "name": name,
            "ph": "i",
            "s": "t",
            "ts": _us(t),
            "cat": stream,
            "tid": STREAMS[stream],
            "args": args or {},
        }
    )


class _Span:
    __slots__ = ("name", "stream", "args", "t0")

    def __init__(self, name: str, stream: str, args: dict | None):
        self.name, self.stream, self.args = name, stream, args

    def __enter__(self) -> _Span:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        complete(self.name, self.stream, self.t0, time.perf_counter(), self.args)
        return False


def span(
    name: str, stream: str = "compute", args: dict | None = None
) -> contextlib.AbstractContextManager[Any]:
    """A context manager recording the block as a span (a no-op context when not recording)."""
    if not ENABLED:
        return _NULL
    return _Span(name, stream, args)


def _optimizer_pre(optimizer: Optimizer, args: tuple, kwargs: dict) -> None:
    if _rec is not None:
        _rec.optimizer_t0 = time.perf_counter()


def _optimizer_post(optimizer: Optimizer, args: tuple, kwargs: dict) -> None:
    t0 = getattr(_rec, "optimizer_t0", None)
    if t0 is not None:
        complete(f"{type(optimizer).__name__}.step", "compute", t0, time.perf_counter())


# ---- instrumentation points (each called behind ``if timeline.ENABLED``) ----------------------
def forward_output(output: _T) -> _T:
    """``DataParallel.forward``'s result: the backward span starts when its gradient arrives."""
    from ...autograd import Tensor

    if isinstance(output, Tensor) and output.requires_grad:
        output.register_hook(_backward_started)
    return output


def _backward_started(grad: object) -> None:
    if _rec is not None and _rec.backward_t0 is None:
        _rec.backward_t0 = time.perf_counter()


def backward_started(t: float) -> None:
    """The reducer's first gradient hook (the backward span starts here unless the model's
    output gradient came earlier)."""
    if _rec is not None and _rec.backward_t0 is None:
        _rec.backward_t0 = t


def bucket_ready(bucket: object) -> None:
    """A bucket's last gradient arrived."""
    if _rec is not None:
        _rec.ready[id(bucket)] = time.perf_counter()


def reducer_step(reducer: Reducer, end: float) -> None:
    """After the reducer's ``finish_backward``: the backward span (to ``end``), each bucket's
    ready/launch instants and collective span, the wait, and on a GPU the NCCL spans."""
    rec = _rec
    if rec is None:
        return
    now = time.perf_counter()
    if reducer.finish == "callback":  # data parallel: the reducer sees the whole backward
        t0 = rec.backward_t0 if rec.backward_t0 is not None else reducer._t_start
        rec.backward_t0 = None
        complete("backward", "compute", t0, end, {"owner": reducer.owner})
    total = len(reducer.buckets)
    # data parallel: "allreduce bucket i"; a sharded unit's reducer: "reduce_scatter <unit>"
    where = "" if reducer.finish == "callback" else f" {reducer.owner}"
    for i, bucket in enumerate(reducer.buckets):
        args: dict[str, Any] = {
            "bucket": i,
            "of": total,
            "bytes": int(bucket.nbytes),
            "params": len(bucket.params),
        }
        args["owner"] = reducer.owner
        ready = rec.ready.pop(id(bucket), None)
        if ready is not None:
            instant(f"bucket {i}{where} ready", "compute", ready, args)
        if bucket.launched_at is None:
            continue
        instant(f"bucket {i}{where} launch", "compute", bucket.launched_at, args)
        done = bucket.done_at if bucket.done_at is not None else now
        complete(f"{bucket.kind} bucket {i}{where}", "comm", bucket.launched_at, done, args)
    if reducer.finish == "callback":
        complete("wait", "compute", end, now, {"owner": reducer.owner})
    gpu = getattr(reducer, "_timeline", None)
    if gpu is not None and gpu.done:
        _gpu_spans(reducer, gpu)


def _gpu_spans(reducer: Reducer, gpu: OverlapTimeline) -> None:
    """The reductions on the GPU clock: CUDA events recorded before each launch (compute
    stream) and after it (communicator stream), placed on the host clock at backward's start."""
    launched = [(i, b) for i, b in enumerate(reducer.buckets) if b.launched_at is not None]
    base = reducer._t_start
    for (i, bucket), ready, done in zip(launched, gpu.ready, gpu.done):
        done.synchronize()
        a = gpu.cp.cuda.get_elapsed_time(gpu.t0, ready) / 1000.0
        b = gpu.cp.cuda.get_elapsed_time(gpu.t0, done) / 1000.0
        args = {"bucket": i, "bytes": int(bucket.nbytes), "clock": "gpu"}
        complete(f"nccl {bucket.kind} bucket {i}", "gpu comm", base + a, base + b, args)


def unit_event(kind: str, unit: str, phase: str) -> None:
    """A ``fully_shard`` unit's event (``_unit.Unit.log``): all-gathers become spans from
    issue to done (the unit's reduce-scatters come from its reducer, ``reducer_step``)."""
    rec = _rec
    if rec is None:
        return
    now = time.perf_counter()
    if kind == "allgather_issue":
        rec.gathers[(unit, phase)] = now
    elif kind == "allgather_done":
        t0 = rec.gathers.pop((unit, phase), now)
        complete(f"all-gather {unit or 'root'}", "comm", t0, now, {"unit": unit, "phase": phase})


# ---- the overlap chart ------------------------------------------------------------------------
def draw_overlap(
    merged: str | os.PathLike[str], png: str | os.PathLike[str], steps: int | None = 3
) -> Path | None:
    """Draw the merged trace ``merged`` as a small PNG: per rank one row of compute spans
    (forward, backward, wait, optimizer step) and one of communication spans, over the last
    ``steps`` backwards (None: everything), from the forward before the first of them. Needs
    matplotlib; without it logs why and returns None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("timeline: matplotlib is not installed, so %s is not drawn", png)
        return None
    events = json.loads(Path(merged).read_text())["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    ranks = sorted({e["pid"] for e in spans})
    if not ranks:
        logger.info("timeline: %s holds no spans, so %s is not drawn", merged, png)
        return None
    begin = _window_start(spans, steps)
    spans = [e for e in spans if e["ts"] + e["dur"] >= begin]
    colours = {"forward": "tab:blue", "backward": "tab:green", "wait": "tab:red"}
    fig, ax = plt.subplots(figsize=(10, 0.9 + 0.8 * len(ranks)), dpi=100)
    labels: list[str] = []
    ticks: list[int] = []
    for rank, stream in ((r, s) for r in ranks for s in STREAMS):
        mine = [e for e in spans if e["pid"] == rank and e.get("cat") == stream]
        if not mine and stream == "gpu comm":
            continue
        y = len(ticks)
        ticks.append(y)
        labels.append(f"rank {rank} {stream}")
        for e in mine:
            start_ms, width_ms = e["ts"] / 1e3, e["dur"] / 1e3
            colour = colours.get(e["name"], "tab:orange" if stream != "compute" else "tab:purple")
            ax.broken_barh([(start_ms, max(width_ms, 1e-3))], (y - 0.4, 0.8), color=colour)
    ax.set_yticks(ticks, labels)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.set_title(
        "distgrad timeline: forward (blue), backward (green), wait (red), step (purple); comm"
    )
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def _window_start(spans: list, steps: int | None) -> float:
    """Where the chart of the last ``steps`` backwards starts (the earliest time if fewer)."""
    first_rank = min(e["pid"] for e in spans)
    backward = sorted(e["ts"] for e in spans if e["name"] == "backward" and e["pid"] == first_rank)
    if steps is None or len(backward) <= steps:
        return min(e["ts"] for e in spans)
    first = backward[-steps]
    before = [e["ts"] for e in spans if e["name"] == "forward" and e["ts"] <= first]
    before = [t for t in before if t >= backward[-steps - 1]]  # this step's forward(s) only
    return max(before) if before else first


# ---- DISTGRAD_TIMELINE ----------------------------------------------------------------------
def _at_exit() -> None:
    from .. import process_group

    if ENABLED and _rec is not None and not _rec.events and not process_group.is_initialized():
        # a process that imported distgrad but took no part (distgrad-run's supervisor, a
        # script that starts mpiexec): writing would replace rank 0's file with an empty one
        stop_quietly()
        return
    if ENABLED:
        try:
            stop()
        except Exception:  # the process is ending: report, do not mask its exit status
            logger.exception("timeline: could not write the timeline")


def stop_quietly() -> None:
    """Stop recording without writing anything."""
    global ENABLED, _rec
    if _rec is not None:
        for handle in _rec.handles:
            handle.remove()
    ENABLED, _rec = False, None


def _start_from_environment() -> None:
    directory = os.environ.get("DISTGRAD_TIMELINE")
    if directory and not ENABLED:
        start(directory)
        atexit.register(_at_exit)


def main(argv: list[str] | None = None) -> int:
    """``python -m distgrad.distributed.timeline DIR``: merge DIR's rank files, draw the
    chart, print the paths."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m distgrad.distributed.timeline DIR", file=sys.stderr)
        return 2
    merged = merge(argv[0])
    chart = draw_overlap(merged, Path(argv[0]) / CHART_NAME)
    print(merged)
    if chart is not None:
        print(chart)
    return 0


_start_from_environment()
