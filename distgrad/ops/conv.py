"""Convolutions: conv1d/conv2d, conv_transpose1d/conv_transpose2d, unfold/fold (im2col).

Everything is computed in 2-d (a 1-d signal is an image of height 1), NCHW throughout, as
matrix products with patch matrices (``Patches``): per sample, one strided view of the padded
input copied into a (C*kh*kw, OH*OW) matrix, a few samples at a time into a reused workspace,
so one product per chunk writes the (F, OH*OW) output of each sample in place — no transposes
before or after. The input gradient of a stride-1 convolution is the same path again (the
padded output gradient correlated with the flipped kernel); strided ones sum the windows'
gradients back with ``kh*kw`` strided additions (``scatter``). ``conv_transpose`` is a
convolution's input gradient. The backwards are once-differentiable.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..autograd import Op, Tensor
from ..autograd.function import autocasting
from ._helpers import check_same_device
from .windows import (
    Geometry,
    check_input,
    check_positive,
    ntuple,
    padded_flat,
    restore,
    shape4,
    spatial,
    strided,
    workspace,
)

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "unfold", "fold"]


# ---- argument checks ------------------------------------------------------------------------
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


# ---- patch matrices -------------------------------------------------------------------------
# On the CPU a few samples at a time are padded and copied into patch matrices of about this
# many bytes, in reused workspaces, so the matrix product reads them from cache; on a GPU the
# whole batch goes at once.
PATCH_BYTES = 2 << 20
FOLD_BELOW = 1024  # outputs per sample below which samples are folded into the columns


@dataclasses.dataclass(frozen=True)
class Patches:
    """How a convolution reads its padded input: per sample, a patch matrix
    (C*kh*kw, OH*Ow) copied from one strided view of the padded planes.

    With stride 1 along the width and few discarded columns the layout is *wide*: Ow = Wp,
    each output row spans the whole padded row, so for fixed (c, i, j) the window elements of
    an output row are one contiguous run of the plane (of all rows, with stride 1 in height
    too), and columns [OW, Wp) of each output row are garbage, dropped by ``crop``; the last
    window reads ``slack`` elements past the last plane. Otherwise Ow = OW.

    With small outputs per sample the chunk's samples are *folded* into the columns: one
    (C*kh*kw, m*OH*Ow) matrix per chunk, so one GEMM of useful size replaces m small ones
    (the outputs then need one transposing copy, in cache).
    """

    g: Geometry
    wide: bool
    folded: bool

    @classmethod
    def of(cls, g: Geometry) -> Patches:
        """The layout chosen for geometry ``g``: wide trades more GEMM columns for fewer,
        longer copies, which pays (measured) up to 25% garbage columns, and up to 100% for
        rows shorter than 16, where the per-run cost of the copies dominates (LeNet's second
        convolution, 10 of 14 columns: 0.78x the time forward and in the kernel gradient)."""
        garbage = g.Wp - g.OW
        wide = g.sw == 1 and garbage <= (g.OW if g.OW < 16 else g.OW / 4)
        return cls(g, wide, g.OH * (g.Wp if wide else g.OW) < FOLD_BELOW)

    @property
    def width(self) -> int:
        """Ow, the columns of an output row in the patch matrices."""
        return self.g.Wp if self.wide else self.g.OW

    @property
    def size(self) -> int:
        """OH*Ow, a sample's columns."""
        return self.g.OH * self.width

    @property
    def slack(self) -> int:
        """Elements read past the last padded plane."""
        return self.g.dw * (self.g.kw - 1) if self.wide else 0

    def view(self, xp, flat, c: int, m: int):
        """The (m, C, kh, kw, OH, Ow) windows of the first m samples' planes in ``flat``."""
        g, plane = self.g, self.g.plane
        return strided(
            xp,
            flat,
            0,
            (m, c, g.kh, g.kw, g.OH, self.width),
            (c * plane, plane, g.dh * g.Wp, g.dw, g.sh * g.Wp, g.sw),
        )

    def batch(self, xp, n: int, k: int, itemsize: int) -> int:
        """Samples per chunk."""
        if xp is not np:
            return n
        return max(1, min(n, PATCH_BYTES // max(1, k * self.size * itemsize)))

    def chunks(self, xp, x4, groups: int):
        """Yield (n0, n1, cols): the patch matrices of samples n0..n1 of x4 (N, C, H, W) as
        (n1-n0, groups, C/groups*kh*kw, OH*Ow), padded and copied chunk by chunk."""
        g = self.g
        n, c = x4.shape[:2]
        k = c * g.kh * g.kw
        m = self.batch(xp, n, k, x4.itemsize)
        direct = (g.pt, g.pl, g.Hp, g.Wp, self.slack) == (0, 0, g.H, g.W, 0)
        if direct:  # no padding: the windows are views of x itself
            flat = xp.ascontiguousarray(x4).reshape(-1)
        else:  # borders and slack stay zero; each chunk writes only the planes' interior
            flat = workspace(xp, ("pad", g), (m * c * g.plane + self.slack,), x4.dtype, 0)
            planes = flat[: m * c * g.plane].reshape(m, c, g.Hp, g.Wp)
            inner = planes[:, :, g.pt : g.pt + g.H, g.pl : g.pl + g.W]
        for n0 in range(0, n, m):
            n1 = min(n, n0 + m)
            if direct:
                src = flat[n0 * c * g.H * g.W :]
            else:
                src = flat
                inner[: n1 - n0] = x4[n0:n1]
                if n1 - n0 < m and self.slack:  # the last window reads past the chunk's planes
                    src[(n1 - n0) * c * g.plane :][: self.slack] = 0
            view = self.view(xp, src, c, n1 - n0)
            if self.folded:
                shape = (c, g.kh, g.kw, n1 - n0, g.OH, self.width)
                cols = workspace(xp, "patches", shape, x4.dtype)
                cols[...] = view.transpose(1, 2, 3, 0, 4, 5)
                yield n0, n1, cols.reshape(groups, k // groups, -1)
            else:
                cols = workspace(xp, "patches", view.shape, x4.dtype)
                cols[...] = view
                yield n0, n1, cols.reshape(n1 - n0, groups, k // groups, self.size)

    def grad_outputs(self, xp, gy, n0: int, n1: int, groups: int):
        """Samples n0..n1 of gy (N, F, OH, OW) as the columns the patch matrices of those
        samples pair with: (groups, F/groups, m*OH*Ow) folded, else (m, groups, F/groups,
        OH*Ow); the garbage columns of the wide layout are zero."""
        g, m, f = self.g, n1 - n0, gy.shape[1]
        if self.folded:
            out = workspace(xp, ("grad_outputs", g), (f, m, g.OH, self.width), gy.dtype, 0)
            out[..., : g.OW] = gy[n0:n1].swapaxes(0, 1)
            return out.reshape(groups, f // groups, -1)
        if self.wide:
            out = workspace(xp, ("grad_outputs", g), (m, f, g.OH, self.width), gy.dtype, 0)
            out[..., : g.OW] = gy[n0:n1]
        else:
            out = gy[n0:n1]
        return out.reshape(m, groups, f // groups, self.size)

    def crop(self, y):
        """Outputs (m, F, OH*Ow), or (F, m*OH*Ow) folded, -> the (m, F, OH, OW) view without
        garbage columns."""
        if self.folded:
            y = y.reshape(y.shape[0], -1, self.size).swapaxes(0, 1)
        return y.reshape(y.shape[:2] + (self.g.OH, self.width))[..., : self.g.OW]


def correlate(xp, x4, w3, g: Geometry, groups: int, bias=None, out=None):
    """Cross-correlation of x4 (N, C, H, W) with the grouped kernel w3
    (groups, F/groups, C/groups*kh*kw): contiguous (N, F, OH, OW), plus ``bias`` per channel.
    One matrix product per chunk of samples, cropped (and biased) into the output (``out``,
    when given: a contiguous array of that shape)."""
    n = x4.shape[0]
    f = groups * w3.shape[1]
    p = Patches.of(g)
    if out is None:
        out = xp.empty((n, f, g.OH, g.OW), dtype=x4.dtype)
    else:
        out = out.reshape(n, f, g.OH, g.OW)
    b = None if bias is None else bias.reshape(-1, 1, 1)
    for n0, n1, cols in p.chunks(xp, x4, groups):
        m = n1 - n0
        if not p.wide and not p.folded:  # straight into the output
            part = out[n0:n1].reshape(m, groups, -1, p.size)
            xp.matmul(w3, cols, out=part)
            if b is not None:
                out[n0:n1] += b
            continue
        shape = (groups, w3.shape[1], m * p.size) if p.folded else (m, groups, w3.shape[1], p.size)
        part = workspace(xp, "outputs", shape, x4.dtype)
        xp.matmul(w3, cols, out=part)
        wide = p.crop(part.reshape(f, -1) if p.folded else part.reshape(m, f, p.size))
        if b is None:
            out[n0:n1] = wide
        else:
            xp.add(wide, b, out=out[n0:n1])
    return out


def kernel_grad(xp, x4, gy, g: Geometry, groups: int):
    """Gradient of ``correlate`` in its kernel: (groups, F/groups, C/groups*kh*kw) from input
    x4 (N, C, H, W) and output gradient gy (N, F, OH, OW)."""
    p = Patches.of(g)
    total = None
    for n0, n1, cols in p.chunks(xp, x4, groups):
        m = n1 - n0
        part = p.grad_outputs(xp, gy, n0, n1, groups)
        # as (C*kh*kw, F) = cols @ gy^T: OpenBLAS runs this 5-10% faster than gy @ cols^T here
        prod = xp.matmul(cols, part.swapaxes(-1, -2)).swapaxes(-1, -2)
        if not p.folded:
            prod = prod.sum(axis=0) if m > 1 else prod[0]
        if total is None:
            total = prod
        else:
            total += prod
    return total


def input_grad(xp, gy, w, g: Geometry, groups: int, c: int, out=None):
    """Gradient of ``correlate`` in its input, (N, C, H, W), from gy (N, F, OH, OW) and the
    kernel w (F, C/groups, kh, kw). With stride 1 (and F <= 2C) it is the correlation of gy,
    padded to full size, with the flipped kernel (the same patch-matrix path as the forward);
    otherwise the kernel's transpose times gy gives the windows' gradients, summed back into
    the padded planes chunk by chunk (``_window_grads``). ``out``: a contiguous array of the
    result's size to write it into."""
    n, f = gy.shape[:2]
    fg, cg, kh, kw = w.shape[0] // groups, w.shape[1], g.kh, g.kw
    # the flipped correlation copies F*kh*kw rows per output position, the sum of windows adds
    # C*kh*kw: measured, the first wins up to about F = 2C
    if g.sh == g.sw == 1 and f <= 2 * c:
        ph, pw = g.dh * (kh - 1), g.dw * (kw - 1)
        pads = (ph - g.pt, ph - (g.Hp - g.H - g.pt), pw - g.pl, pw - (g.Wp - g.W - g.pl))
        # padding beyond the dilated kernel's reach: those outputs see no input at all
        crop = [max(0, -p) for p in pads]
        gy = gy[:, :, crop[0] : g.OH - crop[1], crop[2] : g.OW - crop[3]]
        oh, ow = gy.shape[2:]
        full = Geometry.conv(
            "conv", oh, ow, (kh, kw), (1, 1), [max(0, p) for p in pads], (g.dh, g.dw)
        )
        flipped = w.reshape(groups, fg, cg, kh, kw)[..., ::-1, ::-1].transpose(0, 2, 1, 3, 4)
        return correlate(
            xp, gy, xp.ascontiguousarray(flipped).reshape(groups, cg, -1), full, groups, None, out
        )
    if out is None:
        out = xp.empty((n, c, g.H, g.W), dtype=gy.dtype)
    else:
        out = out.reshape(n, c, g.H, g.W)
    return _window_grads(xp, gy, w.reshape(groups, fg, -1).swapaxes(-1, -2), g, c, out)


def _window_grads(xp, gy, w3t, g: Geometry, c: int, out):
    """``input_grad`` as a sum of windows: per chunk of samples, the windows' gradients
    w3t (groups, C/groups*kh*kw, F/groups) @ gy, then one strided addition per kernel offset
    into zeroed padded planes, whose interior goes to ``out``.

    With stride 1 and short rows the gradients are computed in the wide layout (``Patches``:
    gy copied into rows of Wp with zeros in the garbage columns), so each offset's addition is
    one contiguous run of OH*Wp elements per plane instead of OH runs of OW: the garbage
    columns add zeros, and what runs past a plane's end (or the buffer's: its slack) is one of
    them. Measured against OH runs: 0.73x the time at OW = 10, 0.86x at 20, 1.09x at 32."""
    n = gy.shape[0]
    groups, k = w3t.shape[0], c * g.kh * g.kw
    wide = g.sh == g.sw == 1 and g.OW < 32
    p = Patches(g, wide, wide and g.OH * g.Wp < FOLD_BELOW)
    per_chunk = p.batch(xp, n, k, gy.itemsize)
    flat = workspace(xp, ("planes", g), (per_chunk * c * g.plane + p.slack,), gy.dtype)
    for n0 in range(0, n, per_chunk):
        n1 = min(n, n0 + per_chunk)
        m = n1 - n0
        part = p.grad_outputs(xp, gy, n0, n1, groups)
        shape = (groups, k // groups, m * p.size) if p.folded else (m, groups, k // groups, p.size)
        cols = xp.matmul(w3t, part, out=workspace(xp, "window_grads", shape, gy.dtype))
        if p.folded:  # samples in the columns
            windows = cols.reshape(c, g.kh, g.kw, m, g.OH, p.width).transpose(3, 0, 1, 2, 4, 5)
        else:
            windows = cols.reshape(m, c, g.kh, g.kw, g.OH, p.width)
        out[n0:n1] = scatter_into(xp, flat, windows, g, p.width)
    return out


def unfold_windows(xp, x4, g: Geometry):
    """x4 (N, C, H, W) -> its windows (N, C*kh*kw, OH*OW) (im2col)."""
    n, c = x4.shape[:2]
    flat = padded_flat(xp, x4, g, 0)
    view = Patches(g, False, False).view(xp, flat, c, n)
    return xp.ascontiguousarray(view).reshape(n, c * g.kh * g.kw, g.OH * g.OW)


def scatter_into(xp, flat, cols, g: Geometry, width: int | None = None):
    """Sum windows (m, C, kh, kw, OH, width) into padded planes (m, C, Hp, Wp) at the start of
    the flat buffer ``flat``, one strided addition per kernel offset; returns the (m, C, H, W)
    view of the interior. ``width`` = Wp (stride 1): windows in the wide layout, zero in the
    garbage columns, with ``flat`` holding ``Patches.slack`` elements past the last plane."""
    m, c = cols.shape[:2]
    width = g.OW if width is None else width
    size = m * c * g.plane
    flat[:size] = 0  # (the additions of wide windows run on past the planes: zeros, unread)
    for i in range(g.kh):
        for j in range(g.kw):
            view = strided(
                xp,
                flat,
                i * g.dh * g.Wp + j * g.dw,
                (m, c, g.OH, width),
                (c * g.plane, g.plane, g.sh * g.Wp, g.sw),
            )
            view += cols[:, :, i, j]
    planes = flat[:size].reshape(m, c, g.Hp, g.Wp)
    return planes[:, :, g.pt : g.pt + g.H, g.pl : g.pl + g.W]


def scatter(xp, cols, g: Geometry):
    """The adjoint of ``unfold_windows``: windows (N, C, kh, kw, OH, OW) -> (N, C, H, W),
    overlapping windows summed."""
    n, c = cols.shape[:2]
    flat = xp.empty(n * c * g.plane, dtype=cols.dtype)
    return xp.ascontiguousarray(scatter_into(xp, flat, cols, g))


# ---- convolution ----------------------------------------------------------------------------
class Conv(Op):
    """Cross-correlation of x ((N,) C, [H,] W) with weight (F, C/groups, [kh,] kw)."""

    autocast = "lower"
    once_differentiable = True
    writes_out_buffer = writes_grad_buffer = True  # jit buffer planning (ctx.out_buffer)

    @staticmethod
    def forward(ctx, x, weight, bias, stride, pads, dilation, groups):
        xp, nd = ctx.xp, weight.ndim - 2
        x4 = x.reshape(shape4(x.shape, nd))
        kernel = shape4(weight.shape, nd)[2:]
        g = Geometry.conv(f"conv{nd}d", *x4.shape[2:], kernel, stride, pads, dilation)
        out = correlate(
            xp,
            x4,
            weight.reshape(groups, weight.shape[0] // groups, -1),
            g,
            groups,
            bias,
            ctx.out_buffer,
        )
        need = ctx.needs_input_grad or (False,) * 3
        # the input is needed for the kernel's gradient, the kernel for the input's
        ctx.save_for_backward(x if need[1] else None, weight if need[0] else None)
        ctx.geometry, ctx.groups, ctx.shapes = g, groups, (x.shape, weight.shape)
        return restore(out, nd, x.ndim == nd + 2)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        x, weight = ctx.saved_tensors
        g, groups, (x_shape, w_shape) = ctx.geometry, ctx.groups, ctx.shapes
        nd = len(w_shape) - 2
        x4_shape = shape4(x_shape, nd)
        gy = grad.reshape(x4_shape[0], w_shape[0], g.OH, g.OW)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            w4 = weight.reshape(shape4(w_shape, nd))
            gx = input_grad(xp, gy, w4, g, groups, x4_shape[1], ctx.grad_buffer)
            gx = gx.reshape(x_shape)
        if ctx.needs_input_grad[1]:
            gw = kernel_grad(xp, x.reshape(x4_shape), gy, g, groups).reshape(w_shape)
        if ctx.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None


class ConvTranspose(Op):
    """The adjoint of ``Conv`` in x: weight (C, F/groups, [kh,] kw). Its forward is a
    convolution's input gradient, its backward a convolution and its kernel gradient."""

    autocast = "lower"
    once_differentiable = True

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding, dilation, groups):
        xp, nd = ctx.xp, weight.ndim - 2
        op = f"conv_transpose{nd}d"
        x4 = x.reshape(shape4(x.shape, nd))
        h, w = x4.shape[2:]
        w4 = weight.reshape(shape4(weight.shape, nd))
        kernel = w4.shape[2:]
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
        g = Geometry.conv(op, *size, kernel, stride, (ph, ph, pw, pw), dilation)
        # output_padding >= stride (allowed below the dilation) adds windows x does not have
        g = dataclasses.replace(g, OH=h, OW=w)
        out = input_grad(xp, x4, w4, g, groups, w4.shape[1] * groups)
        if bias is not None:
            out += bias.reshape(-1, 1, 1)
        need = ctx.needs_input_grad or (False,) * 3
        ctx.save_for_backward(x if need[1] else None, weight if need[0] else None)
        ctx.geometry, ctx.groups, ctx.shapes = g, groups, (x.shape, weight.shape)
        return restore(out, nd, x.ndim == nd + 2)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        x, weight = ctx.saved_tensors
        g, groups, (x_shape, w_shape) = ctx.geometry, ctx.groups, ctx.shapes
        nd = len(w_shape) - 2
        x4_shape = shape4(x_shape, nd)
        grad4 = grad.reshape(x4_shape[0], -1, g.H, g.W)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            w3 = weight.reshape(groups, w_shape[0] // groups, -1)
            gx = correlate(xp, grad4, w3, g, groups).reshape(x_shape)
        if ctx.needs_input_grad[1]:
            gw = kernel_grad(xp, grad4, x.reshape(x4_shape), g, groups).reshape(w_shape)
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
    ph, pw = spatial(padding, nd, "padding", op, 0)
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
    check_input(op, input, nd)
    _check_params(op, input, weight, bias, nd)
    _check_groups(op, weight, groups)
    channels = shape4(input.shape, nd)[1]
    if channels != weight.shape[1] * groups:
        raise RuntimeError(
            f"{op}: Given groups={groups}, weight of size {list(weight.shape)}, "
            f"expected input{list(input.shape)} to have "
            f"{weight.shape[1] * groups} channels, but got {channels} channels "
            f"instead"
        )
    _check_bias(bias, weight.shape[0], weight)
    stride = spatial(stride, nd, "stride", op)
    dilation = spatial(dilation, nd, "dilation", op)
    check_positive(op, stride, dilation)
    kernel = shape4(weight.shape, nd)[2:]
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
    check_input(op, input, nd)
    _check_params(op, input, weight, bias, nd)
    _check_groups(op, weight, groups)
    channels = shape4(input.shape, nd)[1]
    if channels != weight.shape[0]:
        raise RuntimeError(
            f"{op}: Given transposed=1, weight of size {list(weight.shape)}, "
            f"expected input{list(input.shape)} to have {weight.shape[0]} "
            f"channels, but got {channels} channels instead"
        )
    _check_bias(bias, weight.shape[1] * groups, weight)
    stride = spatial(stride, nd, "stride", op)
    dilation = spatial(dilation, nd, "dilation", op)
    check_positive(op, stride, dilation)
    padding = spatial(padding, nd, "padding", op, 0)
    output_padding = spatial(output_padding, nd, "output_padding", op, 0)
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
        x4 = x.reshape(shape4(x.shape, 2))
        (ph, pw) = padding
        g = Geometry.conv("unfold", *x4.shape[2:], kernel, stride, (ph, ph, pw, pw), dilation)
        ctx.geometry, ctx.x_shape = g, x.shape
        out = unfold_windows(ctx.xp, x4, g)
        return out if x.ndim == 4 else out[0]

    @staticmethod
    def backward(ctx, grad):
        g = ctx.geometry
        cols = grad.reshape(-1, ctx.x_shape[-3], g.kh, g.kw, g.OH, g.OW)
        return scatter(ctx.xp, cols, g).reshape(ctx.x_shape), None, None, None, None


class Fold(Op):
    """Blocks ((N,) C*kh*kw, L) -> ((N,) C, H, W), overlapping values summed."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, g):
        ctx.geometry, ctx.x_shape = g, x.shape
        out = scatter(
            ctx.xp, x.reshape(-1, x.shape[-2] // (g.kh * g.kw), g.kh, g.kw, g.OH, g.OW), g
        )
        return out if x.ndim == 3 else out[0]

    @staticmethod
    def backward(ctx, grad):
        grad4 = grad.reshape((-1,) + grad.shape[-3:])
        return unfold_windows(ctx.xp, grad4, ctx.geometry).reshape(ctx.x_shape), None


def _block_args(op, kernel_size, dilation, padding, stride):
    kernel = ntuple(kernel_size, 2, "kernel_size", op)
    dilation = ntuple(dilation, 2, "dilation", op)
    padding = ntuple(padding, 2, "padding", op)
    stride = ntuple(stride, 2, "stride", op)
    check_positive(op, stride, dilation)
    if min(kernel) < 1 or min(padding) < 0:
        raise RuntimeError(
            f"{op}: expected positive kernel_size and non-negative padding, got "
            f"kernel_size={kernel}, padding={padding}"
        )
    return kernel, dilation, padding, stride


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Extract sliding blocks (im2col): ((N,) C, H, W) -> ((N,) C*kh*kw, L), L the number of
    blocks."""
    check_input("unfold", input, 2)
    args = _block_args("unfold", kernel_size, dilation, padding, stride)
    return Unfold.apply(input, *args)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Combine sliding blocks into an image (col2im, summing overlaps):
    ``((N,) C*kh*kw, L)`` -> ``((N,) C, *output_size)``."""
    op = "fold"
    if not isinstance(input, Tensor) or input.ndim not in (2, 3):
        shape = list(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise RuntimeError(
            f"{op}: Expected 2D (unbatched) or 3D (batched) input, but got input of size: {shape}"
        )
    kernel, dilation, (ph, pw), stride = _block_args(op, kernel_size, dilation, padding, stride)
    size = ntuple(output_size, 2, "output_size", op)
    g = Geometry.conv(op, *size, kernel, stride, (ph, ph, pw, pw), dilation)
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
