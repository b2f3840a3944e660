"""``distgrad.backends.cudnn``: cuDNN switches. distgrad does not use cuDNN (its GPU
convolutions are cupy matrix products), so ``is_available()`` is False and the flags are
documented no-ops: ``benchmark`` (autotuning), ``deterministic`` (distgrad's GPU kernels
are already deterministic except for scatter-adds into repeated indices, which cuDNN
settings would not change either), ``allow_tf32`` and ``enabled`` are remembered only."""

from __future__ import annotations

benchmark: bool = False
deterministic: bool = False
enabled: bool = True
allow_tf32: bool = True
benchmark_limit: int = 10


def is_available() -> bool:
    """False: distgrad never calls cuDNN."""
    return False


def version() -> None:
    """None: no cuDNN library is loaded by distgrad."""
    return None
