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
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import numpy as np

from ..autograd import Tensor, graph, is_grad_enabled
from ..nn.module import Module
from .communicator import ReduceOp
from .process_group import init

__all__ = ["DataParallel", "StepStats"]

_MB = 1024 * 1024


@dataclass
class StepStats:
    """What the last synchronised backward did (``DataParallel.last_step_stats``).

    ``launched_in_backward``: buckets whose allreduce started from a gradient hook, i.e. before
    backward had run its last node; ``completed_in_backward``: those that had also finished by
    then. ``communication_s`` runs from the first launch to the last completion, of which
    ``overlap_s`` lay before the end of backward; ``wait_s`` is the time spent after backward
    waiting for the reductions and writing the gradients back."""

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


class _Bucket:
    """A flat gradient buffer for some parameters of one dtype, plus one 'used' flag each."""

    def __init__(self, params: list, names: list):
        self.params = params
        self.names = names
        xp = params[0].device.xp
        sizes = [p.numel() for p in params]
        total = sum(sizes)
        self.flat = xp.zeros(total + len(params), params[0]._array.dtype)
        offsets = np.cumsum([0] + sizes)
        self.views = [self.flat[a:b].reshape(p.shape)
                      for a, b, p in zip(offsets[:-1], offsets[1:], params)]
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

    ``bucket_cap_mb``/``first_bucket_mb`` size the gradient buckets; ``broadcast_buffers``
    copies rank 0's buffers (e.g. BatchNorm statistics) to every rank at each training forward.
    ``no_sync()`` skips the reduction for gradient accumulation. ``state_dict()``,
    ``parameters()`` and friends are the wrapped module's, without a prefix. After a step,
    ``last_step_stats`` (a ``StepStats``) tells what the communication did.

    After backward, ``param.grad`` is a view of its bucket, reused by the next backward: copy
    it to keep it. Move or cast the module, and replace its parameters, before wrapping it.
    ``communicator`` defaults to the world's (``distributed.init()`` is called if needed).
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25, first_bucket_mb: float = 1,
                 broadcast_buffers: bool = True, communicator=None):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel wraps an nn.Module, got {type(module).__name__}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb, self.first_bucket_mb = bucket_cap_mb, first_bucket_mb
        comm = communicator if communicator is not None else init()
        self.comm = comm
        self._scale = 1.0 / comm.world_size
        self._require_sync = True
        self._active = False
        self.last_step_stats = None
        self.buckets = []
        if comm.world_size == 1:
            return
        self._check_same_everywhere()
        self._sync_state(list(module.parameters()) + list(module.buffers()))
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.buckets = self._make_buckets(named[::-1])
        for bucket in self.buckets:
            for j, p in enumerate(bucket.params):
                p.register_post_accumulate_grad_hook(functools.partial(self._on_ready, bucket, j))

    # ---- construction ----------------------------------------------------------------------
    def _check_same_everywhere(self) -> None:
        """Raise on every rank unless every rank has the same parameters and buffers."""
        def describe(tensors):
            return [(n, list(t.shape), str(t._array.dtype)) for n, t in tensors]

        mine = (describe(self.module.named_parameters()), describe(self.module.named_buffers()))
        every = self.comm.allgather_object(mine)
        problems = []
        for kind, index in (("parameter", 0), ("buffer", 1)):
            ref = every[0][index]
            for r in range(1, len(every)):
                problems += _differences(kind, ref, every[r][index], r)
        if problems:
            raise RuntimeError("DataParallel: the ranks do not hold the same model:\n  "
                               + "\n  ".join(problems[:10]))

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
            raise RuntimeError("DataParallel: the previous backward was interrupted before its "
                               "gradients were reduced, so the ranks are out of step")
        # As PyTorch: only forwards that will be followed by a synchronised backward (so a
        # rank may evaluate alone in eval mode or under no_grad).
        if (self.broadcast_buffers and self._require_sync and self.comm.world_size > 1
                and self.module.training and is_grad_enabled()):
            buffers = list(self.module.buffers())
            if buffers:
                self._sync_state(buffers)
        return self.module(*args, **kwargs)

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        return self.module.named_parameters(prefix, recurse, remove_duplicate)

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
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

    # ---- during backward -------------------------------------------------------------------
    def _on_ready(self, bucket: _Bucket, slot: int, param: Tensor) -> None:
        if not self._require_sync:
            return
        if not self._active:
            self._start_backward()
        self._mark_ready(bucket, slot, used=True)
        self._progress()

    def _start_backward(self) -> None:
        self._active = True
        self._t_start = time.perf_counter()
        self._next = 0
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
            bucket.work = self.comm.allreduce(bucket.flat, ReduceOp.SUM)
            bucket.launched_at = time.perf_counter()
            self._next += 1

    def _progress(self) -> None:
        """Test the reductions in flight (MPI progresses only inside MPI calls)."""
        for bucket in self.buckets[:self._next]:
            if bucket.done_at is None:
                if not bucket.work.is_completed():
                    return
                bucket.done_at = time.perf_counter()

    def _finish_backward(self) -> None:
        end = time.perf_counter()
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
        self.last_step_stats = StepStats(
            len(self.buckets), sum(b.nbytes for b in self.buckets), launched_early,
            completed_early, end - self._t_start, last - first,
            max(0.0, min(end, last) - first), done - end)

    @staticmethod
    def _write_back(bucket: _Bucket) -> None:
        """Point each used parameter's ``.grad`` at its reduced slot; a parameter no rank
        used keeps its ``.grad``."""
        for j, p in enumerate(bucket.params):
            if bucket.flags[j] == 0:
                if j in bucket.saved:
                    bucket.views[j][...] = bucket.saved[j]
                continue
            grad = bucket.grads[j]
            grad._version.value += 1
            if p._grad is not grad:
                p.grad = grad


def _differences(kind: str, ref: list, other: list, rank: int) -> list:
    """How rank ``rank``'s ``(name, shape, dtype)`` list differs from rank 0's."""
    problems = []
    if len(ref) != len(other):
        longer, where = (ref, 0) if len(ref) > len(other) else (other, rank)
        tail = longer[min(len(ref), len(other)):][:3]
        extra = ", ".join(f"'{n}' {shape}" for n, shape, _ in tail)
        problems.append(f"rank 0 has {len(ref)} {kind}s but rank {rank} has {len(other)} "
                        f"(rank {where} also has {extra})")
    for (name, shape, dtype), (oname, oshape, odtype) in zip(ref, other):
        if name != oname:
            problems.append(f"{kind} '{name}' on rank 0 is '{oname}' on rank {rank}")
            break
        if shape != oshape or dtype != odtype:
            problems.append(f"{kind} '{name}' has shape {shape} ({dtype}) on rank 0 but "
                            f"{oshape} ({odtype}) on rank {rank}")
    return problems
