"""State dicts of ``fully_shard`` models: sharded values out, full or sharded values in.

``state_dict()`` gives every sharded parameter as a ``ShardedTensor`` of this rank's real rows
(no communication; as FSDP2 gives DTensors); ``load_state_dict`` takes, per sharded key, the
whole tensor (each rank keeps its rows) or a piece whose rows cover this rank's. Everything is
checked on every key before anything is copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...autograd import Tensor
from ..sharded_tensor import ShardedTensor
from ._unit import ShardedParameter, unit_of

__all__: list[str] = []


def shard_of(module: object) -> dict[int, ShardedParameter]:
    """``id(full parameter) -> its shard`` for every unit of the model ``module`` belongs to
    (a gathered unit has its full parameters on the modules)."""
    shards: dict[int, ShardedParameter] = {}
    for unit in unit_of(module).root.units:
        for full, shard in zip(unit.full, unit.sharded):
            shards[id(full)] = shard
    return shards


def sharded_values(module: object, own: dict[str, Any], keep_vars: bool) -> dict[str, Any]:
    """``own`` (a state dict taken with ``keep_vars=True``) with the sharded parameters as
    ``ShardedTensor``s (or the ``ShardedParameter``s themselves when ``keep_vars``)."""
    shards = shard_of(module)
    for key, value in own.items():
        value = shards.get(id(value), value)
        if isinstance(value, ShardedParameter):
            own[key] = value if keep_vars else value.to_local()
        elif not keep_vars:
            own[key] = value.detach()
    return own


def padded_values(own: dict[str, Any], state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``state_dict`` with each value of a sharded key turned into this rank's padded shard
    (whole tensor: its rows; ``ShardedTensor``: the rows it covers). Raises with every problem
    found, before anything is changed."""
    errors: list[str] = []
    out = dict(state_dict)
    for key, target in own.items():
        if not isinstance(target, ShardedParameter) or key not in state_dict:
            continue
        value, full_shape, (start, stop) = state_dict[key], target.full_shape, target.local_rows
        if not isinstance(value, Tensor):
            errors.append(
                f'While copying the parameter named "{key}", expected a Tensor from the '
                f"checkpoint but got {type(value).__name__}."
            )
            continue
        shape = tuple(getattr(value, "full_shape", value.shape))
        if shape != tuple(full_shape):
            errors.append(
                f"size mismatch for {key}: copying a param with shape {list(shape)} from "
                f"checkpoint, the shape in current model is {list(full_shape)} (sharded: "
                f"pass the whole tensor or a ShardedTensor of it)."
            )
            continue
        inner = int(np.prod(full_shape[1:])) if len(full_shape) > 1 else 1
        if isinstance(value, ShardedTensor):
            if not value.covers((start, stop)):
                errors.append(
                    f"{key}: the checkpoint's piece holds rows {list(value.rows)} of dim 0, this "
                    f"rank (rank {target._fsdp[0].comm.rank}) needs rows [{start}, {stop}); load "
                    f"a differently sharded checkpoint through distgrad.distributed.checkpoint, "
                    f"or pass whole tensors"
                )
                continue
            rows = value.take((start, stop))
        else:
            rows = value.array.reshape(full_shape[0] if full_shape else 1, inner)[start:stop]
        padded = target.device.xp.zeros(target.shape, target.array.dtype)
        padded.reshape(-1, inner)[: stop - start] = rows.reshape(stop - start, inner)
        out[key] = Tensor(padded)
    if errors:
        raise RuntimeError(
            "Error(s) in loading state_dict (fully_shard):\n\t" + "\n\t".join(errors)
        )
    return out
