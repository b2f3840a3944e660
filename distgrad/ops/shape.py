"""Shape ops: views (reshape/view, squeeze, transpose/permute, expand...), joining and
splitting (cat, stack, split, chunk, unbind), flip/roll/tril/triu, repeat/tile and pad.

View ops (``is_view``) return arrays that alias their input, as PyTorch's views do, and share
its version counter. ``view`` raises where the layout would need a copy; ``reshape`` copies.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator

import numpy as np

from ..autograd import Op, Tensor
from ..backend import array_module_for, is_array, result_type
from ..backend.dtypes import dtype as _dtype
from ._helpers import (
    apply_inplace,
    as_tensor,
    check_same_device,
    graph_xp,
    normalize_dim,
    normalize_dims,
    tensor_method,
    unbroadcast,
)

__all__ = [
    "reshape",
    "flatten",
    "ravel",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "transpose",
    "swapaxes",
    "swapdims",
    "permute",
    "t",
    "movedim",
    "moveaxis",
    "broadcast_to",
    "broadcast_tensors",
    "broadcast_shapes",
    "cat",
    "concat",
    "concatenate",
    "stack",
    "hstack",
    "vstack",
    "split",
    "chunk",
    "unbind",
    "narrow",
    "flip",
    "fliplr",
    "flipud",
    "roll",
    "tril",
    "triu",
    "tile",
    "pad",
]


def _sizes(args) -> tuple:
    """``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` all give the sizes ``(2, 3)``."""
    if len(args) == 1 and not isinstance(args[0], (numbers.Integral, Tensor)):
        args = args[0]
    return tuple(operator.index(s) for s in args)


def _lead(dim: int) -> tuple:
    """The index prefix that selects everything in the first ``dim`` dimensions."""
    return (slice(None),) * dim


def _as_graph_tensor(x):
    """Constants met by the differentiable namespace (arrays, scalars) as tensors."""
    return x if isinstance(x, Tensor) else Tensor(x) if is_array(x) else as_tensor(x)


# ---- views: reshape, permute, expand ------------------------------------------------------
class Reshape(Op):
    """Every reshape-like op (view, flatten, squeeze, unsqueeze...): a view when the layout
    allows, else a copy (as numpy's reshape)."""

    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return ctx.xp.reshape(x, shape)

    @staticmethod
    def backward(ctx, g):
        return ctx.xp.reshape(g, ctx.shape), None


def _infer_shape(shape: tuple, numel: int) -> tuple:
    """``shape`` with its -1 entry (if any) resolved; PyTorch's errors otherwise."""
    if any(s < -1 for s in shape):
        raise RuntimeError(f"invalid shape dimension {min(shape)} in shape {list(shape)}")
    free = [i for i, s in enumerate(shape) if s == -1]
    if len(free) > 1:
        raise RuntimeError(f"only one dimension can be inferred, got shape {list(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if free and known and numel % known == 0:
        i = free[0]
        return shape[:i] + (numel // known,) + shape[i + 1 :]
    if free or known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _reshape(input: Tensor, shape: tuple) -> Tensor:
    shape = _infer_shape(tuple(shape), input.numel())
    return Reshape.apply(input, shape)


@tensor_method("reshape")
def reshape(input, *args, shape=None):
    """The same elements in ``shape`` (one entry may be -1): a view when the layout allows,
    else a copy."""
    return _reshape(input, _sizes(args or (shape,)))


@tensor_method("view")
def view(self, *shape):
    """A view of ``self`` with another ``shape``; raises if that needs a copy (non-contiguous
    input) — use ``reshape`` then. ``view(dtype)`` reinterprets the bytes (not
    differentiable)."""
    if len(shape) == 1 and isinstance(shape[0], _dtype):
        out = Tensor(self.array.view(shape[0].np))
        out.share_version(self)
        return out
    out = _reshape(self, _sizes(shape))
    if not out.shares_version(self) and self.numel():
        raise RuntimeError(
            f"view size is not compatible with input tensor's size and stride (at least one "
            f"dimension spans across two contiguous subspaces): cannot view a tensor of shape "
            f"{list(self.shape)} and strides {list(self.stride())} as {list(out.shape)}. Use "
            f".reshape(...) instead."
        )
    return out


@tensor_method("view_as")
def view_as(self, other):
    """A view with ``other``'s shape."""
    return view(self, other.shape)


@tensor_method("reshape_as")
def reshape_as(self, other):
    """This tensor reshaped to ``other``'s shape."""
    return _reshape(self, other.shape)


@tensor_method("flatten")
def flatten(input, start_dim=0, end_dim=-1):
    """Merge dimensions ``start_dim..end_dim`` into one (a 0-d tensor becomes 1-d)."""
    shape = input.shape
    if not shape:
        return _reshape(input, (1,))
    s = normalize_dim(start_dim, len(shape), "flatten")
    e = normalize_dim(end_dim, len(shape), "flatten")
    if s > e:
        raise RuntimeError(
            f"flatten() has invalid args: start_dim ({start_dim}) cannot come "
            f"after end_dim ({end_dim})"
        )
    return _reshape(input, shape[:s] + (math.prod(shape[s : e + 1]),) + shape[e + 1 :])


@tensor_method("ravel")
def ravel(input):
    """The elements as a 1-d tensor (a view when contiguous)."""
    return _reshape(input, (-1,))


@tensor_method("unflatten")
def unflatten(input, dim, sizes):
    """Split dimension ``dim`` into ``sizes`` (one entry may be -1)."""
    d = normalize_dim(dim, input.ndim, "unflatten")
    try:
        sizes = _infer_shape(_sizes((sizes,)), input.shape[d])
    except RuntimeError as e:
        raise RuntimeError(
            f"unflatten: sizes {list(sizes)} don't multiply up to the size of "
            f"dim {dim} ({input.shape[d]}) in the input tensor ({e})"
        ) from None
    return _reshape(input, input.shape[:d] + sizes + input.shape[d + 1 :])


@tensor_method("squeeze")
def squeeze(input, dim=None):
    """Remove size-1 dimensions (all, or those in ``dim``: an int or a tuple); a listed
    dimension whose size is not 1 is kept."""
    dims = normalize_dims(dim, input.ndim, "squeeze")
    return _reshape(
        input, tuple(n for i, n in enumerate(input.shape) if not (n == 1 and i in dims))
    )


@tensor_method("unsqueeze")
def unsqueeze(input, dim):
    """Insert a size-1 dimension at ``dim`` (in ``[-ndim - 1, ndim]``)."""
    d = normalize_dim(dim, input.ndim + 1, "unsqueeze")
    return _reshape(input, input.shape[:d] + (1,) + input.shape[d:])


class Permute(Op):
    is_view = True

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return ctx.xp.transpose(x, dims)

    @staticmethod
    def backward(ctx, g):
        inverse = tuple(int(i) for i in np.argsort(ctx.dims))
        return ctx.xp.transpose(g, inverse), None


@tensor_method("permute")
def permute(input, *args, dims=None):
    """A view with the dimensions reordered: output dim ``i`` is input dim ``dims[i]``."""
    dims = _sizes(args or (dims,))
    if len(dims) != input.ndim:
        raise RuntimeError(
            f"permute(): number of dims don't match in permute: input.dim() = "
            f"{input.ndim} is not equal to len(dims) = {len(dims)}"
        )
    dims = tuple(normalize_dim(d, input.ndim, "permute") for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"permute(): duplicate dims are not allowed, got {list(dims)}")
    return Permute.apply(input, dims)


@tensor_method("transpose", "swapaxes", "swapdims")
def transpose(input, dim0, dim1):
    """A view with dimensions ``dim0`` and ``dim1`` swapped."""
    order = list(range(input.ndim))
    a = normalize_dim(dim0, input.ndim, "transpose")
    b = normalize_dim(dim1, input.ndim, "transpose")
    order[a], order[b] = order[b], order[a]
    return Permute.apply(input, tuple(order))


swapaxes = swapdims = transpose


@tensor_method("t")
def t(input):
    """The transpose of a matrix (0-d and 1-d tensors are returned as they are)."""
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return Permute.apply(input, tuple(range(input.ndim))[::-1])


tensor_method("T")(
    property(
        lambda self: Permute.apply(self, tuple(range(self.ndim))[::-1]),
        doc="All dimensions reversed (the transpose of a matrix).",
    )
)


def _mT(self):
    if self.ndim < 2:
        raise RuntimeError(
            f"tensor.mT is only supported on matrices or batches of matrices. "
            f"Got {self.ndim}-D tensor."
        )
    return transpose(self, -2, -1)


tensor_method("mT")(property(_mT, doc="The last two dimensions swapped."))


@tensor_method("movedim", "moveaxis")
def movedim(input, source, destination):
    """Move dimension(s) ``source`` to position(s) ``destination``; the others keep their
    order."""
    nd = input.ndim
    src = (source,) if isinstance(source, numbers.Integral) else tuple(source)
    dst = (destination,) if isinstance(destination, numbers.Integral) else tuple(destination)
    if len(src) != len(dst):
        raise RuntimeError(
            f"movedim: Invalid source or destination dims: source ({list(src)} "
            f"dims) should contain the same number of dims as destination "
            f"({list(dst)} dims)"
        )
    src = [normalize_dim(d, nd, "movedim") for d in src]
    dst = [normalize_dim(d, nd, "movedim") for d in dst]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise RuntimeError(f"movedim: repeated dim in source {src} or destination {dst}")
    order = [d for d in range(nd) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return Permute.apply(input, tuple(order))


moveaxis = movedim


class Expand(Op):
    """Broadcast to a larger shape: a read-only view (no copy)."""

    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(ctx.xp, g, ctx.shape), None


def _expanded_shape(shape: tuple, sizes: tuple) -> tuple:
    lead = len(sizes) - len(shape)
    if lead < 0:
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be "
            f"greater or equal to the number of dimensions in the tensor "
            f"({len(shape)})"
        )
    out = list(sizes[:lead])
    if any(s < 0 for s in out):
        raise RuntimeError(
            f"expand: -1 is not allowed in a leading, non-existing dimension (sizes {list(sizes)})"
        )
    for i, (n, s) in enumerate(zip(shape, sizes[lead:])):
        if s != -1 and n != 1 and s != n:
            raise RuntimeError(
                f"The expanded size of the tensor ({s}) must match the existing size ({n}) at "
                f"non-singleton dimension {lead + i}.  Target sizes: {list(sizes)}.  Tensor "
                f"sizes: {list(shape)}"
            )
        out.append(n if s == -1 else s)
    return tuple(out)


@tensor_method("expand", "broadcast_to")
def expand(input, *args, size=None):
    """A read-only view repeating size-1 dimensions (and new leading ones) to ``size``;
    -1 keeps a dimension's size."""
    return Expand.apply(input, _expanded_shape(input.shape, _sizes(args or (size,))))


broadcast_to = expand


@tensor_method("expand_as")
def expand_as(self, other):
    """This tensor broadcast (as a view) to ``other``'s shape."""
    return expand(self, other.shape)


def broadcast_shapes(*shapes) -> tuple:
    """The shape that tensors of ``shapes`` broadcast to."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise RuntimeError(
            f"shapes {[list(s) for s in shapes]} cannot be broadcast to a common shape"
        ) from None


def broadcast_tensors(*tensors):
    """The tensors expanded to their common broadcast shape (read-only views)."""
    shape = broadcast_shapes(*(t.shape for t in tensors))
    return tuple(Expand.apply(t, shape) for t in tensors)


# ---- joining and splitting ----------------------------------------------------------------
class Cat(Op):
    @staticmethod
    def forward(ctx, dim, *xs):
        ctx.dim = dim
        ctx.bounds = tuple(itertools.accumulate((x.shape[dim] for x in xs), initial=0))
        return ctx.xp.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, g):
        b, lead = ctx.bounds, _lead(ctx.dim)
        return (None,) + tuple(
            g[lead + (slice(b[i], b[i + 1]),)] if need else None
            for i, need in enumerate(ctx.needs_input_grad[1:])
        )


class Stack(Op):
    @staticmethod
    def forward(ctx, dim, *xs):
        ctx.dim = dim
        return ctx.xp.stack(xs, axis=dim)

    @staticmethod
    def backward(ctx, g):
        lead = _lead(ctx.dim)
        return (None,) + tuple(
            g[lead + (i, Ellipsis)] if need else None
            for i, need in enumerate(ctx.needs_input_grad[1:])
        )


def _joinable(op: str, tensors) -> list:
    """The tensors, checked and promoted to one dtype as PyTorch's cat/stack do."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{op}(): expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(
                f"{op}(): argument 'tensors' must be a sequence of Tensors, but "
                f"element {i} is {type(x).__name__}"
            )
    check_same_device(op, *tensors)
    dtype = result_type(*tensors)
    return [x if x.array.dtype == dtype.np else x.to(dtype) for x in tensors]


def cat(tensors, dim=0):
    """Concatenate along an existing dimension ``dim`` (dtypes are promoted; 1-d empty
    tensors are skipped, as in PyTorch)."""
    tensors = _joinable("cat", tensors)
    kept = [x for x in tensors if x.shape != (0,)] or tensors[:1]
    first = kept[0]
    for i, x in enumerate(kept):
        if x.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
        if x.ndim != first.ndim:
            raise RuntimeError(
                f"Tensors must have same number of dimensions: got {first.ndim} and {x.ndim}"
            )
    d = normalize_dim(dim, first.ndim, "cat")
    for i, x in enumerate(kept):
        for a, (n, m) in enumerate(zip(first.shape, x.shape)):
            if a != d and n != m:
                raise RuntimeError(
                    f"Sizes of tensors must match except in dimension {d}. "
                    f"Expected size {n} but got size {m} for tensor number "
                    f"{i} in the list."
                )
    return Cat.apply(d, *kept)


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join equally shaped tensors along a new dimension ``dim``."""
    tensors = _joinable("stack", tensors)
    for i, x in enumerate(tensors):
        if x.shape != tensors[0].shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got "
                f"{list(tensors[0].shape)} at entry 0 and {list(x.shape)} at "
                f"entry {i}"
            )
    return Stack.apply(normalize_dim(dim, tensors[0].ndim + 1, "stack"), *tensors)


def hstack(tensors):
    """Concatenate column-wise (along dim 1; dim 0 for 1-d tensors)."""
    tensors = [x if x.ndim else _reshape(x, (1,)) for x in tensors]
    return cat(tensors, 0 if tensors and tensors[0].ndim == 1 else 1)


def vstack(tensors):
    """Concatenate row-wise (1-d tensors become rows)."""
    return cat([x if x.ndim >= 2 else _reshape(x, (1, -1)) for x in tensors], 0)


class Split(Op):
    """Consecutive pieces of ``sizes`` along ``dim``: views."""

    is_view = True
    writes_grad_buffer = True  # jit buffer planning (ctx.grad_buffer)

    @staticmethod
    def forward(ctx, x, sizes, dim):
        ctx.dim = dim
        bounds = tuple(itertools.accumulate(sizes, initial=0))
        lead = _lead(dim)
        return tuple(x[lead + (slice(bounds[i], bounds[i + 1]),)] for i in range(len(sizes)))

    @staticmethod
    def backward(ctx, *grads):
        if ctx.grad_buffer is not None:
            return ctx.xp.concatenate(grads, axis=ctx.dim, out=ctx.grad_buffer), None, None
        return ctx.xp.concatenate(grads, axis=ctx.dim), None, None


class Unbind(Op):
    is_view = True

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        lead = _lead(dim)
        return tuple(x[lead + (i, Ellipsis)] for i in range(x.shape[dim]))

    @staticmethod
    def backward(ctx, *grads):
        return ctx.xp.stack(grads, axis=ctx.dim), None


@tensor_method("split")
def split(tensor, split_size_or_sections, dim=0):
    """Views of consecutive pieces along ``dim``: of ``split_size`` each (the last may be
    smaller), or of the listed sizes."""
    d = normalize_dim(dim, tensor.ndim, "split")
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size < 0 or (size == 0 and n):
            raise RuntimeError(
                f"split expects split_size be positive (or 0 for an empty "
                f"dimension), but got split_size={size} for dimension size {n}"
            )
        sizes = (size,) * (n // size) + ((n % size,) if n % size else ()) if n else (0,)
    else:
        sizes = tuple(int(s) for s in split_size_or_sections)
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} "
                f"(input tensor's size at dimension {d}), but got "
                f"split_sizes={list(sizes)}"
            )
    return Split.apply(tensor, sizes, d)


@tensor_method("chunk")
def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of equal size (the last may be smaller; there may be
    fewer pieces when the size does not divide)."""
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = input.shape[normalize_dim(dim, input.ndim, "chunk")]
    if n == 0:  # PyTorch: `chunks` empty pieces
        return tuple(narrow(input, dim, 0, 0) for _ in range(chunks))
    return split(input, -(-n // chunks), dim)


@tensor_method("unbind")
def unbind(input, dim=0):
    """The slices along ``dim`` (that dimension removed), as a tuple of views."""
    return Unbind.apply(input, normalize_dim(dim, input.ndim, "unbind"))


@tensor_method("narrow")
def narrow(input, dim, start, length):
    """The view ``input[..., start:start + length, ...]`` along ``dim``."""
    d = normalize_dim(dim, input.ndim, "narrow")
    n = input.shape[d]
    start = operator.index(start)
    if not -n <= start <= n:
        raise IndexError(f"narrow: start ({start}) out of range for dimension {d} of size {n}")
    if start < 0:
        start += n
    if length < 0 or start + length > n:
        raise RuntimeError(
            f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n})."
        )
    return input[_lead(d) + (slice(start, start + length),)]


# ---- flip, roll, tril/triu ----------------------------------------------------------------
class Flip(Op):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return ctx.xp.flip(x, dims).copy()  # a copy, as in PyTorch

    @staticmethod
    def backward(ctx, g):
        return ctx.xp.flip(g, ctx.dims), None


@tensor_method("flip")
def flip(input, *args, dims=None):
    """Reverse the order of elements along ``dims`` (a copy)."""
    dims = _sizes(args or (dims,))
    return Flip.apply(input, tuple(normalize_dim(d, input.ndim, "flip") for d in dims))


@tensor_method("fliplr")
def fliplr(input):
    """Reverse the order of the columns (dimension 1); needs at least 2 dimensions."""
    if input.ndim < 2:
        raise RuntimeError("fliplr: input tensor must be at least 2-D")
    return Flip.apply(input, (1,))


@tensor_method("flipud")
def flipud(input):
    """Reverse the order of the rows (dimension 0)."""
    if input.ndim < 1:
        raise RuntimeError("flipud: input tensor must be at least 1-D")
    return Flip.apply(input, (0,))


class Roll(Op):
    @staticmethod
    def forward(ctx, x, shifts, dims):
        ctx.shifts, ctx.dims = shifts, dims
        return ctx.xp.roll(x, shifts, dims)

    @staticmethod
    def backward(ctx, g):
        return ctx.xp.roll(g, tuple(-s for s in ctx.shifts), ctx.dims), None, None


@tensor_method("roll")
def roll(input, shifts, dims=None):
    """Shift elements cyclically by ``shifts`` along ``dims`` (flattened when ``dims`` is
    None)."""
    shifts = (shifts,) if isinstance(shifts, numbers.Integral) else tuple(shifts)
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeError(
                f"roll: shifts {list(shifts)} need dims (only one shift may be given without dims)"
            )
        return Roll.apply(input, shifts, None)
    dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(
            f"shifts and dimensions must align. shifts: {len(shifts)}, dims: {len(dims)}"
        )
    return Roll.apply(input, shifts, tuple(normalize_dim(d, input.ndim, "roll") for d in dims))


class _Triangle(Op):
    _name = "tril"

    @classmethod
    def forward(cls, ctx, x, diagonal):
        ctx.diagonal = diagonal
        return getattr(ctx.xp, cls._name)(x, diagonal)

    @classmethod
    def backward(cls, ctx, g):
        return getattr(ctx.xp, cls._name)(g, ctx.diagonal), None


class Tril(_Triangle):
    _name = "tril"


class Triu(_Triangle):
    _name = "triu"


def _triangle(fn, name):
    def op(input, diagonal=0):
        if input.ndim < 2:
            raise RuntimeError(
                f"{name}: input tensor must have at least 2 dimensions, got "
                f"shape {list(input.shape)}"
            )
        return fn.apply(input, operator.index(diagonal))

    def op_(self, diagonal=0):
        """In-place :meth:`tril`."""
        """In-place :meth:`triu`."""
        return apply_inplace(self, f"{name}_", lambda s: op(s, diagonal))

    op.__name__, op_.__name__ = name, f"{name}_"
    op.__doc__ = (
        f"The {'lower' if name == 'tril' else 'upper'} triangle of the last two "
        f"dimensions (``diagonal`` shifts it); other elements are zero."
    )
    tensor_method(f"{name}_")(op_)
    return tensor_method(name)(op)


tril = _triangle(Tril, "tril")
triu = _triangle(Triu, "triu")


# ---- repeat / tile ------------------------------------------------------------------------
class Repeat(Op):
    @staticmethod
    def forward(ctx, x, reps):
        ctx.shape, ctx.reps = x.shape, reps
        return ctx.xp.tile(x, reps)

    @staticmethod
    def backward(ctx, g):
        xp, reps = ctx.xp, ctx.reps
        # view the gradient as (r0, s0, r1, s1, ...) and sum over the repetitions r
        shape = (1,) * (len(reps) - len(ctx.shape)) + tuple(ctx.shape)
        g = xp.reshape(g, tuple(v for pair in zip(reps, shape) for v in pair))
        g = xp.sum(g, axis=tuple(range(0, 2 * len(reps), 2)))
        return xp.reshape(g, ctx.shape), None


@tensor_method("repeat")
def repeat(self, *args, repeats=None):
    """Tile ``self`` ``repeats[i]`` times along dimension ``i`` (extra entries add leading
    dimensions), as ``Tensor.repeat`` in PyTorch."""
    sizes = _sizes(args or (repeats,))
    if len(sizes) < self.ndim:
        raise RuntimeError(
            f"Number of dimensions of repeat dims ({len(sizes)}) can not be "
            f"smaller than number of dimensions of tensor ({self.ndim})"
        )
    if any(s < 0 for s in sizes):
        raise RuntimeError(f"repeat: repeats must be non-negative, got {list(sizes)}")
    return Repeat.apply(self, sizes)


@tensor_method("tile")
def tile(input, *args, dims=None):
    """``repeat`` where fewer ``dims`` than dimensions are padded with leading ones."""
    dims = _sizes(args or (dims,))
    return repeat(input, (1,) * (input.ndim - len(dims)) + dims)


# ---- pad ----------------------------------------------------------------------------------
class ConstantPad(Op):
    """Pad with ``value`` (negative widths crop); its gradient is the opposite crop/pad."""

    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.widths = widths
        return _constant_pad(x, widths, value)

    @staticmethod
    def backward(ctx, g):
        return _constant_pad(g, tuple((-a, -b) for a, b in ctx.widths), 0), None, None


def _constant_pad(x, widths, value):
    """``x`` with ``(before, after)`` elements of ``value`` per dimension (negative: cropped);
    recorded when ``x`` is a tensor (a create_graph backward)."""
    if isinstance(x, Tensor):
        return ConstantPad.apply(x, widths, value)
    shape = tuple(n + a + b for n, (a, b) in zip(x.shape, widths))
    src, dst = [], []
    for n, (a, b) in zip(x.shape, widths):
        start = min(max(-a, 0), n)
        stop = max(n - max(-b, 0), start)
        src.append(slice(start, stop))
        dst.append(slice(max(a, 0), max(a, 0) + stop - start))
    out = array_module_for(x).full(shape, value, dtype=x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


def _pad_positions(n, before, after, mode):
    """For each output position along a padded dimension, the input position it copies."""
    i = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    period = 2 * (n - 1)  # reflect: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
    return (n - 1) - np.abs((n - 1) - i % max(period, 1))


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dimensions: ``pad = (left, right)`` for the last one,
    then ``(top, bottom)`` for the one before, ... (PyTorch's order). ``mode`` is 'constant'
    (with ``value``, default 0; negative widths crop), 'reflect', 'replicate' or
    'circular'."""
    pad = tuple(operator.index(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise RuntimeError(
            f"pad: padding length must be even and at most twice the number of "
            f"dimensions ({input.ndim}), got pad={list(pad)}"
        )
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = pad[2 * i : 2 * i + 2]
    for d, (n, (a, b)) in enumerate(zip(input.shape, widths)):
        if n + a + b < 0:
            raise RuntimeError(
                f"pad: padding {(a, b)} makes dimension {d} of size {n} negative ({n + a + b})"
            )
    if mode == "constant":
        return ConstantPad.apply(input, tuple(widths), 0 if value is None else value)
    if value is not None:
        raise RuntimeError(f'Padding mode "{mode}" doesn\'t take in value argument')
    out = input
    for d, (n, (a, b)) in enumerate(zip(input.shape, widths)):
        if a == b == 0:
            continue
        limit = n - 1 if mode == "reflect" else n if mode == "circular" else math.inf
        if n == 0 or max(a, b) > limit:
            raise RuntimeError(
                f"pad: {mode} padding {(a, b)} is too large for dimension {d} "
                f"of size {n} (at most {limit} with mode '{mode}')"
            )
        out = out.index_select(d, Tensor(input.device.xp.asarray(_pad_positions(n, a, b, mode))))
    return out


# ---- the differentiable namespace: numpy names for the ops above --------------------------


@graph_xp.register("reshape")
def _graph_reshape(a, shape):
    return _reshape(a, (shape,) if isinstance(shape, numbers.Integral) else tuple(shape))


@graph_xp.register("ravel")
def _graph_ravel(a):
    return _reshape(a, (-1,))


@graph_xp.register("broadcast_to")
def _graph_broadcast_to(a, shape):
    return expand(a, (shape,) if isinstance(shape, numbers.Integral) else tuple(shape))


@graph_xp.register("expand_dims")
def _graph_expand_dims(a, axis):
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    nd = a.ndim + len(axes)
    axes = {normalize_dim(d, nd, "expand_dims") for d in axes}
    it = iter(a.shape)
    return _reshape(a, tuple(1 if i in axes else next(it) for i in range(nd)))


@graph_xp.register("squeeze")
def _graph_squeeze(a, axis=None):
    return squeeze(a, axis)


@graph_xp.register("transpose")
def _graph_transpose(a, axes=None):
    return permute(a, tuple(range(a.ndim))[::-1] if axes is None else tuple(axes))


graph_xp.register("swapaxes")(lambda a, axis1, axis2: transpose(a, axis1, axis2))
graph_xp.register("moveaxis")(lambda a, source, destination: movedim(a, source, destination))
graph_xp.register("tril")(lambda m, k=0: tril(m, k))
graph_xp.register("triu")(lambda m, k=0: triu(m, k))


@graph_xp.register("concatenate")
def _graph_concatenate(arrays, axis=0):
    return cat([_as_graph_tensor(a) for a in arrays], axis)


@graph_xp.register("stack")
def _graph_stack(arrays, axis=0):
    return stack([_as_graph_tensor(a) for a in arrays], axis)


@graph_xp.register("split")
def _graph_split(ary, indices_or_sections, axis=0):
    n = ary.shape[normalize_dim(axis, ary.ndim, "split")]
    if isinstance(indices_or_sections, numbers.Integral):
        if n % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
        return list(split(ary, n // indices_or_sections, axis))
    bounds = [min(max(int(i), 0), n) for i in indices_or_sections]
    edges = [0] + bounds + [n]
    return list(split(ary, [max(b - a, 0) for a, b in zip(edges, edges[1:])], axis))


@graph_xp.register("flip")
def _graph_flip(m, axis=None):
    return flip(
        m,
        tuple(range(m.ndim))
        if axis is None
        else (axis,)
        if isinstance(axis, numbers.Integral)
        else tuple(axis),
    )


@graph_xp.register("roll")
def _graph_roll(a, shift, axis=None):
    return roll(a, shift, axis)


@graph_xp.register("tile")
def _graph_tile(A, reps):
    return tile(A, (reps,) if isinstance(reps, numbers.Integral) else tuple(reps))


_NUMPY_PAD_MODES = {
    "constant": "constant",
    "reflect": "reflect",
    "edge": "replicate",
    "wrap": "circular",
}


@graph_xp.register("pad")
def _graph_pad(array, pad_width, mode="constant", constant_values=0):
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (array.ndim, 2))
    flat = tuple(int(w) for pair in widths[::-1] for w in pair)
    if mode not in _NUMPY_PAD_MODES:
        raise NotImplementedError(f"graph_xp.pad: mode {mode!r} is not supported")
    if mode == "constant":
        return pad(array, flat, "constant", constant_values)
    return pad(array, flat, _NUMPY_PAD_MODES[mode])
