"""Sliding-window geometry shared by convolutions (``conv.py``) and pooling (``pool.py``).

Every window op is computed in 2-d (a 1-d signal is an image of height 1) on a zero- (or
-inf-) padded copy of its input laid out as one flat buffer: ``(N, C, Hp, Wp)`` plus a few
``slack`` elements at the end. Output ``(oh, ow)`` with kernel offset ``(i, j)`` reads buffer
element ``(oh*sh + i*dh, ow*sw + j*dw)`` of its plane, so every kernel offset is one strided
view of the buffer (``strided``), never a gather.
"""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np

from ..autograd import Tensor

__all__ = [
    "Geometry",
    "ntuple",
    "spatial",
    "check_positive",
    "shape4",
    "restore",
    "check_input",
    "strided",
    "pad_into",
    "padded_flat",
    "workspace",
]


# ---- argument normalisation and checks ----------------------------------------------------
def ntuple(value, n: int, name: str, op: str) -> tuple:
    """``value`` (an int or a sequence of 1 or ``n`` ints) as an ``n``-tuple."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f"{op}: expected {name} to be an int or a tuple of {n} ints, got {value}")
    return value


def spatial(value, nd: int, name: str, op: str, height: int = 1) -> tuple:
    """``value`` for a ``nd``-d op as a 2-d (height, width) pair (``height`` for 1-d)."""
    v = ntuple(value, nd, name, op)
    return v if nd == 2 else (height,) + v


def check_positive(op: str, stride, dilation) -> None:
    """PyTorch's errors for a non-positive stride or dilation."""
    if any(s <= 0 for s in stride):
        raise RuntimeError(f"{op}: non-positive stride is not supported (got stride={stride})")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"{op}: dilation should be greater than zero (got {dilation})")


def shape4(shape: tuple, nd: int) -> tuple:
    """An input shape of a ``nd``-d op ((N,) C, *spatial) as (N, C, H, W)."""
    batched = len(shape) == nd + 2
    n, c = (shape[0], shape[1]) if batched else (1, shape[0])
    return (n, c) + ((1,) if nd == 1 else ()) + tuple(shape[-nd:])


def restore(a, nd: int, batched: bool):
    """(N, C, H, W) -> the layout of a ``nd``-d op's tensors (no H for 1-d, no N unbatched)."""
    shape = a.shape[:2] + a.shape[4 - nd :]
    return a.reshape(shape if batched else shape[1:])


def check_input(op: str, x, nd: int) -> None:
    """``x`` must be a floating Tensor of ``nd + 1`` (unbatched) or ``nd + 2`` dimensions."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected input to be a Tensor, got {type(x).__name__}")
    if x.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to "
            f"{op}, but got input of size: {list(x.shape)}"
        )
    if not x.is_floating_point():
        raise RuntimeError(f"{op}: expected a floating point input, got {x.dtype}")


# ---- geometry -------------------------------------------------------------------------------
def _pool_out_size(size, k, s, p, d, ceil_mode) -> int:
    """PyTorch's pooling output size; in ceil mode the last window must start inside the input
    or its left padding."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the windows of a 2-d sliding-window op lie: the input (H, W) sits at (pt, pl) of a
    padded (Hp, Wp) plane, and output (oh, ow) with kernel offset (i, j) reads plane element
    (oh*sh + i*dh, ow*sw + j*dw). The plane may be larger than the windows need (pooling
    rounds ``Wp`` up to a multiple of ``sw``)."""

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
    def conv(cls, op, H, W, kernel, stride, pads, dilation) -> Geometry:
        """A convolution's geometry; ``pads`` is (top, bottom, left, right). Raises PyTorch's
        error when the dilated kernel does not fit the padded input."""
        (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = kernel, stride, dilation, pads
        hp, wp = H + pt + pb, W + pl + pr
        ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if ekh > hp or ekw > wp:
            raise RuntimeError(
                f"{op}: Calculated padded input size per channel: ({hp} x {wp}). "
                f"Kernel size: ({ekh} x {ekw}). Kernel size can't be greater "
                f"than actual input size"
            )
        oh, ow = (hp - ekh) // sh + 1, (wp - ekw) // sw + 1
        return cls(H, W, kh, kw, sh, sw, dh, dw, pt, pl, hp, wp, oh, ow)

    @classmethod
    def pool(cls, op, nd, C, H, W, kernel, stride, padding, dilation, ceil_mode) -> Geometry:
        """A pooling's geometry (symmetric ``padding``, PyTorch's ceil mode); the plane is
        wide enough for every window and ``Wp`` a multiple of ``sw``."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
            raise RuntimeError(
                f"{op}: kernel_size, stride and dilation must be positive and "
                f"padding non-negative, got kernel_size={kernel[2 - nd :]}, "
                f"stride={stride[2 - nd :]}, padding={padding[2 - nd :]}, "
                f"dilation={dilation[2 - nd :]}"
            )
        if 2 * ph > kh or 2 * pw > kw:
            raise RuntimeError(
                f"{op}: pad should be smaller than or equal to half of kernel "
                f"size, but got padding={padding[2 - nd :]}, "
                f"kernel_size={kernel[2 - nd :]}"
            )
        oh = _pool_out_size(H, kh, sh, ph, dh, ceil_mode)
        ow = _pool_out_size(W, kw, sw, pw, dw, ceil_mode)
        if oh < 1 or ow < 1:
            raise RuntimeError(
                f"{op}: Given input size: ({C}x{H}x{W}). Calculated output size: "
                f"({C}x{oh}x{ow}). Output size is too small"
            )
        hp = max(H + 2 * ph, (oh - 1) * sh + (kh - 1) * dh + 1)
        wp = max(W + 2 * pw, (ow - 1) * sw + (kw - 1) * dw + 1)
        return cls(H, W, kh, kw, sh, sw, dh, dw, ph, pw, hp, -(-wp // sw) * sw, oh, ow)

    @property
    def plane(self) -> int:
        """Elements of one padded plane, Hp*Wp."""
        return self.Hp * self.Wp


def strided(xp, buf, offset: int, shape: tuple, strides: tuple):
    """A view of contiguous ``buf`` starting at flat element ``offset`` with element strides
    (which must stay inside ``buf``)."""
    item = buf.itemsize
    if xp is np:  # the constructor takes 0.6 us, as_strided's generic path 4 us
        return np.ndarray(shape, buf.dtype, buf, offset * item, tuple(s * item for s in strides))
    return xp.lib.stride_tricks.as_strided(
        buf.reshape(-1)[offset:], shape, tuple(s * item for s in strides)
    )


def pad_into(buf, x, top: int, left: int, fill):
    """Fill buffer (N, C, Hp, Wp) with ``x`` (N, C, H, W) at (top, left) and ``fill`` around
    (each element written once)."""
    h, w = x.shape[2:]
    buf[:, :, top : top + h, left : left + w] = x
    buf[:, :, :top] = fill
    buf[:, :, top + h :] = fill
    buf[:, :, top : top + h, :left] = fill
    buf[:, :, top : top + h, left + w :] = fill
    return buf


def padded_flat(xp, x4, g: Geometry, fill, slack: int = 0):
    """x4 (N, C, H, W) placed in its padded planes as one flat buffer of N*C*Hp*Wp + ``slack``
    elements (the slack, read only by discarded outputs, holds ``fill`` too). Without padding
    or slack this is x4 itself, flattened."""
    n, c = x4.shape[:2]
    if (g.pt, g.pl, g.Hp, g.Wp, slack) == (0, 0, g.H, g.W, 0):
        return xp.ascontiguousarray(x4).reshape(-1)
    size = n * c * g.plane
    flat = xp.empty(size + slack, dtype=x4.dtype)
    flat[size:] = fill
    pad_into(flat[:size].reshape(n, c, g.Hp, g.Wp), x4, g.pt, g.pl, fill)
    return flat


# ---- scratch buffers ---------------------------------------------------------------------------
class _Workspaces(threading.local):
    def __init__(self) -> None:
        self.buffers: dict = {}


_workspaces = _Workspaces()
_MAX_WORKSPACES = 16
_MAX_WORKSPACE_BYTES = 16 << 20


def workspace(xp, key, shape: tuple, dtype, fill=None):
    """A scratch array for a window op's inner loop, reused across calls on the CPU: the ops
    work chunk by chunk through buffers of a few MB, and a fresh large array costs its page
    faults on every call (glibc maps and unmaps it each time), which on the CPU is as much as
    the copy into it. ``fill`` is written once, when the buffer is made: callers that write
    only an interior rely on the rest keeping it. Buffers are per thread (ops may run in
    several) and keyed by ``key`` + shape + dtype; the least recently used of more than 16 is
    dropped; arrays over 16 MB are not kept. A key for a buffer whose filled parts must stay
    filled names what decides those parts (the op's geometry): two ops writing different
    interiors of one shape must not share it. On a GPU a fresh array (cupy's memory pool
    already reuses memory)."""
    if xp is not np or math.prod(shape) * np.dtype(dtype).itemsize > _MAX_WORKSPACE_BYTES:
        out = xp.empty(shape, dtype=dtype)
        if fill is not None:
            out[...] = fill
        return out
    buffers = _workspaces.buffers
    full_key = (key, shape, np.dtype(dtype).str, fill)
    out = buffers.pop(full_key, None)
    if out is None:
        out = np.empty(shape, dtype=dtype)
        if fill is not None:
            out[...] = fill
        while len(buffers) >= _MAX_WORKSPACES:
            del buffers[next(iter(buffers))]
    buffers[full_key] = out  # most recently used last
    return out
