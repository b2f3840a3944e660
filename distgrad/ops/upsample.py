"""Resampling: ``interpolate`` (nearest, nearest-exact, linear, bilinear, bicubic, trilinear,
area) and ``pixel_shuffle`` / ``pixel_unshuffle``, as ``torch.nn.functional``'s.

Every mode is separable, so a resize is one 1-d resampling per spatial axis, each composed of
differentiable ops (``index_select`` of the neighbours and a weighted sum; an integer nearest
upscale is an ``expand`` + ``reshape``), which gives first and higher-order gradients. The
source coordinates follow PyTorch's kernels: with ``scale_factor`` given (and not
``recompute_scale_factor``) the scale is ``1 / scale_factor``, else ``in / out``;
``align_corners`` maps the corner pixels' centres onto each other.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import Tensor
from .pool import adaptive_avg_pool1d, adaptive_avg_pool2d

__all__ = ["interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle"]

_SPATIAL = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_CUBIC_A = -0.75


def _index(x: Tensor, axis: int, idx: np.ndarray) -> Tensor:
    return x.index_select(axis, Tensor(idx.astype(np.int64)).to(x.device))


def _weights(w: np.ndarray, x: Tensor, axis: int) -> Tensor:
    """A constant weight vector along ``axis`` of ``x``, broadcasting over the other dims."""
    shape = [1] * x.ndim
    shape[axis] = w.size
    return Tensor(x.device.xp.asarray(w.reshape(shape), dtype=x.array.dtype))


def _source(out: int, size: int, scale, align_corners: bool, cubic: bool = False) -> np.ndarray:
    """PyTorch's source coordinate of each output position (``area_pixel_compute_source``)."""
    dst = np.arange(out, dtype=np.float64)
    if align_corners:
        return dst * ((size - 1) / (out - 1) if out > 1 else 0.0)
    ratio = 1.0 / scale if scale is not None and scale > 0 else size / out
    src = (dst + 0.5) * ratio - 0.5
    return src if cubic else np.maximum(src, 0.0)


def _nearest(x, axis, size, out, scale, exact):
    # PyTorch computes these indices in float32 (``nearest_idx``)
    ratio = np.float32(1.0 / scale if scale is not None and scale > 0 else size / out)
    dst = np.arange(out, dtype=np.float32)
    src = np.floor((dst + np.float32(0.5)) * ratio) if exact else np.floor(dst * ratio)
    idx = np.minimum(src.astype(np.int64), size - 1)
    if out % size == 0 and np.array_equal(idx, np.arange(out) // (out // size)):
        k = out // size  # each input repeated k times: a broadcast, cheap both ways
        shape = list(x.shape)
        expanded = x.unsqueeze(axis + 1).expand(*shape[: axis + 1], k, *shape[axis + 1 :])
        return expanded.reshape(*shape[:axis], out, *shape[axis + 1 :])
    return _index(x, axis, idx)


def _linear(x, axis, size, out, scale, align_corners):
    src = _source(out, size, scale, align_corners)
    i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
    i1 = np.minimum(i0 + 1, size - 1)
    lam = src - i0
    a, b = _index(x, axis, i0), _index(x, axis, i1)
    return a * _weights(1.0 - lam, x, axis) + b * _weights(lam, x, axis)


def _cubic_weights(t):
    a = _CUBIC_A

    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def _cubic(x, axis, size, out, scale, align_corners):
    src = _source(out, size, scale, align_corners, cubic=True)
    base = np.floor(src).astype(np.int64)
    total = None
    for k, w in enumerate(_cubic_weights(src - base)):
        term = _index(x, axis, np.clip(base - 1 + k, 0, size - 1)) * _weights(w, x, axis)
        total = term if total is None else total + term
    return total


def _sizes(op, input, nd, size, scale_factor, recompute_scale_factor):
    spatial = tuple(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    if size is not None:
        out = (size,) * nd if isinstance(size, numbers.Integral) else tuple(size)
        if len(out) != nd:
            raise ValueError(
                f"Input and output must have the same number of spatial dimensions, but got "
                f"input with spatial dimensions of {list(spatial)} and output size of "
                f"{list(out)}. Please provide input tensor in (N, C, d1, d2, ...,dK) format "
                f"and output size in (o1, o2, ...,oK) format."
            )
        out = tuple(int(s) for s in out)
        scales = (None,) * nd
    else:
        scales = (
            (float(scale_factor),) * nd
            if isinstance(scale_factor, numbers.Number)
            else tuple(float(s) for s in scale_factor)
        )
        if len(scales) != nd:
            raise ValueError(
                f"Input and scale_factor must have the same number of spatial dimensions, but "
                f"got input with spatial dimensions of {list(spatial)} and scale_factor of "
                f"shape {list(scales)}. Please provide input tensor in (N, C, d1, d2, ...,dK) "
                f"format and scale_factor in (s1, s2, ...,sK) format."
            )
        out = tuple(int(math.floor(s * f)) for s, f in zip(spatial, scales))
        if recompute_scale_factor:
            scales = (None,) * nd
    if any(o <= 0 for o in out):
        raise RuntimeError(
            f"{op}: the output size {list(out)} for input of spatial size {list(spatial)} "
            f"must be greater than 0"
        )
    return out, scales


def interpolate(
    input,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners=None,
    recompute_scale_factor=None,
    antialias: bool = False,
):
    """Resize the spatial dims of ``(N, C, *spatial)`` to ``size`` or by ``scale_factor``
    (``mode``: nearest, nearest-exact, linear (3-D), bilinear/bicubic (4-D), trilinear (5-D),
    area)."""
    if mode not in _MODES:
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            f"the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
            f"nearest-exact (got {mode})"
        )
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError(
                "align_corners option can only be set with the interpolating modes: "
                "linear | bilinear | bicubic | trilinear"
            )
    elif align_corners is None:
        align_corners = False
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported by distgrad")
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (3, 4, 5):
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            f"the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
            f"nearest-exact (got {mode})"
        )
    nd = input.ndim - 2
    if mode in _SPATIAL and _SPATIAL[mode] != nd:
        raise NotImplementedError(
            f"Got {input.ndim}D input, but {mode} mode needs {_SPATIAL[mode] + 2}D input"
        )
    if not input.is_floating_point():
        raise RuntimeError(
            f"\"upsample_{mode}\" not implemented for '{str(input.dtype).split('.')[-1]}'"
        )
    out, scales = _sizes("interpolate", input, nd, size, scale_factor, recompute_scale_factor)
    if mode == "area":
        if nd == 3:
            raise NotImplementedError("interpolate: mode='area' supports 3-D and 4-D inputs")
        return (adaptive_avg_pool1d if nd == 1 else adaptive_avg_pool2d)(input, out)
    x = input
    for k in range(nd):
        axis = 2 + k
        n_in, n_out, s = x.shape[axis], out[k], scales[k]
        if mode in ("nearest", "nearest-exact"):
            x = _nearest(x, axis, n_in, n_out, s, mode == "nearest-exact")
        elif mode == "bicubic":
            x = _cubic(x, axis, n_in, n_out, s, align_corners)
        elif n_in != n_out or align_corners or s is not None:
            x = _linear(x, axis, n_in, n_out, s, align_corners)
    return x


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated alias of ``interpolate``."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def _check_shuffle(op, input, what):
    if input.ndim < 3:
        raise RuntimeError(
            f"{op} expects input to have at least 3 dimensions, but got input with "
            f"{input.ndim} dimension(s)"
        )


def pixel_shuffle(input, upscale_factor: int):
    """``(*, C * r^2, H, W) -> (*, C, H * r, W * r)`` (sub-pixel convolution's rearrangement)."""
    _check_shuffle("pixel_shuffle", input, "channel")
    r = int(upscale_factor)
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(
            f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the "
            f"square of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}"
        )
    n = len(lead)
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor: int):
    """``(*, C, H * r, W * r) -> (*, C * r^2, H, W)``, the inverse of ``pixel_shuffle``."""
    _check_shuffle("pixel_unshuffle", input, "channel")
    r = int(downscale_factor)
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    for name, size, dim in (("height", h, -2), ("width", w, -1)):
        if size % r:
            raise RuntimeError(
                f"pixel_unshuffle expects {name} to be divisible by downscale_factor, but "
                f"input.size({dim})={size} is not divisible by {r}"
            )
    n = len(lead)
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.reshape(*lead, c * r * r, h // r, w // r)


def channel_shuffle(input, groups: int):
    """``(N, g * k, *) -> (N, k * g, *)``: interleave the channels of ``groups`` groups."""
    if input.ndim < 3:
        raise RuntimeError(
            f"channel_shuffle expects input to have at least 3 dimensions, but got input with "
            f"{input.ndim} dimension(s)"
        )
    n, c, *rest = input.shape
    if groups <= 0 or c % groups:
        raise RuntimeError(
            f"Number of channels must be divisible by groups. Got {c} channels and {groups} groups."
        )
    x = input.reshape(n, groups, c // groups, *rest).transpose(1, 2)
    return x.reshape(n, c, *rest)
