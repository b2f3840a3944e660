"""``autocast``: run ops in lower precision where that is safe, as ``torch.autocast``.

While an autocast region is active, an interceptor sees every op call and casts its floating
tensor inputs by the policy the op class declares (``Function.autocast``):

- ``"lower"`` (matmul, linear, einsum, convolutions): to the autocast dtype;
- ``"float32"`` (exp/log/pow, sums, means, softmax, norms, normalisation layers, losses):
  float16/bfloat16 inputs to float32;
- ``None`` (everything else): all floating inputs to the widest of their dtypes.

float64 tensors are never cast. The casts are the differentiable ``Tensor.to``, so gradients
reach float32 parameters in float32. The state is process-wide (not per thread).
"""

from __future__ import annotations

import functools

import numpy as np

from ..autograd import Tensor
from ..autograd import function as _function
from ..backend import dtypes

__all__ = ["autocast", "is_autocast_enabled", "get_autocast_dtype"]

_LOW = {dtypes.float16.np: dtypes.float16}
if dtypes.bfloat16 is not None:
    _LOW[dtypes.bfloat16.np] = dtypes.bfloat16
_FLOATING = {np.dtype(np.float32): dtypes.float32, np.dtype(np.float64): dtypes.float64, **_LOW}
_stack: list = []  # the autocast regions entered, innermost last


class _Caster:
    """The interceptor, installed while the innermost autocast region is enabled."""

    casts_inputs = True  # ops leave mismatched floating dtypes to it (function.autocasting)

    def before(self, cls, args):
        policy = cls.autocast
        if policy is None:
            return _promoted(args)
        if policy == "lower":
            target = _stack[-1].dtype
            eligible = _FLOATING.keys() - {target.np, dtypes.float64.np}
        else:
            target, eligible = dtypes.float32, _LOW.keys()
        return _cast(args, eligible, target)

    def after(self, cls, args, outputs):
        """A "lower" op's outputs in the autocast dtype: numpy computes bfloat16 matmuls in
        float32 and returns float32."""
        target = _stack[-1].dtype
        if cls.autocast != "lower" or target is dtypes.float16:
            return None
        if isinstance(outputs, Tensor):
            return outputs.to(target) if outputs.array.dtype == np.float32 else None
        return tuple(
            o.to(target) if isinstance(o, Tensor) and o.array.dtype == np.float32 else o
            for o in outputs
        )


_caster = _Caster()


def _cast(args, eligible, target):
    out = None
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and a.array.dtype in eligible:
            if out is None:
                out = list(args)
            out[i] = a.to(target)
    return args if out is None else tuple(out)


def _promoted(args):
    """The floating tensor arguments cast to the widest of their dtypes (when they differ)."""
    found = {a.array.dtype for a in args if isinstance(a, Tensor)} & _FLOATING.keys()
    if len(found) < 2:
        return args
    widest = dtypes.result_type(*(_FLOATING[d] for d in found))
    return _cast(args, found - {widest.np}, widest)


def _sync() -> None:
    """Install the interceptor iff the innermost region is enabled."""
    want = bool(_stack) and _stack[-1].enabled
    installed = _caster in _function.active_interceptors()
    if want and not installed:
        _function.push_interceptor(_caster)
    elif installed and not want:
        _function.pop_interceptor(_caster)


class autocast:
    """Context manager and decorator: ops inside run in mixed precision.

    ``autocast(dtype=distgrad.float16)``, or as ``torch.autocast("cpu", dtype=...)`` with a
    device type first ('cpu' or 'cuda'; the policy applies to ops on every device). ``dtype``
    is float16 (the default) or bfloat16 (needs the ``ml_dtypes`` package on CPU).
    ``enabled=False`` turns autocast off inside an enclosing region.
    """

    def __init__(self, device_type=None, dtype=None, enabled: bool = True, cache_enabled=None):
        if device_type is not None and not isinstance(device_type, str):
            device_type, dtype = None, device_type  # autocast(distgrad.float16)
        if device_type not in (None, "cpu", "cuda"):
            raise ValueError(f"autocast: device_type must be 'cpu' or 'cuda', got {device_type!r}")
        try:
            dtype = dtypes.float16 if dtype is None else dtypes.as_dtype(dtype)
        except TypeError:  # e.g. "bfloat16" without ml_dtypes
            pass
        if not isinstance(dtype, dtypes.dtype) or dtype.np not in _LOW:
            hint = (
                " (bfloat16 needs the ml_dtypes package: pip install ml_dtypes)"
                if dtypes.bfloat16 is None
                else ""
            )
            raise ValueError(f"autocast: dtype must be float16 or bfloat16, got {dtype}{hint}")
        self.device_type, self.dtype, self.enabled = device_type or "cpu", dtype, bool(enabled)

    def __enter__(self):
        _stack.append(self)
        _sync()
        return self

    def __exit__(self, *exc):
        _stack.pop()
        _sync()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(self.device_type, self.dtype, self.enabled):
                return fn(*args, **kwargs)

        return wrapper


def is_autocast_enabled() -> bool:
    """Whether ops are being autocast here."""
    return bool(_stack) and _stack[-1].enabled


def get_autocast_dtype():
    """The lower-precision dtype of the innermost autocast region (None outside one)."""
    return _stack[-1].dtype if _stack else None
