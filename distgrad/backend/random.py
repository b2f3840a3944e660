"""Random number streams: one seeded numpy Generator per process (cupy's when on GPU)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "Generator",
    "manual_seed",
    "default_generator",
    "seed",
    "initial_seed",
    "get_rng_state",
    "set_rng_state",
]


class Generator:
    """A seeded random stream, like ``torch.Generator``; ``manual_seed`` makes it reproducible."""

    def __init__(self, device="cpu"):
        self.device = device
        self._seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0]) % (2**63)
        self._rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed: int) -> Generator:
        """Seed this generator (resetting its stream); return self."""
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)
        return self

    def initial_seed(self) -> int:
        """The seed this generator was last seeded with."""
        return self._seed

    def get_state(self) -> dict:
        """The generator's state (a uint8 tensor), for :meth:`set_state` later."""
        return {"seed": self._seed, "bit_generator": self._rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        """Restore a state returned by :meth:`get_state`; return self."""
        self._seed = int(state["seed"])
        self._rng = np.random.default_rng(self._seed)
        self._rng.bit_generator.state = state["bit_generator"]

    @property
    def numpy(self) -> np.random.Generator:
        """The numpy Generator behind this stream."""
        return self._rng


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default stream (and cupy's, when cupy is loaded)."""
    default_generator.manual_seed(seed)
    from .device import _cupy

    if _cupy is not None:
        _cupy.random.seed(int(seed) % (2**32))
    return default_generator


def seed() -> int:
    """Seed the default generator from the OS's entropy; return the seed."""
    s = int(np.random.SeedSequence().generate_state(1, np.uint64)[0]) % (2**63)
    manual_seed(s)
    return s


def initial_seed() -> int:
    """The seed the default generator was last seeded with."""
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    """The default generator's state (a uint8 tensor)."""
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    """Restore the default generator from a state returned by :func:`get_rng_state`."""
    default_generator.set_state(state)
