"""``distgrad.distributed.fsdp``: sharded data parallel with FSDP2's API (``fully_shard``).

``fully_shard(module)`` makes one unit of the module's parameters not already in a unit: each
is cut on dim 0 into ``world_size`` padded row blocks, and the module holds this rank's rows as
``ShardedParameter``s (what the optimizer steps, any distgrad optimizer unchanged). Call it on
submodules first, then on the root. Per step: before a unit computes, its full parameters are
all-gathered (the next unit's gather, in the order recorded in the previous forward, is
issued before this one computes: prefetch); gradients are reduce-scattered during backward,
from the post-accumulate-grad hooks, one bucket per unit (aligned to the shards by
construction). ``reshard_after_forward=True`` (ZeRO-3) frees the full parameters after each
call and gathers them again in backward (see ``_unit.py``: the graph keeps tokens for the
parameters it saved); ``False`` (ZeRO-2) keeps them until backward has finished. The root keeps its own
parameters gathered until backward ends (as FSDP2). Tied parameters used across units are
found when the outer unit is made and move to it, kept as one storage.

Every rank checks that the others issue the same unit collective (``ShardingDesyncError``
otherwise, on every rank, naming the unit and what each rank did): the unit, phase and call
travel in the tag of the collective's desync fingerprint (no extra round trip), or, where the
communicator has no desync check (GPU, 2-D mesh, ``DISTGRAD_DESYNC_CHECK=0``), in a 3-int
all-gather before it. ``DISTGRAD_FSDP_CHECK=0`` turns the check off. Differences from torch: the local shard is padded to ``ceil(rows / world_size)`` rows (zeros
that stay zero), not a ragged DTensor. An int ``reshard_after_forward`` k (hpZ) keeps, from
forward to backward, this rank's rows of the parameters sharded over its group of k ranks
(1/k of them instead of 1/world), and backward all-gathers within that group; it needs the
world as the shard group. ``fully_shard([a, b])`` makes one unit of several modules: gathered before the first of
them runs, resharded once each has run (as FSDP2's grouped hooks). Every rank must start from
the same parameter values (same seed or a loaded checkpoint), as in torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ...autograd import Tensor, graph
from ...backend.dtypes import dtype
from ...nn.module import Module
from ...nn.parameter import Parameter
from ..communicator import Communicator
from ..data_parallel import _resolve_communicator
from ..device_mesh import DeviceMesh
from ..groups import ProcessGroup
from ..host_memory import keep_freed_host_memory
from ..process_group import get_communicator
from ..sharded_tensor import ShardedTensor
from . import _state_dict
from ._unit import _PHASES, Entry, Location, ShardedParameter, ShardingDesyncError, Unit, unit_of

__all__ = [
    "fully_shard",
    "FSDPModule",
    "MixedPrecisionPolicy",
    "ShardedParameter",
    "ShardedTensor",
    "ShardingDesyncError",
    "record_events",
]


@dataclass(frozen=True)
class MixedPrecisionPolicy:
    """``param_dtype``: dtype of the gathered parameters the forward computes with (the shards
    stay in their own dtype, the master copy); ``reduce_dtype``: dtype of the gradient
    reduce-scatter (float16/bfloat16 divide by a power of two near sqrt(world) before the sum
    and by the rest after, so sums do not overflow). None keeps the parameters' dtype.
    ``cast_forward_inputs``: floating-point tensor inputs of the unit's forward are cast to
    ``param_dtype`` (when set); ``output_dtype``: its floating-point outputs are cast to it
    (both differentiable, as FSDP2). Anything but a distgrad dtype or None raises TypeError
    (a numpy dtype or a name would otherwise be ignored)."""

    param_dtype: dtype | None = None
    reduce_dtype: dtype | None = None
    output_dtype: dtype | None = None
    cast_forward_inputs: bool = True

    def __post_init__(self) -> None:
        for field in ("param_dtype", "reduce_dtype", "output_dtype"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, dtype):
                raise TypeError(
                    f"MixedPrecisionPolicy: {field} must be a distgrad dtype (e.g. "
                    f"distgrad.bfloat16) or None, got {value!r} ({type(value).__name__})"
                )


Event = tuple[str, str, str]  # (kind, unit, phase): see record_events
_Modules = TypeVar("_Modules", bound="Module | Sequence[Module]")


class FSDPModule:
    """Mixed into the class of every module ``fully_shard`` was called on (as FSDP2)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The module's forward, run as its unit (gathered parameters, see the package)."""
        unit = unit_of(self)
        return unit.call(super().forward, args, kwargs, self)  # type: ignore[misc]

    def reshard(self) -> None:
        """Free this unit's full parameters now."""
        unit_of(self).reshard()

    def unshard(self) -> None:
        """All-gather this unit's full parameters now (a collective)."""
        unit = unit_of(self)
        unit.root.prepare()
        unit.gather_now("forward")
        unit.register(unit.full)

    def set_requires_gradient_sync(self, requires_gradient_sync: bool) -> None:
        """False: backward accumulates unsharded gradients without communicating (gradient
        accumulation); the next backward with True reduce-scatters the sum."""
        for unit in unit_of(self).root.units:
            if unit.reducer is not None:
                unit.reducer.require_sync = bool(requires_gradient_sync)
            unit.root.require_sync = bool(requires_gradient_sync)

    def state_dict(
        self, destination: dict[str, Any] | None = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """Parameters and buffers by their names in the unwrapped model; each sharded parameter
        is a ``ShardedTensor`` of this rank's rows (``full_shape``, ``rows``, ``full_tensor()``),
        as FSDP2 returns DTensors; no communication."""
        own = super().state_dict(destination, prefix, keep_vars=True)  # type: ignore[misc]
        return _state_dict.sharded_values(self, own, keep_vars)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load whole tensors (each rank keeps its rows) or sharded pieces covering this
        rank's rows (``ShardedTensor``s, e.g. this layout's ``state_dict()``) for the sharded
        parameters; buffers and other parameters as ``Module.load_state_dict``. Every key is
        checked before anything is copied. ``assign=True`` is not supported for sharded
        modules (the shards are views of the unit's flat storage)."""
        if assign:
            raise NotImplementedError(
                "load_state_dict(assign=True) on a fully_shard module: the shards are views of "
                "the unit's flat storage; load with assign=False"
            )
        for unit in unit_of(self).root.units:
            if unit.gathered:
                unit.reshard()
        own = super().state_dict(keep_vars=True)  # type: ignore[misc]
        own = _state_dict.sharded_values(self, own, keep_vars=True)
        padded = _state_dict.padded_values(own, state_dict)
        return super().load_state_dict(padded, strict, assign)  # type: ignore[misc]

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """``set_requires_gradient_sync(False)`` inside the block (as DDP's ``no_sync``)."""
        self.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.set_requires_gradient_sync(True)


class _Root:
    """What the units of one model share: the recorded forward order, prefetching, the header
    check, and the end of backward."""

    def __init__(
        self, units: list[Unit], top: Unit, comm: Communicator, world_headers: bool = False
    ) -> None:
        self.units, self.top, self.comm = units, top, comm
        # headers are small host arrays: on a GPU (NCCL) unit, or with a 2-D mesh (units run
        # collectives on two groups), they go over the host world
        on_host = getattr(comm, "device", "cpu") == "cpu"
        self.header_comm = comm if on_host and not world_headers else get_communicator()
        # a 2-D mesh: a unit's collectives run on two groups, so the blocking header on the
        # world names divergence instead of the fingerprint tags of one group
        self.tagged = not world_headers
        for i, unit in enumerate(units):
            unit.root, unit.index = self, i
        self.events: list[Event] | None = None
        self.prepared = False
        self.in_forward = False
        self.order: list[Unit] = []
        self.previous: list[Unit] = []
        self.counts: dict[tuple[int, int], int] = {}  # (unit index, phase) -> calls
        self.backward_started = False
        self.backward_order: list[Unit] = []
        self.require_sync = True
        self.last_launched: Unit | None = None

    def prepare(self) -> None:
        """At the first forward: make the reducers (the ranks check they agree on them)."""
        if not self.prepared:
            for unit in self.units:
                unit.make_reducer()
                if unit.reducer is not None:
                    unit.reducer.require_sync = self.require_sync
            self.prepared = True

    # ---- forward ---------------------------------------------------------------------------
    def begin_forward(self, unit: Unit) -> bool:
        if self.in_forward:
            return False
        self.prepare()
        if self.backward_started:
            raise RuntimeError(
                f"fully_shard({unit.name}): the previous backward was interrupted before its "
                f"gradients were reduced, so the ranks are out of step"
            )
        for u in self.units:  # a forward that no backward followed leaves units gathered
            if u.gathered:
                u.reshard()
            u.calls = 0
            u.to_run = set()
            u.secondary = None
        self.in_forward = True
        self.order = []
        self.counts = {}
        return True

    def record(self, unit: Unit) -> None:
        self.order.append(unit)

    def prefetch_forward(self, unit: Unit) -> None:
        """Issue the all-gather of the unit called after this call in the previous forward."""
        position = len(self.order)
        if position < len(self.previous) and self.previous[position - 1] is unit:
            nxt = self.previous[position]
            if nxt is not unit:
                nxt.issue_gather("forward")

    def end_forward(self, out: Any, grad: bool) -> Any:
        self.in_forward = False
        self.previous = list(self.order)
        tensors = [t for t in _tensors(out) if t.requires_grad]
        if not grad or not tensors:
            for u in self.units:
                if u.gathered:
                    u.reshard()
            return out
        self.backward_order = [u for u in reversed(self.order) if u.reshards_each_call]
        for t in tensors:
            t.register_hook(self._backward_starts)
        return out

    # ---- backward --------------------------------------------------------------------------
    def _backward_starts(self, grad: Tensor) -> None:
        if not self.backward_started:
            self.backward_started = True
            graph.queue_callback(self.finish_backward)
            for unit in self.units:
                if unit.reducer is not None:
                    unit.reducer.start_backward()
        return None

    def prefetch_backward(self, unit: Unit) -> None:
        """In backward: issue the all-gather of the unit that comes next in reverse forward
        order (taken from the recorded forward, not guessed)."""
        if self.backward_order and self.backward_order[0] is unit:
            self.backward_order.pop(0)
            if self.backward_order:
                self.backward_order[0].issue_gather("backward")

    def launched(self, unit: Unit) -> None:
        """A unit's reduce-scatter started: finish the one before it (wait, gradients to the
        shards, buffers freed), so at most two are alive at once."""
        previous = self.last_launched
        if previous is not None and previous is not unit and previous.reducer is not None:
            previous.reducer.settle(previous.bucket)
        self.last_launched = unit

    def finish_backward(self) -> None:
        """After the last node of backward: every unit's reduce-scatter launched and waited,
        gradients written to the shards, the units kept for backward resharded."""
        seen = []
        for unit in reversed(self.order):
            if unit not in seen:
                seen.append(unit)
        seen += [u for u in self.units if u not in seen]
        for unit in seen:
            if unit.reducer is not None:
                unit.reducer.finish_backward()
        for unit in self.units:
            if unit.gathered:
                unit.reshard()
        self.backward_started = False
        self.last_launched = None
        if self.events is not None:
            self.events.append(("backward_end", "", "backward"))

    # ---- the header check -------------------------------------------------------------------
    def check_header(self, unit: Unit, phase: int, comm: Communicator | None = None) -> None:
        """All ranks agree on the collective they issue next for a unit (over ``comm``, the
        unit's by default), or all raise ``ShardingDesyncError``. Where ``comm`` checks desyncs
        (desync.py, on by default) the unit, phase and call travel as the tag of the
        collective's own fingerprint (no extra round trip); elsewhere (GPU, 2-D mesh, desync
        check off) a 3-int all-gather goes first."""
        comm = unit.comm if comm is None else comm
        if comm.world_size == 1 or not _CHECK:
            return
        key = (unit.index, phase)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.tagged and getattr(comm, "desync", None) is not None:
            comm.next_tag = (self.counts[key] << 24) | (unit.index << 2) | phase
            comm.tag_error = self._tag_error
            return
        if self.header_comm.world_size == 1:
            return
        mine = np.array([unit.index, phase, self.counts[key]], np.int64)
        every = np.empty((self.header_comm.world_size, 3), np.int64)
        self.header_comm.allgather(mine, every, async_op=False)
        if not (every == every[0]).all():
            raise self._error([tuple(row) for row in every.tolist()])

    def _tag_error(self, tags: list[int]) -> ShardingDesyncError:
        """The error for the ranks' fingerprint tags (-1: a collective of no unit)."""
        return self._error(
            [None if t < 0 else (t >> 2 & (1 << 22) - 1, t & 3, t >> 24) for t in tags]
        )

    def _error(self, every: Sequence[Sequence[int] | None]) -> ShardingDesyncError:
        lines = [
            f"rank {r}: "
            + (
                "a collective of no unit of this model"
                if row is None
                else f"{_PHASES[int(row[1])]} of unit {int(row[0])} "
                f"{self.units[int(row[0])].name!r} (call {int(row[2])} of this step)"
            )
            for r, row in enumerate(every)
        ]
        return ShardingDesyncError(
            f"fully_shard: the ranks diverged (rank {self.header_comm.rank} raises this, as every "
            f"rank does): a rank called a unit a different number of times than the others "
            f"(data-dependent control flow around sharded modules). Next collective per rank:"
            f"\n  " + "\n  ".join(lines)
        )


def _tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def fully_shard(
    module: _Modules,
    *,
    mesh: DeviceMesh | ProcessGroup | Communicator | None = None,
    reshard_after_forward: bool | int = True,
    mp_policy: MixedPrecisionPolicy | None = None,
) -> _Modules:
    """Make ``module`` (or a list of modules, one unit) a sharded unit (FSDP2's
    ``torch.distributed.fsdp.fully_shard``; see the package docstring) and return it.

    ``mesh``: None for the world, a ``DeviceMesh`` (2-D ``(replicate, shard)``: shard within
    each row, all-reduce the shards' gradients across rows: HSDP), a process group or a
    communicator;
    ``reshard_after_forward``: True (ZeRO-3), False (ZeRO-2) or an int k (hpZ: after forward
    keep the parameters sharded over groups of k consecutive ranks, e.g. a node, so that
    backward's all-gather stays within the group; k divides the world size); ``mp_policy``: a
    ``MixedPrecisionPolicy``. Every rank must call it the same way (the ranks check). On
    glibc, the first call makes malloc keep freed host memory in the process, as a caching
    allocator (``distgrad.distributed.host_memory``; ``DISTGRAD_HOST_MEMORY_CACHE=0``: not)."""
    given: list[Any] = list(module) if isinstance(module, (list, tuple)) else [module]
    if not given or not all(isinstance(m, Module) for m in given):
        raise TypeError(
            f"fully_shard expects an nn.Module or a list of them, got {type(module).__name__}"
        )
    modules: list[Module] = given
    for m in modules:
        if "_fsdp_unit" in m.__dict__:
            raise ValueError(f"fully_shard: {type(m).__name__} is already a unit")
    mp_policy = mp_policy or MixedPrecisionPolicy()
    keep_freed_host_memory()
    comm = _communicator(mesh, modules)
    hpz = _hpz_communicator(reshard_after_forward, comm, mesh, modules)
    replicate = mesh.replicate_communicator(modules) if isinstance(mesh, DeviceMesh) else None
    name = ", ".join(type(m).__name__ for m in modules)
    # every parameter of the subtree with all its locations; shards belong to child units
    located = [
        (prefix, sub, attr, p)
        for m in modules
        for prefix, sub in m.named_modules(remove_duplicate=False)
        for attr, p in list(sub._parameters.items())
        if p is not None
    ]
    children: list[Unit] = []
    for _, _, _, p in located:
        if isinstance(p, ShardedParameter) and p._fsdp[0] not in children:
            children.append(p._fsdp[0])
    found: dict[int, Entry] = {}
    ties: dict[Unit, dict[int, list[Location]]] = {}
    for prefix, sub, attr, p in located:
        if isinstance(p, ShardedParameter):
            continue
        owner, index = next(
            ((c, i) for c in children if (i := c.original_index(p)) is not None), (None, None)
        )
        if owner is not None and index is not None:  # sharded by a child unit: tied across units
            ties.setdefault(owner, {}).setdefault(index, []).append((sub, attr))
            continue
        key = id(p)
        if key not in found:
            found[key] = (f"{prefix}.{attr}" if prefix else attr, p, [])
        found[key][2].append((sub, attr))
    for entry in _release_ties(ties):
        found[id(entry[1])] = entry
    entries = list(found.values())
    unit = Unit(modules, entries, comm, reshard_after_forward, mp_policy, name)
    unit.replicate_comm = replicate
    if hpz is not None:
        unit.use_hpz(hpz)
    unit.children = children
    units: list[Unit] = []
    for child in children:
        for u in child.root.units:
            if u not in units:
                units.append(u)
    units.append(unit)
    _Root(units, unit, comm, world_headers=replicate is not None)
    paths = {id(sub): prefix for m in modules for prefix, sub in m.named_modules()}
    for u in units:  # name units by their path in the model, for messages and the event log
        path = paths.get(id(u.modules[0]))
        if path:
            u.name = f"{path} ({type(u.modules[0]).__name__.removeprefix('FSDP')})"
    for m in modules:
        cls = type(m)
        if not isinstance(m, FSDPModule):
            m.__class__ = _fsdp_class(cls)
        object.__setattr__(m, "_fsdp_unit", unit)
    return module


def _release_ties(ties: dict[Unit, dict[int, list[Location]]]) -> list[Entry]:
    """Parameters of child units that modules outside the child also use (a tied embedding
    and output layer in different units): taken out of the child (rebuilt without them) and
    returned as ``(name, full parameter, locations)`` for the new, outer unit, which keeps
    one storage for all their uses."""
    released: list[Entry] = []
    for child, outside in ties.items():
        values = [child.full_value(i) for i in range(len(child.entries))]
        keep: list[Entry] = []
        for i, (name, requires_grad, locations) in enumerate(child.entries):
            full = Parameter(values[i], requires_grad)
            if i in outside:
                released.append((name, full, locations + outside[i]))
            else:
                keep.append((name, full, locations))
        child._build(keep)
    for _, full, locations in released:
        for module, attr in locations:
            module._parameters[attr] = full
    return released


_classes: dict[type, type] = {}
# DISTGRAD_FSDP_CHECK=0 turns the per-collective header check off (one small blocking
# all-gather before each unit collective; benchmarks/README.md has its cost)
_CHECK = os.environ.get("DISTGRAD_FSDP_CHECK", "1").lower() not in ("0", "false", "no", "off")


def _fsdp_class(cls: type) -> type:
    if cls not in _classes:
        _classes[cls] = type(f"FSDP{cls.__name__}", (FSDPModule, cls), {})
    return _classes[cls]


_hpz_groups: dict[tuple[int, int], ProcessGroup] = {}


def _hpz_communicator(
    reshard_after_forward: bool | int,
    comm: Communicator,
    mesh: DeviceMesh | ProcessGroup | Communicator | None,
    modules: list[Module],
) -> Communicator | None:
    """hpZ (an int ``reshard_after_forward``): this rank's group of that many consecutive
    ranks (one process group per size, made once; every rank makes all of them)."""
    if isinstance(reshard_after_forward, bool):
        return None
    if not isinstance(reshard_after_forward, int):
        raise TypeError(
            f"fully_shard: reshard_after_forward must be a bool or an int, got "
            f"{type(reshard_after_forward).__name__}"
        )
    world, size = comm.world_size, reshard_after_forward
    if not 1 < size < world or world % size:
        raise ValueError(
            f"fully_shard: reshard_after_forward={size} must be a non-trivial divisor of the "
            f"shard world size {world} (2..{world - 1}); use True or False otherwise"
        )
    from .. import new_group

    if getattr(mesh, "ndim", 1) > 1 or world != get_communicator().world_size:
        raise NotImplementedError(
            "fully_shard: an int reshard_after_forward (hpZ) is supported when sharding over the "
            "world (mesh=None), not over a sub-group or a 2-D mesh"
        )
    key = (id(get_communicator()), size)
    if key not in _hpz_groups:
        groups = [new_group(range(g, g + size)) for g in range(0, world, size)]
        _hpz_groups[key] = groups[comm.rank // size]
    first = next((p for m in modules for p in m.parameters()), None)
    return _hpz_groups[key].communicator_for(None if first is None else first.array)


def _communicator(
    mesh: DeviceMesh | ProcessGroup | Communicator | None, modules: list[Module]
) -> Communicator:
    if isinstance(mesh, DeviceMesh):
        return mesh.shard_communicator(modules)
    return _resolve_communicator(mesh, modules[0])


@contextlib.contextmanager
def record_events(module: Module) -> Iterator[list[Event]]:
    """Inside, the units of ``module`` (a ``fully_shard`` root) log ``(kind, unit, phase)``
    events: ``allgather_issue``, ``allgather_done``, ``compute_start``, ``compute_end``,
    ``reduce_scatter_issue``, ``backward_end``. Yields the list."""
    root = unit_of(module).root
    events: list[Event] = []
    root.events = events
    try:
        yield events
    finally:
        root.events = None
