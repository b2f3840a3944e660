"""The random streams a checkpoint carries: distgrad's default generator, numpy's global
``np.random`` state, Python's ``random``, and a DataLoader's own generator. States are turned
into plain values and numpy arrays that ``distgrad.save`` stores without pickling."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from ..backend import random as _random

__all__ = ["capture", "restore", "generator_of"]


def generator_of(loader: object) -> Any:
    """The DataLoader's own generator (distgrad or numpy), or None for the default stream."""
    loader = getattr(loader, "loader", loader)  # a ResumableLoader's DataLoader
    return getattr(loader, "generator", None)


def _generator_state(gen: Any) -> dict[str, Any]:
    if isinstance(gen, np.random.Generator):
        return {"numpy": gen.bit_generator.state}
    return {"distgrad": gen.get_state()}


def _set_generator_state(gen: Any, state: dict[str, Any]) -> None:
    if isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state["numpy"]
    else:
        gen.set_state(state["distgrad"])


def capture(loader: object = None) -> dict[str, Any]:
    """This process's random states (and ``loader``'s generator's, if it has its own)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "distgrad": _random.default_generator.get_state(),
        "numpy": {
            "kind": kind,
            "keys": np.asarray(keys, np.int64),  # (a uint32 array)
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {
            "version": version,
            "internal": np.array(internal, np.int64),
            "gauss_next": gauss_next,
        },
    }
    gen = generator_of(loader)
    if gen is not None and gen is not _random.default_generator:
        state["loader"] = _generator_state(gen)
    return state


def restore(state: dict[str, Any], loader: object = None) -> None:
    """Put back the states ``capture`` returned."""
    _random.default_generator.set_state(state["distgrad"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            np.asarray(n["keys"], np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["internal"]), p["gauss_next"]))
    gen = generator_of(loader)
    if gen is not None and "loader" in state:
        _set_generator_state(gen, state["loader"])
