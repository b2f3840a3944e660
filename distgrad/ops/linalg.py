"""Linear algebra: matmul (``@``), mm, bmm, dot, outer, einsum, and the fused ``linear``."""

from __future__ import annotations

import collections
import string

import numpy as np

from ..autograd import Op, Tensor
from ..autograd.function import autocasting
from ..backend import array_module_for
from ._helpers import (
    _TENSOR_DEVICE,
    as_tensor,
    check_same_device,
    graph_xp,
    tensor_method,
    unbroadcast,
    write_out,
)
from .shape import reshape

__all__ = ["matmul", "mm", "bmm", "dot", "outer", "einsum", "linear", "addmm", "baddbmm"]

# PyTorch's (C++) names of scalar types, used in its dtype-mismatch messages
_C_NAMES = {
    "float32": "float",
    "float64": "double",
    "float16": "c10::Half",
    "bfloat16": "c10::BFloat16",
    "int64": "long int",
    "int32": "int",
    "int16": "short int",
    "int8": "signed char",
    "uint8": "unsigned char",
    "bool": "bool",
}


def _dims(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _operands(op: str, a, b):
    """Both operands as tensors of one dtype on one device (matmul does not promote)."""
    if not isinstance(a, Tensor):
        a = as_tensor(a, b if isinstance(b, Tensor) else None)
    if not isinstance(b, Tensor):
        b = as_tensor(b, a)
    x, y = a.array, b.array
    if x.dtype != y.dtype and not autocasting(a, b):
        raise RuntimeError(
            f"{op}: expected m1 and m2 to have the same dtype, but got: "
            f"{_C_NAMES.get(a.dtype.name, a.dtype.name)} != "
            f"{_C_NAMES.get(b.dtype.name, b.dtype.name)} ({a.dtype} of shape {list(a.shape)} "
            f"and {b.dtype} of shape {list(b.shape)}); convert one with .to(dtype)"
        )
    if type(x) is not np.ndarray or type(y) is not np.ndarray:
        check_same_device(op, a, b)
    elif type(a).device is not _TENSOR_DEVICE or type(b).device is not _TENSOR_DEVICE:
        check_same_device(op, a, b)  # a subclass with a device of its own
    return a, b


def _check_inner(op: str, a: Tensor, b: Tensor) -> None:
    """Raise unless the matrix dims of ``a`` and ``b`` (at least 1-D each) multiply."""
    sa, sb = a.shape, b.shape
    if sa[-1] != sb[-2 if len(sb) > 1 else 0]:
        raise RuntimeError(
            f"{op}: mat1 and mat2 shapes cannot be multiplied ({_dims(sa)} and {_dims(sb)})"
        )


def _swap(xp, x):
    return xp.swapaxes(x, -1, -2)


def _keep_shape(xp, x, shape):
    return x if tuple(x.shape) == tuple(shape) else xp.reshape(x, shape)


def _copy_into(xp, out, a):
    """``a`` copied into the contiguous array ``out`` of its shape."""
    xp.copyto(out, a)
    return out


def _mm(xp, a, b, out=None):
    """``a @ b``; a stack of matrices times one matrix is computed as one GEMM (the stack's
    rows folded together), much faster than numpy's per-matrix loop. ``out``: an array of
    the product's shape to write it into (a jit replay's buffer)."""
    if a.ndim > 2 and b.ndim == 2:
        a2 = xp.reshape(a, (-1, a.shape[-1]))
        if out is not None:
            xp.matmul(a2, b, out=xp.reshape(out, (-1, b.shape[-1])))
            return out
        return xp.reshape(a2 @ b, tuple(a.shape[:-1]) + (b.shape[-1],))
    if out is not None:
        return xp.matmul(a, b, out=out)
    return a @ b


# ---- matmul and its restricted forms ------------------------------------------------------
class Matmul(Op):
    autocast = "lower"
    writes_out_buffer = writes_grad_buffer = True  # jit buffer planning (ctx.out_buffer)

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        buf = ctx.out_buffer
        try:
            if buf is not None:
                if a.flags.c_contiguous:
                    return _mm(ctx.xp, a, b, buf)
                return ctx.xp.matmul(a, b, out=buf)
            if a.ndim > 2 and a.flags.c_contiguous:  # (folding the stack needs a view)
                return _mm(ctx.xp, a, b)
            return a @ b
        except ValueError:  # shapes that do not multiply: say which way, as PyTorch does
            raise _matmul_error(a.shape, b.shape) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        a_shape, b_shape = a.shape, b.shape
        # as in numpy, a vector operand is a matrix with a size-1 dim the result drops
        g_shape = tuple(g.shape)
        if b.ndim == 1:
            b, g_shape = xp.reshape(b, (-1, 1)), g_shape + (1,)
        if a.ndim == 1:
            a, g_shape = xp.reshape(a, (1, -1)), g_shape[:-1] + (1,) + g_shape[-1:]
        g = _keep_shape(xp, g, g_shape)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = _mm(xp, g, _swap(xp, b), ctx.grad_buffer)
            ga = _keep_shape(xp, unbroadcast(xp, ga, a.shape), a_shape)
        if ctx.needs_input_grad[1]:
            if b.ndim == 2 and a.ndim > 2:  # sum over the stack inside one GEMM
                gb = _swap(xp, xp.reshape(a, (-1, a.shape[-1]))) @ xp.reshape(g, (-1, g.shape[-1]))
            else:
                gb = unbroadcast(xp, _swap(xp, a) @ g, b.shape)
            gb = _keep_shape(xp, gb, b_shape)
        return ga, gb


def _matmul_error(sa: tuple, sb: tuple) -> RuntimeError:
    """PyTorch's error for operands of shapes ``sa`` and ``sb`` that do not multiply."""
    if not sa or not sb:
        return RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {len(sa)}D and "
            f"{len(sb)}D"
        )
    if sa[-1] != sb[-2 if len(sb) > 1 else 0]:
        return RuntimeError(
            f"matmul: mat1 and mat2 shapes cannot be multiplied ({_dims(sa)} and {_dims(sb)})"
        )
    return RuntimeError(
        f"matmul: the batch dims of shapes {list(sa)} and {list(sb)} cannot be broadcast together"
    )


@tensor_method("matmul", "__matmul__")
def matmul(input, other, *, out=None):
    """Matrix product with numpy's rules: vectors (1-D) are promoted and the added dim
    removed, leading (batch) dims broadcast. Both operands must have the same dtype. (Shapes
    that do not multiply are diagnosed when numpy refuses them: ``Matmul.forward``.)"""
    if out is not None:
        return write_out("matmul", matmul(input, other), out)
    a, b = _operands("matmul", input, other)
    return Matmul.apply(a, b)


@tensor_method("__rmatmul__")
def _rmatmul(input, other):
    return matmul(other, input)


def _require_ndim(op, tensors, ndim, names):
    kind = "matrix" if ndim == 2 else f"{ndim}D tensor"
    for t, name in zip(tensors, names):
        if t.ndim != ndim:
            raise RuntimeError(
                f"{op}: {name} must be a {kind}, got a {t.ndim}D tensor of shape {list(t.shape)}"
            )


@tensor_method("mm")
def mm(input, mat2):
    """Product of two matrices (2-D only; see ``matmul`` for other shapes)."""
    a, b = _operands("mm", input, mat2)
    _require_ndim("mm", (a, b), 2, ("self", "mat2"))
    _check_inner("mm", a, b)
    return Matmul.apply(a, b)


@tensor_method("bmm")
def bmm(input, mat2):
    """Batched product of two 3-D tensors with the same batch size (no broadcasting)."""
    a, b = _operands("bmm", input, mat2)
    _require_ndim("bmm", (a, b), 3, ("batch1", "batch2"))
    if b.shape[:2] != (a.shape[0], a.shape[2]):
        raise RuntimeError(
            f"bmm: Expected size for first two dimensions of batch2 tensor to be: "
            f"[{a.shape[0]}, {a.shape[2]}] but got: [{b.shape[0]}, {b.shape[1]}] "
            f"(batch1 of shape {list(a.shape)}, batch2 of shape {list(b.shape)})"
        )
    return Matmul.apply(a, b)


@tensor_method("dot")
def dot(input, tensor):
    """Inner product of two 1-D tensors of the same size."""
    a, b = _operands("dot", input, tensor)
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"dot: 1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    if a.shape != b.shape:
        raise RuntimeError(
            f"dot: inconsistent tensor size, expected tensor [{a.shape[0]}] and "
            f"src [{b.shape[0]}] to have the same number of elements, but got "
            f"{a.shape[0]} and {b.shape[0]} elements respectively"
        )
    return Matmul.apply(a, b)


@tensor_method("outer", "ger")
def outer(input, vec2):
    """Outer product of two 1-D tensors: ``out[i, j] = input[i] * vec2[j]``."""
    a, b = _operands("outer", input, vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(
            f"outer: expected 1-D arguments, got shapes {list(a.shape)} and {list(b.shape)}"
        )
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


# ---- linear -------------------------------------------------------------------------------
def _stacked_view(x) -> bool:
    """Whether ``x`` is a stack of matrices that is not contiguous (a permuted view)."""
    return x.ndim > 2 and not x.flags.c_contiguous


class Linear(Op):
    autocast = "lower"
    # jit buffer planning: ctx.out_buffer, ctx.grad_buffer, and ctx.work_buffer for the
    # contiguous copy of a stacked view (the replay asks the predicate once per graph)
    writes_out_buffer = writes_grad_buffer = True

    @staticmethod
    def writes_work_buffer(x, weight, bias) -> bool:
        """Whether forward copies ``x`` (into ``ctx.work_buffer`` when a replay gives one)."""
        return _stacked_view(x)

    @staticmethod
    def forward(ctx, x, weight, bias):
        xp = ctx.xp
        rows = None
        if _stacked_view(x):
            # numpy multiplies such a stack matrix by matrix (a GEMM per matrix, each packing
            # the weight again): one GEMM over a contiguous copy instead, as torch folds it
            buf = ctx.work_buffer
            rows = xp.ascontiguousarray(x) if buf is None else _copy_into(xp, buf, x)
        ctx.save_for_backward(x, weight, rows)
        out = _mm(xp, x if rows is None else rows, weight.T, ctx.out_buffer)
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight, rows_x = ctx.saved_tensors
        xp = ctx.xp
        need = ctx.needs_input_grad
        if not isinstance(g, Tensor) and _stacked_view(g):  # (a permuted output's gradient)
            g = xp.ascontiguousarray(g)  # one GEMM for gx, and the rows for gw without a copy
        gx = _mm(xp, g, weight, ctx.grad_buffer) if need[0] else None
        gw = gb = None
        if need[1] or need[2]:
            rows = g if g.ndim == 2 else xp.reshape(g, (-1, g.shape[-1]))
            if need[1]:
                if rows_x is not None and not isinstance(x, Tensor):
                    x = rows_x  # forward's contiguous copy (a double backward uses x itself)
                gw = _swap(xp, rows) @ (x if x.ndim == 2 else xp.reshape(x, (-1, x.shape[-1])))
            if need[2]:
                gb = xp.sum(rows, axis=0)
        return gx, gw, gb


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``: ``input`` (..., in_features), ``weight`` (out_features,
    in_features), ``bias`` (out_features,); forward and backward are single GEMMs."""
    x, w = _operands("linear", input, weight)
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise RuntimeError(
            f"linear: mat1 and mat2 shapes cannot be multiplied "
            f"({_dims(x.shape)} and {_dims(w.shape[::-1])}): input of shape "
            f"{list(x.shape)}, weight of shape {list(w.shape)}"
        )
    if bias is not None:
        _, bias = _operands("linear", w, bias)
        if bias.shape != (w.shape[0],):
            raise RuntimeError(
                f"linear: bias of shape {list(bias.shape)} does not match "
                f"{w.shape[0]} output features (weight of shape {list(w.shape)})"
            )
    return Linear.apply(x, w, bias)


# ---- einsum -------------------------------------------------------------------------------
def _contract(xp, equation, *operands):
    return xp.einsum(equation, *operands, optimize=len(operands) > 1)


def _parse_einsum(equation: str, shapes) -> tuple:
    """The input and output subscripts with one letter per dim ('...' replaced by letters,
    aligned from the right as in broadcasting), and each letter's (broadcast) size."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(
            f"einsum(): the equation {equation!r} has {len(terms)} operand "
            f"subscripts but {len(shapes)} operands were given"
        )
    spare = iter(c for c in string.ascii_letters if c not in equation)
    ranks = [len(s) - (len(t) - 3) for t, s in zip(terms, shapes) if "..." in t]
    ellipsis = "".join(next(spare) for _ in range(max(ranks, default=0)))
    inputs = []
    for term, shape in zip(terms, shapes):
        named = len(term) - 3 if "..." in term else len(term)
        if len(shape) < named or ("..." not in term and len(shape) != named):
            raise ValueError(
                f"einsum(): the subscripts {term!r} do not match an operand of "
                f"shape {list(shape)} (equation {equation!r})"
            )
        inputs.append(term.replace("...", ellipsis[len(ellipsis) - (len(shape) - named) :]))
    if arrow:
        output = rhs.replace("...", ellipsis)
    else:  # implicit output: broadcast dims, then the letters used once, in order
        counts = collections.Counter(lhs.replace("...", "").replace(",", ""))
        output = ellipsis + "".join(sorted(c for c, n in counts.items() if n == 1))
    sizes: dict = {}
    for term, shape in zip(inputs, shapes):
        for letter, n in zip(term, shape):
            sizes[letter] = n if sizes.get(letter, 1) == 1 else sizes[letter]
    return inputs, output, sizes


class Einsum(Op):
    autocast = "lower"

    @staticmethod
    def forward(ctx, equation, *operands):
        inputs, output, sizes = _parse_einsum(equation, [x.shape for x in operands])
        ctx.subscripts, ctx.output, ctx.sizes = inputs, output, sizes
        ctx.save_for_backward(*operands)
        try:
            out = _contract(ctx.xp, ",".join(inputs) + "->" + output, *operands)
        except ValueError as e:
            shapes = ", ".join(str(list(x.shape)) for x in operands)
            raise RuntimeError(
                f"einsum(): operands of shapes {shapes} do not fit the equation {equation!r}: {e}"
            ) from None
        return out.copy() if len(operands) == 1 else out  # numpy may return a view

    @staticmethod
    def backward(ctx, g):
        operands = ctx.saved_tensors
        return (None,) + tuple(
            _einsum_grad(ctx, g, operands, i) if need else None
            for i, need in enumerate(ctx.needs_input_grad[1:])
        )


def _einsum_grad(ctx, g, operands, i):
    """The gradient of operand ``i``: the einsum of ``g`` with the other operands, written to
    operand ``i``'s subscripts. Its repeated letters (diagonals) go through identity matrices,
    letters summed in it alone through vectors of ones, and dims it broadcast are summed."""
    xp = ctx.xp
    term, shape = ctx.subscripts[i], tuple(operands[i].shape)
    raw = g.array if isinstance(g, Tensor) else g
    const_xp = array_module_for(raw)
    others = [(g, ctx.output)] + [
        (x, s) for j, (x, s) in enumerate(zip(operands, ctx.subscripts)) if j != i
    ]
    seen = set("".join(s for _, s in others))
    spare = iter(c for c in string.ascii_letters if c not in seen and c not in term)
    target = ""
    for letter, n in zip(term, shape):
        if n == 1 and ctx.sizes[letter] != 1:  # broadcast in the forward: summed here
            continue
        if letter in target:
            fresh = next(spare)
            others.append((const_xp.eye(n, dtype=raw.dtype), letter + fresh))
            letter = fresh
        elif letter not in seen:
            others.append((const_xp.ones(n, dtype=raw.dtype), letter))
        target += letter
    arrays = [
        Tensor(x) if isinstance(g, Tensor) and not isinstance(x, Tensor) else x for x, _ in others
    ]
    grad = _contract(xp, ",".join(s for _, s in others) + "->" + target, *arrays)
    return _keep_shape(xp, grad, shape)


def einsum(equation, *operands):
    """Einstein summation over any number of operands (``'bij,bjk->bik'``, ``'ii->i'``,
    ``'...ij,...jk'``; implicit output allowed). Operands may also be given as one list."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands or not all(isinstance(x, Tensor) for x in operands):
        raise TypeError("einsum(): operands must be tensors")
    dtypes = {x.dtype for x in operands}
    if len(dtypes) > 1 and not autocasting(*operands):
        raise RuntimeError(
            f"einsum(): expected operands of one dtype, got "
            f"{', '.join(str(x.dtype) for x in operands)}; convert with .to()"
        )
    check_same_device("einsum", *operands)
    return Einsum.apply(equation, *operands)


# ---- the differentiable namespace ----------------------------------------------------------
graph_xp.register("matmul")(lambda a, b: matmul(a, b))


@graph_xp.register("einsum")
def _graph_einsum(subscripts, *operands, optimize=False):
    return einsum(subscripts, *operands)


def _scaled_sum(op, input, product, beta, alpha):
    """``beta * input + alpha * product`` (``beta == 0``: ``input`` is ignored, NaN included,
    as PyTorch)."""
    from .elementwise import add, mul

    if alpha != 1:
        product = mul(product, alpha)
    if beta == 0:
        return add(product, mul(input, 0).detach()) if input.shape != product.shape else product
    return add(mul(input, beta) if beta != 1 else input, product)


@tensor_method("addmm")
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat1 @ mat2)`` (``input`` broadcast to the product's shape)."""
    return _scaled_sum("addmm", input, mm(mat1, mat2), beta, alpha)


@tensor_method("baddbmm")
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * bmm(batch1, batch2)`` (``input`` broadcast to the product's
    shape)."""
    return _scaled_sum("baddbmm", input, bmm(batch1, batch2), beta, alpha)
