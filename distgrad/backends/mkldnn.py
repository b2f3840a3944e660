"""``distgrad.backends.mkldnn``: oneDNN, which distgrad does not use (numpy computes on the
CPU). ``enabled`` is remembered only."""

from __future__ import annotations

enabled: bool = False


def is_available() -> bool:
    """False: distgrad does not call oneDNN."""
    return False
