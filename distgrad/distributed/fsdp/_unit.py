"""One ``fully_shard`` unit: its parameters' shards, all-gathers, reduce-scatter and lifecycle.

A unit owns parameters of one dtype laid out by ``ShardLayout`` (rows of dim 0, padded): this
rank's rows of all of them are one flat array (``shard_flat``) whose views are the
``ShardedParameter``s the module holds while idle and the optimizer steps. The gather is one
all-gather per parameter, from its rows of ``shard_flat`` into its padded rows of one flat
parameter-major buffer (``ShardLayout.gather_pieces``), whose views (no copy) become the data of
the unit's persistent full parameters (``full``), which replace the shards on the module during
compute. Their gradients go, from the post-accumulate-grad hooks, into the unit's
``ShardBucket`` (the reducer shared with data parallel; per parameter: the engine's gradient
array itself is reduce-scattered when its rows divide by the world size) into this rank's rows,
which become the shards' ``.grad``. Prefetching holds at most one unit more than the one
computing (ZeRO-3); the buffers are freed as before, and ``host_memory`` keeps glibc from
returning them to the kernel each step.

ZeRO-3 (``reshard_after_forward=True``) runs each call with a graph on the full parameters
inside ``autograd.graph.saved_tensors_hooks``: a saved tensor that is one of the unit's full
parameters (identity of its array) is kept as its index, so nothing of the graph references the
gathered arrays, and the unit frees them after the call (numpy arrays cannot be resized in place
as torch's storage is; the token is how they are released). ``_PreBackward`` on the call's
outputs gathers the unit again when backward reaches it (prefetch order unchanged) and the unpack
hook hands the re-gathered parameters to the nodes; once the unit's reduce-scatter starts (all its
gradients are in) it reshards. No forward is recomputed; the unit's activations are kept from
forward to backward, as in torch's FSDP.

Each unit collective carries a label (unit, phase, call number) in its desync fingerprint, or
is preceded by a small all-gather of it where there is no fingerprint; ranks whose labels differ (a rank called a unit a different number of times: divergent control
flow) raise ``ShardingDesyncError`` on every rank, naming the unit and what each rank did,
instead of matching mismatched collectives.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from ...autograd import Function, Tensor, is_grad_enabled
from ...autograd.graph import saved_tensors_hooks
from ...backend.dtypes import dtype
from ...nn.module import Module
from ...nn.parameter import Parameter
from .. import timeline
from ..communicator import Array, Communicator, Work, started
from ..reducer import Reducer, ShardBucket, ShardLayout, WorkList
from ..sharded_tensor import ShardedTensor

if TYPE_CHECKING:
    from . import MixedPrecisionPolicy, _Root

__all__ = ["ShardingDesyncError", "ShardedParameter"]

_PHASES = ("forward all-gather", "backward all-gather", "reduce-scatter")

Location = tuple[Module, str]  # (module, attribute) where a parameter sits
Entry = tuple[str, Parameter, list[Location]]  # (name, parameter, its locations)


class ShardingDesyncError(RuntimeError):
    """The ranks issued different sharded collectives (raised on every rank)."""


class ShardedParameter(Parameter):
    """This rank's rows of a sharded parameter (padded to ``ceil(rows / world_size)`` rows with
    zeros, which stay zero); the optimizer steps it. ``full_tensor()`` is the whole parameter
    (a collective), ``to_local()`` this rank's real rows as a ``ShardedTensor``, ``full_shape``
    the whole shape, ``rows`` the rows of dim 0 this rank owns."""

    _fsdp: tuple[Unit, int]  # (its Unit, its index there), set when the unit is made

    def full_tensor(self) -> Tensor:
        """The whole parameter, gathered from every rank (all ranks must call it)."""
        unit, i = self._fsdp
        return unit.full_value(i)

    def to_local(self) -> ShardedTensor:
        """This rank's rows without the padding (``ShardedTensor``, sharing storage)."""
        return self.local_view(self)

    def local_view(self, tensor: Tensor | Array) -> ShardedTensor:
        """For a tensor of this shard's (padded) shape, e.g. an optimizer's ``exp_avg`` of this
        parameter: its real rows as a ``ShardedTensor`` laid out as this parameter (same
        storage)."""
        unit, i = self._fsdp
        if tuple(tensor.shape) != tuple(self.shape):
            raise ValueError(
                f"local_view: expected a tensor of the shard's shape {tuple(self.shape)}, got "
                f"{tuple(tensor.shape)}"
            )
        start, stop = self.local_rows
        array = tensor.array if isinstance(tensor, Tensor) else tensor
        piece = array[: stop - start]
        return ShardedTensor(piece, self.full_shape, (start, stop), unit.comm)

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The shape of the whole parameter."""
        unit, i = self._fsdp
        return unit.layout.shapes[i]

    @property
    def local_rows(self) -> tuple[int, int]:
        """The rows ``[start, stop)`` of the whole parameter (dim 0; a 0-d one has 1 row) held
        unpadded at the top of this shard (``stop - start`` may be 0)."""
        unit, i = self._fsdp
        return unit.layout.owned_rows(i, unit.comm.rank)

    def reduce_partial_norm(self, value: float, norm_type: float) -> float:
        """Combine the ranks' partial gradient norms of sharded parameters (``value``: this
        rank's sum of ``|g|**p``, or ``max |g|`` for the inf-norm) into the global one (a collective
        over the unit's ranks; ``clip_grad_norm_`` calls it)."""
        unit, _ = self._fsdp
        from ..communicator import ReduceOp

        buf = np.array([value], np.float64)
        op = ReduceOp.MAX if np.isinf(norm_type) else ReduceOp.SUM
        comm = unit.comm
        if getattr(comm, "device", "cpu") != "cpu":  # a GPU communicator: the host world's
            from ..process_group import get_communicator

            comm = get_communicator()
        comm.allreduce(buf, op, async_op=False)
        return float(buf[0])


class _PreBackward(Function):
    """Identity on a ZeRO-3 unit call's outputs: its backward, the first of the call's, gathers
    the unit again (waiting for the prefetched all-gather) and prefetches the next unit."""

    @staticmethod
    def forward(ctx: Any, unit: Unit, *outputs: Tensor) -> tuple[Tensor, ...]:
        ctx.unit = unit
        return outputs

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[Any, ...]:
        # the next unit's all-gather is issued before this one is waited for: the wait
        # progresses both, so the next one is (nearly) complete when backward reaches it
        ctx.unit.issue_gather("backward")
        ctx.unit.root.prefetch_backward(ctx.unit)
        ctx.unit.gather_now("backward")
        return (None, *grads)


class Unit:
    """See the module docstring. ``entries``: ``(name, parameter, [(module, attribute), ...])``
    for the unit's parameters; ``modules``: the modules ``fully_shard`` was called on."""

    root: _Root  # the model's units together; set by ``_Root`` right after the unit is made

    def __init__(
        self,
        modules: list[Module],
        entries: list[Entry],
        comm: Communicator,
        reshard_after_forward: bool | int,
        mp_policy: MixedPrecisionPolicy,
        name: str,
    ) -> None:
        self.modules, self.comm, self.name = modules, comm, name
        self.reshard_after_forward = reshard_after_forward
        self.mp_policy = mp_policy
        self.children: list[Unit] = []
        self.index = 0
        self.gathered = False
        # (works, gathered buffer, layout) of an all-gather in flight
        self.pending: tuple[list[Work], Array, ShardLayout] | None = None
        self.calls = 0
        self.to_run: set[int] = set()  # ids of the unit's modules not yet called in this forward
        self.reducer: Reducer | None = None
        self.bucket: ShardBucket | None = None
        self.replicate_comm: Communicator | None = None  # HSDP: the ranks holding the same shard
        # hpZ: the smaller group kept after forward
        self.hpz_comm: Communicator | None = None
        self.hpz_layout: ShardLayout | None = None
        # hpZ: this rank's rows of the group's sharding, forward->backward
        self.secondary: Array | None = None
        self._build(entries)

    # ---- construction ------------------------------------------------------------------------
    def _build(self, entries: list[Entry]) -> None:
        # (name, requires_grad, locations): the unit keeps no reference to the originals
        self.entries = [(n, p.requires_grad, locations) for n, p, locations in entries]
        world, rank = self.comm.world_size, self.comm.rank
        self._originals: dict[int, tuple[int, weakref.ref[Parameter]]] = {}
        self.sharded: list[ShardedParameter] = []
        self.full: list[Parameter] = []
        if not entries:
            self.layout = ShardLayout([], world)
            return
        dtypes = {str(p.array.dtype) for _, p, _ in entries}
        if len(dtypes) > 1:
            shown = ", ".join(f"{n} ({p.array.dtype})" for n, p, _ in entries[:6])
            raise TypeError(
                f"fully_shard({self.name}): the parameters of one unit must share a dtype, got "
                f"{shown}; cast the module first, or shard its parts separately"
            )
        params = [p for _, p, _ in entries]
        self.layout = layout = ShardLayout([tuple(p.shape) for p in params], world)
        xp = params[0].device.xp
        self.xp = xp
        dtype = params[0].array.dtype
        self.shard_flat = xp.zeros(layout.block, dtype)
        for i, p in enumerate(params):
            start, stop = layout.owned_rows(i, rank)
            rows = p.array.reshape(layout.dim0[i], layout.inner[i])[start:stop]
            part = self.shard_flat[layout.offsets[i] : layout.offsets[i + 1]]
            part[: rows.size] = rows.reshape(-1)
            shard = ShardedParameter(layout.block_view(self.shard_flat, i), p.requires_grad)
            shard._fsdp = (self, i)
            self.sharded.append(shard)
        self.param_dtype = np.dtype(
            self.mp_policy.param_dtype.np if _has_np(self.mp_policy.param_dtype) else dtype
        )
        placeholder = xp.empty(0, self.param_dtype)
        self.full = [Parameter(Tensor(placeholder), p.requires_grad) for p in params]
        self._originals = {id(p): (i, weakref.ref(p)) for i, (_, p, _) in enumerate(entries)}
        self.register(self.sharded)

    def original_index(self, param: Tensor) -> int | None:
        """Index of ``param`` if it is one this unit sharded (still referenced elsewhere)."""
        entry = self._originals.get(id(param))
        return entry[0] if entry is not None and entry[1]() is param else None

    def make_reducer(self) -> None:
        """The unit's reduce-scatter bucket and reducer (when it has trainable parameters)."""
        trainable = [p for p in self.full if p.requires_grad]
        if not trainable:
            return
        reduce_dtype = self.mp_policy.reduce_dtype
        reduce_np = reduce_dtype.np if _has_np(reduce_dtype) else None
        names = [n for n, _, _ in self.entries]
        world = self.comm.world_size

        def make(named: list[tuple[str, Tensor]]) -> list[ShardBucket]:
            bucket = ShardBucket(
                self.full,
                names,
                self.layout,
                self.comm.rank,
                self._on_reduced,
                reduce_np,
                per_parameter=True,
            )
            replicas = 1 if self.replicate_comm is None else self.replicate_comm.world_size
            bucket.pre_scale = 1.0 / (world * replicas)
            if bucket.dtype.itemsize < 4 and world > 1:  # fp16/bf16: divide before + after
                factor = 2.0 ** round(np.log2(np.sqrt(world * replicas)))
                bucket.pre_scale, bucket.post_scale = 1.0 / factor, factor / (world * replicas)
            return [bucket]

        self.reducer = Reducer(
            list(zip(names, self.full)),
            self.comm,
            make,
            owner=f"fully_shard({self.name})",
            finish="external",
        )
        bucket: ShardBucket = self.reducer.buckets[0]
        self.bucket = bucket
        launch = bucket.launch

        def checked_launch(comm: Communicator) -> Work | WorkList:
            self.root.check_header(self, _PHASES.index("reduce-scatter"))
            self.log("reduce_scatter_issue", "backward")
            work = launch(comm)
            self.root.launched(self)
            if self.reshards_each_call:  # every gradient of the unit is in: its backward is done
                self.reshard()
            return work

        # the bucket's own launch, wrapped: this unit's header check before, reshard after
        bucket.launch = checked_launch  # type: ignore[method-assign]
        self.reducer.attach()

    # ---- registration ------------------------------------------------------------------------
    def register(self, params: list[ShardedParameter] | list[Parameter]) -> None:
        """Put ``params`` (the shards or the full parameters) on every module location."""
        for param, (_, _, locations) in zip(params, self.entries):
            for module, attr in locations:
                module._parameters[attr] = param

    # ---- all-gather --------------------------------------------------------------------------
    def issue_gather(self, phase: str) -> None:
        """Start the all-gather of this unit (after the header check), unless gathered or in
        flight. hpZ: in backward, from the group's secondary shards kept after forward."""
        if self.gathered or self.pending is not None or not self.full:
            return
        comm, layout, send = self.comm, self.layout, self.shard_flat
        if self.secondary is not None:
            (comm, layout), send = self._hpz(), self.secondary
            self.secondary = None
        self.root.check_header(self, _PHASES.index(phase + " all-gather"), comm)
        if send.dtype != self.param_dtype:
            send = send.astype(self.param_dtype)
        flat = self.xp.empty(comm.world_size * layout.block, self.param_dtype)
        self.log("allgather_issue", phase)
        works = [started(comm.allgather(s, r)) for s, r in layout.gather_pieces(send, flat)]
        self.pending = (works, flat, layout)

    def gather_now(self, phase: str) -> None:
        """Make the full parameters available (waiting for a prefetched all-gather): views
        into the unit's one gathered buffer, no copy."""
        if self.gathered or not self.full:
            self.gathered = True
            return
        self.issue_gather(phase)
        if self.pending is None:  # issue_gather leaves it set unless gathered (checked above)
            raise RuntimeError(f"fully_shard({self.name}): no all-gather in flight to wait for")
        works, flat, layout = self.pending
        for work in works:
            work.wait()
        self.log("allgather_done", phase)
        self.pending = None
        for i, full in enumerate(self.full):
            full.data = Tensor(layout.full_view(flat, i))
        self.gathered = True

    def reshard(self, keep_secondary: bool = False) -> None:
        """Free the full parameters and put the shards back on the modules. hpZ after forward
        (``keep_secondary``): first keep this rank's rows of the group's smaller sharding."""
        self.secondary = None
        if not self.full:
            self.gathered = False
            return
        if keep_secondary and self.hpz_comm is not None and self.gathered:
            comm, layout = self._hpz()
            rank = comm.rank
            self.secondary = self.xp.zeros(layout.block, self.param_dtype)
            for i, full in enumerate(self.full):
                start, stop = layout.owned_rows(i, rank)
                rows = full.array.reshape(layout.dim0[i], layout.inner[i])[start:stop]
                part = self.secondary[layout.offsets[i] : layout.offsets[i + 1]]
                part[: rows.size] = rows.reshape(-1)
        placeholder = self.xp.empty(0, self.param_dtype)
        for full in self.full:
            full.data = Tensor(placeholder)
            full.grad = None
        self.register(self.sharded)
        self.gathered = False

    def use_hpz(self, comm: Communicator) -> None:
        """hpZ: after forward keep the parameters sharded over ``comm`` (this rank's group of
        the smaller size), which backward's all-gather then uses."""
        self.hpz_comm = comm
        self.hpz_layout = ShardLayout(self.layout.shapes, comm.world_size)

    def _hpz(self) -> tuple[Communicator, ShardLayout]:
        """hpZ's group communicator and layout (``use_hpz`` sets both)."""
        if self.hpz_comm is None or self.hpz_layout is None:
            raise RuntimeError(f"fully_shard({self.name}): the unit has no hpZ group")
        return self.hpz_comm, self.hpz_layout

    def full_value(self, i: int) -> Tensor:
        """Parameter i, whole (an all-gather of the shards; every rank must call it)."""
        recv = self.xp.empty((self.comm.world_size, self.layout.block), self.shard_flat.dtype)
        self.comm.allgather(self.shard_flat, recv, async_op=False)
        array = self.xp.empty(self.layout.shapes[i], self.shard_flat.dtype)
        self.layout.gather_from(recv, i, array)
        return Tensor(array)

    # ---- reduce-scatter ----------------------------------------------------------------------
    def _on_reduced(self, recv: Array) -> None:
        """This rank's reduced rows: the shards' ``.grad`` (added to a gradient already there,
        as torch accumulates sharded gradients). HSDP: first summed over the replicas."""
        if self.replicate_comm is not None and self.replicate_comm.world_size > 1:
            from ..communicator import ReduceOp

            self.replicate_comm.allreduce(recv, ReduceOp.SUM, async_op=False)
        for i, shard in enumerate(self.sharded):
            if not shard.requires_grad:
                continue
            rows = self.layout.block_view(recv, i)
            if rows.dtype != shard.array.dtype:
                rows = rows.astype(shard.array.dtype)
            if shard.grad is None:
                shard.grad = Tensor(rows)  # a view of this step's new block: no copy
            else:
                shard.grad.array[...] += rows
                shard.grad.bump_version()

    # ---- a call --------------------------------------------------------------------------------
    @property
    def reshards_each_call(self) -> bool:
        """ZeRO-3 behaviour: free after each call, gather again in backward. A unit
        holding other units keeps its parameters until backward ends (as FSDP2's root)."""
        return bool(self.reshard_after_forward) and not self.children and bool(self.full)

    def call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        module: object = None,
    ) -> Any:
        """Run the forward ``fn`` of ``module`` (one of the unit's modules) as this unit. A
        unit of several modules gathers before the first of them runs and reshards after each
        has run once (as FSDP2's grouped hooks)."""
        root = self.root
        outermost = root.begin_forward(self)
        self.calls += 1
        if not self.to_run:
            self.to_run = {id(m) for m in self.modules}
        self.to_run.discard(id(module) if module is not None else id(self.modules[0]))
        root.record(self)
        # the prefetch is issued after this unit's wait: a rank whose forward diverged has then
        # issued as many collectives as the others when the tags name the divergence
        self.gather_now("forward")
        root.prefetch_forward(self)
        grad = is_grad_enabled()
        policy = self.mp_policy
        if policy.cast_forward_inputs and _has_np(policy.param_dtype):
            args, kwargs = _cast(args, policy.param_dtype), _cast(kwargs, policy.param_dtype)
        self.log("compute_start", "forward")
        self.register(self.full)
        if self.reshards_each_call and grad:
            index = {id(p.array): i for i, p in enumerate(self.full)}
            with saved_tensors_hooks(lambda t: index.get(id(t.array), t), self._unpack):
                out = fn(*args, **kwargs)
            out = self._pre_backward(out)
        else:
            out = fn(*args, **kwargs)
        self.log("compute_end", "forward")
        if ((self.reshards_each_call and grad) or not grad) and not self.to_run:
            self.reshard(keep_secondary=grad)
        if policy.output_dtype is not None:
            out = _cast(out, policy.output_dtype)
        if outermost:
            out = root.end_forward(out, grad)
        return out

    def _unpack(self, packed: int | Tensor) -> Tensor:
        """A value the unit's graph saved: one of its full parameters (packed as its index:
        gathered again if resharded meanwhile), or any other tensor (kept as is)."""
        if not isinstance(packed, int):
            return packed
        if not self.gathered:  # a node needing it after the unit's reduce-scatter started
            self.gather_now("backward")
        return Tensor(self.full[packed].array)

    def _pre_backward(self, out: Any) -> Any:
        """``out`` with its tensors that require grad passed through ``_PreBackward``."""
        tensors = [t for t in _flat(out) if t.requires_grad]
        if not tensors:
            return out
        new = _PreBackward.apply(self, *tensors)
        replaced = dict(zip((id(t) for t in tensors), new if isinstance(new, tuple) else (new,)))
        return _replace(out, replaced)

    def log(self, kind: str, phase: str) -> None:
        """Append ``(kind, unit, phase)`` to the root's event log when one is recording."""
        if timeline.ENABLED:
            timeline.unit_event(kind, self.name, phase)
        if self.root.events is not None:
            self.root.events.append((kind, self.name, phase))


def unit_of(module: object) -> Unit:
    """The unit ``fully_shard`` made of ``module`` (an ``FSDPModule``)."""
    unit: Unit = module.__dict__["_fsdp_unit"]
    return unit


def _cast(value: Any, to: dtype) -> Any:
    """``value`` (tensors in nested tuples, lists, dicts) with its floating-point tensors cast
    to ``to`` (differentiable)."""
    if isinstance(value, Tensor):
        return value.to(to) if value.is_floating_point() and value.dtype != to else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, to) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, to) for k, v in value.items()}
    return value


def _has_np(d: object) -> TypeGuard[dtype]:
    return d is not None and getattr(d, "np", None) is not None


def _flat(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat(v)]
    return []


def _replace(value: Any, replaced: dict[int, Tensor]) -> Any:
    if isinstance(value, Tensor):
        return replaced.get(id(value), value)
    if isinstance(value, (list, tuple)):
        return type(value)(_replace(v, replaced) for v in value)
    if isinstance(value, dict):
        return {k: _replace(v, replaced) for k, v in value.items()}
    return value
