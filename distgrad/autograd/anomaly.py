"""``detect_anomaly``: record forward tracebacks and stop at the first backward that makes
NaN or Inf, naming the forward op responsible."""

from __future__ import annotations

import functools

from .function import _anomaly

__all__ = ["detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled"]


def is_anomaly_enabled() -> bool:
    """Whether anomaly mode is on."""
    return _anomaly["enabled"]


class set_detect_anomaly:
    """Turn anomaly detection on or off (immediately; restores the old mode on exit)."""

    def __init__(self, mode: bool, check_nan: bool = True):
        self._prev = dict(_anomaly)
        _anomaly["enabled"] = bool(mode)
        _anomaly["check_nan"] = bool(check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _anomaly.update(self._prev)
        return False


class detect_anomaly:
    """Context manager/decorator: while active, each op keeps the traceback of its forward
    call, and a backward that produces NaN/Inf raises with that traceback."""

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan

    def __enter__(self):
        self._ctx = set_detect_anomaly(True, self.check_nan)
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)

        return wrapper
