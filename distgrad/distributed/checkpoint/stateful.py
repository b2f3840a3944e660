"""``Stateful`` (what has a state dict) and ``RNGState``: every rank's random streams as one
checkpoint entry."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...backend import random as _random
from ...checkpoint import rng
from ..groups import ProcessGroup
from ._comm import communicator
from ._tree import PerRank, to_json


@runtime_checkable
class Stateful(Protocol):
    """What has a state dict to save and load (``torch.distributed.checkpoint.stateful``):
    models, optimizers, schedulers, ``RNGState``, a ``ResumableLoader``."""

    def state_dict(self) -> dict[str, Any]:
        """The object's state."""
        ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> Any:
        """Restore a state ``state_dict()`` returned."""
        ...


class RNGState:
    """The random streams of every rank (distgrad's default generator, numpy's global state,
    Python's ``random``; with ``loader=``, that DataLoader's own generator) as a DCP
    ``Stateful``: put it in the state dict given to ``save`` and ``load``.

    Loaded on the same number of ranks, rank r gets exactly the streams rank r saved (the run
    continues bit-identically). On a different number of ranks the saved streams cannot be
    continued (ranks appear or vanish), so every stream of rank r is re-seeded from the SHA-256
    of all saved streams, the new world size and r: deterministic (the same checkpoint and
    world size give the same streams), different per rank, but not the streams an
    uninterrupted run would have drawn."""

    def __init__(self, loader: object = None, process_group: ProcessGroup | None = None):
        self.loader, self.process_group = loader, process_group

    def _rank_world(self) -> tuple[int, int]:
        comm = communicator(self.process_group)
        return (0, 1) if comm is None else (comm.rank, comm.world_size)

    def state_dict(self) -> dict[str, Any]:
        """``{"world_size", "streams": PerRank(this rank's streams)}``."""
        _, world = self._rank_world()
        return {"world_size": world, "streams": PerRank(rng.capture(self.loader))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore this rank's streams (same world size) or re-seed them (see the class)."""
        rank, world = self._rank_world()
        streams = state_dict["streams"]
        if not isinstance(streams, list):  # a state_dict() of this process, not a loaded one
            streams = [streams.value if isinstance(streams, PerRank) else streams]
        if len(streams) == world and state_dict.get("world_size") == world:
            rng.restore(streams[rank], self.loader)
            return
        digest = hashlib.sha256(json.dumps(to_json(streams), sort_keys=True).encode())
        digest.update(f"/{world}/{rank}".encode())
        seed = int.from_bytes(digest.digest()[:8], "little")
        _random.default_generator.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        gen = rng.generator_of(self.loader)
        if gen is not None and gen is not _random.default_generator:
            if isinstance(gen, np.random.Generator):
                gen.bit_generator.state = np.random.PCG64(seed).state
            else:
                gen.manual_seed(seed)
