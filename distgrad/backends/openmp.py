"""``distgrad.backends.openmp``: distgrad itself starts no OpenMP threads; numpy's BLAS may
(controlled by ``OMP_NUM_THREADS`` and friends before numpy is imported)."""

from __future__ import annotations


def is_available() -> bool:
    """False: distgrad has no OpenMP code of its own."""
    return False
