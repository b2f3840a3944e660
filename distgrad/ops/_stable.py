"""Numerically stable building blocks shared by op families. They run on arrays and, in a
double backward, on tensors with the differentiable namespace as ``xp``."""

from __future__ import annotations

from ..autograd import Tensor
from ..backend import array_module_for


def stable_sigmoid(xp, x):
    """``1 / (1 + exp(-x))`` without overflow: exp only of ``-|x|``."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


def stable_softplus(xp, x):
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def logsumexp_shift(x, axis):
    """The log-sum-exp shift: the maximum of ``x`` over ``axis`` (kept as size-1 dims), 0
    where it is not finite, so that ``exp(x - shift)`` is safe. It is a constant array (of a
    tensor's values): log-sum-exp, softmax and their derivatives do not depend on it."""
    a = x.array if isinstance(x, Tensor) else x
    xp = array_module_for(a)
    if a.ndim == 2 and axis in (1, -1, (1,), (-1,)):
        # numpy's max over a short last axis is several times slower than this gather
        m = a[xp.arange(a.shape[0]), a.argmax(axis=1)][:, None]
    else:
        m = a.max(axis=axis, keepdims=True)
    return xp.where(xp.isfinite(m), m, 0)
