"""``get_state_dict`` / ``set_state_dict`` and friends, as ``torch.distributed.checkpoint.
state_dict``: a model's and its optimizers' state keyed by parameter FQN, whatever the layout.

Model: the unwrapped module's (``DistributedDataParallel.module``) parameters and buffers by
FQN; a ``fully_shard`` parameter is a ``ShardedTensor`` of this rank's rows (sharing storage).
Optimizer: ``{"state": {fqn: {name: value}}, "param_groups": [{..., "params": [fqn, ...]}]}``;
state tensors of a sharded parameter (fully_shard, or ``ZeroRedundancyOptimizer``'s rows) are
``ShardedTensor``s of this rank's rows, the rest whole tensors. An optimizer that has not stepped
yet gets its state first (a step with zero gradients and learning rate 0, as torch does), so
the dict holds every tensor a load must fill. ``StateDictOptions(full_state_dict=True)`` gathers
whole tensors instead (a collective), ``cpu_offload=True`` returns host copies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ...autograd import Tensor, no_grad
from ..data_parallel import DistributedDataParallel
from ..fsdp import ShardedParameter
from ..optim import ZeroRedundancyOptimizer
from ._comm import communicator
from ._tree import ShardedTensor, rows_of

if TYPE_CHECKING:
    from ...nn.module import Module
    from ...optim.optimizer import Optimizer

# One optimizer, or several (each over some of the model's parameters).
Optimizers = Union["Optimizer", list["Optimizer"], tuple["Optimizer", ...]]

__all__ = [
    "StateDictOptions",
    "get_state_dict",
    "set_state_dict",
    "get_model_state_dict",
    "set_model_state_dict",
    "get_optimizer_state_dict",
    "set_optimizer_state_dict",
]


@dataclass
class StateDictOptions:
    """As torch's: ``full_state_dict`` (whole tensors, gathered: a collective), ``cpu_offload``
    (host copies), ``strict`` (``set_model_state_dict`` raises on missing/unexpected keys).
    ``ignore_frozen_params``, ``broadcast_from_rank0`` and ``flatten_optimizer_state_dict`` are
    accepted; only their default (False) is supported."""

    full_state_dict: bool = False
    cpu_offload: bool = False
    ignore_frozen_params: bool = False
    keep_submodule_prefixes: bool = True
    strict: bool = True
    broadcast_from_rank0: bool = False
    flatten_optimizer_state_dict: bool = False


def _unwrap(model: Module) -> Module:
    while isinstance(model, DistributedDataParallel):
        model = model.module
    return model


def _fqns(model: Module) -> dict[int, str]:
    return {id(p): name for name, p in _unwrap(model).named_parameters(remove_duplicate=False)}


def _gather(value: ShardedTensor) -> Tensor:
    """The whole tensor of a ShardedTensor (a collective over the world)."""
    comm = communicator()
    array = value.array
    local = array if isinstance(array, np.ndarray) else array.get()
    start = value.rows[0]
    pieces = [(start, local)] if comm is None else comm.allgather_object((start, local))
    n = value.full_shape[0] if value.full_shape else 1
    whole = np.empty((n, *local.shape[1:]) if value.full_shape else (1,), local.dtype)
    for start, rows in pieces:
        whole[start : start + len(rows)] = rows
    return Tensor(whole.reshape(value.full_shape))


def _finish(value: Any, options: StateDictOptions) -> Any:
    if isinstance(value, ShardedTensor) and options.full_state_dict:
        value = _gather(value)
    if options.cpu_offload:
        if isinstance(value, ShardedTensor):
            value = ShardedTensor(value.to_local().cpu(), value.full_shape, value.rows)
        elif isinstance(value, Tensor):
            value = value.cpu()
    return value


def _sharded(p: ShardedParameter, array: Any) -> ShardedTensor:
    start, stop = p.local_rows
    shape = tuple(p.full_shape)
    # a 0-d parameter's shard is one row (or none): its local part stays 1-d
    return ShardedTensor(Tensor(array[: stop - start]), shape, (start, stop))


def get_model_state_dict(
    model: Module, *, options: StateDictOptions | None = None
) -> dict[str, Any]:
    """The model's state dict by FQN (see the module docstring)."""
    options = options or StateDictOptions()
    out = {}
    for name, t in _unwrap(model).state_dict(keep_vars=True).items():
        value = _sharded(t, t.array) if isinstance(t, ShardedParameter) else t.detach()
        out[name] = _finish(value, options)
    return out


def _optimizers(optimizers: Optimizers) -> list[Optimizer]:
    return list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]


def _init_state(optim: Optimizer) -> None:
    """Give a fresh optimizer its state: one step with zero gradients and learning rate 0 (as
    torch's ``_init_optim_state``). For ``ZeroRedundancyOptimizer`` the ranks decide together
    (its step is a collective)."""
    if isinstance(optim, ZeroRedundancyOptimizer):
        fresh = optim.optim is not None and not optim.optim.state
        if optim.world_size > 1:
            fresh = any(optim.comm.allgather_object(fresh))
    else:
        fresh = not optim.state
    if not fresh:
        return
    lrs = [g["lr"] for g in optim.param_groups]
    params = [p for g in optim.param_groups for p in g["params"]]
    grads = [p.grad for p in params]
    try:
        for g in optim.param_groups:
            g["lr"] = 0.0
        for p in params:
            if p.grad is None:
                p.grad = Tensor(p.device.xp.zeros_like(p.array))
        with no_grad():
            optim.step()
    finally:
        for g, lr in zip(optim.param_groups, lrs):
            g["lr"] = lr
        for p, grad in zip(params, grads):
            p.grad = grad


def get_optimizer_state_dict(
    model: Module, optimizers: Optimizers, *, options: StateDictOptions | None = None
) -> dict[str, Any]:
    """The optimizers' state keyed by parameter FQN (see the module docstring)."""
    options = options or StateDictOptions()
    fqn = _fqns(model)
    state, groups = {}, []
    for optim in _optimizers(optimizers):
        _init_state(optim)
        # ZeRO-1's groups hold what it was given; its local optimizer's hold every
        # hyperparameter (betas, eps...), as a plain optimizer's do
        inner = (
            getattr(optim, "optim", None) if isinstance(optim, ZeroRedundancyOptimizer) else None
        )
        extra = dict(inner.defaults) if inner is not None else {}
        for g in optim.param_groups:
            groups.append(
                {
                    **extra,
                    **{k: v for k, v in g.items() if k != "params"},
                    "params": [fqn[id(p)] for p in g["params"]],
                }
            )
        if isinstance(optim, ZeroRedundancyOptimizer):
            shards = optim.local_shards()
            owned = [i for i, s in enumerate(shards) if s[3] is not None]
            local = optim.optim.state_dict()["state"] if optim.optim is not None else {}
            for k, values in local.items():
                p, start, stop, view = shards[owned[k]]
                state[fqn[id(p)]] = {
                    key: _finish(ShardedTensor(v, tuple(p.shape), (start, stop)), options)
                    if isinstance(v, Tensor) and tuple(v.shape) == tuple(view.shape) and v.ndim
                    else v
                    for key, v in values.items()
                }
            continue
        params = [p for g in optim.param_groups for p in g["params"]]
        for i, values in optim.state_dict()["state"].items():
            p = params[i]
            out = {}
            for key, v in values.items():
                if (
                    isinstance(p, ShardedParameter)
                    and isinstance(v, Tensor)
                    and tuple(v.shape) == tuple(p.shape)
                    and v.ndim
                ):
                    v = _sharded(p, v.array)
                out[key] = _finish(v, options)
            state[fqn[id(p)]] = out
    return {"state": state, "param_groups": groups}


def get_state_dict(
    model: Module,
    optimizers: Optimizers,
    *,
    submodules: object = None,
    options: StateDictOptions | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_state_dict, optimizer_state_dict)`` (as torch's)."""
    return (
        get_model_state_dict(model, options=options),
        get_optimizer_state_dict(model, optimizers, options=options),
    )


# ---- setting ------------------------------------------------------------------------------
def _localrows_of(value: object, start: int, stop: int, shape: Sequence[int], what: str) -> Any:
    """Rows ``[start, stop)`` (host or device array, shape (rows, ...)) of a whole Tensor or a
    ShardedTensor holding exactly them."""
    if isinstance(value, ShardedTensor):
        if tuple(value.full_shape) != tuple(shape) or tuple(value.rows) != (start, stop):
            raise ValueError(
                f"{what}: the state holds rows {value.rows[0]}:{value.rows[1]} of "
                f"{value.full_shape}, this rank needs rows {start}:{stop} of {tuple(shape)} "
                f"(load it with distgrad.distributed.checkpoint.load to reshard)"
            )
        return rows_of(value.array)
    if not isinstance(value, Tensor) or tuple(value.shape) != tuple(shape):
        raise ValueError(
            f"{what}: expected a tensor of shape {tuple(shape)}, got "
            f"{tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}"
        )
    return rows_of(value.array)[start:stop]


def set_model_state_dict(
    model: Module, model_state_dict: dict[str, Any], *, options: StateDictOptions | None = None
) -> tuple[list[str], list[str]]:
    """Load ``model_state_dict`` (whole tensors or this rank's ShardedTensor rows) into the
    model; everything is checked before anything is copied. Returns ``(missing_keys,
    unexpected_keys)``."""
    options = options or StateDictOptions()
    own = _unwrap(model).state_dict(keep_vars=True)
    missing = [k for k in own if k not in model_state_dict]
    unexpected = [k for k in model_state_dict if k not in own]
    if options.strict and (missing or unexpected):
        raise RuntimeError(
            f"Error(s) in loading state_dict: missing keys {missing}, unexpected keys {unexpected}"
        )
    copies = []
    for name, target in own.items():
        if name not in model_state_dict:
            continue
        value = model_state_dict[name]
        if isinstance(target, ShardedParameter):
            start, stop = target.local_rows
            rows = _localrows_of(
                value, start, stop, target.full_shape, f"set_model_state_dict({name!r})"
            )
            copies.append((target, rows_of(target.array)[: stop - start], rows))
        else:
            rows = _localrows_of(
                value,
                0,
                target.shape[0] if target.ndim else 1,
                target.shape,
                f"set_model_state_dict({name!r})",
            )
            copies.append((target, rows_of(target.array), rows))
    with no_grad():
        for target, dest, rows in copies:
            dest[...] = target.device.xp.asarray(rows)
            target.bump_version()
    return missing, unexpected


def set_optimizer_state_dict(
    model: Module,
    optimizers: Optimizers,
    optim_state_dict: dict[str, Any],
    *,
    options: StateDictOptions | None = None,
) -> None:
    """Load an FQN-keyed optimizer state (see ``get_optimizer_state_dict``) into the
    optimizers, whatever layout it came from, as long as its tensors are whole or hold this
    rank's rows (``load`` reshards)."""
    fqn = _fqns(model)
    saved_groups = list(optim_state_dict["param_groups"])
    state = optim_state_dict["state"]
    for optim in _optimizers(optimizers):
        mine, saved_groups = (
            saved_groups[: len(optim.param_groups)],
            saved_groups[len(optim.param_groups) :],
        )
        if len(mine) != len(optim.param_groups):
            raise ValueError(
                f"set_optimizer_state_dict: the state has {len(mine)} parameter groups left, the "
                f"optimizer has {len(optim.param_groups)}"
            )
        for g, s in zip(optim.param_groups, mine):
            names = [fqn[id(p)] for p in g["params"]]
            if list(s["params"]) != names:
                raise ValueError(
                    f"set_optimizer_state_dict: a parameter group holds {list(s['params'])[:4]}..., "
                    f"the optimizer's holds {names[:4]}..."
                )
        if isinstance(optim, ZeroRedundancyOptimizer):
            local = {}
            owned = [(p, a, b, v) for p, a, b, v in optim.local_shards() if v is not None]
            for k, (p, start, stop, view) in enumerate(owned):
                values = state.get(fqn[id(p)])
                if values is None:
                    continue
                local[k] = {
                    key: Tensor(
                        _localrows_of(
                            v, start, stop, tuple(p.shape), f"optimizer state {fqn[id(p)]}.{key}"
                        )
                        .reshape(view.shape)
                        .copy()
                    )
                    if isinstance(v, (Tensor, ShardedTensor))
                    and (isinstance(v, ShardedTensor) or v.ndim)
                    else v
                    for key, v in values.items()
                }
            _groups_into(optim.param_groups, mine)
            if optim.optim is not None:
                sd = optim.optim.state_dict()
                sd["state"] = local
                optim.optim.load_state_dict(sd)
            continue
        params = [p for g in optim.param_groups for p in g["params"]]
        native = {}
        for i, p in enumerate(params):
            values = state.get(fqn[id(p)])
            if values is None:
                continue
            out = {}
            for key, v in values.items():
                what = f"optimizer state {fqn[id(p)]}.{key}"
                if isinstance(p, ShardedParameter) and (
                    isinstance(v, ShardedTensor)
                    or isinstance(v, Tensor)
                    and v.ndim
                    and tuple(v.shape) == tuple(p.full_shape)
                ):
                    start, stop = p.local_rows
                    padded = p.device.xp.zeros(p.array.shape, p.array.dtype)
                    rows_of(padded)[: stop - start] = p.device.xp.asarray(
                        _localrows_of(v, start, stop, p.full_shape, what)
                    )
                    v = Tensor(padded)
                elif isinstance(v, ShardedTensor):
                    v = Tensor(
                        _localrows_of(
                            v, 0, v.full_shape[0] if v.full_shape else 1, v.full_shape, what
                        )
                        .reshape(v.full_shape)
                        .copy()
                    )
                out[key] = v
            native[i] = out
        groups = optim.state_dict()["param_groups"]
        _groups_into(groups, mine)
        optim.load_state_dict({"state": native, "param_groups": groups})


def _groups_into(groups: list, saved: list) -> None:
    for g, s in zip(groups, saved):
        for key, value in s.items():
            if key != "params":
                g[key] = value


def set_state_dict(
    model: Module,
    optimizers: Optimizers,
    *,
    model_state_dict: dict[str, Any],
    optim_state_dict: dict[str, Any],
    options: StateDictOptions | None = None,
) -> tuple[list[str], list[str]]:
    """Load both (as torch's); returns the model's ``(missing_keys, unexpected_keys)``."""
    keys = set_model_state_dict(model, model_state_dict, options=options)
    set_optimizer_state_dict(model, optimizers, optim_state_dict, options=options)
    return keys
