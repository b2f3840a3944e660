"""Pooling: max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d.

A 2-d window's max (or sum) is the max over its kh rows of the max over kw columns of each row,
so pooling runs as two 1-d passes, each a loop over one axis' kernel offsets: along W on a flat
strided view of the padded buffer (the shared ``windows.Geometry``; all rows as one long run:
the padded width ``Wp = Wq*sw`` puts output column ``ow`` of every row at ``m*sw`` for one
running index ``m``; columns ``OW..Wq`` are garbage and dropped), then along H over whole
rows. Max pooling keeps, per pass, which
offset won (strictly greater, so the first maximum in row-major order wins, as in PyTorch);
backward routes the gradient back through both passes. Backwards are once-differentiable.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Op
from .windows import Geometry, check_input, padded_flat, restore, shape4, spatial, strided

__all__ = [
    "max_pool1d",
    "max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
]


def _wq(g: Geometry) -> int:
    """Output columns per row of the first pass (the valid OW ones and garbage)."""
    return g.Wp // g.sw


def _slack(g: Geometry) -> int:
    """Elements past the buffer read by the garbage columns of the last row."""
    return max(0, (g.kw - 1) * g.dw - g.sw + 1)


def _unpadded(xp, g: Geometry, flat, n, c):
    buf = flat[: n * c * g.plane].reshape(n, c, g.Hp, g.Wp)
    return xp.ascontiguousarray(buf[:, :, g.pt : g.pt + g.H, g.pl : g.pl + g.W])


def _w_views(xp, g: Geometry, flat, nc):
    """Per column offset j: the (NC*Hp*Wq,) view, element (row, ow) at row*Wq + ow."""
    return [strided(xp, flat, j * g.dw, (nc * g.Hp * _wq(g),), (g.sw,)) for j in range(g.kw)]


def _h_views(xp, g: Geometry, rows, nc):
    """Per row offset i: the (NC, OH, Wq) view of row-reduced (NC, Hp, Wq) ``rows``."""
    wq = _wq(g)
    return [
        strided(xp, rows, i * g.dh * wq, (nc, g.OH, wq), (g.Hp * wq, g.sh * wq, 1))
        for i in range(g.kh)
    ]


def _passes(xp, g: Geometry, flat, nc, reduce):
    """Both passes with ``reduce`` (``_max_over`` or ``_sum_over``): the (NC, OH, Wq) output
    and the row and column winners (None for sums)."""
    rows = xp.empty((nc, g.Hp, _wq(g)), dtype=flat.dtype)
    cidx = _index_array(xp, reduce, g.kw, rows.size)
    reduce(xp, _w_views(xp, g, flat, nc), rows.reshape(-1), cidx)
    out = xp.empty((nc, g.OH, _wq(g)), dtype=flat.dtype)
    ridx = _index_array(xp, reduce, g.kh, out.shape)
    reduce(xp, _h_views(xp, g, rows, nc), out, ridx)
    return out, ridx, cidx


def _passes_backward(xp, g: Geometry, grad, ridx, cidx, nc):
    """Reverse both passes: gradient (NC, OH, Wq) -> gradient of the flat buffer. Buffers
    start as zeros unless the windows tile them exactly."""
    tiles_h = g.kh == g.sh and (g.dh == 1 or g.kh == 1) and g.OH * g.sh == g.Hp
    tiles_w = g.kw == g.sw and (g.dw == 1 or g.kw == 1)
    rows = (xp.empty if tiles_h else xp.zeros)((nc, g.Hp, _wq(g)), dtype=grad.dtype)
    _scatter(xp, grad, ridx, _h_views(xp, g, rows, nc), (g.kh - 1) * g.dh >= g.sh)
    flat = (xp.empty if tiles_w else xp.zeros)(rows.size * g.sw + _slack(g), dtype=grad.dtype)
    _scatter(xp, rows.reshape(-1), cidx, _w_views(xp, g, flat, nc), (g.kw - 1) * g.dw >= g.sw)
    return flat


def _crop(xp, g: Geometry, out):
    """(NC, OH, Wq) -> contiguous (NC, OH, OW)."""
    return xp.ascontiguousarray(out[..., : g.OW])


def _widen(xp, g: Geometry, grad):
    """(NC, OH, OW) -> (NC, OH, Wq) with zero garbage columns."""
    if _wq(g) == g.OW:
        return xp.ascontiguousarray(grad)
    out = xp.zeros(grad.shape[:2] + (_wq(g),), dtype=grad.dtype)
    out[..., : g.OW] = grad
    return out


def _index_array(xp, reduce, views: int, shape):
    """Where ``_max_over`` of ``views`` views records its winners (bool for two)."""
    if reduce is not _max_over or views == 1:
        return None
    return xp.empty(shape, dtype=bool if views == 2 else xp.uint8)


def _max_over(xp, views, best, idx) -> None:
    """``best`` = elementwise max of the views, ``idx`` = index of the first view holding
    it."""
    if len(views) == 1:
        best[...] = views[0]
        return
    xp.greater(views[1], views[0], out=idx)
    xp.maximum(views[0], views[1], out=best)
    for k, v in enumerate(views[2:], 2):
        won = v > best
        xp.maximum(best, v, out=best)
        # offsets only grow, so the latest winner is the largest index
        xp.maximum(idx, won * xp.uint8(k), out=idx)


def _sum_over(xp, views, total, idx=None) -> None:
    if len(views) == 1:
        total[...] = views[0]
        return
    xp.add(views[0], views[1], out=total)
    for v in views[2:]:
        total += v


def _scatter(xp, g, idx, targets, overlap: bool) -> None:
    """Send ``g`` to ``targets[k]`` where ``idx == k`` (everywhere when ``idx`` is None); the
    targets are views of one buffer, which overlap when windows share elements."""
    for k, t in enumerate(targets):
        mask = None if idx is None else idx == k
        if overlap:
            t += g if mask is None else g * mask
        elif mask is None:
            t[...] = g
        else:
            xp.multiply(g, mask, out=t)


class MaxPool(Op):
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, geo, nd, return_indices):
        xp = ctx.xp
        x4 = x.reshape(shape4(x.shape, nd))
        n, c = x4.shape[:2]
        flat = padded_flat(xp, x4, geo, -math.inf, _slack(geo))
        out, ridx, cidx = _passes(xp, geo, flat, n * c, _max_over)
        ctx.save_for_backward(cidx, ridx)
        ctx.geometry, ctx.nd, ctx.x_shape = geo, nd, x.shape
        batched = x.ndim == nd + 2
        y = restore(_crop(xp, geo, out).reshape(n, c, geo.OH, geo.OW), nd, batched)
        if not return_indices:
            return y
        # flat index into the input plane of each winner: row from ridx, column from cidx
        row = xp.arange(geo.OH).reshape(1, -1, 1) * geo.sh
        if ridx is not None:
            row = row + ridx.astype(xp.int64) * geo.dh
        col = xp.arange(_wq(geo)) * geo.sw
        if cidx is not None:
            kj = xp.take_along_axis(
                cidx.reshape(n * c, geo.Hp, _wq(geo)), xp.broadcast_to(row, out.shape), 1
            )
            col = col + kj.astype(xp.int64) * geo.dw
        index = (row - geo.pt) * geo.W + col - geo.pl
        return y, _crop(xp, geo, xp.broadcast_to(index, out.shape)).reshape(y.shape)

    @staticmethod
    def backward(ctx, grad, *_):
        xp = ctx.xp
        cidx, ridx = ctx.saved_tensors
        geo = ctx.geometry
        n, c = shape4(ctx.x_shape, ctx.nd)[:2]
        g = _widen(xp, geo, grad.reshape(n * c, geo.OH, geo.OW))
        flat = _passes_backward(xp, geo, g, ridx, cidx, n * c)
        return _unpadded(xp, geo, flat, n, c).reshape(ctx.x_shape), None, None, None


class AvgPool(Op):
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, geo, nd, divisor):
        xp = ctx.xp
        x4 = x.reshape(shape4(x.shape, nd))
        n, c = x4.shape[:2]
        flat = padded_flat(xp, x4, geo, 0, _slack(geo))
        out = _crop(xp, geo, _passes(xp, geo, flat, n * c, _sum_over)[0])
        if not isinstance(divisor, float):
            divisor = xp.asarray(divisor, dtype=x.dtype)
        out /= divisor
        ctx.geometry, ctx.nd, ctx.x_shape, ctx.divisor = geo, nd, x.shape, divisor
        return restore(out.reshape(n, c, geo.OH, geo.OW), nd, x.ndim == nd + 2)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        geo = ctx.geometry
        n, c = shape4(ctx.x_shape, ctx.nd)[:2]
        g = _widen(xp, geo, grad.reshape(n * c, geo.OH, geo.OW) / ctx.divisor)
        flat = _passes_backward(xp, geo, g, None, None, n * c)
        return _unpadded(xp, geo, flat, n, c).reshape(ctx.x_shape), None, None, None


class AdaptiveAvgPool(Op):
    """Adaptive average pooling as two matrix products with the bin-averaging matrices
    ``mh`` (OH, H) and ``mw`` (OW, W): out = mh @ x @ mw.T per plane."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, nd, mh, mw):
        xp = ctx.xp
        x4 = x.reshape(shape4(x.shape, nd))
        n, c, h, w = x4.shape
        mh, mw = xp.asarray(mh, dtype=x.dtype), xp.asarray(mw, dtype=x.dtype)
        t = (x4.reshape(-1, w) @ mw.T).reshape(n * c, h, -1)
        out = xp.ascontiguousarray(xp.tensordot(mh, t, axes=([1], [1])).transpose(1, 0, 2))
        ctx.nd, ctx.x_shape, ctx.mats = nd, x.shape, (mh, mw)
        return restore(out.reshape(n, c, *out.shape[1:]), nd, x.ndim == nd + 2)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        mh, mw = ctx.mats
        n, c, h, w = shape4(ctx.x_shape, ctx.nd)
        if mh.shape[0] == mw.shape[0] == 1:  # global pooling: every input gets g / (h*w)
            out = xp.empty((n, c, h * w), dtype=grad.dtype)
            out[...] = grad.reshape(n, c, 1) * (mh[0, 0] * mw[0, 0])
            return out.reshape(ctx.x_shape), None, None, None
        g = grad.reshape(n * c, mh.shape[0], mw.shape[0])
        t = xp.tensordot(mh.T, g, axes=([1], [1])).transpose(1, 0, 2)
        return (t.reshape(-1, mw.shape[0]) @ mw).reshape(ctx.x_shape), None, None, None


# ---- public functions ------------------------------------------------------------------------
def _geometry(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode):
    check_input(op, input, nd)
    kernel = spatial(kernel_size, nd, "kernel_size", op)
    stride = (
        kernel
        if stride is None or (not isinstance(stride, int) and len(stride) == 0)
        else spatial(stride, nd, "stride", op)
    )
    padding = spatial(padding, nd, "padding", op, 0)
    dilation = spatial(dilation, nd, "dilation", op)
    c, h, w = shape4(input.shape, nd)[1:]
    return Geometry.pool(op, nd, c, h, w, kernel, stride, padding, dilation, ceil_mode)


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    geo = _geometry(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode)
    return MaxPool.apply(input, geo, nd, bool(return_indices))


def max_pool1d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """Max over sliding windows of ((N,) C, L); ``return_indices`` also gives each maximum's
    position in L."""
    return _max_pool(
        "max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices
    )


def max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """Max over sliding windows of ((N,) C, H, W) (stride defaults to the kernel size, padding
    is -inf); ``return_indices`` also gives each maximum's flat position in H*W. The gradient
    goes to the first maximum of each window."""
    return _max_pool(
        "max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices
    )


def _divisor(geo, count_include_pad, divisor_override):
    """A float, or an (OH, OW) array where windows hold different numbers of elements."""
    if divisor_override is not None:
        if divisor_override == 0:
            raise RuntimeError("avg_pool2d: divisor must be not zero")
        return float(divisor_override)

    def counts(size, out, k, s, p):
        start = np.arange(out) * s - p
        end = np.minimum(start + k, size + p)
        if count_include_pad:
            return end - start
        return np.minimum(end, size) - np.maximum(start, 0)

    d = np.outer(
        counts(geo.H, geo.OH, geo.kh, geo.sh, geo.pt), counts(geo.W, geo.OW, geo.kw, geo.sw, geo.pl)
    ).astype(np.float64)
    return float(d.flat[0]) if (d == d.flat[0]).all() else d


def _avg_pool(
    op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override=None
):
    geo = _geometry(op, nd, input, kernel_size, stride, padding, 1, ceil_mode)
    return AvgPool.apply(input, geo, nd, _divisor(geo, count_include_pad, divisor_override))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over sliding windows of ((N,) C, L)."""
    return _avg_pool(
        "avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad
    )


def avg_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """Mean over sliding windows of ((N,) C, H, W); ``count_include_pad`` counts the zero
    padding in the divisor, ``divisor_override`` replaces it."""
    return _avg_pool(
        "avg_pool2d",
        2,
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )


def _bin_edges(size: int, out: int):
    """PyTorch's adaptive bins along one axis: [floor(i*size/out), ceil((i+1)*size/out))."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _bins(size: int, out: int):
    """The (out, size) matrix averaging the adaptive bins of one axis."""
    start, end = _bin_edges(size, out)
    cols = np.arange(size)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return inside / (end - start)[:, None]


def _adaptive_geometry(op, nd, input, output_size):
    """The input's (h, w) and the output's (oh, ow) of an adaptive pool (1-d as h = 1)."""
    check_input(op, input, nd)
    h, w = shape4(input.shape, nd)[2:]
    size = (
        (output_size,) * nd
        if output_size is None or isinstance(output_size, int)
        else tuple(output_size)
    )
    if len(size) != nd:
        raise ValueError(f"{op}: output_size must be an int or a tuple of {nd}, got {output_size}")
    oh, ow = (1,) * (2 - nd) + tuple(
        int(s) if s is not None else i for s, i in zip(size, (h, w)[2 - nd :])
    )
    if min(oh, ow) < 1:
        raise RuntimeError(f"{op}: output_size must be positive, got {output_size}")
    return h, w, oh, ow


def _adaptive_avg_pool(op, nd, input, output_size):
    h, w, oh, ow = _adaptive_geometry(op, nd, input, output_size)
    if h % oh == 0 and w % ow == 0 and (oh, ow) != (1, 1):
        return _avg_pool(op, nd, input, (h // oh, w // ow)[2 - nd :], None, 0, False, True)
    return AdaptiveAvgPool.apply(input, nd, _bins(h, oh), _bins(w, ow))


def adaptive_avg_pool1d(input, output_size):
    """Average ((N,) C, L) over ``output_size`` adaptive bins."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input, output_size):
    """Average ((N,) C, H, W) over adaptive bins giving ``output_size`` (an int, a pair, None
    keeping that size)."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


# ---- adaptive max pooling --------------------------------------------------------------------
class AdaptiveMaxPool(Op):
    """Max over each adaptive bin of ((N,) C, H, W) planes; one pass per output cell (bins
    may overlap). Returns the values and, per cell, the flat index (``h * W + w``) of its
    first maximum, as PyTorch; backward adds the gradient at those indices."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, nd, oh, ow):
        xp = ctx.xp
        x4 = x.reshape(shape4(x.shape, nd))
        n, c, h, w = x4.shape
        planes = x4.reshape(n * c, h, w)
        out = xp.empty((n * c, oh, ow), x.dtype)
        index = xp.empty((n * c, oh, ow), xp.int64)
        (h0, h1), (w0, w1) = _bin_edges(h, oh), _bin_edges(w, ow)
        for i in range(oh):
            for j in range(ow):
                win = planes[:, h0[i] : h1[i], w0[j] : w1[j]].reshape(n * c, -1)
                k = xp.argmax(win, axis=1)  # first maximum, NaN wins as in PyTorch
                out[:, i, j] = xp.take_along_axis(win, k[:, None], 1)[:, 0]
                bw = w1[j] - w0[j]
                index[:, i, j] = (h0[i] + k // bw) * w + w0[j] + k % bw
        ctx.save_for_backward(index)
        ctx.nd, ctx.x_shape = nd, x.shape
        batched = x.ndim == nd + 2
        return (
            restore(out.reshape(n, c, oh, ow), nd, batched),
            restore(index.reshape(n, c, oh, ow), nd, batched),
        )

    @staticmethod
    def backward(ctx, grad, _):
        xp = ctx.xp
        (index,) = ctx.saved_tensors
        n, c, h, w = shape4(ctx.x_shape, ctx.nd)
        g = grad.reshape(n * c, -1)
        idx = index.reshape(n * c, -1)
        out = xp.zeros((n * c, h * w), grad.dtype)
        rows = xp.arange(n * c)[:, None]
        for k in range(idx.shape[1]):  # within one column every row's index is distinct
            out[rows[:, 0], idx[:, k]] += g[:, k]
        return out.reshape(ctx.x_shape), None, None, None


def _adaptive_max_pool(op, nd, input, output_size, return_indices):
    h, w, oh, ow = _adaptive_geometry(op, nd, input, output_size)
    if min(h, w) < 1:
        raise RuntimeError(
            f"{op}(): Expected input to have non-zero size for non-batch dimensions, but "
            f"input has sizes {list(input.shape)}"
        )
    values, indices = AdaptiveMaxPool.apply(input, nd, oh, ow)
    return (values, indices) if return_indices else values


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Max of ((N,) C, L) over ``output_size`` adaptive bins (and the winners' indices)."""
    return _adaptive_max_pool("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max of ((N,) C, H, W) over adaptive bins giving ``output_size`` (an int, a pair, None
    keeping that size), and the flat indices ``h * W + w`` of the winners if asked."""
    return _adaptive_max_pool("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=True):
    """``adaptive_max_pool1d`` returning ``(values, indices)``."""
    return adaptive_max_pool1d(input, output_size, True)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=True):
    """``adaptive_max_pool2d`` returning ``(values, indices)``."""
    return adaptive_max_pool2d(input, output_size, True)


def max_pool1d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=True
):
    """``max_pool1d`` returning ``(values, indices)``."""
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=True
):
    """``max_pool2d`` returning ``(values, indices)``."""
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


__all__ += [
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
]
