"""``DataParallel``: data-parallel training whose gradient allreduces start during backward.

Gradients are grouped into buckets, in reverse registration order of the parameters (about the
order backward produces them): a small first bucket so that communication starts early, then
buckets of ``bucket_cap_mb``. Each bucket is one flat buffer. A parameter's post-accumulate-grad
hook copies its gradient, divided by the world size, into its slot and points ``param.grad``
at that slot (the engine's array is freed at once). The moment a bucket is full and every
earlier bucket has been launched, its non-blocking allreduce starts, while backward goes on;
later hooks test the requests in flight, which drives MPI's progress. A callback at the end of
backward launches what is left, waits, and leaves each ``param.grad`` a view of the reduced
buffer, so the optimizer reads the averaged gradient without another copy.

Each bucket carries one extra element per parameter: 1 where this rank's backward produced the
parameter's gradient. After the allreduce it counts the ranks that did, so a parameter that no
rank used keeps its ``.grad`` as it was, and one used on some ranks gets the average (ranks that
did not use it contribute their current ``.grad``, zeros if None). Parameters the graph does
not reach are found from the graph at the first hook (``graph.will_execute``) and marked ready
at once, so they never hold a bucket back.

Reliability: whenever a bucket plan is made (construction, ``rebuild_buckets``) the ranks check
that they agree on it, on the model and on the number of collectives issued (``contract.py``).
``step(optimizer)`` skips, on every rank alike, a step whose gradients hold inf/NaN;
``join(batches)`` stops every rank at the shortest rank's last batch.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..autograd import Tensor, graph, is_grad_enabled
from ..backend import array_module_for
from ..nn.module import Module
from .communicator import ReduceOp
from .contract import check_agreement
from .nccl import OverlapTimeline
from .process_group import communicator_for, init

__all__ = ["DataParallel", "StepStats", "NonFiniteGradientError"]

_MB = 1024 * 1024


@dataclass
class StepStats:
    """What the last synchronised backward did (``DataParallel.last_step_stats``).

    ``launched_in_backward``: buckets whose allreduce started from a gradient hook, i.e. before
    backward had run its last node; ``completed_in_backward``: those that had also finished by
    then. ``communication_s`` runs from the first launch to the last completion, of which
    ``overlap_s`` lay before the end of backward; ``wait_s`` is the time spent after backward
    waiting for the reductions and writing the gradients back. For GPU buckets reduced on a
    communicator stream (NCCL) the two spans are read from the GPU clock (CUDA events): from
    the first bucket's gradients being ready on the compute stream to the last reduction's
    end, and the part of it before backward's last kernel finished."""

    buckets: int
    bytes: int
    launched_in_backward: int
    completed_in_backward: int
    backward_s: float
    communication_s: float
    overlap_s: float
    wait_s: float

    @property
    def overlap_share(self) -> float:
        """Share of the communication time that ran before backward ended."""
        return self.overlap_s / self.communication_s if self.communication_s > 0 else 0.0


class NonFiniteGradientError(FloatingPointError):
    """Gradients held inf/NaN for more consecutive steps than ``DataParallel`` allows."""


class _Bucket:
    """A flat gradient buffer for some parameters of one dtype, plus one 'used' flag each."""

    def __init__(self, params: list, names: list):
        self.params = params
        self.names = names
        xp = params[0].device.xp
        sizes = [p.numel() for p in params]
        total = sum(sizes)
        first = params[0]._array
        with contextlib.nullcontext() if isinstance(first, np.ndarray) else first.device:
            self.flat = xp.zeros(total + len(params), first.dtype)  # on the parameters' GPU
        offsets = np.cumsum([0] + sizes)
        self.views = [
            self.flat[a:b].reshape(p.shape) for a, b, p in zip(offsets[:-1], offsets[1:], params)
        ]
        self.grads = [Tensor(v) for v in self.views]  # what param.grad becomes after a step
        self.flags = self.flat[total:]
        self.nbytes = int(self.flat.nbytes)
        self.xp = xp
        self.reset()

    def reset(self) -> None:
        """Forget the previous backward."""
        self.pending = len(self.params)
        self.ready = [False] * len(self.params)
        self.saved = {}  # slot -> .grad of an unused parameter, restored if no rank used it
        self.work = self.launched_at = self.done_at = None


class DataParallel(Module):
    """Wrap ``module`` for data-parallel training over the ranks of ``distgrad.distributed``.

    Every rank runs the same model on its own batch; after ``loss.backward()`` every
    parameter's ``.grad`` holds the gradient averaged over ranks, so any optimizer keeps the
    replicas identical. At construction the ranks' parameters are checked to agree (names,
    shapes, dtypes) and rank 0's parameters and buffers are broadcast.

    ``bucket_cap_mb``/``first_bucket_mb`` size the gradient buckets (``rebuild_buckets``
    changes them later, all ranks together); ``broadcast_buffers``
    copies rank 0's buffers (e.g. BatchNorm statistics) to every rank at each training forward.
    ``no_sync()`` skips the reduction for gradient accumulation. ``state_dict()``,
    ``parameters()`` and friends are the wrapped module's, without a prefix. After a step,
    ``last_step_stats`` (a ``StepStats``) tells what the communication did.

    After backward, ``param.grad`` is a view of its bucket, reused by the next backward: copy
    it to keep it. Move or cast the module, and replace its parameters, before wrapping it.
    ``communicator`` defaults to the world's (``distributed.init()`` is called if needed).

    ``dp.step(optimizer)`` instead of ``optimizer.step()`` skips steps whose gradients hold
    inf/NaN on any rank (``nonfinite="skip"``), on every rank alike, and raises
    ``NonFiniteGradientError`` after more than ``max_consecutive_skips`` in a row, or at the
    first with ``nonfinite="raise"``. ``for batch in dp.join(loader)`` ends the loop on every
    rank when one has run out of batches.
    """

    def __init__(
        self,
        module: Module,
        bucket_cap_mb: float = 25,
        first_bucket_mb: float = 1,
        broadcast_buffers: bool = True,
        communicator=None,
        nonfinite: str = "skip",
        max_consecutive_skips: int = 5,
    ):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel wraps an nn.Module, got {type(module).__name__}")
        if nonfinite not in ("skip", "raise"):
            raise ValueError(
                f"DataParallel: nonfinite must be 'skip' or 'raise', got {nonfinite!r}"
            )
        if not isinstance(max_consecutive_skips, int) or max_consecutive_skips < 0:
            raise ValueError(
                f"DataParallel: max_consecutive_skips must be an int >= 0, got "
                f"{max_consecutive_skips!r}"
            )
        self.nonfinite, self.max_consecutive_skips = nonfinite, max_consecutive_skips
        self.skipped_steps = self.consecutive_skips = 0
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb, self.first_bucket_mb = bucket_cap_mb, first_bucket_mb
        comm = communicator if communicator is not None else _default_communicator(module)
        self.comm = comm
        self._scale = 1.0 / comm.world_size
        self._require_sync = True
        self._active = False
        self.last_step_stats = None
        self.buckets = []
        if comm.world_size == 1:
            return
        self._named = named = [(n, p) for n, p in module.named_parameters() if p.requires_grad][
            ::-1
        ]
        self._plan_buckets(named)
        self._sync_state(list(module.parameters()) + list(module.buffers()))
        # A module wrapped again drops the previous wrapper's hooks, which would otherwise go
        # on launching collectives into that wrapper's buckets.
        for handle in getattr(module, "_distgrad_dp_hooks", ()):
            handle.remove()
        object.__setattr__(
            module,
            "_distgrad_dp_hooks",
            [
                p.register_post_accumulate_grad_hook(functools.partial(self._on_ready, index))
                for index, (_, p) in enumerate(named)
            ],
        )
        if getattr(comm, "watchdog", None) is not None:
            comm.watchdog.add_source(self._watchdog_state)

    # ---- the bucket plan -------------------------------------------------------------------
    def _plan_buckets(self, named) -> None:
        """Cut ``named`` (parameters in backward order) into buckets, then check that every
        rank has the same model, plan and number of collectives issued (else raise
        ``CollectiveMismatchError`` on every rank, naming the differences)."""
        buckets = self._make_buckets(named)
        check_agreement(self.comm, self._contract(buckets), _explain_contract)
        self.buckets = buckets
        position = {id(p): (bucket, j) for bucket in buckets for j, p in enumerate(bucket.params)}
        self._slots = [position[id(p)] for _, p in named]  # hook index -> (bucket, slot)

    def _contract(self, buckets) -> dict:
        """What must be the same on every rank."""

        def describe(tensors):
            return [(n, list(t.shape), str(t._array.dtype)) for n, t in tensors]

        return {
            "parameters": describe(self.module.named_parameters()),
            "buffers": describe(self.module.named_buffers()),
            "buckets": [
                (
                    str(b.flat.dtype),
                    type(b.flat).__module__.split(".")[0],
                    b.names,
                    int(b.flat.size),
                )
                for b in buckets
            ],
            "collectives": self.comm.seq,
        }

    def rebuild_buckets(
        self, bucket_cap_mb: float | None = None, first_bucket_mb: float | None = None
    ) -> None:
        """Make a new bucket plan with new caps (every rank must call it, between steps). The
        ranks check that they agree on it before it is used."""
        if self._active:
            raise RuntimeError("DataParallel.rebuild_buckets: called during backward")
        if bucket_cap_mb is not None:
            self.bucket_cap_mb = bucket_cap_mb
        if first_bucket_mb is not None:
            self.first_bucket_mb = first_bucket_mb
        if self.comm.world_size > 1:
            self._plan_buckets(self._named)

    def _sync_state(self, tensors) -> None:
        """Broadcast rank 0's values of ``tensors`` (in place)."""
        works = [self.comm.broadcast(t._array, 0) for t in tensors]
        for t, work in zip(tensors, works):
            work.wait()
            t._version.value += 1

    def _make_buckets(self, named) -> list:
        """Cut ``named`` (in backward order) into buckets per dtype and device: the first
        holds up to ``first_bucket_mb``, later ones up to ``bucket_cap_mb``. A bucket closes
        once it reaches its cap (PyTorch's rule), so a tiny cap gives one parameter each."""
        closed, open_, sizes, count = [], {}, {}, {}
        for name, p in named:
            key = (p._array.dtype, str(p.device))
            params, names = open_.setdefault(key, ([], []))
            params.append(p)
            names.append(name)
            sizes[key] = sizes.get(key, 0) + p._array.nbytes
            cap = self.bucket_cap_mb if count.get(key) else self.first_bucket_mb
            if sizes[key] >= cap * _MB:
                closed.append(open_.pop(key))
                sizes[key], count[key] = 0, count.get(key, 0) + 1
        return [_Bucket(params, names) for params, names in closed + list(open_.values())]

    # ---- the wrapped module ------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self._active:
            raise RuntimeError(
                "DataParallel: the previous backward was interrupted before its "
                "gradients were reduced, so the ranks are out of step"
            )
        # As PyTorch: only forwards that will be followed by a synchronised backward (so a
        # rank may evaluate alone in eval mode or under no_grad).
        if (
            self.broadcast_buffers
            and self._require_sync
            and self.comm.world_size > 1
            and self.module.training
            and is_grad_enabled()
        ):
            buffers = list(self.module.buffers())
            if buffers:
                self._sync_state(buffers)
        return self.module(*args, **kwargs)

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ):
        return self.module.named_parameters(prefix, recurse, remove_duplicate)

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return self.module.named_buffers(prefix, recurse, remove_duplicate)

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        return self.module.state_dict(destination, prefix, keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict, assign)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward accumulates local gradients without communicating; the first
        backward after it reduces the accumulated gradients."""
        previous, self._require_sync = self._require_sync, False
        try:
            yield
        finally:
            self._require_sync = previous

    # ---- the training loop -----------------------------------------------------------------
    def step(self, optimizer, *args, **kwargs) -> bool:
        """``optimizer.step(*args, **kwargs)`` unless a gradient of its parameters holds inf
        or NaN on any rank: the ranks all-reduce a flag, so all skip the same steps. A skipped
        step leaves parameters and optimizer state untouched, warns and returns False. After
        more than ``max_consecutive_skips`` skips in a row (``nonfinite="raise"``: at the
        first) every rank raises ``NonFiniteGradientError``. Call ``optimizer.zero_grad()``
        as usual either way; do not combine with ``amp.GradScaler``, which skips by itself."""
        grads = [
            p.grad._array
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        bad = np.zeros(1, np.int32)
        if grads:
            xp = array_module_for(grads[0])
            bad[0] = not bool(xp.all(xp.stack([xp.isfinite(g).all() for g in grads])))
        if self.comm.world_size > 1:
            self.comm.allreduce(bad, ReduceOp.MAX, async_op=False)
        if not bad[0]:
            self.consecutive_skips = 0
            optimizer.step(*args, **kwargs)
            return True
        self.skipped_steps += 1
        self.consecutive_skips += 1
        names = [
            n
            for n, p in self.module.named_parameters()
            if p.grad is not None
            and not bool(array_module_for(p.grad._array).isfinite(p.grad._array).all())
        ]
        shown = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
        where = f"in {shown}" if names else "on another rank"
        if self.nonfinite == "raise" or self.consecutive_skips > self.max_consecutive_skips:
            limit = (
                "nonfinite='raise'"
                if self.nonfinite == "raise"
                else f"max_consecutive_skips={self.max_consecutive_skips}"
            )
            raise NonFiniteGradientError(
                f"DataParallel.step (rank {self.comm.rank}): the gradients held inf/NaN "
                f"{where} for {self.consecutive_skips} consecutive step(s) ({limit}); training "
                f"stopped on every rank, with the parameters and optimizer state of the last "
                f"good step. Find the source with distgrad.autograd.detect_anomaly(), or lower "
                f"the learning rate or clip the gradients."
            )
        warnings.warn(
            f"DataParallel.step: skipped on every rank, gradients held inf/NaN {where} "
            f"({self.consecutive_skips} in a row, at most "
            f"{self.max_consecutive_skips})",
            RuntimeWarning,
            stacklevel=2,
        )
        return False

    def join(self, batches):
        """Yield the items of ``batches`` while every rank still has one. Before each item
        the ranks allgather a has-data flag (one byte each), so when a rank runs out all of them
        stop together, instead of the others waiting for it in their next collective; ranks
        that still had items warn that those are left unused. To train on every sample, give
        every rank the same number of batches instead (``DistributedSampler`` pads its share
        to an equal length)."""
        iterator = iter(batches)
        world = self.comm.world_size
        mine, every = np.ones(1, np.int8), np.ones(world, np.int8)
        steps = 0
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                item, mine[0] = None, 0
            if world > 1:
                self.comm.allgather(mine, every, async_op=False)
            else:
                every[0] = mine[0]
            if not every.all():
                if mine[0]:
                    empty = [r for r in range(world) if not every[r]]
                    warnings.warn(
                        f"DataParallel.join: rank(s) {empty} ran out of batches after "
                        f"{steps} steps, so rank {self.comm.rank} stops too and "
                        f"leaves its remaining batches unused",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return
            yield item
            steps += 1

    # ---- during backward -------------------------------------------------------------------
    def _on_ready(self, index: int, param: Tensor) -> None:
        if not self._require_sync:
            return
        if not self._active:
            self._start_backward()
        self._mark_ready(*self._slots[index], used=True)
        self._progress()

    def _start_backward(self) -> None:
        self._active = True
        self._t_start = time.perf_counter()
        self._next = 0
        self._timeline = OverlapTimeline.start(self.comm, self.buckets[0].flat)
        for bucket in self.buckets:
            bucket.reset()
        graph.queue_callback(self._finish_backward)
        for bucket in self.buckets:  # parameters this backward will not reach: ready now
            for j, p in enumerate(bucket.params):
                if not graph.will_execute(p._edge()[0]):
                    self._mark_ready(bucket, j, used=False)

    def _mark_ready(self, bucket: _Bucket, slot: int, used: bool) -> None:
        """Put the parameter's gradient (zeros if None), divided by the world size, into its
        slot; launch what became launchable."""
        view, grad = bucket.views[slot], bucket.params[slot]._grad
        if grad is None:
            view[...] = 0
        elif grad._array is view:
            if not used:
                bucket.saved[slot] = view.copy()
            view *= self._scale
        else:
            bucket.xp.multiply(grad._array, self._scale, out=view)
            if used:  # free the engine's array now, for the rest of backward to reuse
                bucket.params[slot]._grad = bucket.grads[slot]
        bucket.flags[slot] = used
        bucket.ready[slot] = True
        bucket.pending -= 1
        if bucket.pending == 0:
            self._launch_ready()

    def _launch_ready(self) -> None:
        """Launch buckets in order, as long as the next one is complete."""
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            bucket = self.buckets[self._next]
            if self._timeline is not None:
                self._timeline.before_launch()
            bucket.work = self.comm.allreduce(bucket.flat, ReduceOp.SUM)
            bucket.launched_at = time.perf_counter()
            if self._timeline is not None:
                self._timeline.after_launch()
            self._next += 1

    def _progress(self) -> None:
        """Test the reductions in flight (MPI progresses only inside MPI calls)."""
        for bucket in self.buckets[: self._next]:
            if bucket.done_at is None:
                if not bucket.work.is_completed():
                    return
                bucket.done_at = time.perf_counter()

    def _finish_backward(self) -> None:
        end = time.perf_counter()
        if self._timeline is not None:
            self._timeline.backward_ended()
        launched_early = self._next
        completed_early = sum(b.done_at is not None for b in self.buckets)
        for bucket in self.buckets:  # reached by the graph, but no gradient arrived
            for j in range(len(bucket.params)):
                if not bucket.ready[j]:
                    self._mark_ready(bucket, j, used=False)
        for bucket in self.buckets:
            if bucket.done_at is None:
                bucket.work.wait()
                bucket.done_at = time.perf_counter()
            self._write_back(bucket)
        self._active = False
        done = time.perf_counter()
        first = min(b.launched_at for b in self.buckets)
        last = max(b.done_at for b in self.buckets)
        communication, overlap = last - first, max(0.0, min(end, last) - first)
        if self._timeline is not None:  # GPU: measured on the GPU clock instead
            communication, overlap = self._timeline.spans()
        self.last_step_stats = StepStats(
            len(self.buckets),
            sum(b.nbytes for b in self.buckets),
            launched_early,
            completed_early,
            end - self._t_start,
            communication,
            overlap,
            done - end,
        )

    @staticmethod
    def _write_back(bucket: _Bucket) -> None:
        """Point each used parameter's ``.grad`` at its reduced slot; a parameter no rank
        used keeps its ``.grad``."""
        flags = bucket.flags.tolist()  # one device-to-host copy for a GPU bucket
        for j, p in enumerate(bucket.params):
            if flags[j] == 0:
                if j in bucket.saved:
                    bucket.views[j][...] = bucket.saved[j]
                continue
            grad = bucket.grads[j]
            grad._version.value += 1
            if p._grad is not grad:
                p.grad = grad

    def _watchdog_state(self):
        """The buckets, for the hang watchdog: ``(name, state, {seq: label})``."""
        buckets, labels = [], {}
        for i, b in enumerate(self.buckets):
            work = b.work
            label = (
                f"DataParallel bucket {i} of {len(self.buckets)}: {len(b.params)} "
                f"parameter(s) {b.names[0]!r}..{b.names[-1]!r}, {b.nbytes} bytes"
            )
            if not self._active:
                state = "idle"
            elif work is None:
                state = f"collecting gradients ({len(b.params) - b.pending} of {len(b.params)})"
            else:
                state = f"collective #{work.seq} " + (
                    "completed" if b.done_at is not None else "in flight"
                )
                labels[work.seq] = label
            buckets.append({"bucket": i, "label": label, "state": state})
        return "DataParallel", {"in_backward": self._active, "buckets": buckets}, labels


def _explain_contract(every: list) -> str:
    """The message naming how each rank's contract (``DataParallel._contract``) differs
    from rank 0's."""
    ref = every[0]
    problems = []
    for kind in ("parameter", "buffer"):
        for r in range(1, len(every)):
            problems += _differences(kind, ref[kind + "s"], every[r][kind + "s"], r)
    if problems:
        return "DataParallel: the ranks do not hold the same model:\n  " + "\n  ".join(
            problems[:10]
        )
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
    return "DataParallel: the ranks do not agree on the collective contract:\n  " + "\n  ".join(
        problems[:10] or ["(the plans differ in a way that could not be named)"]
    )


def _bucket_text(bucket) -> str:
    dtype, device, names, size = bucket
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} parameter(s) [{shown}] ({size} x {dtype} on {device})"


def _default_communicator(module: Module):
    """The world's communicator for the module's parameters: NCCL (or host staging) for GPU
    parameters, MPI for host ones."""
    init()
    first = next(iter(module.parameters()), None)
    return communicator_for(None if first is None else first._array)


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
