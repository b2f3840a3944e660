"""Elementwise ops: arithmetic, unary math, comparisons, where/clamp/lerp, dtype casts."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Op, Tensor
from ..backend import as_dtype, get_default_dtype, result_type
from ._helpers import (
    apply_inplace,
    as_tensor,
    broadcast_error,
    check_broadcast,
    graph_xp,
    prepare_operands,
    shape_of,
    tensor_method,
    unbroadcast,
    write_out,
)
from ._stable import stable_sigmoid

__all__ = [
    "add",
    "sub",
    "subtract",
    "mul",
    "multiply",
    "div",
    "divide",
    "true_divide",
    "neg",
    "negative",
    "pow",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "log10",
    "sqrt",
    "rsqrt",
    "square",
    "reciprocal",
    "abs",
    "sign",
    "sin",
    "cos",
    "tan",
    "tanh",
    "sigmoid",
    "clamp",
    "clip",
    "maximum",
    "minimum",
    "where",
    "lerp",
    "floor",
    "ceil",
    "round",
    "trunc",
    "remainder",
    "fmod",
    "floor_divide",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "equal",
    "isnan",
    "isinf",
    "isfinite",
    "logical_and",
    "logical_or",
    "logical_not",
    "logical_xor",
    "allclose",
    "isclose",
]


def _raw(x):
    return x.array if isinstance(x, Tensor) else x


def _xp(*xs):
    for x in xs:
        if isinstance(x, Tensor):
            return x.device.xp
    return np


# ---- binary arithmetic --------------------------------------------------------------------
class Add(Op):
    writes_out_buffer = True  # jit buffer planning (ctx.out_buffer)

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (shape_of(a), shape_of(b))
        if ctx.out_buffer is not None:
            return ctx.xp.add(a, b, out=ctx.out_buffer)
        return a + b

    @staticmethod
    def backward(ctx, g):
        xp, need = ctx.xp, ctx.needs_input_grad
        return (
            unbroadcast(xp, g, ctx.shapes[0]) if need[0] else None,
            unbroadcast(xp, g, ctx.shapes[1]) if need[1] else None,
        )


class Sub(Op):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (shape_of(a), shape_of(b))
        return a - b

    @staticmethod
    def backward(ctx, g):
        xp, need = ctx.xp, ctx.needs_input_grad
        return (
            unbroadcast(xp, g, ctx.shapes[0]) if need[0] else None,
            unbroadcast(xp, -g, ctx.shapes[1]) if need[1] else None,
        )


class Mul(Op):
    writes_out_buffer = True  # jit buffer planning (ctx.out_buffer)

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if ctx.out_buffer is not None:
            return ctx.xp.multiply(a, b, out=ctx.out_buffer)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        ga = unbroadcast(xp, g * b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(xp, g * a, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Op):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        ga = unbroadcast(xp, g / b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(xp, -g * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, a, b):
        xp = ctx.xp
        out = xp.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        xp = ctx.xp
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(xp, g * b * xp.power(a, b - 1), a.shape)
        if ctx.needs_input_grad[1]:
            # d/db a**b = a**b * log(a), taken as 0 where a == 0 (PyTorch's convention)
            safe_log = xp.log(xp.where(a > 0, a, 1))
            gb = unbroadcast(xp, g * out * safe_log, b.shape)
        return ga, gb


def _binary(fn, op, a, b, floating=False):
    a, b = prepare_operands(op, a, b, floating)
    try:
        return fn.apply(a, b)
    except ValueError:
        error = broadcast_error(op, np.shape(a), np.shape(b))
        if error is None:
            raise
    raise error


@tensor_method("add", "__add__", "__radd__")
def add(input, other, *, alpha=1):
    """``input + alpha * other`` with broadcasting and PyTorch's type promotion."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(Add, "add", input, other)


@tensor_method("sub", "__sub__")
def sub(input, other, *, alpha=1):
    """``input - alpha * other``."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(Sub, "sub", input, other)


@tensor_method("__rsub__")
def _rsub(input, other):
    return _binary(Sub, "sub", other, input)


@tensor_method("mul", "__mul__", "__rmul__")
def mul(input, other, *, out=None):
    """``input * other`` with broadcasting and PyTorch's type promotion."""
    if out is not None:
        return write_out("mul", _binary(Mul, "mul", input, other), out)
    return _binary(Mul, "mul", input, other)


@tensor_method("div", "__truediv__")
def div(input, other, *, rounding_mode=None):
    """True division (integers give floats); ``rounding_mode`` 'trunc' or 'floor' rounds the
    quotient (not differentiable)."""
    if rounding_mode is None:
        return _binary(Div, "div", input, other, floating=True)
    if rounding_mode not in ("trunc", "floor"):
        raise ValueError(
            f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but "
            f"found '{rounding_mode}'"
        )
    a, b = prepare_operands("div", input, other)
    _check_int_divisor("division", a, b)
    xa, xb = _raw(a), _raw(b)
    xp = _xp(a, b)
    error = broadcast_error("div", np.shape(xa), np.shape(xb))
    if error is not None:
        raise error
    if rounding_mode == "floor":
        return Tensor(xp.asarray(xp.floor_divide(xa, xb)))
    q = xp.trunc(xa / xb)
    return Tensor(xp.asarray(q if q.dtype == xp.result_type(xa, xb) else q.astype(xa.dtype)))


@tensor_method("__rtruediv__")
def _rdiv(input, other):
    return _binary(Div, "div", other, input, floating=True)


@tensor_method("pow", "__pow__")
def pow(input, exponent):
    """``input ** exponent``; either may be a scalar."""
    if not isinstance(input, Tensor):
        return _binary(Pow, "pow", input, exponent)
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        if exponent == 1:
            return input * 1
        if exponent == 2 and input.is_floating_point():
            return Square.apply(input)
    return _binary(Pow, "pow", input, exponent)


@tensor_method("__rpow__")
def _rpow(input, other):
    if not isinstance(other, Tensor):
        other = as_tensor(other, input, dtype=result_type(other, input))
    return _binary(Pow, "pow", other, input)


class Remainder(Op):
    """Python-style modulus (the sign of the divisor), computed exactly by ``xp.remainder``
    (not as ``a - floor(a / b) * b``, which loses everything for large quotients)."""

    _ufunc = "remainder"
    _round = "floor"

    @classmethod
    def forward(cls, ctx, a, b):
        ctx.save_for_backward(a, b)
        return getattr(ctx.xp, cls._ufunc)(a, b)

    @classmethod
    def backward(cls, ctx, g):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        ga = unbroadcast(xp, g, a.shape) if ctx.needs_input_grad[0] else None
        gb = None
        if ctx.needs_input_grad[1]:  # d/db (a - q b) = -q with q the rounded quotient
            q = getattr(xp, cls._round)(a / b)
            gb = unbroadcast(xp, -g * q, b.shape)
        return ga, gb


class Fmod(Remainder):
    """C-style modulus (the sign of the dividend), exactly, by ``xp.fmod``."""

    _ufunc = "fmod"
    _round = "trunc"


def _check_int_divisor(op, a, b):
    """PyTorch raises for an integer division by zero (numpy returns 0 with a warning)."""
    xa, xb = _raw(a), _raw(b)
    if getattr(xb, "dtype", None) is not None and xb.dtype.kind in "iub" and xa.dtype.kind in "iub":
        if bool((xb == 0).any()):
            raise RuntimeError(f"ZeroDivisionError: integer {op} by zero")


def _modulus(fn, op, input, other):
    a, b = prepare_operands(op, input, other)
    _check_int_divisor(op, a, b)
    if not isinstance(a, Tensor):
        a = Tensor(a)
    if not isinstance(b, Tensor):
        b = Tensor(a.device.xp.asarray(b, dtype=a.array.dtype))
    try:
        return fn.apply(a, b)
    except ValueError:
        error = broadcast_error(op, np.shape(a), np.shape(b))
        if error is None:
            raise
        raise error from None


@tensor_method("remainder", "__mod__")
def remainder(input, other):
    """Python-style modulus (the result has the sign of the divisor), exact."""
    return _modulus(Remainder, "remainder", input, other)


@tensor_method("__rmod__")
def _rmod(input, other):
    return _modulus(Remainder, "remainder", other, input)


@tensor_method("fmod")
def fmod(input, other):
    """C-style modulus (the result has the sign of the dividend), exact."""
    return _modulus(Fmod, "fmod", input, other)


@tensor_method("floor_divide", "__floordiv__")
def floor_divide(input, other):
    """``floor(input / other)``; integers by zero raise."""
    return div(input, other, rounding_mode="floor")


@tensor_method("__rfloordiv__")
def _rfloordiv(input, other):
    return div(as_tensor(other, input), input, rounding_mode="floor")


# ---- unary math ---------------------------------------------------------------------------
class Neg(Op):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g


class Exp(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class Expm1(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.expm1(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (y + 1)


class Log(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x


class Log2(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log2(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x * float(np.log(2.0)))


class Log10(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log10(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x * float(np.log(10.0)))


class Log1p(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log1p(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x + 1)


class Sqrt(Op):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g / (2 * y)


class Rsqrt(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        y = xp.reciprocal(xp.sqrt(x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (-0.5) * y * y * y


class Square(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (2 * x)


class Reciprocal(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.reciprocal(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return -g * y * y


class Abs(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.xp.sign(x)


class Sin(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.xp.cos(x)


class Cos(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.cos(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -g * ctx.xp.sin(x)


class Tan(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.tan(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 + y * y)


class Tanh(Op):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class Sigmoid(Op):
    @staticmethod
    def forward(ctx, x):
        y = stable_sigmoid(ctx.xp, x).astype(x.dtype, copy=False)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (1 - y)


class _Sign(Op):
    """Sign and the rounding ops: piecewise constant, so their gradient is zero."""

    _ufunc = "sign"

    @classmethod
    def forward(cls, ctx, x):
        if cls._ufunc != "sign" and x.dtype.kind in "iub":
            return x.copy()  # rounding an integer is the integer (numpy would give floats)
        return getattr(ctx.xp, cls._ufunc)(x)

    @staticmethod
    def backward(ctx, g):
        return g * 0


class Sign(_Sign):
    _ufunc = "sign"


class Floor(_Sign):
    _ufunc = "floor"


class Ceil(_Sign):
    _ufunc = "ceil"


class Round(_Sign):
    _ufunc = "rint"


class Trunc(_Sign):
    _ufunc = "trunc"


def _unary(fn, x, floating=True):
    if isinstance(x, Tensor) and x.array.dtype.kind in "fc":  # the common case, at once
        return fn.apply(x)
    x = as_tensor(x)
    if floating and not x.is_floating_point() and x.array.dtype.kind != "c":
        x = x.to(get_default_dtype())
    return fn.apply(x)


def _define_unary(name, fn, floating=True, doc=None):
    def op(input):
        return _unary(fn, input, floating)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc or f"Elementwise ``{name}`` (differentiable)."
    tensor_method(name)(op)
    graph_xp.register(name)(op)
    return op


exp = _define_unary("exp", Exp)
expm1 = _define_unary("expm1", Expm1)
log = _define_unary("log", Log)
log2 = _define_unary("log2", Log2)
log10 = _define_unary("log10", Log10)
log1p = _define_unary("log1p", Log1p)
sqrt = _define_unary("sqrt", Sqrt)
rsqrt = _define_unary("rsqrt", Rsqrt)
square = _define_unary("square", Square, floating=False)
_square_any = square


def square(input):  # type: ignore[no-redef]  # noqa: F811 - bool squares to int64 (PyTorch)
    """Elementwise ``input * input``; bool squares to int64, as in PyTorch."""
    if isinstance(input, Tensor) and input.dtype == as_dtype("bool"):
        input = input.to(as_dtype("int64"))
    return _square_any(input)


tensor_method("square")(square)
reciprocal = _define_unary("reciprocal", Reciprocal)
sin = _define_unary("sin", Sin)
cos = _define_unary("cos", Cos)
tan = _define_unary("tan", Tan)
tanh = _define_unary("tanh", Tanh)
sigmoid = _define_unary("sigmoid", Sigmoid)
abs = _define_unary("abs", Abs, floating=False)
sign = _define_unary("sign", Sign, floating=False)
floor = _define_unary("floor", Floor, floating=False)
ceil = _define_unary("ceil", Ceil, floating=False)
round = _define_unary("round", Round, floating=False)
trunc = _define_unary("trunc", Trunc, floating=False)
tensor_method("__abs__")(abs)


@tensor_method("neg", "negative", "__neg__")
def neg(input):
    """Alias of :meth:`neg`."""
    """Element-wise negation ``-input``."""
    return Neg.apply(input)


@tensor_method("__pos__")
def _pos(input):
    return input


# ---- clamp, maximum/minimum, where, lerp --------------------------------------------------
class Clamp(Op):
    @staticmethod
    def forward(ctx, x, lo, hi):
        xp = ctx.xp
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        if lo is not None and hi is not None:
            return xp.clip(x, lo, hi)
        return xp.maximum(x, lo) if lo is not None else xp.minimum(x, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        keep = True
        if lo is not None:
            keep = x >= lo
        if hi is not None:
            keep = (x <= hi) if lo is None else keep & (x <= hi)
        return g * keep, None, None


@tensor_method("clamp", "clip")
def clamp(input, min=None, max=None):
    """Clamp into ``[min, max]``; the gradient passes where the input lies inside the bounds
    (boundary included, as PyTorch)."""
    if min is None and max is None:
        raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = input
        if min is not None:
            out = maximum(out, as_tensor(min, input, dtype=input.dtype))
        if max is not None:
            out = minimum(out, as_tensor(max, input, dtype=input.dtype))
        return out
    return Clamp.apply(input, min, max)


clip = clamp


class _MaxMin(Op):
    """maximum/minimum; where both inputs are equal the gradient is split evenly (PyTorch)."""

    _take_first: Any = None

    @classmethod
    def forward(cls, ctx, a, b):
        ctx.save_for_backward(a, b)
        return cls._take_first(ctx.xp, a, b)

    @classmethod
    def backward(cls, ctx, g):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        half_tie = g * (a == b) * 0.5  # multiplying g by masks keeps g's dtype
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(xp, g * cls._mask(a, b) + half_tie, a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(xp, g * cls._mask(b, a) + half_tie, b.shape)
        return ga, gb


class Maximum(_MaxMin):
    _take_first = staticmethod(lambda xp, a, b: xp.maximum(a, b))
    _mask = staticmethod(lambda a, b: a > b)


class Minimum(_MaxMin):
    _take_first = staticmethod(lambda xp, a, b: xp.minimum(a, b))
    _mask = staticmethod(lambda a, b: a < b)


@tensor_method("maximum")
def maximum(input, other):
    """Element-wise maximum of two tensors (NaN if either is NaN); the gradient goes to the larger, split on ties."""
    return _binary(Maximum, "maximum", input, other)


@tensor_method("minimum")
def minimum(input, other):
    """Element-wise minimum of two tensors (NaN if either is NaN); the gradient goes to the smaller, split on ties."""
    return _binary(Minimum, "minimum", input, other)


class Where(Op):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = (shape_of(a), shape_of(b))
        return ctx.xp.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        xp = ctx.xp
        ga = (
            unbroadcast(xp, xp.where(cond, g, 0), ctx.shapes[0])
            if ctx.needs_input_grad[1]
            else None
        )
        gb = (
            unbroadcast(xp, xp.where(cond, 0, g), ctx.shapes[1])
            if ctx.needs_input_grad[2]
            else None
        )
        return None, ga, gb


@tensor_method("where")
def where(condition, input=None, other=None):
    """Elementwise ``input if condition else other``. With only ``condition``, the indices of
    its non-zero elements (as ``nonzero(as_tuple=True)``)."""
    if input is None and other is None:
        cond = condition.array
        return tuple(Tensor(i) for i in condition.device.xp.nonzero(cond))
    cond = condition if isinstance(condition, Tensor) else as_tensor(condition)
    a, b = prepare_operands("where", input, other)
    check_broadcast("where", cond.shape, np.shape(a), np.shape(b))
    if cond.array.dtype != np.bool_:
        cond = Tensor(cond.array.astype(bool))
    return Where.apply(cond, a, b)


@graph_xp.register("where")
def _graph_where(cond, a, b):
    if not isinstance(cond, Tensor):
        cond = as_tensor(cond)
    like = a if isinstance(a, Tensor) else b
    a = as_tensor(a, like, dtype=like.dtype) if not isinstance(a, Tensor) else a
    b = as_tensor(b, like, dtype=like.dtype) if not isinstance(b, Tensor) else b
    return where(cond, a, b)


@tensor_method("lerp")
def lerp(input, end, weight):
    """``input + weight * (end - input)``."""
    return input + weight * (end - input)


# ---- comparisons and logical ops (not differentiable) -------------------------------------
def _compare(ufunc_name, doc):
    def op(input, other):
        a, b = prepare_operands(ufunc_name, input, other)
        xa = a.array if isinstance(a, Tensor) else a
        xb = b.array if isinstance(b, Tensor) else b
        try:
            return Tensor(getattr(_xp(a, b), ufunc_name)(xa, xb))
        except ValueError:
            error = broadcast_error(ufunc_name, np.shape(xa), np.shape(xb))
            if error is None:
                raise
            raise error from None

    op.__doc__ = doc
    return op


eq = _compare("equal", "Elementwise ``==`` (a bool tensor).")
ne = _compare("not_equal", "Elementwise ``!=``.")
lt = _compare("less", "Elementwise ``<``.")
le = _compare("less_equal", "Elementwise ``<=``.")
gt = _compare("greater", "Elementwise ``>``.")
ge = _compare("greater_equal", "Elementwise ``>=``.")
for _name, _fn in (("eq", eq), ("ne", ne), ("lt", lt), ("le", le), ("gt", gt), ("ge", ge)):
    _fn.__name__ = _name
    tensor_method(_name, f"__{_name}__")(_fn)
greater, less, greater_equal, less_equal, not_equal = gt, lt, ge, le, ne


def _logical(ufunc_name):
    def op(input, other=None):
        _require_tensor(ufunc_name, input)
        xp = input.device.xp
        if other is None:
            return Tensor(getattr(xp, ufunc_name)(input.array))
        _require_tensor(ufunc_name, other, "other", 2)
        check_broadcast(ufunc_name, input.shape, other.shape)
        return Tensor(getattr(xp, ufunc_name)(input.array, other.array))

    op.__name__ = ufunc_name
    op.__doc__ = f"Elementwise ``{ufunc_name}`` (a bool tensor)."
    return tensor_method(ufunc_name)(op)


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")
logical_xor = _logical("logical_xor")
logical_not = _logical("logical_not")


def _bitwise(ufunc_name):
    def op(input, other):
        other = as_tensor(other, input)
        return Tensor(getattr(input.device.xp, ufunc_name)(input.array, other.array))

    return op


for _name, _uf in (
    ("__and__", "bitwise_and"),
    ("__or__", "bitwise_or"),
    ("__xor__", "bitwise_xor"),
):
    tensor_method(_name)(_bitwise(_uf))


@tensor_method("__invert__")
def _invert(input):
    return Tensor(input.device.xp.invert(input.array))


def _require_tensor(op, value, name="input", position=1):
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{op}(): argument '{name}' (position {position}) must be Tensor, not "
            f"{type(value).__name__}"
        )


def _predicate(ufunc_name):
    def op(input):
        _require_tensor(ufunc_name, input)
        return Tensor(getattr(input.device.xp, ufunc_name)(input.array))

    op.__name__ = ufunc_name
    op.__doc__ = f"Elementwise ``{ufunc_name}`` (a bool tensor)."
    return tensor_method(ufunc_name)(op)


isnan = _predicate("isnan")
isinf = _predicate("isinf")
isfinite = _predicate("isfinite")


@tensor_method("equal")
def equal(input, other) -> bool:
    """True when both tensors have the same shape and elements."""
    return input.shape == other.shape and bool((input.array == other.array).all())


@tensor_method("isclose")
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Element-wise ``|input - other| <= atol + rtol * |other|`` (NaNs equal when ``equal_nan``)."""
    other = as_tensor(other, input)
    return Tensor(
        input.device.xp.isclose(input.array, other.array, rtol=rtol, atol=atol, equal_nan=equal_nan)
    )


@tensor_method("allclose")
def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """``True`` when every element satisfies :func:`isclose` (``|a - b| <= atol + rtol * |b|``)."""
    return bool(isclose(input, other, rtol, atol, equal_nan).array.all())


# ---- in-place arithmetic ------------------------------------------------------------------
def _inplace_binary(name, out_of_place, ufunc_name):
    def op(self, other, **kwargs):
        def fast(arr, o):
            if kwargs.get("alpha", 1) != 1:
                o = o * kwargs["alpha"]
            getattr(self.device.xp, ufunc_name)(arr, o, out=arr, casting="same_kind")

        try:
            return apply_inplace(
                self,
                name,
                lambda s, o: out_of_place(s, o, **kwargs),
                other,
                fast=fast if not kwargs.get("rounding_mode") else None,
            )
        except (ValueError, RuntimeError):
            error = broadcast_error(name, self.shape, getattr(other, "shape", ()), out=self.shape)
            if error is None:
                raise
        raise error

    op.__name__ = name
    op.__doc__ = f"In-place ``{out_of_place.__name__}``; returns ``self``."
    return op


for _name, _dunder, _fn, _uf in (
    ("add_", "__iadd__", add, "add"),
    ("sub_", "__isub__", sub, "subtract"),
    ("mul_", "__imul__", mul, "multiply"),
    ("div_", "__itruediv__", div, "true_divide"),
):
    tensor_method(_name, _dunder)(_inplace_binary(_name, _fn, _uf))


@tensor_method("pow_")
def pow_(self, exponent):
    """In-place :meth:`pow`."""
    return apply_inplace(self, "pow_", pow, exponent)


@tensor_method("clamp_", "clip_")
def clamp_(self, min=None, max=None):
    """In-place :meth:`clamp`."""
    """In-place :meth:`clip` (alias of :meth:`clamp_`)."""
    return apply_inplace(self, "clamp_", lambda s: clamp(s, min, max))


def _unary_inplace(name, fn):
    def op(self):
        """In-place :meth:`abs`."""
        """In-place :meth:`ceil`."""
        """In-place :meth:`cos`."""
        """In-place :meth:`exp`."""
        """In-place :meth:`floor`."""
        """In-place :meth:`log`."""
        """In-place :meth:`neg`."""
        """In-place :meth:`reciprocal`."""
        """In-place :meth:`round`."""
        """In-place :meth:`sigmoid`."""
        """In-place :meth:`sin`."""
        """In-place :meth:`sqrt`."""
        """In-place :meth:`tanh`."""
        return apply_inplace(self, name, fn)

    op.__name__ = name
    return tensor_method(name)(op)


for _name, _fn in (
    ("exp_", exp),
    ("log_", log),
    ("sqrt_", sqrt),
    ("abs_", abs),
    ("neg_", neg),
    ("tanh_", tanh),
    ("sigmoid_", sigmoid),
    ("sin_", sin),
    ("cos_", cos),
    ("floor_", floor),
    ("ceil_", ceil),
    ("round_", round),
    ("reciprocal_", reciprocal),
):
    _unary_inplace(_name, _fn)


@tensor_method("lerp_")
def lerp_(self, end, weight):
    """In-place :meth:`lerp`."""
    return apply_inplace(self, "lerp_", lambda s: lerp(s, end, weight))


@tensor_method("addcmul_")
def addcmul_(self, tensor1, tensor2, *, value=1):
    """``self += value * tensor1 * tensor2`` (used by optimizers)."""
    return apply_inplace(self, "addcmul_", lambda s: s + value * tensor1 * tensor2)


@tensor_method("addcdiv_")
def addcdiv_(self, tensor1, tensor2, *, value=1):
    """``self += value * tensor1 / tensor2`` (used by optimizers)."""
    return apply_inplace(self, "addcdiv_", lambda s: s + value * tensor1 / tensor2)


# ---- the differentiable namespace: numpy names for the ops above --------------------------
graph_xp.register("add")(lambda a, b: add(a, b))
graph_xp.register("subtract")(lambda a, b: sub(a, b))
graph_xp.register("multiply")(lambda a, b: mul(a, b))
graph_xp.register("divide", "true_divide")(lambda a, b: div(a, b))
graph_xp.register("negative")(neg)
graph_xp.register("power")(lambda a, b: pow(a, b) if isinstance(a, Tensor) else _rpow(b, a))
graph_xp.register("maximum")(lambda a, b: maximum(a, b))
graph_xp.register("minimum")(lambda a, b: minimum(a, b))
graph_xp.register("clip")(lambda x, lo, hi: clamp(x, lo, hi))

subtract, multiply, divide, true_divide, negative = sub, mul, div, div, neg
