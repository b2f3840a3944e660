"""``DistributedDataParallel`` (alias ``DataParallel``): data-parallel training whose gradient
allreduces start during backward.

The module wrapper is thin: it checks and broadcasts the model at construction, broadcasts
buffers at training forwards, and offers ``no_sync``, ``step`` (the rank-agreed inf/NaN skip)
and ``join``. The gradient path (buckets, hooks, write-back, statistics) is the ``Reducer``
(``reducer.py``), shared with the sharded modes, where the same mechanism reduce-scatters
instead of allreducing.

Reliability: whenever a bucket plan is made (construction, ``rebuild_buckets``) the ranks check
that they agree on it, on the model and on the number of collectives issued (``contract.py``).
``step(optimizer)`` skips, on every rank alike, a step whose gradients hold inf/NaN;
``join(batches)`` stops every rank at the shortest rank's last batch.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from ..amp.nonfinite import any_nonfinite
from ..autograd import is_grad_enabled
from ..backend import array_module_for
from ..nn.module import Module
from . import timeline
from .communicator import started
from .grad_bucket import GradBucket
from .hierarchical import HierarchicalAllreduce, hierarchical_wanted, node_layout
from .process_group import communicator_for, init, local_world_size
from .process_group import world_size as _world_size
from .reducer import AllreduceBucket, Reducer, StepStats, cut_buckets

if TYPE_CHECKING:
    from ..autograd import Tensor
    from ..futures import Future
    from ..optim.optimizer import Optimizer
    from .communicator import Communicator
    from .groups import ProcessGroup

_Item = TypeVar("_Item")

__all__ = ["DistributedDataParallel", "DataParallel", "StepStats", "NonFiniteGradientError"]

_PREFIX = "module."


class NonFiniteGradientError(FloatingPointError):
    """Gradients held inf/NaN for more consecutive steps than ``DataParallel`` allows."""


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the ranks of ``distgrad.distributed``
    (``torch.nn.parallel.DistributedDataParallel``; ``DataParallel`` is the same class).

    Every rank runs the same model on its own batch; after ``loss.backward()`` every
    parameter's ``.grad`` holds the gradient averaged over ranks, so any optimizer keeps the
    replicas identical. At construction the ranks' parameters are checked to agree (names,
    shapes, dtypes) and rank 0's parameters and buffers are broadcast.

    torch's arguments: ``process_group`` (None: the world; a group or a communicator),
    ``bucket_cap_mb``, ``broadcast_buffers`` act as in torch. ``device_ids`` and
    ``output_device`` have no effect: a rank computes where its module's parameters are (one
    device per process, as torch recommends), so they are accepted and ignored.
    ``find_unused_parameters`` has no effect: unused parameters are always found, from the
    graph at the first gradient hook, at no cost. ``gradient_as_bucket_view`` has no effect:
    ``.grad`` is always a view of its bucket after backward (torch's ``True``; copy it to keep
    it, the next backward reuses it). ``static_graph`` has no effect (nothing is re-planned
    per iteration). distgrad's own: ``first_bucket_mb`` (the small first bucket, torch's
    1 MB), ``communicator`` (a ``Communicator``; default the world's), ``nonfinite`` /
    ``max_consecutive_skips`` (see ``step``).

    ``.module`` is the wrapped module. ``state_dict()`` has torch's DDP keys, every key
    prefixed ``module.`` (so checkpoints interchange with torch's DDP both ways);
    ``load_state_dict`` takes those, or a plain module's keys (all without the prefix), as
    ``torch.nn.modules.utils.consume_prefix_in_state_dict_if_present`` would give.
    ``named_parameters()`` is prefixed too, as torch's; ``.module.state_dict()`` is not.

    ``no_sync()`` skips the reduction for gradient accumulation; ``rebuild_buckets`` changes
    the bucket caps later (all ranks together). ``register_comm_hook(state, hook)`` replaces
    the bucket allreduce with a communication hook (``distgrad.distributed.algorithms.
    ddp_comm_hooks``: fp16/bf16 compression, PowerSGD). ``hierarchical_allreduce`` (None:
    ``DISTGRAD_HIERARCHICAL_ALLREDUCE``, else when the world spans more than one node) and
    ``ranks_per_node`` (force a node grouping) choose the hierarchical allreduce
    (``distgrad.distributed.hierarchical``) for the buckets. After a step, ``last_step_stats`` (a
    ``StepStats``) tells what the communication did. Move or cast the module, and replace its
    parameters, before wrapping it.

    ``ddp.step(optimizer)`` instead of ``optimizer.step()`` skips steps whose gradients hold
    inf/NaN on any rank (``nonfinite="skip"``), on every rank alike, and raises
    ``NonFiniteGradientError`` after more than ``max_consecutive_skips`` in a row, or at the
    first with ``nonfinite="raise"``. ``for batch in ddp.join(loader)`` ends the loop on every
    rank when one has run out of batches.
    """

    def __init__(
        self,
        module: Module,
        device_ids: list[int] | None = None,
        output_device: int | None = None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group: ProcessGroup | Communicator | None = None,
        bucket_cap_mb: float = 25,
        find_unused_parameters: bool = False,
        check_reduction: bool = False,
        gradient_as_bucket_view: bool = False,
        static_graph: bool = False,
        *,
        first_bucket_mb: float = 1,
        communicator: Communicator | None = None,
        nonfinite: str = "skip",
        max_consecutive_skips: int = 5,
        hierarchical_allreduce: bool | None = None,
        ranks_per_node: int | None = None,
    ):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel wraps an nn.Module, got {type(module).__name__}"
            )
        if dim != 0:
            raise ValueError(f"DistributedDataParallel: only dim=0 is supported, got {dim}")
        if nonfinite not in ("skip", "raise"):
            raise ValueError(
                f"DataParallel: nonfinite must be 'skip' or 'raise', got {nonfinite!r}"
            )
        if not isinstance(max_consecutive_skips, int) or max_consecutive_skips < 0:
            raise ValueError(
                f"DataParallel: max_consecutive_skips must be an int >= 0, got "
                f"{max_consecutive_skips!r}"
            )
        if process_group is not None and communicator is not None:
            raise ValueError(
                "DistributedDataParallel: pass process_group or communicator, not both"
            )
        self.device_ids, self.output_device = device_ids, output_device
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view, self.static_graph = gradient_as_bucket_view, static_graph
        self.nonfinite, self.max_consecutive_skips = nonfinite, max_consecutive_skips
        self.skipped_steps = self.consecutive_skips = 0
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb, self.first_bucket_mb = bucket_cap_mb, first_bucket_mb
        comm = communicator if communicator is not None else process_group
        comm = _resolve_communicator(comm, module)
        self.comm = comm
        self.reducer = None
        if comm.world_size == 1:
            return
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad][::-1]
        self.reducer = Reducer(named, comm, self._cut, contract=self._contract())
        self.hierarchical = _hierarchical(comm, hierarchical_allreduce, ranks_per_node)
        if self.hierarchical is not None:
            self.reducer.allreduce_via = self.hierarchical
        self._sync_state(list(module.parameters()) + list(module.buffers()))
        # A module wrapped again drops the previous wrapper's hooks, which would otherwise go
        # on launching collectives into that wrapper's buckets.
        previous = getattr(module, "_distgrad_reducer", None)
        if previous is not None:
            previous.detach()
        object.__setattr__(module, "_distgrad_reducer", self.reducer)
        self.reducer.attach()
        watchdog = getattr(comm, "watchdog", None)
        if watchdog is not None:
            watchdog.add_source(self.reducer.watchdog_state)

    def _cut(self, named: list[tuple[str, Tensor]]) -> list[AllreduceBucket]:
        """The bucket plan; the contract adds the model's names, shapes and dtypes."""
        return cut_buckets(named, self.bucket_cap_mb, self.first_bucket_mb)

    def _contract(self) -> dict[str, Any]:
        def describe(tensors: Iterable[tuple[str, Tensor]]) -> list[tuple[str, list[int], str]]:
            return [(n, list(t.shape), str(t.array.dtype)) for n, t in tensors]

        return {
            "parameters": describe(self.module.named_parameters()),
            "buffers": describe(self.module.named_buffers()),
        }

    def register_comm_hook(self, state: object, hook: Callable[[Any, GradBucket], Future]) -> None:
        """Reduce the gradient buckets with ``hook(state, bucket: GradBucket) -> Future``
        (PyTorch's ``register_comm_hook``): called during backward as soon as a bucket is
        ready; the future's value (one tensor of the bucket buffer's shape) becomes the
        bucket's reduced gradients. The buffer is NOT divided by the world size: the hook
        divides (as PyTorch's). Call it once, on every rank, before the first backward.
        Built-in hooks: ``distgrad.distributed.algorithms.ddp_comm_hooks``. In a world of one
        there is no bucket and the hook is never called."""
        if not callable(hook):
            raise TypeError("Communication hook must be callable.")
        params = inspect.signature(hook).parameters
        bucket = params.get("bucket")
        if bucket is not None and bucket.annotation not in (
            inspect.Parameter.empty,
            GradBucket,
            "GradBucket",
            "dist.GradBucket",
        ):
            raise ValueError("Communication hook: bucket annotation should be dist.GradBucket.")
        if getattr(self, "_comm_hook", None) is not None:
            raise RuntimeError(
                "register_comm_hook or register_builtin_comm_hook can only be called once."
            )
        if self.reducer is not None and (self.reducer.synced_steps or self.reducer.active):
            raise RuntimeError(
                "register_comm_hook must be called before the first backward: "
                f"{self.reducer.synced_steps} gradient reduction(s) already ran without it"
            )
        self._comm_hook = (state, hook)
        if self.reducer is not None:
            self.reducer.register_comm_hook(state, hook)

    # ---- what the reducer knows --------------------------------------------------------------
    @property
    def buckets(self) -> list:
        """The gradient buckets, in launch order (empty in a world of one)."""
        return [] if self.reducer is None else self.reducer.buckets

    @property
    def last_step_stats(self) -> StepStats | None:
        """What the last synchronised backward's communication did."""
        return None if self.reducer is None else self.reducer.last_step_stats

    @property
    def _active(self) -> bool:
        return self.reducer is not None and self.reducer.active

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
        if self.reducer is not None:
            self.reducer.detach()
            self.reducer.plan(self._cut(self.reducer.named), self._contract())
            self.reducer.attach()

    def _sync_state(self, tensors: list[Tensor]) -> None:
        """Broadcast rank 0's values of ``tensors`` (in place)."""
        works = [started(self.comm.broadcast(t.array, 0)) for t in tensors]
        for t, work in zip(tensors, works):
            work.wait()
            t.bump_version()

    # ---- the wrapped module ------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped module's forward (training forwards first broadcast rank 0's buffers)."""
        if self._active:
            raise RuntimeError(
                "DataParallel: the previous backward was interrupted before its "
                "gradients were reduced, so the ranks are out of step"
            )
        # As PyTorch: only forwards that will be followed by a synchronised backward (so a
        # rank may evaluate alone in eval mode or under no_grad).
        if (
            self.broadcast_buffers
            and self.require_sync
            and self.comm.world_size > 1
            and self.module.training
            and is_grad_enabled()
        ):
            buffers = list(self.module.buffers())
            if buffers:
                self._sync_state(buffers)
        if timeline.ENABLED:
            with timeline.span("forward"):
                return timeline.forward_output(self.module(*args, **kwargs))
        return self.module(*args, **kwargs)

    def load_state_dict(
        self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load torch DDP keys (``module.``-prefixed) or a plain module's keys (no key
        prefixed): the form is decided from all keys at once."""
        keys = list(state_dict)
        if keys and not all(k.startswith(_PREFIX) for k in keys):
            return self.module.load_state_dict(state_dict, strict, assign)
        return super().load_state_dict(state_dict, strict, assign)

    @property
    def require_sync(self) -> bool:
        """False inside ``no_sync()``."""
        return self.reducer is None or self.reducer.require_sync

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside, backward accumulates local gradients without communicating; the first
        backward after it reduces the accumulated gradients."""
        if self.reducer is None:
            yield
            return
        previous, self.reducer.require_sync = self.reducer.require_sync, False
        try:
            yield
        finally:
            self.reducer.require_sync = previous

    # ---- the training loop -----------------------------------------------------------------
    def step(self, optimizer: Optimizer, *args: Any, **kwargs: Any) -> bool:
        """``optimizer.step(*args, **kwargs)`` unless a gradient of its parameters holds inf
        or NaN on any rank: the ranks all-reduce a flag, so all skip the same steps. A skipped
        step leaves parameters and optimizer state untouched, warns and returns False. After
        more than ``max_consecutive_skips`` skips in a row (``nonfinite="raise"``: at the
        first) every rank raises ``NonFiniteGradientError``. Call ``optimizer.zero_grad()``
        as usual either way; do not combine with ``amp.GradScaler``, which skips by itself."""
        grads = [
            p.grad.array
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not any_nonfinite(grads, self.comm):
            self.consecutive_skips = 0
            optimizer.step(*args, **kwargs)
            return True
        self.skipped_steps += 1
        self.consecutive_skips += 1
        names = [
            n
            for n, p in self.module.named_parameters()
            if p.grad is not None
            and not bool(array_module_for(p.grad.array).isfinite(p.grad.array).all())
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

    def join(self, batches: Iterable[_Item]) -> Iterator[_Item | None]:
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


DataParallel = DistributedDataParallel


def _hierarchical(
    comm: Communicator, setting: bool | None, ranks_per_node: int | None
) -> HierarchicalAllreduce | None:
    """The hierarchical allreduce for the buckets, or None for the flat one. Nodes are only
    looked up (a collective) when they may be several: forced groupings, or ranks on other
    hosts (every rank sees the same: its node holds fewer than all ranks)."""
    import os

    if setting is False or comm.world_size != _world_size():
        if setting:
            raise ValueError(
                "DistributedDataParallel: hierarchical_allreduce=True needs the world group "
                f"(this one has {comm.world_size} of {_world_size()} ranks)"
            )
        return None
    forced = ranks_per_node is not None or os.environ.get("DISTGRAD_FAKE_NODES")
    if not forced and local_world_size() == comm.world_size:
        return None
    nodes = node_layout(comm, ranks_per_node)
    return HierarchicalAllreduce(nodes) if hierarchical_wanted(nodes, setting) else None


class _HasParameters(Protocol):
    """What ``_resolve_communicator`` reads of a module: its parameters."""

    def parameters(self) -> Iterator[Tensor]: ...


def _resolve_communicator(
    group: ProcessGroup | Communicator | None, module: _HasParameters
) -> Communicator:
    """The communicator for ``group`` (None: the world's, for the module's parameters: NCCL or
    host staging for GPU parameters, MPI for host ones). The one place to switch to process
    groups (``group.communicator_for(array)``) once they exist."""
    first = next(iter(module.parameters()), None)
    array = None if first is None else first.array
    if group is None:
        init()
        return communicator_for(array)
    if hasattr(group, "communicator_for"):
        return group.communicator_for(array)
    return group
