"""Reductions: sum/mean/prod, max/min/amax/amin, var/std, norm, logsumexp, softmax and
log_softmax, cumsum, argmax/argmin, all/any."""

from __future__ import annotations

import collections
import math
import types

import numpy as np

from ..autograd import Op, Tensor
from ..backend import array_module_for, as_dtype, get_default_dtype
from ._helpers import graph_xp, normalize_dim, normalize_dims, tensor_method
from ._stable import logsumexp_shift
from .elementwise import abs as _abs
from .elementwise import maximum, minimum, sqrt

__all__ = [
    "sum",
    "mean",
    "prod",
    "max",
    "min",
    "amax",
    "amin",
    "var",
    "std",
    "norm",
    "logsumexp",
    "softmax",
    "log_softmax",
    "cumsum",
    "cumprod",
    "argmax",
    "argmin",
    "all",
    "any",
    "return_types",
]


def _namedtuple(name):
    cls = collections.namedtuple(name, ["values", "indices"])
    cls.__qualname__ = f"return_types.{name}"
    return cls


return_types = types.SimpleNamespace(max=_namedtuple("max"), min=_namedtuple("min"))
"""The ``(values, indices)`` result types of ``max``/``min`` along a dim (as
``torch.return_types``)."""


# ---- shared helpers -----------------------------------------------------------------------
_ALL_AXES = tuple(tuple(range(n)) for n in range(65))  # numpy's and cupy's most dims: 64


def _axes(x: Tensor, dim, op: str) -> tuple:
    """``dim`` (None, an int or a sequence; empty means all) as sorted axes of ``x``; a 0-d
    tensor accepts dim 0/-1 and has nothing to reduce."""
    ndim = x.ndim
    if dim is None or isinstance(dim, (tuple, list)) and not dim:
        return _ALL_AXES[ndim]
    axes = normalize_dims(dim, ndim, op)
    return axes if ndim else ()


def _axis(x: Tensor, dim: int, op: str):
    """One dim as an axis (None for a 0-d tensor, where numpy reduces the single element)."""
    axis = normalize_dim(dim, x.ndim, op)
    return axis if x.ndim else None


def _kept_shape(shape, axes) -> tuple:
    return tuple([1 if i in axes else n for i, n in enumerate(shape)])


def _setup(ctx, x, axes) -> None:
    ctx.shape, ctx.axes = x.shape, axes


def _keep(xp, g, ctx):
    """A reduction's output (or its gradient) with the reduced axes back as size-1 dims, so it
    broadcasts against the input (of ``ctx.shape``, reduced over ``ctx.axes``)."""
    shape = ctx.shape
    if g.ndim == len(shape):  # keepdim=True, or nothing reduced
        return g
    return xp.reshape(g, _kept_shape(shape, ctx.axes))


def _floating(x: Tensor, op: str, dtype=None) -> Tensor:
    """``x`` cast to ``dtype`` if given; otherwise ``x``, which must be floating."""
    if dtype is not None:
        return x.to(as_dtype(dtype))
    if not x.is_floating_point():
        raise RuntimeError(
            f"{op}(): expected a floating point input, got {x.dtype} of shape "
            f"{list(x.shape)}. Convert it first (x.float()) or pass dtype=."
        )
    return x


def _accumulating(x: Tensor, dtype) -> Tensor:
    """The input of sum/prod/cumsum: cast to ``dtype``, integers and bools to int64."""
    if dtype is not None:
        return x.to(as_dtype(dtype))
    if x.array.dtype.kind in "biu" and x.array.dtype != np.int64:
        return x.to(as_dtype("int64"))
    return x


def _check_nonempty(x: Tensor, axes, op: str) -> None:
    for a in axes if x.ndim else ():
        if x.shape[a] == 0:
            raise IndexError(
                f"{op}(): Expected reduction dim {a} to have non-zero size (input "
                f"of shape {list(x.shape)})."
            )
    if x.numel() == 0 and not axes:
        raise RuntimeError(
            f"{op}(): Expected reduction dim to be specified for input.numel() "
            f"== 0 (input of shape {list(x.shape)})."
        )


# ---- sum, mean, prod ----------------------------------------------------------------------
class Sum(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        _setup(ctx, x, axes)
        return ctx.xp.asarray(x.sum(axis=axes, keepdims=keepdim))  # numpy: a scalar for ()

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        return xp.broadcast_to(_keep(xp, g, ctx), ctx.shape), None, None


class Mean(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        _setup(ctx, x, axes)
        return x.mean(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        n = math.prod(ctx.shape[a] for a in ctx.axes)
        return xp.broadcast_to(_keep(xp, g, ctx) / n, ctx.shape), None, None


class Prod(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        _setup(ctx, x, axes)
        out = ctx.xp.asarray(x.prod(axis=axes, keepdims=keepdim))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        # d prod / d x_i is the product of the other elements: prod / x_i where x_i != 0; at a
        # zero, the product of the non-zeros if it is the slice's only zero, else 0.
        x, out = ctx.saved_tensors
        xp = ctx.xp
        axes = ctx.axes
        g = _keep(xp, g, ctx)
        zero = x == 0
        x_safe = xp.where(zero, 1, x)
        only_zero = xp.sum(zero, axis=axes, keepdims=True) == 1
        at_zero = g * xp.prod(x_safe, axis=axes, keepdims=True) * only_zero
        return xp.where(zero, at_zero, g * _keep(xp, out, ctx) / x_safe), None, None


@tensor_method("sum")
def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum over ``dim`` (an int, a tuple, or None for all); integers sum to int64."""
    if dtype is not None or input.array.dtype.kind in "biu":
        input = _accumulating(input, dtype)
    axes = _ALL_AXES[input.ndim] if dim is None else _axes(input, dim, "sum")
    return Sum.apply(input, axes, keepdim)


@tensor_method("mean")
def mean(input, dim=None, keepdim=False, *, dtype=None):
    """Mean over ``dim`` (an int, a tuple, or None for all); the input must be floating."""
    input = _floating(input, "mean", dtype)
    return Mean.apply(input, _axes(input, dim, "mean"), keepdim)


@tensor_method("prod")
def prod(input, dim=None, keepdim=False, *, dtype=None):
    """Product over ``dim`` (an int or None for all); its gradient is exact with zeros."""
    input = _accumulating(input, dtype)
    return Prod.apply(input, _axes(input, dim, "prod"), keepdim)


# ---- max, min, amax, amin -----------------------------------------------------------------
class _Extreme(Op):
    """amax/amin: the gradient is shared evenly among the elements equal to the result."""

    _reduce: str | None = None

    @classmethod
    def forward(cls, ctx, x, axes, keepdim):
        _setup(ctx, x, axes)
        out = ctx.xp.asarray(getattr(x, cls._reduce)(axis=axes, keepdims=keepdim))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        hit = x == _keep(xp, out, ctx)
        count = xp.sum(hit, axis=ctx.axes, keepdims=True, dtype=g.dtype)
        return xp.where(hit, _keep(xp, g, ctx) / count, 0), None, None


class Amax(_Extreme):
    _reduce = "max"


class Amin(_Extreme):
    _reduce = "min"


class _ExtremeAlongDim(Op):
    """max/min along one dim with indices: the gradient goes to the selected index only."""

    _arg: str | None = None

    @classmethod
    def forward(cls, ctx, x, axis, keepdim):
        _setup(ctx, x, (axis,))
        index = getattr(x, cls._arg)(axis=axis, keepdims=True)
        values = ctx.xp.take_along_axis(x, index, axis)
        ctx.save_for_backward(index)
        ctx.set_materialize_grads(False)  # the indices get no gradient
        if not keepdim:
            values, index = values.squeeze(axis), index.squeeze(axis)
        return values, index

    @staticmethod
    def backward(ctx, g, _):
        (index,) = ctx.saved_tensors
        xp = ctx.xp
        (axis,) = ctx.axes
        raw = index.array if isinstance(index, Tensor) else index
        positions = (
            array_module_for(raw)
            .arange(ctx.shape[axis])
            .reshape([-1 if d == axis else 1 for d in range(len(ctx.shape))])
        )
        selected = positions == raw
        if isinstance(g, Tensor):
            selected = Tensor(selected)
        return xp.where(selected, _keep(xp, g, ctx), 0), None, None


class MaxDim(_ExtremeAlongDim):
    _arg = "argmax"


class MinDim(_ExtremeAlongDim):
    _arg = "argmin"


def _extreme(op, input, dim, keepdim, other, along_dim, full, result):
    if isinstance(dim, Tensor) or other is not None:
        return (maximum if op == "max" else minimum)(input, other if other is not None else dim)
    if dim is None:
        _check_nonempty(input, (), op)
        return full.apply(input, _axes(input, None, op), keepdim)
    axis = _axis(input, dim, op)
    if axis is None:  # 0-d: the value itself at index 0
        index = Tensor(input.device.xp.zeros((), dtype=np.int64))
        return result(full.apply(input, (), keepdim), index)
    _check_nonempty(input, (axis,), op)
    return result(*along_dim.apply(input, axis, keepdim))


@tensor_method("max")
def max(input, dim=None, keepdim=False, *, other=None):
    """The largest element; with ``dim``, ``(values, indices)`` along it (the gradient goes to
    the returned index); with a tensor, ``maximum``. Without ``dim`` the gradient is shared
    evenly among tied maxima."""
    return _extreme("max", input, dim, keepdim, other, MaxDim, Amax, return_types.max)


@tensor_method("min")
def min(input, dim=None, keepdim=False, *, other=None):
    """The smallest element; see ``max``."""
    return _extreme("min", input, dim, keepdim, other, MinDim, Amin, return_types.min)


@tensor_method("amax")
def amax(input, dim=(), keepdim=False):
    """The largest values over ``dim`` (an int, a tuple, or all); ties share the gradient."""
    axes = _axes(input, dim, "amax")
    _check_nonempty(input, axes, "amax")
    return Amax.apply(input, axes, keepdim)


@tensor_method("amin")
def amin(input, dim=(), keepdim=False):
    """The smallest values over ``dim``; ties share the gradient."""
    axes = _axes(input, dim, "amin")
    _check_nonempty(input, axes, "amin")
    return Amin.apply(input, axes, keepdim)


def _arg_extreme(op, input, dim, keepdim):
    x = input.array
    if dim is None:
        _check_nonempty(input, (), op)
        out = getattr(x, op)(keepdims=keepdim)
    else:
        axis = _axis(input, dim, op)
        _check_nonempty(input, (axis,) if axis is not None else (), op)
        out = getattr(x, op)(axis=axis, keepdims=keepdim and axis is not None)
    return Tensor(input.device.xp.asarray(out, dtype=np.int64))


@tensor_method("argmax")
def argmax(input, dim=None, keepdim=False):
    """Index of the largest element (of the flattened tensor when ``dim`` is None)."""
    return _arg_extreme("argmax", input, dim, keepdim)


@tensor_method("argmin")
def argmin(input, dim=None, keepdim=False):
    """Index of the smallest element (of the flattened tensor when ``dim`` is None)."""
    return _arg_extreme("argmin", input, dim, keepdim)


# ---- var, std, norm -----------------------------------------------------------------------
class Var(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axes, correction, keepdim):
        _setup(ctx, x, axes)
        ctx.correction = correction
        ctx.save_for_backward(x)
        return x.var(axis=axes, ddof=correction, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = ctx.xp
        n = math.prod(ctx.shape[a] for a in ctx.axes)
        centred = x - xp.mean(x, axis=ctx.axes, keepdims=True)
        return _keep(xp, g, ctx) * (2 / (n - ctx.correction)) * centred, None, None, None


@tensor_method("var")
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` with ``correction`` (default 1, Bessel's; ``unbiased=False`` means
    0)."""
    if isinstance(dim, bool):  # var(x, unbiased)
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    input = _floating(input, "var")
    return Var.apply(input, _axes(input, dim, "var"), correction, keepdim)


@tensor_method("std")
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation: ``sqrt(var(...))`` with the same arguments."""
    return sqrt(var(input, dim, unbiased, keepdim, correction=correction))


class Norm2(Op):
    """The 2-norm; its gradient is 0 (not nan) where the norm is 0."""

    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        _setup(ctx, x, axes)
        xp = ctx.xp
        out = xp.asarray(xp.sqrt((x * x).sum(axis=axes, keepdims=keepdim)))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        scale = _keep(xp, g / xp.where(out == 0, 1, out), ctx)
        return x * scale, None, None


@tensor_method("norm")
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """The vector p-norm over ``dim`` (all elements by default): p = 2 or 'fro' (default), 1,
    inf, -inf, 0 (number of non-zeros) or any other number."""
    input = _floating(input, "norm", dtype)
    axes = _axes(input, dim, "norm")
    if p == "fro" or p == 2:
        return Norm2.apply(input, axes, keepdim)
    if isinstance(p, str):
        raise ValueError(
            f"norm: p={p!r} is not supported; use 'fro' or a number (the nuclear "
            f"norm needs an SVD, which distgrad does not provide)"
        )
    if p == math.inf:
        return amax(_abs(input), axes, keepdim)
    if p == -math.inf:
        return amin(_abs(input), axes, keepdim)
    if p == 0:
        return sum(input != 0, axes, keepdim, dtype=input.dtype)
    if p == 1:
        return sum(_abs(input), axes, keepdim)
    return sum(_abs(input) ** p, axes, keepdim) ** (1.0 / p)


# ---- logsumexp, softmax, log_softmax ------------------------------------------------------
def _nan_rows_with_inf(xp, y, total):
    """PyTorch's softmax of a row holding +inf is NaN everywhere (inf - inf); numpy would
    give NaN at the inf and 0 elsewhere. ``total`` is the row's sum of exp (inf there)."""
    hot = xp.isposinf(total)
    return xp.where(hot, xp.nan, y).astype(y.dtype, copy=False)


class LogSumExp(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        _setup(ctx, x, axes)
        xp = ctx.xp
        m = logsumexp_shift(x, axes)
        with np.errstate(divide="ignore"):  # log(0) = -inf where every element is -inf
            out = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        out = xp.asarray(
            out if keepdim else out.reshape([n for i, n in enumerate(x.shape) if i not in axes])
        )
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        return _keep(xp, g, ctx) * xp.exp(x - _keep(xp, out, ctx)), None, None


@tensor_method("logsumexp")
def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(input), dim))``, computed stably; integers are promoted to float."""
    if not input.is_floating_point():
        input = input.to(get_default_dtype())
    return LogSumExp.apply(input, _axes(input, dim, "logsumexp"), keepdim)


class Softmax(Op):
    autocast = "float32"
    writes_out_buffer = writes_grad_buffer = True  # jit buffer planning (ctx.out_buffer)

    @staticmethod
    def forward(ctx, x, axis):
        xp = ctx.xp
        if ctx.out_buffer is not None:
            y = xp.subtract(x, logsumexp_shift(x, axis), out=ctx.out_buffer)
        else:
            y = xp.asarray(x - logsumexp_shift(x, axis))
        xp.exp(y, out=y)
        total = y.sum(axis=axis, keepdims=True)
        if bool(xp.isinf(total).any()):
            with np.errstate(invalid="ignore"):
                y /= total
            y = _nan_rows_with_inf(xp, y, total)
        else:
            y /= total
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if ctx.grad_buffer is not None:  # a replay (arrays): the same values, in place
            gy = ctx.xp.multiply(g, y, out=ctx.grad_buffer)
            return ctx.xp.subtract(
                gy, y * ctx.xp.sum(gy, axis=ctx.axis, keepdims=True), out=gy
            ), None
        gy = g * y
        return gy - y * ctx.xp.sum(gy, axis=ctx.axis, keepdims=True), None


class LogSoftmax(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axis):
        xp = ctx.xp
        y = xp.asarray(x - logsumexp_shift(x, axis))
        total = xp.exp(y).sum(axis=axis, keepdims=True)
        if bool((xp.isinf(total) | (total == 0)).any()):
            with np.errstate(invalid="ignore", divide="ignore"):
                y -= xp.log(total)
            y = _nan_rows_with_inf(xp, y, total)
        else:
            y -= xp.log(total)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        xp = ctx.xp
        return g - xp.exp(y) * xp.sum(g, axis=ctx.axis, keepdims=True), None


@tensor_method("softmax")
def softmax(input, dim, dtype=None):
    """``exp(x) / sum(exp(x), dim)``, computed stably; ``dtype`` casts the input first."""
    input = _floating(input, "softmax", dtype)
    return Softmax.apply(input, _axis(input, dim, "softmax"))


@tensor_method("log_softmax")
def log_softmax(input, dim, dtype=None):
    """``log(softmax(x, dim))``, computed stably; ``dtype`` casts the input first."""
    input = _floating(input, "log_softmax", dtype)
    return LogSoftmax.apply(input, _axis(input, dim, "log_softmax"))


# ---- cumsum -------------------------------------------------------------------------------
class Cumsum(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return ctx.xp.cumsum(x, axis=axis)

    @staticmethod
    def backward(ctx, g):
        # each output sums the inputs up to it, so each input gets the suffix sum of grads
        xp = ctx.xp
        axis = ctx.axis
        return xp.flip(xp.cumsum(xp.flip(g, axis), axis=axis), axis), None


@tensor_method("cumsum")
def cumsum(input, dim, *, dtype=None):
    """Cumulative sum along ``dim``; integers accumulate in int64."""
    input = _accumulating(input, dtype)
    axis = _axis(input, dim, "cumsum")
    if axis is None:  # 0-d: the element itself
        return Sum.apply(input, (), False)
    return Cumsum.apply(input, axis)


class Cumprod(Op):
    """Cumulative product. Its gradient divides by the input where that has no zeros, and
    otherwise builds, per position, the products that leave that position out."""

    autocast = "float32"

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        out = ctx.xp.cumprod(x, axis=axis)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        xp, axis = ctx.xp, ctx.axis
        x, out = ctx.saved_tensors
        raw = x.array if isinstance(x, Tensor) else x  # a Tensor under create_graph
        am = array_module_for(raw)
        if not bool(am.any(raw == 0)):
            # d out_j / d x_i = out_j / x_i for j >= i: a suffix sum of g * out, over x
            return xp.flip(xp.cumsum(xp.flip(g * out, axis), axis=axis), axis) / x, None
        # with zeros: P[..., i, j] = prod_{k <= j, k != i} x_k, summed against g_j for j >= i
        x_last, g_last = xp.moveaxis(x, axis, -1), xp.moveaxis(g, axis, -1)
        n = x_last.shape[-1]
        eye = am.eye(n, dtype=bool)
        left_out = xp.where(eye, 1, xp.expand_dims(x_last, -2))  # [..., i, k]
        prods = xp.cumprod(left_out, axis=-1)
        upper = am.triu(am.ones((n, n), dtype=bool))  # j >= i
        gx = xp.sum(xp.where(upper, prods * xp.expand_dims(g_last, -2), 0), axis=-1)
        return xp.moveaxis(gx, -1, axis), None


@graph_xp.register("cumprod")
def _graph_cumprod(a, axis):
    return Cumprod.apply(a, axis)


@tensor_method("cumprod")
def cumprod(input, dim, *, dtype=None):
    """Cumulative product along ``dim``; integers accumulate in int64."""
    input = _accumulating(input, dtype)
    axis = _axis(input, dim, "cumprod")
    if axis is None:  # 0-d: the element itself
        return Sum.apply(input, (), False)
    return Cumprod.apply(input, axis)


# ---- all, any -----------------------------------------------------------------------------
def _logical_reduction(op):
    def reduce(input, dim=None, keepdim=False):
        axes = _axes(input, dim, op)
        out = getattr(input.array.astype(bool, copy=False), op)(axis=axes, keepdims=keepdim)
        if input.array.dtype == np.uint8:  # PyTorch keeps uint8 for all/any of uint8
            out = out.astype(np.uint8)
        return Tensor(input.device.xp.asarray(out))

    reduce.__name__ = reduce.__qualname__ = op
    reduce.__doc__ = f"Whether {op} elements over ``dim`` are non-zero (a bool tensor)."
    return tensor_method(op)(reduce)


all = _logical_reduction("all")
any = _logical_reduction("any")


# ---- the differentiable namespace: numpy names for the ops above --------------------------
@graph_xp.register("sum")
def _graph_sum(a, axis=None, dtype=None, keepdims=False):
    return sum(a, axis, keepdims, dtype=dtype)


@graph_xp.register("mean")
def _graph_mean(a, axis=None, dtype=None, keepdims=False):
    return mean(a, axis, keepdims, dtype=dtype)


@graph_xp.register("prod")
def _graph_prod(a, axis=None, dtype=None, keepdims=False):
    return prod(a, axis, keepdims, dtype=dtype)


@graph_xp.register("max", "amax")
def _graph_amax(a, axis=None, keepdims=False):
    return amax(a, axis, keepdims)


@graph_xp.register("min", "amin")
def _graph_amin(a, axis=None, keepdims=False):
    return amin(a, axis, keepdims)


@graph_xp.register("cumsum")
def _graph_cumsum(a, axis=None, dtype=None):
    return cumsum(a, axis, dtype=dtype)
