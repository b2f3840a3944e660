"""Convolutions: conv1d/conv2d, conv_transpose1d/conv_transpose2d, unfold/fold (im2col).

Everything is computed as 2-d (a 1-d signal is an image of height 1) with im2col: the padded
input is copied once, through a strided view, into a column matrix of shape
``(C*kh*kw, N*OH*OW)`` (channel-major, so one matrix product per group covers the whole batch
and BLAS can thread it), and col2im is ``kh*kw`` strided additions. The backwards are
once-differentiable.
"""

from __future__ import annotations

import dataclasses

from ..autograd import Op, Tensor
from ..autograd.function import autocasting
from ._helpers import check_same_device

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "unfold", "fold"]


# ---- argument normalisation and checks ----------------------------------------------------
def _ntuple(value, n: int, name: str, op: str) -> tuple:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f"{op}: expected {name} to be an int or a tuple of {n} ints, got {value}")
    return value


def _spatial(value, nd: int, name: str, op: str, height: int = 1) -> tuple:
    """``value`` for a ``nd``-d op as a 2-d (height, width) pair (``height`` for 1-d)."""
    v = _ntuple(value, nd, name, op)
    return v if nd == 2 else (height,) + v


def _check_positive(op: str, stride, dilation) -> None:
    if any(s <= 0 for s in stride):
        raise RuntimeError(f"{op}: non-positive stride is not supported (got stride={stride})")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"{op}: dilation should be greater than zero (got {dilation})")


def _shape4(shape: tuple, nd: int) -> tuple:
    """An input shape of a ``nd``-d op ((N,) C, *spatial) as (N, C, H, W)."""
    batched = len(shape) == nd + 2
    n, c = (shape[0], shape[1]) if batched else (1, shape[0])
    return (n, c) + ((1,) if nd == 1 else ()) + tuple(shape[-nd:])


def _check_input(op: str, x, nd: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected input to be a Tensor, got {type(x).__name__}")
    if x.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to "
            f"{op}, but got input of size: {list(x.shape)}"
        )
    if not x.is_floating_point():
        raise RuntimeError(f"{op}: expected a floating point input, got {x.dtype}")


def _check_params(op: str, x, weight, bias, nd: int) -> None:
    if not isinstance(weight, Tensor) or weight.ndim != nd + 2:
        shape = list(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise RuntimeError(
            f"{op}: expected weight to be a {nd + 2}-d tensor, but got weight of size {shape}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype and not autocasting(x, t):
            raise RuntimeError(
                f"{op}: Input type ({x.dtype}) and {name} type ({t.dtype}) should be the same"
            )
    check_same_device(op, x, weight, bias)


def _check_bias(bias, channels: int, weight) -> None:
    if bias is not None and tuple(bias.shape) != (channels,):
        raise RuntimeError(
            f"Given weight of size {list(weight.shape)}, expected bias to be "
            f"1-dimensional with {channels} elements, but got bias of size "
            f"{list(bias.shape)} instead"
        )


# ---- geometry, im2col, col2im ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the windows of a 2-d sliding-window op lie: the input (H, W) sits at (pt, pl) of a
    zero-padded (Hp, Wp) buffer, and output (oh, ow) with kernel offset (i, j) reads buffer
    element (oh*sh + i*dh, ow*sw + j*dw)."""

    H: int
    W: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    Hp: int
    Wp: int
    OH: int
    OW: int

    @classmethod
    def make(cls, op, H, W, kernel, stride, pads, dilation):
        """``pads`` is (top, bottom, left, right); raises PyTorch's error when the dilated kernel
        does not fit the padded input."""
        (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = kernel, stride, dilation, pads
        hp, wp = H + pt + pb, W + pl + pr
        ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if ekh > hp or ekw > wp:
            raise RuntimeError(
                f"{op}: Calculated padded input size per channel: ({hp} x {wp}). "
                f"Kernel size: ({ekh} x {ekw}). Kernel size can't be greater "
                f"than actual input size"
            )
        return cls(
            H, W, kh, kw, sh, sw, dh, dw, pt, pl, hp, wp, (hp - ekh) // sh + 1, (wp - ekw) // sw + 1
        )


def strided(xp, buf, offset: int, shape: tuple, strides: tuple):
    """A view of contiguous ``buf`` starting at flat element ``offset`` with element strides."""
    item = buf.itemsize
    return xp.lib.stride_tricks.as_strided(
        buf.reshape(-1)[offset:], shape, tuple(s * item for s in strides)
    )


def pad_into(buf, x, top: int, left: int, fill):
    """Fill buffer (N, C, Hp, Wp) with ``x`` (N, C, H, W) at (top, left) and ``fill`` around."""
    h, w = x.shape[2:]
    buf[:, :, top : top + h, left : left + w] = x
    buf[:, :, :top] = fill
    buf[:, :, top + h :] = fill
    buf[:, :, top : top + h, :left] = fill
    buf[:, :, top : top + h, left + w :] = fill
    return buf


def _windows(xp, buf, g: Geometry, i: int, j: int):
    """The (C, N, OH, OW) view of buffer (N, C, Hp, Wp) read by kernel offset (i, j)."""
    n, c = buf.shape[:2]
    plane = g.Hp * g.Wp
    return strided(
        xp,
        buf,
        i * g.dh * g.Wp + j * g.dw,
        (c, n, g.OH, g.OW),
        (plane, c * plane, g.sh * g.Wp, g.sw),
    )


def im2col(xp, x, g: Geometry):
    """x (N, C, H, W) -> columns (C*kh*kw, N*OH*OW)."""
    n, c = x.shape[:2]
    buf = pad_into(xp.empty((n, c, g.Hp, g.Wp), dtype=x.dtype), x, g.pt, g.pl, 0)
    plane = g.Hp * g.Wp
    view = strided(
        xp,
        buf,
        0,
        (c, g.kh, g.kw, n, g.OH, g.OW),
        (plane, g.dh * g.Wp, g.dw, c * plane, g.sh * g.Wp, g.sw),
    )
    return xp.ascontiguousarray(view).reshape(c * g.kh * g.kw, n * g.OH * g.OW)


def col2im(xp, cols, g: Geometry, n: int):
    """The adjoint of ``im2col``: columns (C*kh*kw, N*OH*OW) -> (N, C, H, W), overlapping
    windows summed (one strided addition per kernel offset)."""
    c = cols.shape[0] // (g.kh * g.kw)
    cols = cols.reshape(c, g.kh, g.kw, n, g.OH, g.OW)
    buf = xp.zeros((n, c, g.Hp, g.Wp), dtype=cols.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            view = _windows(xp, buf, g, i, j)
            view += cols[:, i, j]
    return xp.ascontiguousarray(buf[:, :, g.pt : g.pt + g.H, g.pl : g.pl + g.W])


def to_columns(xp, y):
    """An output-grid array (N, C, OH, OW) in column layout (C, N*OH*OW)."""
    return xp.ascontiguousarray(y.transpose(1, 0, 2, 3)).reshape(y.shape[1], -1)


def from_columns(xp, cols, n: int, size: tuple, bias=None):
    """Column layout (C, N*OH*OW) -> contiguous (N, C, OH, OW), plus ``bias`` per channel."""
    c = cols.shape[0]
    out = xp.empty((n, c) + tuple(size), dtype=cols.dtype)
    # iterating in the columns' order (channel-major) is the faster way round
    src, dst = cols.reshape((c, n) + tuple(size)), out.transpose(1, 0, 2, 3)
    if bias is None:
        dst[...] = src
    else:
        xp.add(src, bias.reshape(c, 1, 1, 1), out=dst)
    return out


def _grouped(a, groups: int):
    """(groups*m, ...) -> (groups, m, prod(...))."""
    return a.reshape(groups, a.shape[0] // groups, -1)


def _swap(a):
    return a.swapaxes(-1, -2)


def _restore(a, nd: int, batched: bool):
    """(N, C, H, W) -> the layout of a ``nd``-d op's tensors (no H for 1-d, no N unbatched)."""
    shape = a.shape[:2] + a.shape[4 - nd :]
    return a.reshape(shape if batched else shape[1:])


# ---- convolution ----------------------------------------------------------------------------
class Conv(Op):
    """Cross-correlation of x ((N,) C, [H,] W) with weight (F, C/groups, [kh,] kw)."""

    autocast = "lower"
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, weight, bias, stride, pads, dilation, groups):
        xp, nd = ctx.xp, weight.ndim - 2
        x4 = x.reshape(_shape4(x.shape, nd))
        g = Geometry.make(
            f"conv{nd}d", *x4.shape[2:], _shape4(weight.shape, nd)[2:], stride, pads, dilation
        )
        cols = _grouped(im2col(xp, x4, g), groups)
        y = xp.matmul(_grouped(weight, groups), cols).reshape(weight.shape[0], -1)
        need = ctx.needs_input_grad or (False,) * 3
        ctx.save_for_backward(weight if need[0] else None, cols if need[1] else None)
        ctx.geometry, ctx.groups, ctx.shapes = g, groups, (x.shape, weight.shape)
        out = from_columns(xp, y, x4.shape[0], (g.OH, g.OW), bias)
        return _restore(out, nd, x.ndim == nd + 2)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        weight, cols = ctx.saved_tensors
        g, groups, (x_shape, w_shape) = ctx.geometry, ctx.groups, ctx.shapes
        n = _shape4(x_shape, len(w_shape) - 2)[0]
        gy = to_columns(xp, grad.reshape(n, w_shape[0], g.OH, g.OW))
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gcols = xp.matmul(_swap(_grouped(weight, groups)), _grouped(gy, groups))
            gx = col2im(xp, gcols.reshape(-1, gy.shape[1]), g, n).reshape(x_shape)
        if ctx.needs_input_grad[1]:
            gw_t = xp.matmul(cols, _swap(_grouped(gy, groups)))
            gw = xp.ascontiguousarray(_swap(gw_t)).reshape(w_shape)
        if ctx.needs_input_grad[2]:
            gb = gy.sum(axis=1)
        return gx, gw, gb, None, None, None, None


class ConvTranspose(Op):
    """The adjoint of ``Conv`` in x: weight (C, F/groups, [kh,] kw)."""

    autocast = "lower"
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding, dilation, groups):
        xp, nd = ctx.xp, weight.ndim - 2
        op = f"conv_transpose{nd}d"
        x4 = x.reshape(_shape4(x.shape, nd))
        n, _, h, w = x4.shape
        kernel = _shape4(weight.shape, nd)[2:]
        size = [
            (i - 1) * s - 2 * p + d * (k - 1) + o + 1
            for i, s, p, d, k, o in zip((h, w), stride, padding, dilation, kernel, output_padding)
        ]
        if min(size) < 1:
            raise RuntimeError(
                f"{op}: input of spatial size {(h, w)[2 - nd :]} gives an empty "
                f"output of size {size[2 - nd :]}; reduce the padding"
            )
        (ph, pw) = padding
        g = Geometry.make(op, *size, kernel, stride, (ph, ph, pw, pw), dilation)
        # output_padding >= stride (allowed below the dilation) adds windows x does not have
        g = dataclasses.replace(g, OH=h, OW=w)
        xc = _grouped(to_columns(xp, x4), groups)
        cols = xp.matmul(_swap(_grouped(weight, groups)), xc)
        out = col2im(xp, cols.reshape(-1, xc.shape[-1]), g, n)
        if bias is not None:
            out += bias.reshape(-1, 1, 1)
        need = ctx.needs_input_grad or (False,) * 3
        ctx.save_for_backward(weight if need[0] else None, xc if need[1] else None)
        ctx.geometry, ctx.groups, ctx.shapes = g, groups, (x.shape, weight.shape)
        return _restore(out, nd, x.ndim == nd + 2)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        weight, xc = ctx.saved_tensors
        g, groups, (x_shape, w_shape) = ctx.geometry, ctx.groups, ctx.shapes
        n = _shape4(x_shape, len(w_shape) - 2)[0]
        grad4 = grad.reshape(n, -1, g.H, g.W)
        gcols = _grouped(im2col(xp, grad4, g), groups)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gxc = xp.matmul(_grouped(weight, groups), gcols).reshape(w_shape[0], -1)
            gx = from_columns(xp, gxc, n, (g.OH, g.OW)).reshape(x_shape)
        if ctx.needs_input_grad[1]:
            gw = xp.matmul(xc, _swap(gcols)).reshape(w_shape)
        if ctx.needs_input_grad[2]:
            gb = grad4.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None, None


def _conv_pads(op, padding, nd, kernel, stride, dilation) -> tuple:
    """(top, bottom, left, right) from an int, a tuple, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(
                f"{op}: Invalid padding string '{padding}', should be one of {{'valid', 'same'}}"
            )
        if any(s != 1 for s in stride):
            raise RuntimeError(
                f"{op}: padding='same' is not supported for strided "
                f"convolutions (got stride={stride[2 - nd :]})"
            )
        # PyTorch puts the odd element of an even total padding at the end
        th, tw = (d * (k - 1) for d, k in zip(dilation, kernel))
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = _spatial(padding, nd, "padding", op, 0)
    if ph < 0 or pw < 0:
        raise RuntimeError(f"{op}: negative padding is not supported (got {padding})")
    return (ph, ph, pw, pw)


def _check_groups(op, weight, groups) -> None:
    if not isinstance(groups, int) or groups < 1:
        raise RuntimeError(f"{op}: non-positive groups is not supported (got {groups})")
    if weight.shape[0] % groups:
        raise RuntimeError(
            f"{op}: Given groups={groups}, expected weight to be divisible by "
            f"{groups} at dimension 0, but got weight of size "
            f"{list(weight.shape)} instead"
        )


def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups):
    _check_input(op, input, nd)
    _check_params(op, input, weight, bias, nd)
    _check_groups(op, weight, groups)
    channels = _shape4(input.shape, nd)[1]
    if channels != weight.shape[1] * groups:
        raise RuntimeError(
            f"{op}: Given groups={groups}, weight of size {list(weight.shape)}, "
            f"expected input{list(input.shape)} to have "
            f"{weight.shape[1] * groups} channels, but got {channels} channels "
            f"instead"
        )
    _check_bias(bias, weight.shape[0], weight)
    stride = _spatial(stride, nd, "stride", op)
    dilation = _spatial(dilation, nd, "dilation", op)
    _check_positive(op, stride, dilation)
    kernel = _shape4(weight.shape, nd)[2:]
    pads = _conv_pads(op, padding, nd, kernel, stride, dilation)
    return Conv.apply(input, weight, bias, stride, pads, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d cross-correlation of input ((N,) C_in, L) with weight (C_out, C_in/groups, k);
    ``padding`` is an int, a 1-tuple, 'valid' or 'same'."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d cross-correlation of input ((N,) C_in, H, W) with weight
    (C_out, C_in/groups, kh, kw); ``padding`` is an int, a pair, 'valid' or 'same'."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
    _check_input(op, input, nd)
    _check_params(op, input, weight, bias, nd)
    _check_groups(op, weight, groups)
    channels = _shape4(input.shape, nd)[1]
    if channels != weight.shape[0]:
        raise RuntimeError(
            f"{op}: Given transposed=1, weight of size {list(weight.shape)}, "
            f"expected input{list(input.shape)} to have {weight.shape[0]} "
            f"channels, but got {channels} channels instead"
        )
    _check_bias(bias, weight.shape[1] * groups, weight)
    stride = _spatial(stride, nd, "stride", op)
    dilation = _spatial(dilation, nd, "dilation", op)
    _check_positive(op, stride, dilation)
    padding = _spatial(padding, nd, "padding", op, 0)
    output_padding = _spatial(output_padding, nd, "output_padding", op, 0)
    if min(padding) < 0 or min(output_padding) < 0:
        raise RuntimeError(f"{op}: negative padding is not supported")
    if any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError(
            f"{op}: output padding must be smaller than either stride or "
            f"dilation, but got output_padding={output_padding[2 - nd :]}, "
            f"stride={stride[2 - nd :]}, dilation={dilation[2 - nd :]}"
        )
    return ConvTranspose.apply(
        input, weight, bias, stride, padding, output_padding, dilation, groups
    )


def conv_transpose1d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Transposed 1-d convolution (the gradient of conv1d in its input); weight is
    (C_in, C_out/groups, k)."""
    return _conv_transpose(
        "conv_transpose1d",
        1,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )


def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Transposed 2-d convolution (the gradient of conv2d in its input); weight is
    (C_in, C_out/groups, kh, kw)."""
    return _conv_transpose(
        "conv_transpose2d",
        2,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )


# ---- unfold / fold ----------------------------------------------------------------------------
class Unfold(Op):
    """x ((N,) C, H, W) -> blocks ((N,) C*kh*kw, L)."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, kernel, dilation, padding, stride):
        xp = ctx.xp
        x4 = x.reshape(_shape4(x.shape, 2))
        (ph, pw), n = padding, x4.shape[0]
        g = Geometry.make("unfold", *x4.shape[2:], kernel, stride, (ph, ph, pw, pw), dilation)
        cols = im2col(xp, x4, g)
        ctx.geometry, ctx.x_shape = g, x.shape
        out = xp.ascontiguousarray(cols.reshape(cols.shape[0], n, -1).transpose(1, 0, 2))
        return out if x.ndim == 4 else out[0]

    @staticmethod
    def backward(ctx, grad):
        g = ctx.geometry
        n = _shape4(ctx.x_shape, 2)[0]
        cols = grad.reshape(n, -1, g.OH * g.OW).transpose(1, 0, 2).reshape(-1, n * g.OH * g.OW)
        return col2im(ctx.xp, cols, g, n).reshape(ctx.x_shape), None, None, None, None


class Fold(Op):
    """Blocks ((N,) C*kh*kw, L) -> ((N,) C, H, W), overlapping values summed."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, geometry):
        x3 = x.reshape((-1,) + x.shape[-2:])
        n = x3.shape[0]
        cols = x3.transpose(1, 0, 2).reshape(x3.shape[1], -1)
        ctx.geometry, ctx.x_shape = geometry, x.shape
        out = col2im(ctx.xp, cols, geometry, n)
        return out if x.ndim == 3 else out[0]

    @staticmethod
    def backward(ctx, grad):
        g = ctx.geometry
        grad4 = grad.reshape((-1,) + grad.shape[-3:])
        cols = im2col(ctx.xp, grad4, g)
        out = cols.reshape(cols.shape[0], grad4.shape[0], -1).transpose(1, 0, 2)
        return ctx.xp.ascontiguousarray(out).reshape(ctx.x_shape), None


def _block_args(op, kernel_size, dilation, padding, stride):
    kernel = _ntuple(kernel_size, 2, "kernel_size", op)
    dilation = _ntuple(dilation, 2, "dilation", op)
    padding = _ntuple(padding, 2, "padding", op)
    stride = _ntuple(stride, 2, "stride", op)
    _check_positive(op, stride, dilation)
    if min(kernel) < 1 or min(padding) < 0:
        raise RuntimeError(
            f"{op}: expected positive kernel_size and non-negative padding, got "
            f"kernel_size={kernel}, padding={padding}"
        )
    return kernel, dilation, padding, stride


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Extract sliding blocks (im2col): ((N,) C, H, W) -> ((N,) C*kh*kw, L), L the number of
    blocks."""
    _check_input("unfold", input, 2)
    args = _block_args("unfold", kernel_size, dilation, padding, stride)
    return Unfold.apply(input, *args)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Combine sliding blocks into an image (col2im, summing overlaps): ((N,) C*kh*kw, L) ->
    ((N,) C, *output_size)."""
    op = "fold"
    if not isinstance(input, Tensor) or input.ndim not in (2, 3):
        shape = list(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise RuntimeError(
            f"{op}: Expected 2D (unbatched) or 3D (batched) input, but got input of size: {shape}"
        )
    kernel, dilation, (ph, pw), stride = _block_args(op, kernel_size, dilation, padding, stride)
    size = _ntuple(output_size, 2, "output_size", op)
    g = Geometry.make(op, *size, kernel, stride, (ph, ph, pw, pw), dilation)
    blocks, length = input.shape[-2:]
    if blocks % (kernel[0] * kernel[1]) or length != g.OH * g.OW:
        raise RuntimeError(
            f"{op}: Given output_size={size}, kernel_size={kernel}, "
            f"dilation={dilation}, padding={(ph, pw)}, stride={stride}, expected "
            f"input of size (*, C*{kernel[0] * kernel[1]}, {g.OH} * {g.OW}) "
            f"(C*kh*kw channels and one column per sliding block), but got "
            f"input of size {list(input.shape)}"
        )
    return Fold.apply(input, g)
