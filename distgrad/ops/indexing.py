"""Indexing: ``tensor[key]`` reads (views for basic keys) and in-place writes, gather/scatter,
index_select/index_add/index_put, masked ops, take/take_along_dim and nonzero.

Three Functions do the work, each the other's gradient: ``Index`` (``x[key]``), ``IndexAdd``
(``x`` with ``v`` added at ``key``) and ``IndexPut`` (``x`` with ``v`` written at ``key``).
A key is a tuple of ints, slices, None, Ellipsis and index arrays on the tensor's device.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Op, Tensor
from ..backend import array_module_for, is_array
from ._helpers import apply_inplace, as_tensor, graph_xp, normalize_dim, tensor_method, unbroadcast
from .conversion import move_array
from .elementwise import where
from .shape import _reshape, broadcast_shapes, expand, unbind

__all__ = [
    "gather",
    "scatter",
    "scatter_add",
    "index_select",
    "index_add",
    "index_put",
    "masked_fill",
    "masked_select",
    "take",
    "take_along_dim",
    "nonzero",
    "argwhere",
    "repeat_interleave",
]


# ---- the three Functions ------------------------------------------------------------------
def _is_int_array(k) -> bool:
    return is_array(k) and k.dtype.kind in "iu"


def _write(out, key, v, accumulate: bool) -> None:
    """``out[key] = v`` or, accumulating, ``out[key] += v`` with repeated indices summed."""
    try:
        if not accumulate:
            out[key] = v
        elif any(_is_int_array(k) for k in key):
            array_module_for(out).add.at(out, key, v)
        else:  # basic indexing and boolean masks address each element at most once
            out[key] += v
    except ValueError as e:
        if "broadcast" not in str(e):
            raise
        raise RuntimeError(
            f"shape mismatch: value tensor of shape {list(np.shape(v))} cannot "
            f"be broadcast to indexing result of shape "
            f"{list(out[key].shape)}"
        ) from None


class Index(Op):
    """``x[key]``: a view for basic keys, a copy with index arrays."""

    is_view = True

    @staticmethod
    def forward(ctx, x, key):
        ctx.shape, ctx.key = x.shape, key
        return x[key]

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):  # create_graph: a recorded scatter into constant zeros
            zeros = Tensor(g.device.xp.zeros(ctx.shape, g.array.dtype))
            return IndexAdd.apply(zeros, g, ctx.key), None
        out = array_module_for(g).zeros(ctx.shape, g.dtype)
        _write(out, ctx.key, g, accumulate=True)
        return out, None


class IndexPut(Op):
    """A copy of ``x`` with ``v`` (broadcast) written at ``key``."""

    accumulate = False

    @classmethod
    def forward(cls, ctx, x, v, key):
        ctx.key, ctx.vshape = key, np.shape(v)
        out = x.copy()
        _write(out, key, v, cls.accumulate)
        return out

    @classmethod
    def backward(cls, ctx, g):
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = g if cls.accumulate else _put(g, 0, ctx.key)  # overwritten: no gradient
        if ctx.needs_input_grad[1]:
            gv = unbroadcast(ctx.xp, g[ctx.key], ctx.vshape)
        return gx, gv, None


class IndexAdd(IndexPut):
    """A copy of ``x`` with ``v`` (broadcast) added at ``key``; repeated indices add up."""

    accumulate = True


def _put(x, v, key):
    """``IndexPut`` from inside a backward: recorded on tensors, direct on arrays."""
    if isinstance(x, Tensor):
        return IndexPut.apply(x, v, key)
    out = x.copy()
    out[key] = v
    return out


# ---- keys ---------------------------------------------------------------------------------
def _index_array(x: Tensor, k, op: str = "index"):
    """An index (tensor, array, list) as an integer or boolean array on ``x``'s device."""
    if isinstance(k, Tensor):
        arr = k.array
        if arr.dtype == np.uint8:  # byte tensors are masks in PyTorch
            arr = arr.astype(bool)
        ok = arr.dtype in (np.int64, np.int32, np.bool_)
    else:  # numpy arrays and lists: any integer dtype, as numpy allows
        arr = k if is_array(k) else np.asarray(k)
        if arr.size == 0 and arr.dtype.kind == "f":  # [] is an empty integer index
            arr = arr.astype(np.int64)
        ok = arr.dtype.kind in "biu"
    if not ok:
        raise IndexError(
            f"{op}: tensors used as indices must be long, int, byte or bool "
            f"tensors, got {arr.dtype}"
        )
    return move_array(arr, x.device)


def _key(x: Tensor, key) -> tuple:
    """``key`` normalised for ``Index``: index arrays moved to ``x``'s device, and a trailing
    Ellipsis so that indexing every dimension still gives a 0-d view, not a scalar."""
    out: list = []
    for k in key if isinstance(key, tuple) else (key,):
        if k is None or k is Ellipsis or isinstance(k, (slice, bool, np.bool_)):
            out.append(k)
        elif isinstance(k, numbers.Integral):
            out.append(int(k))
        else:
            out.append(_index_array(x, k))
    if not any(k is Ellipsis for k in out):
        out.append(Ellipsis)
    key = tuple(out)
    if x.device.type != "cpu":
        _check_key_bounds(x, key)
    return key


def _check_bounds(index, size: int, dim: int, op: str, negative: bool = False) -> None:
    """IndexError naming the dimension, the index and the size for an index out of range
    (``negative``: from ``-size``, as Python indexing)."""
    if index.size == 0:
        return
    lo, hi = int(index.min()), int(index.max())
    bad = lo if lo < (-size if negative else 0) else hi if hi >= size else None
    if bad is not None:
        raise IndexError(f"{op}: index {bad} is out of bounds for dimension {dim} with size {size}")


def _check_key_bounds(x: Tensor, key: tuple) -> None:
    """numpy raises for out-of-range index arrays; cupy would wrap them silently."""
    consumed = sum(
        k.ndim if is_array(k) and k.dtype == np.bool_ else 1
        for k in key
        if k is not None and k is not Ellipsis and not isinstance(k, (bool, np.bool_))
    )
    d = 0
    for k in key:
        if k is Ellipsis:
            d += x.ndim - consumed
        elif is_array(k) and k.dtype == np.bool_:
            d += k.ndim
        elif k is not None and not isinstance(k, (bool, np.bool_)):
            if _is_int_array(k) and d < x.ndim:
                _check_bounds(k, x.shape[d], d, "index", negative=True)
            d += 1


# ---- tensor[key] --------------------------------------------------------------------------
@tensor_method("__getitem__")
def _getitem(self, key):
    """``self[key]`` with numpy/PyTorch semantics: ints, slices, None, Ellipsis (a view),
    boolean masks and integer index tensors/lists (a copy; advanced indexing)."""
    return Index.apply(self, _key(self, key))


@tensor_method("__setitem__")
def _setitem(self, key, value):
    """``self[key] = value`` in place; ``value`` (a number or a tensor, broadcast) is cast to
    ``self``'s dtype. Gradients flow to the old ``self`` (zero where written) and to
    ``value``."""
    key = _key(self, key)
    if isinstance(value, Tensor):
        value = value.to(self.device, self.dtype)
    elif not isinstance(value, numbers.Number):
        value = as_tensor(value, self, dtype=self.dtype)
    return apply_inplace(
        self,
        "__setitem__",
        lambda s, v: IndexPut.apply(s, v, key),
        value,
        fast=lambda array, v: _write(array, key, v, accumulate=False),
    )


@tensor_method("__iter__")
def _iter(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return iter(unbind(self, 0))


# ---- gather / scatter ---------------------------------------------------------------------
def _index_arg(input: Tensor, index, op: str):
    """An integer index argument (tensor or array-like) as an array on ``input``'s device."""
    arr = _index_array(input, index, op)
    if arr.dtype.kind not in "iu":
        raise RuntimeError(f"{op}(): Expected dtype int64 or int32 for index, got {arr.dtype}")
    return arr


def _along_key(index, dim: int) -> tuple:
    """The advanced-index key that selects ``x[i0, .., index[i0, .., ik, ..], .., ik, ..]``
    for every position of ``index`` (``index`` at ``dim``, aranges elsewhere)."""
    xp = array_module_for(index)
    nd = index.ndim
    return tuple(
        index if d == dim else xp.arange(n).reshape((n,) + (1,) * (nd - 1 - d))
        for d, n in enumerate(index.shape)
    )


def _gather_key(op: str, input: Tensor, dim, index, src_shape=None) -> tuple:
    """Check gather/scatter arguments as PyTorch does; return (dim, key)."""
    d = normalize_dim(dim, input.ndim, op)
    index = _index_arg(input, index, op)
    if index.ndim != input.ndim:
        raise RuntimeError(
            f"{op}(): Index tensor must have the same number of dimensions as "
            f"input tensor ({input.ndim}), got {index.ndim}"
        )
    for a, (n, m) in enumerate(zip(index.shape, input.shape)):
        if a != d and n > m:
            raise RuntimeError(
                f"{op}(): Size does not match at dimension {a}: expected index "
                f"{list(index.shape)} to be smaller than self "
                f"{list(input.shape)} apart from dimension {d}"
            )
    if src_shape is not None and any(n > m for n, m in zip(index.shape, src_shape)):
        raise RuntimeError(
            f"{op}(): Expected index {list(index.shape)} to be smaller than "
            f"src {list(src_shape)} in every dimension"
        )
    _check_bounds(index, input.shape[d] if input.ndim else 1, d, op)
    return d, _along_key(index, d) + (Ellipsis,)


def _same_dtype(op: str, input: Tensor, src: Tensor) -> None:
    if src.dtype != input.dtype:
        raise RuntimeError(
            f"{op}(): Expected self.dtype to be equal to src.dtype, got "
            f"{input.dtype} and {src.dtype}"
        )


@tensor_method("gather")
def gather(input, dim, index, *, sparse_grad=False):
    """``out[i][j] = input[index[i][j]][j]`` (dim 0), ``input[i][index[i][j]]`` (dim 1)...;
    ``index`` has ``input``'s number of dimensions and the output ``index``'s shape."""
    _, key = _gather_key("gather", input, dim, index)
    return Index.apply(input, key)


def _src_part(src: Tensor, index_shape) -> Tensor:
    """The leading ``index_shape`` block of ``src``: the values scatter uses."""
    if src.shape == tuple(index_shape):
        return src
    return src[tuple(slice(0, n) for n in index_shape)]


def _scatter_args(op, input, dim, index, src, value):
    if src is not None and not isinstance(src, Tensor):
        src, value = None, src  # scatter(input, dim, index, 2.5): a value
    if (src is None) == (value is None):
        raise TypeError(f"{op}() needs exactly one of src (a tensor) or value (a number)")
    d, key = _gather_key(op, input, dim, index, None if src is None else src.shape)
    if src is None:
        return key, value
    _same_dtype(op, input, src)
    return key, _src_part(src, key[d].shape)


@tensor_method("scatter")
def scatter(input, dim, index, src=None, *, value=None):
    """A copy of ``input`` with ``src[i][j]`` written at ``[index[i][j]][j]`` (dim 0)...,
    or the number ``value`` everywhere ``index`` points. With repeated indices one write
    wins."""
    key, v = _scatter_args("scatter", input, dim, index, src, value)
    return IndexPut.apply(input, v, key)


@tensor_method("scatter_")
def scatter_(self, dim, index, src=None, *, value=None):
    """In-place :meth:`scatter`."""
    return apply_inplace(self, "scatter_", lambda s: scatter(s, dim, index, src, value=value))


@tensor_method("scatter_add")
def scatter_add(input, dim, index, src):
    """A copy of ``input`` with ``src[i][j]`` added at ``[index[i][j]][j]`` (dim 0)...;
    repeated indices add up."""
    if not isinstance(src, Tensor):
        raise TypeError(f"scatter_add(): src must be a Tensor, got {type(src).__name__}")
    key, v = _scatter_args("scatter_add", input, dim, index, src, None)
    return IndexAdd.apply(input, v, key)


@tensor_method("scatter_add_")
def scatter_add_(self, dim, index, src):
    """In-place :meth:`scatter_add`."""
    return apply_inplace(self, "scatter_add_", lambda s: scatter_add(s, dim, index, src))


@tensor_method("take_along_dim")
def take_along_dim(input, indices, dim=None):
    """``gather`` with ``input`` and ``indices`` broadcast against each other outside
    ``dim``; with ``dim=None`` both are flattened first."""
    if dim is None:
        return gather(
            _reshape(input, (-1,)), 0, _index_arg(input, indices, "take_along_dim").reshape(-1)
        )
    idx = _index_arg(input, indices, "take_along_dim")
    if idx.ndim != input.ndim:
        raise RuntimeError(
            f"take_along_dim(): input and indices should have the same number of "
            f"dimensions, but got {input.ndim} dimensions for input, and "
            f"{idx.ndim} dimensions for indices"
        )
    d = normalize_dim(dim, input.ndim, "take_along_dim")
    shape = list(
        broadcast_shapes(
            input.shape[:d] + (1,) + input.shape[d + 1 :], idx.shape[:d] + (1,) + idx.shape[d + 1 :]
        )
    )
    shape[d] = input.shape[d]
    if tuple(shape) != input.shape:
        input = expand(input, shape)
    shape[d] = idx.shape[d]
    idx = array_module_for(idx).broadcast_to(idx, shape)
    return gather(input, d, idx)


# ---- index_select / index_add / index_put / take ------------------------------------------
def _dim_key(op: str, input: Tensor, dim, index):
    """``(d, key)`` selecting the 1-d ``index`` along ``dim``."""
    d = normalize_dim(dim, input.ndim, op)
    idx = _index_arg(input, index, op)
    if idx.ndim > 1:
        raise IndexError(f"{op}(): Index is supposed to be a vector, got shape {list(idx.shape)}")
    _check_bounds(idx, input.shape[d] if input.ndim else 1, d, op)
    return d, (slice(None),) * d + (idx.reshape(-1), Ellipsis)


@tensor_method("index_select")
def index_select(input, dim, index):
    """The entries of ``input`` at positions ``index`` (1-d) along ``dim``."""
    return Index.apply(input, _dim_key("index_select", input, dim, index)[1])


@tensor_method("index_add")
def index_add(input, dim, index, source, *, alpha=1):
    """A copy of ``input`` with ``alpha * source`` added at positions ``index`` along
    ``dim`` (repeated indices add up)."""
    d, key = _dim_key("index_add", input, dim, index)
    _same_dtype("index_add", input, source)
    expected = input.shape[:d] + (key[d].shape[0],) + input.shape[d + 1 :]
    if source.shape != expected:
        raise RuntimeError(
            f"index_add(): source shape {list(source.shape)} must be "
            f"{list(expected)} (self's shape with dim {d} the index's length)"
        )
    return IndexAdd.apply(input, source if alpha == 1 else source * alpha, key)


@tensor_method("index_add_")
def index_add_(self, dim, index, source, *, alpha=1):
    """In-place :meth:`index_add`."""
    return apply_inplace(
        self, "index_add_", lambda s: index_add(s, dim, index, source, alpha=alpha)
    )


@tensor_method("index_put")
def index_put(input, indices, values, accumulate=False):
    """A copy of ``input`` with ``values`` written (``accumulate``: added) at
    ``input[indices]`` (a tuple of index tensors)."""
    key = _key(input, tuple(indices))
    if isinstance(values, Tensor):
        values = values.to(input.dtype)
    return (IndexAdd if accumulate else IndexPut).apply(input, values, key)


@tensor_method("index_put_")
def index_put_(self, indices, values, accumulate=False):
    """Write ``values`` at ``indices`` (a tuple of index tensors) in place; ``accumulate`` adds instead."""
    return apply_inplace(self, "index_put_", lambda s: index_put(s, indices, values, accumulate))


@tensor_method("take")
def take(input, index):
    """The elements of the flattened ``input`` at ``index`` (the output has ``index``'s
    shape)."""
    idx = _index_arg(input, index, "take")
    _check_bounds(idx, input.numel(), 0, "take", negative=True)
    return Index.apply(_reshape(input, (-1,)), (idx, Ellipsis))


# ---- masks --------------------------------------------------------------------------------
def _mask(input: Tensor, mask, op: str):
    arr = mask.array if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.dtype != np.bool_:
        raise RuntimeError(f"{op} only supports boolean masks, but got mask with dtype {arr.dtype}")
    return Tensor(move_array(arr, input.device))


@tensor_method("masked_fill")
def masked_fill(input, mask, value):
    """``input`` with ``value`` (a number or 0-d tensor, cast to ``input``'s dtype) where the
    boolean ``mask`` (broadcast) is True."""
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(
                f"masked_fill only supports a 0-dimensional value tensor, but "
                f"got tensor with {value.ndim} dimension(s)"
            )
        value = value.to(input.device, input.dtype)
    else:
        if not isinstance(value, (numbers.Number, np.generic)) or isinstance(value, complex):
            raise TypeError(
                f"masked_fill(): argument 'value' must be a number or a 0-dim Tensor, not "
                f"{type(value).__name__}"
            )
        _check_fits("masked_fill", value, input.dtype)
        value = as_tensor(value, input, dtype=input.dtype)
    return where(_mask(input, mask, "masked_fill"), value, input)


_C_TYPES = {
    "int8": "int8_t",
    "int16": "int16_t",
    "int32": "int",
    "int64": "int64_t",
    "uint8": "uint8_t",
}


def _check_fits(op, value, dtype) -> None:
    """PyTorch's error for a Python number that does not fit ``dtype`` (numpy would raise an
    OverflowError, or wrap around)."""
    np_dtype = dtype.np
    if np_dtype.kind in "iu" and isinstance(value, numbers.Real):
        info = np.iinfo(np_dtype)
        if not info.min <= value <= info.max:  # type: ignore[operator]
            raise RuntimeError(
                f"value cannot be converted to type {_C_TYPES.get(dtype.name, dtype.name)} "
                f"without overflow"
            )


@tensor_method("masked_fill_")
def masked_fill_(self, mask, value):
    """In-place :meth:`masked_fill`."""
    return apply_inplace(self, "masked_fill_", lambda s: masked_fill(s, mask, value))


@tensor_method("masked_select")
def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` is True (both broadcast), as a 1-d tensor."""
    mask = _mask(input, mask, "masked_select")
    shape = broadcast_shapes(input.shape, mask.shape)
    if input.shape != shape:
        input = expand(input, shape)
    m = (
        mask.array
        if mask.shape == shape
        else array_module_for(mask.array).broadcast_to(mask.array, shape)
    )
    return Index.apply(input, (m,))


@tensor_method("nonzero")
def nonzero(input, *, as_tuple=False):
    """The indices of non-zero elements: an ``(n, ndim)`` int64 tensor, or with
    ``as_tuple`` one 1-d tensor per dimension. Not differentiable."""
    xp = input.device.xp
    arr = input.array
    if as_tuple:
        return tuple(
            Tensor(i.astype(np.int64, copy=False))
            for i in xp.nonzero(arr if arr.ndim else arr.reshape(1))
        )
    return Tensor(xp.argwhere(arr).astype(np.int64, copy=False))


@tensor_method("argwhere")
def argwhere(input):
    """``nonzero(input)``: the ``(n, ndim)`` indices of non-zero elements."""
    return nonzero(input)


# ---- the differentiable namespace: numpy names for the ops above --------------------------
@graph_xp.register("take")
def _graph_take(a, indices, axis=None):
    if axis is None:
        return take(a, indices)
    d = normalize_dim(axis, a.ndim, "take")
    idx = _index_arg(a, indices, "take")
    return Index.apply(a, (slice(None),) * d + (idx, Ellipsis))


@graph_xp.register("take_along_axis")
def _graph_take_along_axis(arr, indices, axis):
    return take_along_dim(arr, indices, axis)


@tensor_method("repeat_interleave")
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Each element (or slice along ``dim``) repeated ``repeats`` times in place; ``repeats``
    is an int or one count per element. ``repeat_interleave(counts)`` alone gives the
    indices ``0`` repeated ``counts[0]`` times, ``1`` ``counts[1]`` times, ...
    Differentiable through ``index_select`` (repeated slices sum their gradients)."""
    if repeats is None:  # repeat_interleave(repeats_tensor)
        counts = input.array
        xp = array_module_for(counts)
        if counts.ndim > 1 or counts.dtype.kind not in "iu":
            raise RuntimeError("repeat_interleave: repeats must be a 0-dim or 1-dim integer tensor")
        return Tensor(xp.repeat(xp.arange(counts.size, dtype=xp.int64), counts.reshape(-1)))
    if dim is None:
        input, dim = _reshape(input, (-1,)), 0
    d = normalize_dim(dim, max(input.ndim, 1), "repeat_interleave")
    if input.ndim == 0:
        input = _reshape(input, (1,))
    n = input.shape[d]
    xp = input.device.xp
    counts = repeats.array if isinstance(repeats, Tensor) else repeats
    if isinstance(counts, numbers.Integral):
        counts = int(counts)
    elif np.ndim(counts) == 0:
        counts = int(counts)
    else:
        counts = xp.asarray(counts).reshape(-1)
        if counts.size not in (1, n):
            raise RuntimeError(
                f"repeat_interleave: repeats must have the same size as input along dim, but "
                f"got repeats.size(0) = {counts.size} and input.size({dim}) = {n}"
            )
    if bool(xp.any(xp.asarray(counts) < 0)):
        raise RuntimeError("repeat_interleave: repeats can not be negative")
    index = xp.repeat(xp.arange(n, dtype=xp.int64), counts)
    if output_size is not None and index.size != output_size:
        raise RuntimeError(
            f"repeat_interleave: output_size {output_size} does not match the "
            f"{index.size} repeated elements"
        )
    return index_select(input, d, Tensor(index))
