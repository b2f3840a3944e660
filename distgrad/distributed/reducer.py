"""The gradient reducer shared by ``DistributedDataParallel`` and the sharded modes (ZeRO-2/3).

Gradients are grouped into buckets, each one flat buffer. A parameter's post-accumulate-grad
hook writes its gradient, already divided by the world size, into its place in the bucket
(``fill``). The moment a bucket is complete and every earlier bucket has been launched, its
non-blocking collective starts while backward goes on; later hooks test the requests in flight,
which drives MPI's progress. At the end of backward what is left is launched and waited for,
and the results are written back (``write_back``). Two kinds of bucket, one mechanism:

- ``AllreduceBucket`` (data parallel): the parameters' gradients side by side, plus one 'used'
  flag each; allreduced; afterwards each ``param.grad`` is a view of its slot
  (``gradient_as_bucket_view``). The flags count the ranks that produced a gradient, so a
  parameter no rank used keeps its ``.grad`` as it was.
- ``ShardBucket`` (sharded data parallel): rank-major, block r holding rows
  ``[r*c, (r+1)*c)`` of every parameter (c = ceil(rows / world size), dim 0, zero-padded);
  reduce-scattered, so rank r receives the summed rows it owns: exactly the layout of the
  parameter shards (``ShardLayout``). ``write_back`` hands the result to a callback (the owner
  of the shards). Unused parameters contribute zeros; ``accumulate=True`` (no_sync) adds the
  gradients of successive backwards into the buffer instead of reducing them.

Parameters the graph does not reach are found at the first hook (``graph.will_execute``) and
marked ready at once, so they never hold a bucket back.

A communication hook (``register_comm_hook``, allreduce buckets only) replaces the launch: the
bucket's gradients, not divided by the world size, go to ``hook(state, GradBucket)`` the moment
the bucket is launchable; its future's value is written back (``grad_bucket.py``). The 'used'
flags of all buckets then travel in one allreduce of their own, issued after the last bucket.
Without a hook, allreduce buckets go through ``allreduce_via`` (the communicator, or the
hierarchical allreduce of ``hierarchical.py``). Whenever a bucket plan is made the ranks
check that they agree on it and on the number of collectives issued (``contract.py``).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..autograd import Tensor, graph
from ..autograd.engine import set_grad_writer
from ..futures import Future
from . import timeline
from .communicator import Array, Communicator, ReduceOp, Work, started
from .contract import check_agreement
from .grad_bucket import GradBucket, HookWork
from .nccl import OverlapTimeline
from .traffic import Tally

__all__ = ["Reducer", "StepStats", "AllreduceBucket", "ShardBucket", "ShardLayout", "WorkList"]

_MB = 1024 * 1024


@dataclass
class StepStats:
    """What the last synchronised backward did (``DataParallel.last_step_stats``).

    ``launched_in_backward``: buckets whose collective started from a gradient hook, i.e. before
    backward had run its last node; ``completed_in_backward``: those that had also finished by
    then. ``communication_s`` runs from the first launch to the last completion, of which
    ``overlap_s`` lay before the end of backward; ``wait_s`` is the time spent after backward
    waiting for the reductions and writing the gradients back. For GPU buckets reduced on a
    communicator stream (NCCL) the two spans are read from the GPU clock (CUDA events): from
    the first bucket's gradients being ready on the compute stream to the last reduction's
    end, and the part of it before backward's last kernel finished.

    ``sent_bytes``: every collective this rank issued during the step (hooks' included), in
    ``traffic.py``'s accounting (an allreduce of n bytes counts 2n, a reduce-scatter its
    input, an all-gather its output); ``sent_bytes_by_group``: the same by communicator label
    (the levels of a hierarchical allreduce). ``compression_error``: the relative error that a
    built-in compressing hook introduced into this rank's gradients, ``sqrt(sum |x - D(C(x))|^2
    / sum |x|^2)`` over the buckets (0.0 without a hook or with ``allreduce_hook``; None when the
    registered hook does not report one)."""

    buckets: int
    bytes: int
    launched_in_backward: int
    completed_in_backward: int
    backward_s: float
    communication_s: float
    overlap_s: float
    wait_s: float
    sent_bytes: int = 0
    sent_bytes_by_group: dict | None = None
    compression_error: float | None = 0.0

    @property
    def overlap_share(self) -> float:
        """Share of the communication time that ran before backward ended."""
        return self.overlap_s / self.communication_s if self.communication_s > 0 else 0.0


class _Allreducer(Protocol):
    """What allreduces a bucket: a communicator, or ``HierarchicalAllreduce``; returns a
    handle with ``is_completed()`` and ``wait()``."""

    def allreduce(self, array: Array, op: ReduceOp = ..., async_op: bool = ...) -> Any: ...


def _on_device(array: Any) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext() if isinstance(array, np.ndarray) else array.device


class _BucketBase:
    """What both kinds of bucket share: parameters, names, per-backward readiness."""

    def __init__(self, params: list, names: list):
        self.params, self.names = params, names
        self.xp = params[0].device.xp
        self.work = self.launched_at = self.done_at = None

    def reset(self) -> None:
        """Forget the previous backward."""
        self.pending = len(self.params)
        self.ready = [False] * len(self.params)
        self.work = self.launched_at = self.done_at = None


class AllreduceBucket(_BucketBase):
    """A flat gradient buffer for some parameters of one dtype, plus one 'used' flag each."""

    kind = "allreduce"

    def __init__(self, params: list, names: list):
        super().__init__(params, names)
        sizes = [p.numel() for p in params]
        total = sum(sizes)
        first = params[0].array
        with _on_device(first):
            self.flat = self.xp.zeros(total + len(params), first.dtype)
        offsets = np.cumsum([0] + sizes)
        self.views = [
            self.flat[a:b].reshape(p.shape) for a, b, p in zip(offsets[:-1], offsets[1:], params)
        ]
        self.grads = [Tensor(v) for v in self.views]  # what param.grad becomes after a step
        self.buffer = Tensor(self.flat[:total])  # what a communication hook receives
        self.flags = self.flat[total:]
        self.probe = self.flat  # an array on the bucket's device
        self.nbytes = int(self.flat.nbytes)
        self.reset()

        self.prescaled = [False] * len(params)  # written by the engine, already scaled

    def reset(self) -> None:
        """Forget the previous backward."""
        super().reset()
        # slot -> .grad of an unused parameter, restored if no rank used it
        self.saved: dict[int, Array] = {}

    def write_first(self, slot: int, scale: float | None, array: Array) -> Tensor:
        """The engine's grad writer (``gradient_as_bucket_view``): the first gradient of a
        backward goes straight into the slot, times ``scale`` (None: unscaled, no_sync)."""
        if scale is None:
            self.views[slot][...] = array
        else:
            self.xp.multiply(array, scale, out=self.views[slot])
            self.prescaled[slot] = True
        return self.grads[slot]

    def fill(self, slot: int, scale: float, used: bool) -> None:
        """Put the parameter's gradient (zeros if None), times ``scale``, into its slot."""
        param = self.params[slot]
        view, grad = self.views[slot], param.grad
        if self.prescaled[slot]:
            self.prescaled[slot] = False
        elif grad is None:
            view[...] = 0
        elif grad.array is view:
            if not used:
                self.saved[slot] = view.copy()
            view *= scale
        else:
            self.xp.multiply(grad.array, scale, out=view)
            if used:  # free the engine's array now, for the rest of backward to reuse
                param.grad = self.grads[slot]
        self.flags[slot] = used

    def launch(self, comm: _Allreducer) -> Any:
        """Start the allreduce of the bucket (returns the Work, or a hierarchical handle)."""
        return comm.allreduce(self.flat, ReduceOp.SUM)

    def write_back(self) -> None:
        """Point each used parameter's ``.grad`` at its reduced slot; a parameter no rank
        used keeps its ``.grad``."""
        flags = self.flags.tolist()  # one device-to-host copy for a GPU bucket
        for j, p in enumerate(self.params):
            if flags[j] == 0:
                if j in self.saved:
                    self.views[j][...] = self.saved[j]
                continue
            grad = self.grads[j]
            grad.bump_version()
            if p.grad is not grad:
                p.grad = grad

    def describe(self) -> tuple:
        """What must agree across ranks."""
        return (str(self.flat.dtype), _device_kind(self.flat), self.names, int(self.flat.size))


class ShardLayout:
    """How parameters of one dtype are cut into ``world`` shards on dim 0 and laid out in a
    flat rank-major buffer: parameter i owns ``rows_i = ceil(dim0 / world)`` rows (zero-padded)
    of each rank's block, at ``offsets[i]`` within the block (0-d parameters count as one row)."""

    def __init__(self, shapes: list, world: int):
        self.world = world
        self.shapes = [tuple(s) for s in shapes]
        self.dim0 = [s[0] if s else 1 for s in self.shapes]
        self.inner = [int(np.prod(s[1:])) if len(s) > 1 else 1 for s in self.shapes]
        self.rows = [-(-d // world) for d in self.dim0]
        sizes = [r * n for r, n in zip(self.rows, self.inner)]
        self.offsets = [int(x) for x in np.cumsum([0] + sizes)]
        self.block = self.offsets[-1]  # elements per rank
        # the gathered unit, parameter-major: parameter i's padded rows (world * rows_i, inner_i)
        # at full_offsets[i], so each parameter is a contiguous view (``full_view``)
        self.full_offsets = [world * x for x in self.offsets]

    def shard_shape(self, i: int) -> tuple:
        """Shape of parameter i's (padded) local shard."""
        return (self.rows[i], *self.shapes[i][1:]) if self.shapes[i] else (1,)

    def owned_rows(self, i: int, rank: int) -> tuple:
        """The rows ``[start, stop)`` of parameter i that ``rank`` owns (stop - start may be
        less than ``rows[i]``, even 0)."""
        start = min(rank * self.rows[i], self.dim0[i])
        return start, min(start + self.rows[i], self.dim0[i])

    def block_view(self, block: Array, i: int) -> Array:
        """Parameter i's shard inside one rank's flat ``block`` (shape ``shard_shape(i)``)."""
        return block[self.offsets[i] : self.offsets[i + 1]].reshape(self.shard_shape(i))

    def full_view(self, flat: Array, i: int) -> Array:
        """Parameter i, whole (its shape), as a view into the parameter-major gathered ``flat``
        (``world * block`` elements; see ``gather_pieces``)."""
        start = self.full_offsets[i]
        return flat[start : start + self.dim0[i] * self.inner[i]].reshape(self.shapes[i])

    def gather_pieces(self, shard_block: Array, flat: Array) -> list:
        """``(send, recv)`` per parameter for gathering into the parameter-major ``flat``: an
        all-gather of parameter i's rows of this rank's ``shard_block`` into its padded rows of
        ``flat`` puts rank r's rows at r * rows_i (MPI's rank order): the whole parameter."""
        return [
            (shard_block[a:b], flat[self.full_offsets[i] : self.full_offsets[i + 1]])
            for i, (a, b) in enumerate(zip(self.offsets[:-1], self.offsets[1:]))
        ]

    def zero_padding(self, out2d: Array) -> None:
        """Zero the padding rows (beyond each parameter's dim 0) of the rank-major ``out2d``
        (world, block)."""
        for i in range(len(self.shapes)):
            rows, inner, d = self.rows[i], self.inner[i], self.dim0[i]
            if d == rows * self.world:
                continue
            dest = out2d[:, self.offsets[i] : self.offsets[i + 1]].reshape(self.world, rows, inner)
            k = d // rows
            if k < self.world:
                dest[k, d - k * rows :] = 0
                dest[k + 1 :] = 0

    def scatter_into(
        self,
        xp: Any,
        full_rows: Array | None,
        i: int,
        out2d: Array,
        scale: float | None = None,
        add: bool = False,
    ) -> None:
        """Write parameter i's full array (``full_rows``: shape (dim0, inner), or None for
        zeros) into its columns of the rank-major ``out2d`` (world, block), times ``scale``;
        padding rows are left as they are (zero)."""
        rows, inner, d = self.rows[i], self.inner[i], self.dim0[i]
        dest = out2d[:, self.offsets[i] : self.offsets[i + 1]].reshape(self.world, rows, inner)
        if full_rows is None:
            if not add:
                dest[...] = 0
            return
        k = d // rows
        parts = [(dest[:k], full_rows[: k * rows].reshape(k, rows, inner))]
        if k < self.world and d > k * rows:
            parts.append((dest[k, : d - k * rows], full_rows[k * rows :]))
        for target, source in parts:
            if add:
                target += source * scale if scale is not None else source
            elif scale is not None:
                xp.multiply(source, scale, out=target)
            else:
                target[...] = source

    def gather_from(self, full2d: Array, i: int, out: Array) -> None:
        """Copy parameter i's rows out of the rank-major ``full2d`` (world, block) into the
        contiguous ``out`` (its full shape)."""
        rows, inner, d = self.rows[i], self.inner[i], self.dim0[i]
        source = full2d[:, self.offsets[i] : self.offsets[i + 1]].reshape(self.world, rows, inner)
        flat = out.reshape(d, inner)
        k = d // rows
        flat[: k * rows].reshape(k, rows, inner)[...] = source[:k]
        if k < self.world and d > k * rows:
            flat[k * rows :] = source[k, : d - k * rows]


class ShardBucket(_BucketBase):
    """Gradients of parameters of one dtype, reduce-scattered into this rank's shard block;
    ``on_reduced(block)`` receives the reduced block (a new array each time, which the owner may
    keep). The send buffers live only from the first gradient of a backward to the end of the
    reduction (or across ``no_sync`` backwards, which accumulate into them).

    Rank-major (default): one buffer (world, block), one reduce-scatter. ``per_parameter``
    (``fully_shard``'s units): one reduce-scatter per parameter, each from the parameter's own
    padded gradient (world * rows, inner) into its rows of the block; a gradient (float32 or
    wider) whose rows divide by the world size is itself that buffer, read and never written
    (its rows are divided by the world size after the sum), so a unit's gradients are reduced
    without a copy. Changing such a gradient in place from another hook before its
    reduce-scatter has completed changes what is reduced."""

    kind = "reduce_scatter"

    def __init__(
        self,
        params: list,
        names: list,
        layout: ShardLayout,
        rank: int,
        on_reduced: Callable[[Array], None],
        dtype: Any = None,
        per_parameter: bool = False,
    ) -> None:
        super().__init__(params, names)
        self.layout, self.rank, self.on_reduced = layout, rank, on_reduced
        first = params[0].array
        self.dtype = first.dtype if dtype is None else np.dtype(dtype)
        self._device = self.probe = first
        self.send: Array | None = None
        self.recv: Array | None = None
        self.per_parameter = per_parameter
        self.sends: list[Array | None] = [None] * len(
            params
        )  # per_parameter: each parameter's padded gradient
        self.deferred = [False] * len(params)  # its send holds the gradient not yet scaled
        self.borrowed = [False] * len(params)  # its send is the gradient's own array
        self.nbytes = layout.world * layout.block * self.dtype.itemsize
        self.accumulated = False  # no_sync backwards have added into the send buffers
        self.pre_scale, self.post_scale = 1.0 / layout.world, None
        self.written = False
        self.reset()

    @property
    def flat(self) -> Array:
        """The rank-major send buffer (allocated when needed)."""
        send = self.send
        if send is None:
            with _on_device(self._device):
                send = self.xp.empty((self.layout.world, self.layout.block), self.dtype)
            self.layout.zero_padding(send)  # every real row is written before launch
            self.send = send
        return send

    def reset(self) -> None:
        """Forget the previous backward."""
        super().reset()
        self.written = False

    def fill(self, slot: int, scale: float, used: bool) -> None:
        """Write (or, after no_sync backwards, add) the parameter's gradient, times
        ``pre_scale``, into its send rows and free the full gradient."""
        param = self.params[slot]
        grad = param.grad if used else None
        add = self.ready[slot] or self.accumulated  # a second contribution, or accumulating
        if self.per_parameter:
            self._fill_own(slot, grad, add)
            param.grad = None
            return
        rows = None
        if grad is not None:
            rows = grad.array.reshape(self.layout.dim0[slot], self.layout.inner[slot])
            if rows.dtype != self.dtype:
                rows = rows.astype(self.dtype)
        if rows is not None or not add:
            self.layout.scatter_into(self.xp, rows, slot, self.flat, self.pre_scale, add)
        param.grad = None

    def _fill_own(self, slot: int, grad: Any, add: bool) -> None:
        layout, scale = self.layout, self.pre_scale
        size = layout.world * layout.rows[slot] * layout.inner[slot]
        real = layout.dim0[slot] * layout.inner[slot]
        send = self.sends[slot]
        if grad is None:
            if send is None:
                with _on_device(self._device):
                    self.sends[slot] = self.xp.zeros(size, self.dtype)
                self.deferred[slot] = self.borrowed[slot] = False
            return
        array = grad.array
        if array.dtype != self.dtype:
            array = array.astype(self.dtype)
        if add and send is not None:
            if self.borrowed[slot]:  # never written: whoever else holds it sees it unchanged
                send = self.sends[slot] = send.copy()
                self.borrowed[slot] = False
            send[:real] += array.reshape(-1) if self.deferred[slot] else array.reshape(-1) * scale
            return
        # the gradient array itself is the reduce-scatter's input when its rows divide by the
        # world size: read, never written (its scale is applied to the reduced rows instead;
        # float16/bfloat16 keep dividing before the sum, so that sums do not overflow)
        if (
            real == size
            and array.dtype.itemsize >= 4
            and array.flags.c_contiguous
            and getattr(array, "base", None) is None
        ):
            self.sends[slot] = array.reshape(-1)
            self.deferred[slot] = self.borrowed[slot] = True
            return
        with _on_device(self._device):
            send = self.xp.empty(size, self.dtype)
        self.xp.multiply(array.reshape(-1), scale, out=send[:real])
        send[real:] = 0
        self.sends[slot] = send
        self.deferred[slot] = self.borrowed[slot] = False

    def launch(self, comm: Communicator) -> Work | WorkList:
        """Start the reduce-scatter into a new receive buffer (returns the Work)."""
        with _on_device(self._device):
            recv = self.recv = self.xp.empty(self.layout.block, self.dtype)
        if not self.per_parameter:
            return started(comm.reduce_scatter(self.flat.reshape(-1), recv, ReduceOp.SUM))
        offsets = self.layout.offsets
        works = []
        for i, send in enumerate(self.sends):
            if send is None:
                raise RuntimeError(
                    f"ShardBucket.launch: the gradient of {self.names[i]!r} was never written "
                    "(every slot is filled before the bucket launches)"
                )
            part = recv[offsets[i] : offsets[i + 1]]
            works.append(started(comm.reduce_scatter(send, part, ReduceOp.SUM)))
        return WorkList(works)

    def write_back(self) -> None:
        """Hand the reduced block to ``on_reduced`` and free the buffers."""
        recv, self.recv, self.send = self.recv, None, None
        if recv is None:
            raise RuntimeError("ShardBucket.write_back() before launch(): nothing was reduced")
        offsets = self.layout.offsets
        for i, deferred in enumerate(self.deferred):
            if deferred:  # reduced unscaled (the gradient array itself was sent)
                recv[offsets[i] : offsets[i + 1]] *= self.pre_scale
        self.sends = [None] * len(self.params)
        self.deferred = [False] * len(self.params)
        self.borrowed = [False] * len(self.params)
        if self.post_scale is not None:
            recv *= self.post_scale
        self.on_reduced(recv)
        self.accumulated = False
        self.written = True

    def describe(self) -> tuple:
        """What must agree across ranks."""
        return (str(self.dtype), _device_kind(self._device), self.names, int(self.nbytes))


class WorkList:
    """Several collectives in flight as one (the per-parameter collectives of a unit):
    completed when all are; ``seq`` is the last one's."""

    def __init__(self, works: list):
        self.works = works
        self.seq = works[-1].seq if works else -1

    def is_completed(self) -> bool:
        """Whether every collective has finished (never blocks)."""
        return all(work.is_completed() for work in self.works)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every collective has completed."""
        for work in self.works:
            work.wait(timeout)
        return True


def _device_kind(array: Any) -> str:
    return type(array).__module__.split(".")[0]


class Reducer:
    """Buckets of gradients reduced during backward (see the module docstring).

    ``named``: ``(name, parameter)`` pairs in backward order; ``make_buckets(named)`` returns the
    buckets (``cut_buckets`` for data parallel). ``comm``: the communicator. ``owner`` names the
    user in error messages. ``finish``: ``"callback"`` queues the end of backward on the
    current backward at the first hook (data parallel); ``"external"`` leaves it to the owner
    (``finish_backward()``), which knows the outermost backward (sharded units that recompute).
    ``contract``: more that every rank must agree on (e.g. the model's names and shapes).
    """

    def __init__(
        self,
        named: list,
        comm: Communicator,
        make_buckets: Callable[..., list],
        *,
        owner: str = "DataParallel",
        finish: str = "callback",
        contract: dict | None = None,
    ) -> None:
        self.comm, self.owner, self.finish = comm, owner, finish
        self.scale = 1.0 / comm.world_size
        self.require_sync = True
        self.active = False
        self.last_step_stats: StepStats | None = None
        self.buckets: list = []
        self._make_buckets = make_buckets
        self.named = named
        self._handles: list = []
        self.comm_hook: tuple[Any, Callable[..., Future]] | None = None
        self.allreduce_via: _Allreducer = comm  # what allreduces the buckets without a hook
        self.synced_steps = 0
        self._tally: Tally | None = None
        self._flags_work: Work | None = None
        self.plan(make_buckets(named), contract)

    def register_comm_hook(self, state: Any, hook: Callable[..., Future]) -> None:
        """Reduce allreduce buckets with ``hook(state, GradBucket) -> Future`` from now on
        (buckets then hold undivided gradients)."""
        self.comm_hook = (state, hook)
        self.scale = 1.0

    # ---- the bucket plan -------------------------------------------------------------------
    def plan(self, buckets: list, contract: dict | None = None) -> None:
        """Use ``buckets``, after checking that every rank agrees on them, on ``contract`` and
        on the number of collectives issued (else raise ``CollectiveMismatchError`` on every
        rank, naming the differences)."""
        description = dict(contract or {})
        description["buckets"] = [b.describe() for b in buckets]
        description["collectives"] = self.comm.seq
        check_agreement(self.comm, description, functools.partial(_explain, self.owner))
        self.buckets = buckets
        self.slots = {id(p): (bucket, j) for bucket in buckets for j, p in enumerate(bucket.params)}

    def reorder(self, order: list) -> None:
        """Launch buckets in ``order`` (indices into the current list; the same on every rank)."""
        self.buckets = [self.buckets[i] for i in order]

    def attach(self) -> None:
        """Register the post-accumulate-grad hook of every parameter of the buckets, and for
        allreduce buckets the engine's grad writer (gradients straight into the bucket)."""
        for bucket in self.buckets:
            for j, p in enumerate(bucket.params):
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_ready))
                if bucket.kind == "allreduce":
                    set_grad_writer(p, functools.partial(self._write_first, bucket, j))
        self._attached = [p for b in self.buckets for p in b.params]

    def detach(self) -> None:
        """Remove the hooks and grad writers."""
        for handle in self._handles:
            handle.remove()
        for p in getattr(self, "_attached", ()):
            set_grad_writer(p, None)
        self._handles, self._attached = [], []

    def _write_first(self, bucket: AllreduceBucket, slot: int, array: Array) -> Tensor:
        return bucket.write_first(slot, self.scale if self.require_sync else None, array)

    # ---- during backward -------------------------------------------------------------------
    def _on_ready(self, param: Tensor) -> None:
        bucket, slot = self.slots[id(param)]
        if bucket.kind == "allreduce" and not self.require_sync:
            return
        if not self.active:
            self.start_backward()
        self.mark_ready(bucket, slot, used=True)
        self.progress()

    def start_backward(self, unreached: bool = True) -> None:
        """Begin a backward: reset the buckets; ``unreached``: mark the parameters this
        backward will not reach ready at once."""
        self.active = True
        self._t_start = time.perf_counter()
        if timeline.ENABLED:
            timeline.backward_started(self._t_start)
        self._next = 0
        self._timeline = (
            OverlapTimeline.start(self.comm, self.buckets[0].probe) if self.buckets else None
        )
        if self._tally is not None:
            self._tally.close()
        self._tally = Tally().open()
        self._flags_work = None
        for bucket in self.buckets:
            bucket.reset()
        if self.finish == "callback":
            graph.queue_callback(self.finish_backward)
        if unreached:
            for bucket in self.buckets:
                for j, p in enumerate(bucket.params):
                    if not graph.will_execute(graph.get_gradient_edge(p)[0]):
                        self.mark_ready(bucket, j, used=False)

    def mark_ready(self, bucket: Any, slot: int, used: bool) -> None:
        """Put the parameter's gradient (zeros if None), divided by the world size, into its
        slot; launch what became launchable. Marking a ready slot again adds to it (sharded
        buckets only)."""
        bucket.fill(slot, self.scale, used)
        if bucket.ready[slot]:
            return
        bucket.ready[slot] = True
        bucket.pending -= 1
        if bucket.pending == 0:
            if timeline.ENABLED:
                timeline.bucket_ready(bucket)
            self._launch_ready()

    def complete(self, bucket: Any) -> None:
        """Mark the parameters of ``bucket`` that got no gradient as unused (zeros)."""
        for j in range(len(bucket.params)):
            if not bucket.ready[j]:
                self.mark_ready(bucket, j, used=False)

    def _launch_ready(self) -> None:
        """Launch buckets in order, as long as the next one is complete."""
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            bucket = self.buckets[self._next]
            if bucket.kind == "reduce_scatter" and not self.require_sync:
                bucket.accumulated = True  # no_sync: keep the sum for the next backward
                self._next += 1
                continue
            if self._timeline is not None:
                self._timeline.before_launch()
            bucket.work = self._launch(bucket)
            bucket.launched_at = time.perf_counter()
            if self._timeline is not None:
                self._timeline.after_launch()
            if self.on_launch is not None:
                self.on_launch(bucket)
            self._next += 1
        if self.comm_hook is not None and self._next == len(self.buckets):
            self._launch_flags()

    def _launch(self, bucket: Any) -> Any:
        """Start reducing ``bucket``: its collective, or the communication hook."""
        if bucket.kind != "allreduce":
            return bucket.launch(self.comm)
        if self.comm_hook is None:
            return bucket.launch(self.allreduce_via)
        state, hook = self.comm_hook
        grad_bucket = GradBucket(
            self._next, len(self.buckets), bucket.buffer, bucket.grads, bucket.params
        )
        grad_bucket._allreduce = self._allreduce_future
        grad_bucket._world_size = self.comm.world_size
        bucket.grad_bucket = grad_bucket
        name = getattr(hook, "__qualname__", repr(hook))
        future = hook(state, grad_bucket)
        if not isinstance(future, Future):
            raise TypeError(
                f"DistributedDataParallel: the communication hook {name} must return a "
                f"distgrad.futures.Future, got {type(future).__name__}"
            )
        return HookWork(future, grad_bucket, name)

    def _allreduce_future(self, tensor: Tensor) -> Future:
        """Sum ``tensor`` over the ranks with ``allreduce_via`` (in place): a Future of
        ``[tensor]`` (what built-in hooks use for the DDP's own group)."""
        work = self.allreduce_via.allreduce(tensor.array, ReduceOp.SUM)

        def value() -> list[Tensor]:
            tensor.bump_version()
            return [tensor]

        return Future._pending(work.is_completed, work.wait, value)

    def _launch_flags(self) -> None:
        """With a hook: allreduce every bucket's 'used' flags at once (after the last bucket)."""
        if self._flags_work is not None or not self.buckets:
            return
        xp = self.buckets[0].xp
        with _on_device(self.buckets[0].probe):
            self._flags = xp.concatenate([b.flags.astype(xp.float32) for b in self.buckets])
        self._flags_work = self.comm.allreduce(self._flags, ReduceOp.SUM)

    def _take_hook_result(self, bucket: Any) -> None:
        """Copy the hook's reduced tensor into the bucket, and the reduced flags."""
        result = bucket.work.value()
        target = bucket.buffer.array
        if result.array is not target:
            target[...] = result.array.reshape(target.shape)
        if self._flags_work is not None:
            self._flags_work.wait()
            start = 0
            for b in self.buckets:  # this bucket's flags within the concatenated ones
                if b is bucket:
                    b.flags[...] = self._flags[start : start + b.flags.size]
                    break
                start += b.flags.size

    on_launch = None  # callback(bucket) after each launch (the sharded event log)

    def progress(self) -> None:
        """Test the reductions in flight (MPI progresses only inside MPI calls)."""
        for bucket in self.buckets[: self._next]:
            if bucket.work is not None and bucket.done_at is None:
                if not bucket.work.is_completed():
                    return
                bucket.done_at = time.perf_counter()

    def finish_backward(self) -> None:
        """Launch what is left, wait, write the results back and record ``last_step_stats``."""
        if not self.active:
            return
        end = time.perf_counter()
        if self._timeline is not None:
            self._timeline.backward_ended()
        launched_early = sum(b.launched_at is not None for b in self.buckets)
        completed_early = sum(b.done_at is not None for b in self.buckets)
        for bucket in self.buckets:  # reached by the graph, but no gradient arrived
            self.complete(bucket)
        for bucket in self.buckets:
            self.settle(bucket)
        self.active = False
        tally, self._tally = self._tally, None
        if tally is not None:
            tally.close()
        if timeline.ENABLED:
            timeline.reducer_step(self, end)
        launched = [b for b in self.buckets if b.launched_at is not None]
        if not launched:
            return
        self.synced_steps += 1
        done = time.perf_counter()
        first = min(b.launched_at for b in launched)
        last = max(b.done_at for b in launched)
        communication, overlap = last - first, max(0.0, min(end, last) - first)
        if self._timeline is not None:  # GPU: measured on the GPU clock instead
            communication, overlap = self._timeline.spans()
        self.last_step_stats = StepStats(
            len(launched),
            sum(b.nbytes for b in launched),
            launched_early,
            completed_early,
            end - self._t_start,
            communication,
            overlap,
            done - end,
            tally.total_bytes if tally is not None else 0,
            dict(tally.by_label) if tally is not None else {},
            self._compression_error(launched),
        )

    def _compression_error(self, launched: list) -> float | None:
        """sqrt(sum |error|^2 / sum |input|^2) over the buckets' hook reports (StepStats)."""
        if self.comm_hook is None:
            return 0.0
        buckets = [getattr(b, "grad_bucket", None) for b in launched]
        reports = [g._error for g in buckets if g is not None and g._error is not None]
        if not reports:
            return None
        error, total = (sum(r[i] for r in reports) for i in range(2))
        return float((error / total) ** 0.5) if total > 0 else 0.0

    def settle(self, bucket: Any) -> None:
        """Wait for ``bucket``'s reduction (if launched) and write its result back, once."""
        if bucket.work is None or getattr(bucket, "written", False):
            return  # not launched (no_sync), or already written back
        if bucket.done_at is None:
            bucket.work.wait()
            bucket.done_at = time.perf_counter()
        if isinstance(bucket.work, HookWork):
            self._take_hook_result(bucket)
        bucket.write_back()
        if bucket.kind == "reduce_scatter":
            bucket.work = None  # the Work holds the (freed) send buffer

    def watchdog_state(self) -> tuple[str, dict, dict]:
        """The buckets, for the hang watchdog: ``(name, state, {seq: label})``."""
        buckets, labels = [], {}
        for i, b in enumerate(self.buckets):
            work = b.work
            label = (
                f"{self.owner} bucket {i} of {len(self.buckets)} ({b.kind}): {len(b.params)} "
                f"parameter(s) {b.names[0]!r}..{b.names[-1]!r}, {b.nbytes} bytes"
            )
            if not self.active:
                state = "idle"
            elif work is None:
                state = f"collecting gradients ({len(b.params) - b.pending} of {len(b.params)})"
            else:
                what = f"collective #{work.seq}" if work.seq >= 0 else "communication hook"
                state = f"{what} " + ("completed" if b.done_at is not None else "in flight")
                labels[work.seq] = label
            buckets.append({"bucket": i, "label": label, "state": state})
        return self.owner, {"in_backward": self.active, "buckets": buckets}, labels


def cut_buckets(
    named: list[tuple[str, Tensor]], bucket_cap_mb: float, first_bucket_mb: float
) -> list:
    """Cut ``named`` (in backward order) into allreduce buckets per dtype and device: the
    first holds up to ``first_bucket_mb``, later ones up to ``bucket_cap_mb``. A bucket closes
    once it reaches its cap (PyTorch's rule), so a tiny cap gives one parameter each."""
    Key = tuple[np.dtype, str]
    closed: list[tuple[list[Tensor], list[str]]] = []
    open_: dict[Key, tuple[list[Tensor], list[str]]] = {}
    sizes: dict[Key, int] = {}
    count: dict[Key, int] = {}
    for name, p in named:
        key = (p.array.dtype, str(p.device))
        params, names = open_.setdefault(key, ([], []))
        params.append(p)
        names.append(name)
        sizes[key] = sizes.get(key, 0) + p.array.nbytes
        cap = bucket_cap_mb if count.get(key) else first_bucket_mb
        if sizes[key] >= cap * _MB:
            closed.append(open_.pop(key))
            sizes[key], count[key] = 0, count.get(key, 0) + 1
    return [AllreduceBucket(params, names) for params, names in closed + list(open_.values())]


def _explain(owner: str, every: list) -> str:
    """The message naming how each rank's contract differs from rank 0's."""
    ref = every[0]
    problems = []
    for kind in ("parameter", "buffer"):
        if kind + "s" not in ref:
            continue
        for r in range(1, len(every)):
            problems += _differences(kind, ref[kind + "s"], every[r][kind + "s"], r)
    if problems:
        return f"{owner}: the ranks do not hold the same model:\n  " + "\n  ".join(problems[:10])
    for r in range(1, len(every)):
        buckets = every[r]["buckets"]
        if buckets != ref["buckets"]:
            i = next(
                (i for i, (a, b) in enumerate(zip(ref["buckets"], buckets)) if a != b),
                min(len(buckets), len(ref["buckets"])),
            )
            mine, theirs = (
                _bucket_text(x[i]) if i < len(x) else "nothing" for x in (ref["buckets"], buckets)
            )
            problems.append(
                f"rank 0 has {len(ref['buckets'])} buckets and rank {r} has "
                f"{len(buckets)}; bucket {i} holds {mine} on rank 0 but {theirs} on "
                f"rank {r}. Pass the same bucket_cap_mb and first_bucket_mb on "
                f"every rank"
            )
        if every[r]["collectives"] != ref["collectives"]:
            problems.append(
                f"rank 0 had issued {ref['collectives']} collectives but rank {r} "
                f"had issued {every[r]['collectives']}: some collective ran on some "
                f"ranks only"
            )
    return f"{owner}: the ranks do not agree on the collective contract:\n  " + "\n  ".join(
        problems[:10] or ["(the plans differ in a way that could not be named)"]
    )


def _bucket_text(bucket: Any) -> str:
    dtype, device, names, size = bucket
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} parameter(s) [{shown}] ({size} x {dtype} on {device})"


def _differences(kind: str, ref: list, other: list, rank: int) -> list:
    """How rank ``rank``'s ``(name, shape, dtype)`` list differs from rank 0's."""
    problems = []
    if len(ref) != len(other):
        longer, where = (ref, 0) if len(ref) > len(other) else (other, rank)
        tail = longer[min(len(ref), len(other)) :][:3]
        extra = ", ".join(f"'{n}' {shape}" for n, shape, _ in tail)
        problems.append(
            f"rank 0 has {len(ref)} {kind}s but rank {rank} has {len(other)} "
            f"(rank {where} also has {extra})"
        )
    for (name, shape, dtype), (oname, oshape, odtype) in zip(ref, other):
        if name != oname:
            problems.append(f"{kind} '{name}' on rank 0 is '{oname}' on rank {rank}")
            break
        if shape != oshape or dtype != odtype:
            problems.append(
                f"{kind} '{name}' has shape {shape} ({dtype}) on rank 0 but "
                f"{oshape} ({odtype}) on rank {rank}"
            )
    return problems
