"""One small converter per op class: ``@converter(OpClass)`` on ``fn(node)``, which adds the
ONNX nodes computing the op (see ``graph.Node``). ``sized`` names the non-tensor arguments
that may change with the dynamic axes (shapes, pooling geometry): the converter handles them;
any other argument that changes makes the export fail with a clear error."""

from __future__ import annotations

import math

import numpy as np

from ..ops import activation as A
from ..ops import conv as C
from ..ops import conversion as V
from ..ops import dropout as D
from ..ops import elementwise as E
from ..ops import embedding as M
from ..ops import indexing as I
from ..ops import linalg as L
from ..ops import normalization as N
from ..ops import pool as P
from ..ops import reduction as R
from ..ops import shape as S

CONVERTERS: dict = {}
_INT_MAX, _INT_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def converter(*ops, sized=()):
    """Register ``fn(node)`` as the ONNX conversion of the op classes ``ops`` (built-in ops or
    your own ``Function`` subclasses); ``sized`` lists argument positions that may change with
    the dynamic axes."""

    def register(fn):
        for op in ops:
            CONVERTERS[op] = (fn, frozenset(sized))
        return fn

    return register


def supported_ops() -> list:
    """The names of the op classes ONNX export can convert."""
    return sorted(op.__name__ for op in CONVERTERS)


class UnsupportedOperatorError(RuntimeError):
    """An op of the traced model has no ONNX conversion (or not with these arguments)."""

    def __init__(self, call, reason: str | None = None):
        self.op = call.op
        what = f" with {reason}" if reason else ""
        super().__init__(
            f"ONNX export does not support the op '{call.op.__name__}' "
            f"({call.op.__module__}.{call.op.__qualname__}){what}, used at "
            f"{call.where}; supported: {', '.join(supported_ops())}"
        )


# ---- elementwise --------------------------------------------------------------------------
_UNARY = {
    E.Neg: "Neg",
    E.Exp: "Exp",
    E.Log: "Log",
    E.Sqrt: "Sqrt",
    E.Reciprocal: "Reciprocal",
    E.Abs: "Abs",
    E.Sin: "Sin",
    E.Cos: "Cos",
    E.Tan: "Tan",
    E.Tanh: "Tanh",
    E.Sigmoid: "Sigmoid",
    E.Sign: "Sign",
    E.Floor: "Floor",
    E.Ceil: "Ceil",
    E.Round: "Round",
    A.Erf: "Erf",
    A.ReLU: "Relu",
    A.Softsign: "Softsign",
    A.Hardswish: "HardSwish",
    V.Clone: "Identity",
    V.ToDevice: "Identity",
}
_BINARY = {
    E.Add: "Add",
    E.Sub: "Sub",
    E.Mul: "Mul",
    E.Div: "Div",
    E.Pow: "Pow",
    E.Maximum: "Max",
    E.Minimum: "Min",
}


def _unary(onnx_op):
    return lambda n: n.g.op(onnx_op, [n.input(0)], n.out())


def _binary(onnx_op):
    return lambda n: n.g.op(onnx_op, [n.input(0, like=1), n.input(1, like=0)], n.out())


for _op, _name in _UNARY.items():
    converter(_op)(_unary(_name))
for _op, _name in _BINARY.items():
    converter(_op)(_binary(_name))


@converter(D.Dropout, sized=(1,))
def _dropout(n):  # as at inference: the identity (its random mask is not exported)
    n.g.op("Identity", [n.input(0)], n.out())


def _scalar(n, value, like=0) -> str:
    return n.g.const(value, n.dtype(like))


@converter(E.Square)
def _square(n):
    x = n.input(0)
    n.g.op("Mul", [x, x], n.out())


@converter(E.Rsqrt)
def _rsqrt(n):
    n.g.op("Reciprocal", [n.g.op("Sqrt", [n.input(0)])], n.out())


@converter(E.Expm1)
def _expm1(n):
    n.g.op("Sub", [n.g.op("Exp", [n.input(0)]), _scalar(n, 1)], n.out())


@converter(E.Log1p)
def _log1p(n):
    n.g.op("Log", [n.g.op("Add", [n.input(0), _scalar(n, 1)])], n.out())


@converter(E.Log2, E.Log10)
def _log_base(n):
    base = 2.0 if n.op is E.Log2 else 10.0
    n.g.op("Div", [n.g.op("Log", [n.input(0)]), _scalar(n, math.log(base))], n.out())


@converter(E.Trunc)
def _trunc(n):
    x = n.input(0)
    if n.dtype(0).kind != "f":
        return n.g.op("Identity", [x], n.out())
    floor = n.g.op("Floor", [n.g.op("Abs", [x])])
    n.g.op("Mul", [n.g.op("Sign", [x]), floor], n.out())


@converter(E.Clamp, A.Hardtanh)
def _clip(n):
    n.g.op("Clip", [n.input(0), n.input(1, like=0), n.input(2, like=0)], n.out())


@converter(E.Where)
def _where(n):
    n.g.op("Where", [n.input(0), n.input(1, like=2), n.input(2, like=1)], n.out())


# ---- activations --------------------------------------------------------------------------
@converter(A.LeakyReLU)
def _leaky_relu(n):
    n.g.op("LeakyRelu", [n.input(0)], n.out(), alpha=float(n.args[1]))


@converter(A.Hardsigmoid)
def _hardsigmoid(n):
    n.g.op("HardSigmoid", [n.input(0)], n.out(), alpha=1 / 6, beta=0.5)


@converter(A.Threshold)
def _threshold(n):
    x = n.input(0)
    above = n.g.op("Greater", [x, _scalar(n, n.args[1])])
    n.g.op("Where", [above, x, _scalar(n, n.args[2])], n.out())


@converter(A._Shrink)
def _shrink(n):
    lambd = float(n.args[1])
    n.g.op("Shrink", [n.input(0)], n.out(), lambd=lambd, bias=lambd if n.args[2] else 0.0)


@converter(A.PReLU)
def _prelu(n):
    x, w = n.args[0], n.args[1]
    slope = n.input(1)
    if w.numel() > 1 and x.ndim > 2:  # (C,) against (N, C, *): trailing ones
        slope = n.g.op("Reshape", [slope, n.g.ints((w.numel(),) + (1,) * (x.ndim - 2))])
    n.g.op("PRelu", [n.input(0), slope], n.out())


@converter(A.ELU)
def _elu(n):
    alpha, scale, input_scale = (float(a) for a in n.args[1:])
    x = n.input(0)
    if scale == 1 and input_scale == 1:
        return n.g.op("Elu", [x], n.out(), alpha=alpha)
    if input_scale == 1:
        return n.g.op("Selu", [x], n.out(), alpha=alpha, gamma=scale)
    if scale == 1 and math.isclose(input_scale * alpha, 1.0):
        return n.g.op("Celu", [x], n.out(), alpha=alpha)
    neg = n.g.op(
        "Sub", [n.g.op("Exp", [n.g.op("Mul", [x, _scalar(n, input_scale)])]), _scalar(n, 1)]
    )
    pos = n.g.op("Greater", [x, _scalar(n, 0)])
    n.g.op(
        "Mul",
        [n.g.op("Where", [pos, x, n.g.op("Mul", [neg, _scalar(n, alpha)])]), _scalar(n, scale)],
        n.out(),
    )


@converter(A.GELU)
def _gelu(n):
    x, tanh = n.input(0), n.args[1]
    if n.g.opset >= 20:
        return n.g.op("Gelu", [x], n.out(), approximate="tanh" if tanh else "none")
    if tanh:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = n.g.op("Mul", [n.g.op("Mul", [x, x]), x])
        inner = n.g.op("Add", [x, n.g.op("Mul", [cube, _scalar(n, A._GELU_C)])])
        t = n.g.op("Tanh", [n.g.op("Mul", [inner, _scalar(n, A._SQRT_2_PI)])])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        t = n.g.op("Erf", [n.g.op("Mul", [x, _scalar(n, A._SQRT1_2)])])
    half_x = n.g.op("Mul", [x, _scalar(n, 0.5)])
    n.g.op("Mul", [half_x, n.g.op("Add", [t, _scalar(n, 1)])], n.out())


@converter(A.SiLU)
def _silu(n):
    x = n.input(0)
    n.g.op("Mul", [x, n.g.op("Sigmoid", [x])], n.out())


@converter(A.Mish)
def _mish(n):
    x = n.input(0)
    n.g.op("Mul", [x, n.g.op("Tanh", [n.g.op("Softplus", [x])])], n.out())


@converter(A.Softplus)
def _softplus(n):
    x, beta, threshold = n.input(0), float(n.args[1]), float(n.args[2])
    bx = x if beta == 1 else n.g.op("Mul", [x, _scalar(n, beta)])
    soft = n.g.op("Softplus", [bx])
    if beta != 1:
        soft = n.g.op("Div", [soft, _scalar(n, beta)])
    linear = n.g.op("Greater", [bx, _scalar(n, threshold)])  # linear above the threshold
    n.g.op("Where", [linear, x, soft], n.out())


@converter(A.LogSigmoid)
def _logsigmoid(n):
    soft = n.g.op("Softplus", [n.g.op("Neg", [n.input(0)])])
    n.g.op("Neg", [soft], n.out())


@converter(A.Tanhshrink)
def _tanhshrink(n):
    x = n.input(0)
    n.g.op("Sub", [x, n.g.op("Tanh", [x])], n.out())


# ---- reductions, softmax ------------------------------------------------------------------
_REDUCE = {
    R.Sum: "ReduceSum",
    R.Mean: "ReduceMean",
    R.Prod: "ReduceProd",
    R.Amax: "ReduceMax",
    R.Amin: "ReduceMin",
    R.Norm2: "ReduceL2",
    R.LogSumExp: "ReduceLogSumExp",
}


def _reduce(onnx_op):
    return lambda n: n.g.reduce(onnx_op, n.input(0), n.args[1], n.args[2], n.out())


for _op, _name in _REDUCE.items():
    converter(_op)(_reduce(_name))


@converter(R.MaxDim, R.MinDim)
def _extreme_along(n):
    x, axis, keepdim = n.input(0), n.args[1], n.args[2]
    kind = "Max" if n.op is R.MaxDim else "Min"
    n.g.reduce(f"Reduce{kind}", x, (axis,), keepdim, n.out(0))
    n.g.op(f"Arg{kind}", [x], n.out(1), axis=axis, keepdims=int(keepdim))


@converter(R.Var)
def _var(n):
    x, axes, correction, keepdim = n.input(0), n.args[1], n.args[2], n.args[3]
    if any(n.dynamic(0)[a] for a in axes):
        raise n.unsupported("a variance over a dynamic axis")
    count = math.prod(n.shape(0)[a] for a in axes)
    centred = n.g.op("Sub", [x, n.g.reduce("ReduceMean", x, axes, True)])
    total = n.g.reduce("ReduceSum", n.g.op("Mul", [centred, centred]), axes, keepdim)
    n.g.op("Div", [total, _scalar(n, max(count - correction, 0))], n.out())


@converter(R.Softmax, R.LogSoftmax)
def _softmax(n):
    if n.args[1] is None:
        raise n.unsupported("a softmax of a 0-d tensor")
    n.g.op(n.op.__name__, [n.input(0)], n.out(), axis=n.args[1])


@converter(R.Cumsum)
def _cumsum(n):
    n.g.op("CumSum", [n.input(0), n.g.const(n.args[1], np.int64)], n.out())


# ---- linear algebra -----------------------------------------------------------------------
@converter(L.Matmul)
def _matmul(n):
    n.g.op("MatMul", [n.input(0), n.input(1)], n.out())


@converter(L.Linear)
def _linear(n):
    x, w, b = n.args
    if x.ndim == 2:
        inputs = [n.input(0), n.input(1)] + ([n.input(2)] if b is not None else [])
        return n.g.op("Gemm", inputs, n.out(), transB=1)
    wt = n.g.op("Transpose", [n.input(1)], perm=[1, 0])
    if b is None:
        return n.g.op("MatMul", [n.input(0), wt], n.out())
    n.g.op("Add", [n.g.op("MatMul", [n.input(0), wt]), n.input(2)], n.out())


@converter(L.Einsum)
def _einsum(n):
    inputs = [n.input(i) for i in range(1, len(n.args))]
    n.g.op("Einsum", inputs, n.out(), equation=n.args[0].replace(" ", ""))


# ---- shapes -------------------------------------------------------------------------------
@converter(S.Reshape, sized=(1,))
def _reshape(n):
    target = tuple(n.args[1])
    empty = 0 in target  # a 0 in the shape is a size, not "copy this dim"
    if empty and any(n.varies(1)):
        raise n.unsupported("an empty reshape target with dynamic axes")
    shape = n.g.ints(target) if empty else n.shape_input(0, target, n.varies(1))
    n.g.op("Reshape", [n.input(0), shape], n.out(), allowzero=1 if empty else None)


@converter(S.Permute)
def _permute(n):
    n.g.op("Transpose", [n.input(0)], n.out(), perm=list(n.args[1]))


@converter(S.Expand, sized=(1,))
def _expand(n):
    shape = n.shape_input(0, tuple(n.args[1]), n.varies(1), expand=True)
    n.g.op("Expand", [n.input(0), shape], n.out())


@converter(S.Cat)
def _cat(n):
    n.g.op("Concat", [n.input(i) for i in range(1, len(n.args))], n.out(), axis=n.args[0])


@converter(S.Stack)
def _stack(n):
    dim = n.args[0]
    parts = [n.g.unsqueeze(n.input(i), [dim]) for i in range(1, len(n.args))]
    n.g.op("Concat", parts, n.out(), axis=dim)


@converter(S.Split)
def _split(n):
    sizes, dim = n.args[1], n.args[2]
    outs = [n.out(k) for k in range(len(sizes))]
    n.g.op("Split", [n.input(0), n.g.ints(sizes)], outs, axis=dim)


@converter(S.Unbind)
def _unbind(n):
    dim, count = n.args[1], n.shape(0)[n.args[1]]
    parts = n.g.op("Split", [n.input(0), n.g.ints([1] * count)], n_out=count, axis=dim)
    if count == 1:
        parts = [parts]
    for k, part in enumerate(parts):
        n.g.squeeze(part, [dim], n.out(k))


def _slice(g, x, starts, ends, axes, steps=None, output=None):
    inputs = [x, g.ints(starts), g.ints(ends), g.ints(axes)]
    if steps is not None:
        inputs.append(g.ints(steps))
    return g.op("Slice", inputs, output)


@converter(S.Flip)
def _flip(n):
    dims = list(n.args[1])
    k = len(dims)
    _slice(n.g, n.input(0), [-1] * k, [_INT_MIN] * k, dims, [-1] * k, n.out())


@converter(S.Roll)
def _roll(n):
    x, shape = n.input(0), n.shape(0)
    shifts, dims = n.args[1], n.args[2]
    if (any(n.dynamic(0)) and dims is None) or (
        dims is not None and any(n.dynamic(0)[d] for d in dims)
    ):
        raise n.unsupported("a roll along a dynamic axis")
    if dims is None:
        x, shape, dims = n.g.op("Reshape", [x, n.g.ints([-1])]), (math.prod(shape),), (0,)
    for s, d in zip(shifts, dims):
        s %= max(shape[d], 1)
        if s:
            tail = _slice(n.g, x, [-s], [_INT_MAX], [d])
            head = _slice(n.g, x, [0], [-s], [d])
            x = n.g.op("Concat", [tail, head], axis=d)
    if n.args[2] is None:
        x = n.g.op("Reshape", [x, n.g.ints(n.shape(0))])
    n.g.op("Identity", [x], n.out())


@converter(S.Tril, S.Triu)
def _trilu(n):
    n.g.op(
        "Trilu", [n.input(0), n.g.const(n.args[1], np.int64)], n.out(), upper=int(n.op is S.Triu)
    )


@converter(S.Repeat)
def _repeat(n):
    x, reps = n.input(0), n.args[1]
    extra = len(reps) - len(n.shape(0))
    if extra:
        x = n.g.unsqueeze(x, list(range(extra)))
    n.g.op("Tile", [x, n.g.ints(reps)], n.out())


@converter(S.ConstantPad)
def _pad(n):
    widths = n.args[1]
    pads = [a for a, _ in widths] + [b for _, b in widths]
    n.g.op("Pad", [n.input(0), n.g.ints(pads), _scalar(n, n.args[2])], n.out(), mode="constant")


@converter(I.Index)
def _index(n):
    """Basic indexing (ints, slices, None, Ellipsis) as Slice/Squeeze/Unsqueeze, plus one
    integer index array as Gather."""
    key, ndim = n.args[1], len(n.shape(0))
    arrays = [k for k in key if hasattr(k, "dtype")]
    if (
        any(isinstance(k, (bool, np.bool_)) for k in key)
        or any(a.dtype == np.bool_ for a in arrays)
        or len(arrays) > 1
        or (arrays and any(isinstance(k, int) for k in key))
    ):
        raise n.unsupported("advanced indexing other than one integer index array")
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    starts, ends, axes, steps = [], [], [], []
    squeeze, unsqueeze, gather = [], [], None
    d = p = o = 0  # input dim, dim after slicing/gathering, output dim
    for k in key:
        if k is Ellipsis:
            d, p, o = d + ndim - consumed, p + ndim - consumed, o + ndim - consumed
        elif k is None:
            unsqueeze.append(o)
            o += 1
        elif isinstance(k, int):
            starts.append(k)
            ends.append(_INT_MAX if k == -1 else k + 1)
            axes.append(d)
            steps.append(1)
            squeeze.append(p)
            d, p = d + 1, p + 1
        elif isinstance(k, slice):
            step = 1 if k.step is None else k.step
            if (k.start, k.stop, step) != (None, None, 1):
                starts.append(k.start if k.start is not None else 0 if step > 0 else -1)
                ends.append(k.stop if k.stop is not None else _INT_MAX if step > 0 else _INT_MIN)
                axes.append(d)
                steps.append(step)
            d, p, o = d + 1, p + 1, o + 1
        else:  # the integer index array
            gather = (k, d)
            d, p, o = d + 1, p + k.ndim, o + k.ndim
    x = n.input(0)
    if axes:
        x = _slice(n.g, x, starts, ends, axes, steps)
    if gather is not None:
        index, axis = gather
        x = n.g.op("Gather", [x, n.g.const(index.astype(np.int64))], axis=axis)
    if squeeze:
        x = n.g.squeeze(x, squeeze)
    if unsqueeze:
        x = n.g.unsqueeze(x, unsqueeze)
    n.g.op("Identity", [x], n.out())


@converter(M.Embedding)
def _embedding(n):
    n.g.op("Gather", [n.input(1), n.input(0)], n.out(), axis=0)


@converter(V.Cast)
def _cast(n):
    n.g.op("Cast", [n.input(0)], n.out(), to=n.g.onnx_type(n.args[1]))


# ---- convolution and pooling --------------------------------------------------------------
def _batched(n, nd: int, run):
    """Run ``run(x, output)`` on a batched input: an unbatched one gets a batch dim of 1."""
    if len(n.shape(0)) == nd + 2:
        return run(n.input(0), n.out())
    out = run(n.g.unsqueeze(n.input(0), [0]), None)
    n.g.squeeze(out, [0], n.out())


def _last(values, nd: int) -> list:
    """The last ``nd`` entries of a 2-d (height, width) argument."""
    return [int(v) for v in values[2 - nd :]]


@converter(C.Conv)
def _conv(n):
    w, b, stride, pads, dilation, groups = n.args[1:]
    nd = w.ndim - 2
    top, bottom, left, right = pads
    onnx_pads = [top, left, bottom, right] if nd == 2 else [left, right]
    inputs = [n.input(1)] + ([n.input(2)] if b is not None else [])
    _batched(
        n,
        nd,
        lambda x, out: n.g.op(
            "Conv",
            [x] + inputs,
            out,
            kernel_shape=list(w.shape[2:]),
            strides=_last(stride, nd),
            pads=onnx_pads,
            dilations=_last(dilation, nd),
            group=groups,
        ),
    )


@converter(C.ConvTranspose)
def _conv_transpose(n):
    w, b, stride, padding, output_padding, dilation, groups = n.args[1:]
    nd = w.ndim - 2
    inputs = [n.input(1)] + ([n.input(2)] if b is not None else [])
    _batched(
        n,
        nd,
        lambda x, out: n.g.op(
            "ConvTranspose",
            [x] + inputs,
            out,
            kernel_shape=list(w.shape[2:]),
            strides=_last(stride, nd),
            pads=_last(padding, nd) * 2,
            output_padding=_last(output_padding, nd),
            dilations=_last(dilation, nd),
            group=groups,
        ),
    )


def _pool_attrs(geo, nd: int) -> dict:
    """kernel_shape, strides, pads, ceil_mode of ONNX pooling for a pooling ``Geometry``."""

    def floor_size(size, k, s, p, d):
        return (size + 2 * p - d * (k - 1) - 1) // s + 1

    ceil = (geo.OH, geo.OW) != (
        floor_size(geo.H, geo.kh, geo.sh, geo.pt, geo.dh),
        floor_size(geo.W, geo.kw, geo.sw, geo.pl, geo.dw),
    )
    pads = _last((geo.pt, geo.pl), nd)
    return dict(
        kernel_shape=_last((geo.kh, geo.kw), nd),
        strides=_last((geo.sh, geo.sw), nd),
        pads=pads * 2,
        ceil_mode=int(ceil),
    )


@converter(P.MaxPool, sized=(1,))
def _max_pool(n):
    geo, nd, return_indices = n.args[1:]
    if return_indices:
        raise n.unsupported("max pooling with return_indices=True")
    dil = _last((geo.dh, geo.dw), nd)
    _batched(
        n, nd, lambda x, out: n.g.op("MaxPool", [x], out, dilations=dil, **_pool_attrs(geo, nd))
    )


@converter(P.AvgPool, sized=(1, 3))
def _avg_pool(n):
    geo, nd, divisor = n.args[1:]
    attrs = _pool_attrs(geo, nd)
    area = math.prod(attrs["kernel_shape"])
    scale = None
    if isinstance(divisor, float):
        include = 1
        if divisor != area:  # divisor_override
            scale = area / divisor
    else:
        include = 0
        if not np.array_equal(divisor, P._divisor(geo, False, None)):
            raise n.unsupported(
                "average pooling whose divisor is neither the window size nor "
                "its count without padding"
            )

    def run(x, out):
        y = n.g.op(
            "AveragePool", [x], out if scale is None else None, count_include_pad=include, **attrs
        )
        return y if scale is None else n.g.op("Mul", [y, _scalar(n, scale)], out)

    _batched(n, nd, run)


@converter(P.AdaptiveAvgPool, sized=(2, 3))
def _adaptive_avg_pool(n):
    nd, mh, mw = n.args[1:]
    if mh.shape[0] == 1 and mw.shape[0] == 1:
        return _batched(n, nd, lambda x, out: n.g.op("GlobalAveragePool", [x], out))
    if any(n.dynamic(0)[-nd:]):
        raise n.unsupported("adaptive average pooling over a dynamic spatial axis")
    dtype = n.dtype(0)
    y = n.g.op("MatMul", [n.input(0), n.g.const(mw.T, dtype)])
    if nd == 2:
        y = n.g.op("MatMul", [n.g.const(mh, dtype), y])
    n.g.op("Identity", [y], n.out())


# ---- normalisation ------------------------------------------------------------------------
def _affine(n, i: int, size: int, fill: float) -> str:
    """weight (i=1) or bias (i=2) as a flat tensor of ``size``: the parameter, or a constant
    ``fill`` when absent."""
    if n.args[i] is None:
        return n.g.const(np.full(size, fill), n.dtype(0))
    x = n.input(i)
    return x if n.args[i].ndim == 1 else n.g.op("Reshape", [x, n.g.ints([size])])


@converter(N.Normalize, sized=(3,))
def _normalize(n):
    """Evaluation batch norm as BatchNormalization, layer norm as LayerNormalization, the
    rest (group/instance norm) written out."""
    _, weight, bias, view, axes, param_shape, eps, stats, _ = n.args
    g, shape, k = n.g, n.shape(0), len(param_shape)
    channels = shape[1] if len(shape) >= 2 else None
    if stats is not None and tuple(param_shape) == (1, channels) + (1,) * (len(shape) - 2):
        mean, var = (n.array(s) for s in stats)
        return g.op(
            "BatchNormalization",
            [n.input(0), _affine(n, 1, channels, 1.0), _affine(n, 2, channels, 0.0), mean, var],
            n.out(),
            epsilon=float(eps),
        )
    if (
        stats is None
        and tuple(view) == shape
        and g.opset >= 17
        and tuple(axes) == tuple(range(len(shape) - k, len(shape)))
    ):
        size = math.prod(param_shape)
        return g.op(
            "LayerNormalization",
            [n.input(0), _affine(n, 1, size, 1.0), _affine(n, 2, size, 0.0)],
            n.out(),
            axis=-k,
            epsilon=float(eps),
        )
    # the general form: standardise over ``axes`` of x viewed as ``view``
    xv = n.input(0)
    reshaped = tuple(view) != shape
    if reshaped:
        xv = g.op("Reshape", [xv, n.shape_input(0, tuple(view), n.varies(3))])
    if stats is None:
        centred = g.op("Sub", [xv, g.reduce("ReduceMean", xv, axes, True)])
        var = g.reduce("ReduceMean", g.op("Mul", [centred, centred]), axes, True)
    else:
        mean, var = (g.op("Reshape", [n.array(s), g.ints(param_shape)]) for s in stats)
        centred = g.op("Sub", [xv, mean])
    y = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [var, _scalar(n, eps)])])])
    if reshaped:
        y = g.op("Reshape", [y, g.op("Shape", [n.input(0)])])
    for i, onnx_op in ((1, "Mul"), (2, "Add")):
        if n.args[i] is not None:
            y = g.op(onnx_op, [y, g.op("Reshape", [n.input(i), g.ints(param_shape)])])
    g.op("Identity", [y], n.out())
