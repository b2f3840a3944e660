"""``distgrad.backends.mps``: Apple's Metal backend, which distgrad does not have."""

from __future__ import annotations


def is_available() -> bool:
    """False: distgrad has no MPS backend (numpy CPU or cupy CUDA only)."""
    return False


def is_built() -> bool:
    """False: distgrad is not built with MPS support."""
    return False
