"""The state-dict tree as DCP sees it: nested dicts/lists flattened to paths, tensors (whole or
row-sharded) and plain values, and the JSON form of the values kept in the metadata."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ...autograd import Tensor
from ..sharded_tensor import ShardedTensor

__all__ = ["ShardedTensor", "PerRank", "flatten", "key_of", "to_json", "from_json", "assign"]

# A path into a state dict: its keys (and list indices), outermost first.
Path = tuple[Any, ...]


class PerRank:
    """A value that differs per rank (e.g. random streams): every rank's is saved; on load the
    value becomes the list of all saved ranks' values."""

    def __init__(self, value: object):
        self.value = value


def is_stateful(value: object) -> bool:
    """``value`` has ``state_dict()``/``load_state_dict()`` (DCP's ``Stateful``)."""
    return (
        not isinstance(value, (Tensor, dict, list, tuple))
        and callable(getattr(value, "state_dict", None))
        and callable(getattr(value, "load_state_dict", None))
    )


def flatten(tree: object, path: Path = ()) -> list[tuple[Path, Any]]:
    """``[(path, leaf)]`` of nested dicts and lists (paths are tuples of keys/indices). Tensors
    are leaves; a ``ShardedTensor`` (what ``fully_shard`` models' ``state_dict()``,
    ``ZeroRedundancyOptimizer.sharded_state_dict()`` and ``get_state_dict`` hold) is this
    rank's piece, not a whole tensor."""
    if isinstance(tree, dict):
        return [item for k, v in tree.items() for item in flatten(v, (*path, k))]
    if isinstance(tree, list) and any(isinstance(v, (Tensor, dict, list, PerRank)) for v in tree):
        return [item for i, v in enumerate(tree) for item in flatten(v, (*path, i))]
    return [(path, tree)]


def rows_of(array: Any) -> Any:
    """``array`` as (rows, rest): dim 0 by the rest (a 0-d array is one row)."""
    return array.reshape(array.shape[0] if array.ndim else 1, int(np.prod(array.shape[1:])))


def key_of(path: Path) -> str:
    """The storage key of a path: its JSON (FQNs contain dots, so dots cannot join them)."""
    return json.dumps(list(path))


def describe(key: str) -> str:
    """A path as people read it: ``state.fc.weight.exp_avg``."""
    return ".".join(str(p) for p in json.loads(key))


def assign(tree: Any, path: Path, value: object) -> None:
    """Replace the leaf at ``path`` in ``tree`` (in place)."""
    for p in path[:-1]:
        tree = tree[p]
    tree[path[-1]] = value


def to_json(value: object) -> Any:
    """``value`` as JSON-able data (numpy arrays and scalars, 0-d tensors, tuples tagged so
    that ``from_json`` gives them back)."""
    if isinstance(value, Tensor):
        value = value.numpy(force=True) if hasattr(value, "numpy") else np.asarray(value.array)
    if isinstance(value, np.ndarray):
        return {"__ndarray__": [str(value.dtype), list(value.shape), value.reshape(-1).tolist()]}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: to_json(v) for k, v in value.items()}}
        return {"__items__": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v) for v in value]}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"distgrad.distributed.checkpoint: cannot save a {type(value).__name__} in a state "
        f"dict (tensors, numbers, strings, lists, dicts and objects with state_dict() are "
        f"supported)"
    )


def from_json(data: Any) -> Any:
    """The inverse of ``to_json``."""
    if isinstance(data, list):
        return [from_json(v) for v in data]
    if isinstance(data, dict):
        if "__ndarray__" in data:
            dtype, shape, flat = data["__ndarray__"]
            return np.asarray(flat, dtype=dtype).reshape(shape)
        if "__tuple__" in data:
            return tuple(from_json(v) for v in data["__tuple__"])
        if "__items__" in data:
            return {
                from_json(k) if not isinstance(k, list) else tuple(k): from_json(v)
                for k, v in data["__items__"]
            }
        return {k: from_json(v) for k, v in data["__dict__"].items()}
    return data
