"""``estimate``: per-rank memory and bytes on the wire of one training step, per ZeRO stage.

The model follows distgrad's buffers (not only the ZeRO paper's formulas), so tests can compare
it with what tracemalloc measures and what ``CountingCommunicator`` counts. With Psi the bytes
of all parameters, N ranks, k optimizer state tensors per parameter (Adam 2, SGD with
momentum 1), shards padded to ``ceil(rows / N)`` rows (``Psi_s`` ~ Psi / N), U the largest
unit's gathered bytes (N x its shard):

===========  ===========  ===========  ============  =====================  ===============
stage        params       grads        optim state   peak transient         wire per step
===========  ===========  ===========  ============  =====================  ===============
0 (DDP)      Psi          Psi          k Psi         T                      2 Psi
1 (ZeRO-1)   Psi          Psi          k Psi_s       (N + 1) Psi_s          2 Psi + N Psi_s
2 (ZeRO-2)   Psi_s        Psi_s        k Psi_s       Psi + 2 U + C          2 N Psi_s
3 (ZeRO-3)   Psi_s        Psi_s        k Psi_s       4 U + C                3 N Psi_s
===========  ===========  ===========  ============  =====================  ===============

Transients (each at least T, the optimizer step's temporaries: 3 arrays of the largest local
parameter for Adam, 2 for the others): DDP none else (gradients are written straight into the
buckets); ZeRO-1 the all-gather's send and receive buffers; ZeRO-2 every unit's gathered
parameters, held from forward to backward, plus, at the worst moment of backward, one unit's
fresh gradients (which are its reduce-scatter input) and the previous unit's still in flight;
ZeRO-3 the gathered unit, the next unit's prefetched all-gather, the unit's fresh gradients
(its reduce-scatter input) and the previous one's. C: the largest parameter whose rows do not
divide by N (its gradient is copied into a padded buffer, so both exist for a moment; 0 when
all divide). Activations are not counted (they depend on the batch); the wire bytes use the
ZeRO paper's accounting (``CountingCommunicator``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ...autograd import Tensor
from ...nn.module import Module
from ...optim.optimizer import Optimizer

__all__ = ["MemoryEstimate", "estimate"]

_STATES = {"sgd": 0, "sgd_momentum": 1, "momentum": 1, "rmsprop": 1, "adagrad": 1}
_STATES.update({"adam": 2, "adamw": 2})
_TEMPORARIES = {"adam": 3, "adamw": 3}  # arrays of a parameter's size alive in its update


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted bytes per rank: ``params``, ``grads``, ``optimizer_state`` (held between
    steps), ``peak_transient`` (buffers alive only during the step), ``wire_bytes`` (sent per
    step, ZeRO accounting)."""

    params: int
    grads: int
    optimizer_state: int
    peak_transient: int
    wire_bytes: int

    @property
    def persistent(self) -> int:
        """Parameters + gradients + optimizer state."""
        return self.params + self.grads + self.optimizer_state

    @property
    def peak(self) -> int:
        """Persistent bytes plus the peak transient."""
        return self.persistent + self.peak_transient


def _states(optimizer: str | int | type[Optimizer]) -> int:
    if isinstance(optimizer, int):
        return optimizer
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "")
    key = name.lower()
    if key not in _STATES:
        raise ValueError(
            f"estimate: unknown optimizer {optimizer!r}; give one of {sorted(_STATES)} or the "
            f"number of state tensors it keeps per parameter"
        )
    return _STATES[key]


def estimate(
    module: Module,
    world_size: int,
    optimizer: str | int | type[Optimizer] = "adam",
    stage: int = 3,
    units: Iterable[Module] | None = None,
    zero1_reduce_scatter: bool = False,
) -> MemoryEstimate:
    """Predict per-rank memory and wire bytes of one step of ``module`` (not yet sharded) on
    ``world_size`` ranks at ZeRO ``stage`` (0: DistributedDataParallel, 1:
    ZeroRedundancyOptimizer over it, 2/3: ``fully_shard`` with ``reshard_after_forward``
    False/True). ``units``: the modules that will be units (default: every direct child with
    parameters; the rest is the root's); ``zero1_reduce_scatter``: stage 1 with
    ``ZeroRedundancyOptimizer(ddp=...)`` (DDP reduce-scatters: 2 N Psi_s on the wire, and
    the gradients live only during backward). Returns a ``MemoryEstimate``."""
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"estimate: stage must be 0, 1, 2 or 3, got {stage!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"estimate: world_size must be a positive int, got {world_size!r}")
    n, k = world_size, _states(optimizer)
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "")
    temporaries = _TEMPORARIES.get(str(name).lower(), 2)
    params = list(dict.fromkeys(module.parameters()))
    if units is None:
        units = [m for m in module.children() if any(True for _ in m.parameters())]
    groups: list[list[Tensor]] = []
    taken: set[int] = set()
    for unit in units:
        group = [p for p in dict.fromkeys(unit.parameters()) if id(p) not in taken]
        taken.update(id(p) for p in group)
        groups.append(group)
    groups.append([p for p in params if id(p) not in taken])

    def full(p: Tensor) -> int:
        return int(np.prod(p.shape)) * p.array.dtype.itemsize

    def shard(p: Tensor) -> int:
        shape = tuple(p.shape) or (1,)
        return -(-shape[0] // n) * int(np.prod(shape[1:])) * p.array.dtype.itemsize

    psi = sum(full(p) for p in params)
    psi_s = sum(shard(p) for p in params)
    unit_max = max((n * sum(shard(p) for p in g) for g in groups), default=0)
    largest = max((full(p) for p in params), default=0)
    largest_s = max((shard(p) for p in params), default=0)
    copied = max((full(p) for p in params if (tuple(p.shape) or (1,))[0] % n), default=0)
    if stage == 0:
        flags = sum(p.array.dtype.itemsize for p in params)
        t = temporaries * largest
        return MemoryEstimate(psi, psi + flags, k * psi, t, 2 * (psi + flags))
    t = temporaries * largest_s
    if stage == 1 and zero1_reduce_scatter:
        peak = max(t, psi + psi_s, (n + 1) * psi_s)  # the buckets' send buffers in backward
        return MemoryEstimate(psi, psi_s, k * psi_s, peak, 2 * n * psi_s)
    if stage == 1:
        return MemoryEstimate(psi, psi, k * psi_s, max(t, (n + 1) * psi_s), 2 * psi + n * psi_s)
    if stage == 2:
        peak = max(t, psi + 2 * unit_max + copied)
        return MemoryEstimate(psi_s, psi_s, k * psi_s, peak, 2 * n * psi_s)
    return MemoryEstimate(psi_s, psi_s, k * psi_s, max(t, 4 * unit_max + copied), 3 * n * psi_s)
