"""``distgrad.backends.cpu``: what the CPU backend offers (numpy)."""

from __future__ import annotations


def get_cpu_capability() -> str:
    """'numpy': distgrad's CPU kernels are numpy's (its BLAS does any vectorization)."""
    return "numpy"
