"""Sorting and selection: ``sort``, ``argsort``, ``msort``, ``topk``, ``kthvalue``, ``unique``.

The order is computed on the arrays (non-differentiable indices); the values are then
``take_along_dim(input, indices, dim)``, so their gradient (and double backward) is
``gather``'s: each selected element gets the gradient of the place it was moved to. Sorting
is stable everywhere (PyTorch's ``stable=True``), so ties keep their order on every device;
NaN sorts as the largest value, as in PyTorch.
"""

from __future__ import annotations

import collections

from ..autograd import Tensor
from ._helpers import normalize_dim, tensor_method
from .indexing import take_along_dim
from .reduction import return_types
from .shape import squeeze

__all__ = ["sort", "argsort", "msort", "topk", "kthvalue", "unique"]


def _result(name: str):
    cls = collections.namedtuple(name, ["values", "indices"])  # type: ignore[misc]
    cls.__qualname__ = f"return_types.{name}"
    setattr(return_types, name, cls)
    return cls


_Sort, _Topk, _Kthvalue = _result("sort"), _result("topk"), _result("kthvalue")


def _order(input: Tensor, axis: int, descending: bool):
    """Stable sorting indices of ``input`` along ``axis`` (an int64 array)."""
    x = input.array
    xp = input.device.xp
    if x.ndim == 0:
        return xp.zeros((), xp.int64)
    if not descending:
        return xp.argsort(x, axis=axis, kind="stable").astype(xp.int64, copy=False)
    # stable descending: sort the reversed array ascending, map back, reverse again
    n = x.shape[axis]
    rev = xp.argsort(xp.flip(x, axis), axis=axis, kind="stable")
    return xp.flip(n - 1 - rev, axis).astype(xp.int64, copy=False)


def _dim(input: Tensor, dim: int, op: str) -> int:
    return normalize_dim(dim, max(input.ndim, 1), op) if input.ndim else 0


def _take(input: Tensor, idx, axis: int) -> Tensor:
    if input.ndim == 0:
        return input.clone()
    return take_along_dim(input, idx, axis)


@tensor_method("sort")
def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """``(values, indices)`` of ``input`` sorted along ``dim`` (always stable)."""
    axis = _dim(input, dim, "sort")
    idx = _order(input, axis, descending)
    return _Sort(_take(input, idx, axis), Tensor(idx))


@tensor_method("argsort")
def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """The indices that sort ``input`` along ``dim`` (always stable)."""
    return Tensor(_order(input, _dim(input, dim, "argsort"), descending))


@tensor_method("msort")
def msort(input: Tensor) -> Tensor:
    """``input`` sorted along its first dimension."""
    return sort(input, 0).values


@tensor_method("topk")
def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The ``k`` largest (``largest=False``: smallest) elements along ``dim`` and their
    indices, in sorted order."""
    axis = _dim(input, dim, "topk")
    n = input.shape[axis] if input.ndim else 1
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n:
        raise RuntimeError(f"topk(): selected index k out of range (k={k}, size {n} at dim {dim})")
    idx = _order(input, axis, descending=largest)
    if input.ndim:
        idx = idx[(slice(None),) * axis + (slice(0, k),)]
    return _Topk(_take(input, idx, axis), Tensor(idx))


@tensor_method("kthvalue")
def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False):
    """The ``k``-th smallest element (1-based) along ``dim`` and its index."""
    axis = _dim(input, dim, "kthvalue")
    n = input.shape[axis] if input.ndim else 1
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise RuntimeError(
            f"kthvalue(): selected number k out of range for dimension {dim} (k={k}, size {n})"
        )
    idx = _order(input, axis, descending=False)
    if input.ndim == 0:
        return _Kthvalue(input.clone(), Tensor(idx))
    idx = idx[(slice(None),) * axis + (slice(k - 1, k),)]
    values, indices = _take(input, idx, axis), Tensor(idx)
    if not keepdim:
        values, indices = squeeze(values, axis), squeeze(indices, axis)
    return _Kthvalue(values, indices)


@tensor_method("unique")
def unique(
    input: Tensor,
    sorted: bool = True,
    return_inverse: bool = False,
    return_counts: bool = False,
    dim: int | None = None,
):
    """The distinct elements of ``input`` (flattened unless ``dim``), sorted; optionally the
    index of each input element in them and their counts. Not differentiable (as PyTorch)."""
    xp = input.device.xp
    x = input.array
    if dim is None:
        values, inverse, counts = xp.unique(x.reshape(-1), return_inverse=True, return_counts=True)
        inverse = inverse.reshape(x.shape)
    else:
        axis = normalize_dim(dim, input.ndim, "unique")
        values, inverse, counts = xp.unique(x, return_inverse=True, return_counts=True, axis=axis)
        inverse = inverse.reshape(-1)
    out = [Tensor(values)]
    if return_inverse:
        out.append(Tensor(inverse.astype(xp.int64, copy=False)))
    if return_counts:
        out.append(Tensor(counts.astype(xp.int64, copy=False)))
    return out[0] if len(out) == 1 else tuple(out)
