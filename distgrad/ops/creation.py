"""Tensor factories (``tensor``, ``zeros``, ``randn``, ...) and in-place fills (``zero_``,
``fill_``, ``copy_``, ``uniform_``, ``normal_``).

Random numbers come from the seeded host stream (``distgrad.manual_seed``) and are copied to
the GPU when ``device`` is a GPU, so a seed gives the same values on every device."""

from __future__ import annotations

import contextlib

import numpy as np

from ..autograd import Tensor, grad_mode
from ..backend import CPU, as_dtype, device_of, get_default_device, get_default_dtype, is_array
from ..backend import device as make_device
from ..backend import random as _random
from ._helpers import apply_inplace, check_broadcast, tensor_method
from .conversion import move_array

__all__ = [
    "multinomial",
    "tensor",
    "as_tensor",
    "from_numpy",
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "linspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "randperm",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "normal",
]


_MISSING = object()


def _size(size, op: str = "tensor", keyword=_MISSING):
    """The shape of a factory call: ``f(2, 3)``, ``f((2, 3))``, ``f([2, 3])`` or
    ``f(size=(2, 3))``, checked with PyTorch's messages."""
    if keyword is not _MISSING:
        if size:
            raise TypeError(f"{op}(): got multiple values for argument 'size'")
        size = (keyword,)
    if len(size) == 1 and not isinstance(size[0], (int, np.integer)):
        size = size[0]
        if isinstance(size, Tensor):
            size = size.tolist()
        if not isinstance(size, (tuple, list)):
            raise TypeError(
                f"{op}(): argument 'size' must be tuple of ints, but got {type(size).__name__}"
            )
    shape = []
    for pos, n in enumerate(size):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(
                f"{op}(): argument 'size' must be tuple of ints, but found element of type "
                f"{type(n).__name__} at pos {pos}"
            )
        shape.append(int(n))
    if any(n < 0 for n in shape):
        neg = next(n for n in shape if n < 0)
        raise RuntimeError(f"Trying to create tensor with negative dimension {neg}: {shape}")
    return tuple(shape)


def _finish(array, dtype, device, requires_grad):
    if dtype is not None:
        array = array.astype(as_dtype(dtype).np, copy=False)
    device = get_default_device() if device is None else make_device(device)
    if device != CPU or type(array) is not np.ndarray:
        array = move_array(array, device)
    return Tensor(array, requires_grad=requires_grad)


def _default_for(array):
    """numpy picks float64/int64 for Python data; distgrad picks the default float dtype."""
    if array.dtype.kind == "f" and array.dtype != np.float16:
        return get_default_dtype().np
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8 or array.dtype == np.int_:
        return np.int64
    return array.dtype


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor copied from ``data`` (nested lists, numbers, arrays or tensors). Python
    floats become the default dtype (float32), Python ints int64, as in PyTorch."""
    if isinstance(data, Tensor):
        data = data.array
    if is_array(data):
        moved = device is not None and make_device(device) != device_of(data)
        device = device_of(data) if device is None else device
        array = data if moved else data.copy()  # a move copies anyway
    elif isinstance(data, (np.ndarray, np.generic)):  # numpy data keeps its dtype
        array = np.array(data)
    else:
        if not isinstance(data, (list, tuple, int, float, bool, complex, np.generic)):
            from ..backend import cupy_or_none

            cp = cupy_or_none()
            if cp is not None and isinstance(data, cp.ndarray):
                return tensor(data, dtype, device, requires_grad)
        array = np.asarray(data)
        if array.dtype.kind in "USa":
            raise TypeError(
                f"tensor(): could not make a tensor from {type(data).__name__} holding strings "
                f"({array.reshape(-1)[0]!r}, ...); tensors hold numbers and bools only"
            )
        if array.dtype == object:
            raise TypeError(
                f"tensor(): could not make a tensor from data of type "
                f"{type(data).__name__} (ragged nested sequences or non-numbers)"
            )
        if dtype is None:
            array = array.astype(_default_for(array), copy=False)
    return _finish(array, dtype, device, requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with a numpy/cupy array when dtype and device match."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (dtype or device) else data
    if (
        is_array(data)
        and (dtype is None or as_dtype(dtype).np == data.dtype)
        and (device is None or make_device(device) == device_of(data))
    ):
        return Tensor(data)
    return tensor(data, dtype, device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (no copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    as_dtype(array.dtype)  # raises for unsupported dtypes
    return Tensor(array)


def _filled(fill, size, dtype, device, requires_grad, op="tensor", keyword=_MISSING):
    dtype = as_dtype(dtype) if dtype is not None else get_default_dtype()
    device = get_default_device() if device is None else make_device(device)
    xp = device.xp
    on_gpu = contextlib.nullcontext() if device == CPU else xp.cuda.Device(device.index)
    with on_gpu:
        return Tensor(fill(xp, _size(size, op, keyword), dtype.np), requires_grad=requires_grad)


def _constructor(name: str):
    """``zeros``/``ones``/``empty``: one signature, filled by ``xp.<name>``."""

    def construct(
        *sizes,
        size=_MISSING,
        dtype=None,
        device=None,
        requires_grad=False,
        layout=None,
        pin_memory=False,
    ) -> Tensor:
        return _filled(
            lambda xp, s, d: getattr(xp, name)(s, d),
            sizes,
            dtype,
            device,
            requires_grad,
            name,
            size,
        )

    construct.__name__ = construct.__qualname__ = name
    construct.__doc__ = (
        f"A new tensor of the given size (``{name}(2, 3)``, ``{name}((2, 3))``, "
        f"``{name}(size=(2, 3))``)" + (", uninitialised." if name == "empty" else f", all {name}.")
    )
    return construct


zeros = _constructor("zeros")
ones = _constructor("ones")
empty = _constructor("empty")


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of the given size filled with ``fill_value`` (its dtype inferred from the value unless given)."""
    if dtype is None:
        dtype = (
            np.bool_
            if isinstance(fill_value, bool)
            else np.int64
            if isinstance(fill_value, int)
            else get_default_dtype()
        )
    return _filled(
        lambda xp, s, d: xp.full(s, fill_value, d), (tuple(size),), dtype, device, requires_grad
    )


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from ``start`` (default 0) up to ``end`` (exclusive); int64 unless any bound is
    a float."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = get_default_dtype() if is_float else np.int64
    return _finish(np.arange(start, end, step), dtype, device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    return _finish(
        np.linspace(start, end, steps), dtype or get_default_dtype(), device, requires_grad
    )


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The ``n`` x ``m`` identity matrix (``m`` defaults to ``n``)."""
    return _finish(np.eye(n, m), dtype or get_default_dtype(), device, requires_grad)


def _rng(generator):
    return (generator or _random.default_generator).numpy


def rand(
    *sizes, size=_MISSING, generator=None, dtype=None, device=None, requires_grad=False
) -> Tensor:
    """Uniform samples on [0, 1)."""
    shape = _size(sizes, "rand", size)
    return _finish(
        _rng(generator).random(shape), dtype or get_default_dtype(), device, requires_grad
    )


def randn(
    *sizes, size=_MISSING, generator=None, dtype=None, device=None, requires_grad=False
) -> Tensor:
    """Standard normal samples."""
    return _finish(
        _rng(generator).standard_normal(_size(sizes, "randn", size)),
        dtype or get_default_dtype(),
        device,
        requires_grad,
    )


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    """Integers in [low, high) (``randint(high, size)`` as in PyTorch)."""
    if size is None:
        low, high, size = 0, low, high
    elif high is None:  # randint(high, size=...)
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    shape = _size((size,), "randint")
    if high <= low:
        raise RuntimeError(
            f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}"
        )
    return _finish(
        _rng(generator).integers(low, high, size=shape), dtype or np.int64, device, False
    )


def randperm(n, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of ``0 .. n-1`` (int64)."""
    if n < 0:
        raise RuntimeError(f"randperm: n must be non-negative, got {n}")
    return _finish(_rng(generator).permutation(n), dtype or np.int64, device, False)


@tensor_method("multinomial")
def multinomial(input, num_samples, replacement=False, *, generator=None) -> Tensor:
    """Indices drawn from the categorical distributions given by the rows of ``input``
    (non-negative weights, not necessarily normalized): ``num_samples`` per row, without
    replacement unless ``replacement``. Drawn on the host from distgrad's stream."""
    if not isinstance(input, Tensor):
        raise TypeError(
            f"multinomial(): argument 'input' must be Tensor, not {type(input).__name__}"
        )
    if input.ndim not in (1, 2):
        raise RuntimeError(f"multinomial(): prob_dist must be 1 or 2 dim, got {input.ndim}")
    if not input.is_floating_point():
        raise RuntimeError(f"multinomial(): expected a floating point tensor, got {input.dtype}")
    probs = np.asarray(input.detach().cpu().numpy(), np.float64).reshape(-1, input.shape[-1])
    n = probs.shape[1]
    if num_samples <= 0:
        raise RuntimeError(
            f"multinomial(): cannot sample n_sample <= 0 samples (got {num_samples})"
        )
    if not replacement and num_samples > n:
        raise RuntimeError(
            f"multinomial(): cannot sample n_sample > prob_dist.size(-1) samples without "
            f"replacement ({num_samples} > {n})"
        )
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise RuntimeError(
            "multinomial(): probability tensor contains either `inf`, `nan` or element < 0"
        )
    totals = probs.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise RuntimeError(
            "multinomial(): invalid multinomial distribution (sum of probabilities <= 0)"
        )
    rng = _rng(generator)
    rows = []
    for p in probs / totals:
        if not replacement and np.count_nonzero(p) < num_samples:
            raise RuntimeError(
                "multinomial(): invalid multinomial distribution (with replacement=False, not "
                "enough non-negative category to sample)"
            )
        rows.append(rng.choice(n, size=num_samples, replace=replacement, p=p))
    out = np.stack(rows).astype(np.int64)
    if input.ndim == 1:
        out = out[0]
    return _finish(out, None, input.device, False)


def normal(mean, std, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    """Samples from normal distributions with the given ``mean`` and ``std`` (tensors or floats)."""
    if size is None:
        size = np.broadcast_shapes(np.shape(mean), np.shape(std))
    return _finish(
        _rng(generator).normal(mean, std, size=size), dtype or get_default_dtype(), device, False
    )


def _like(factory):
    def like(input, dtype=None, device=None, requires_grad=False, **kwargs):
        return factory(
            *input.shape,
            dtype=dtype or input.dtype,
            device=device or input.device,
            requires_grad=requires_grad,
            **kwargs,
        )

    like.__name__ = factory.__name__ + "_like"
    like.__doc__ = f"``{factory.__name__}`` with ``input``'s shape, dtype and device."
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ``input``'s shape (and dtype and device unless given) filled with ``fill_value``."""
    return full(
        input.shape,
        fill_value,
        dtype=dtype or input.dtype,
        device=device or input.device,
        requires_grad=requires_grad,
    )


def randint_like(input, low, high=None, dtype=None, device=None) -> Tensor:
    """Random integers in ``[low, high)`` of ``input``'s shape."""
    return randint(
        low, high, input.shape, dtype=dtype or input.dtype, device=device or input.device
    )


# ---- in-place fills -----------------------------------------------------------------------
def _fill_inplace(self, op, values_fn):
    """Overwrite ``self`` with ``values_fn(xp)``; with grad recording, the result is a constant
    (the old values' history is cut, as PyTorch's fill_)."""
    from ._helpers import _check_inplace_target

    _check_inplace_target(self, None, op)
    values = values_fn()
    self.write_array_(values)
    if grad_mode.is_grad_enabled() and self.grad_fn is not None:
        self.detach_()
    return self


@tensor_method("zero_")
def zero_(self):
    """Fill with zeros in place; return self."""
    return _fill_inplace(self, "zero_", lambda: 0)


@tensor_method("fill_")
def fill_(self, value):
    """Fill with ``value`` in place; return self."""
    return _fill_inplace(self, "fill_", lambda: value.array if isinstance(value, Tensor) else value)


@tensor_method("uniform_")
def uniform_(self, a=0.0, b=1.0, *, generator=None):
    """Fill in place with samples from U(``from_``, ``to``); return self."""
    return _fill_inplace(
        self, "uniform_", lambda: _host_to(self, _rng(generator).uniform(a, b, self.shape))
    )


@tensor_method("normal_")
def normal_(self, mean=0.0, std=1.0, *, generator=None):
    """Fill in place with samples from N(``mean``, ``std**2``); return self."""
    return _fill_inplace(
        self, "normal_", lambda: _host_to(self, _rng(generator).normal(mean, std, self.shape))
    )


@tensor_method("bernoulli_")
def bernoulli_(self, p=0.5, *, generator=None):
    """Fill in place with 1 with probability ``p``, else 0; return self."""
    return _fill_inplace(
        self, "bernoulli_", lambda: _host_to(self, _rng(generator).random(self.shape) < p)
    )


def _host_to(like, host_array):
    host_array = host_array.astype(like.array.dtype, copy=False)
    return host_array if like.device == CPU else move_array(host_array, like.device)


@tensor_method("copy_")
def copy_(self, src):
    """Copy ``src``'s values into ``self`` (broadcasting, casting, across devices);
    differentiable w.r.t. ``src``."""
    from .conversion import to

    if not isinstance(src, Tensor):
        src = tensor(src, dtype=self.dtype, device=self.device)
    check_broadcast("copy_", src.shape, out=self.shape)

    def fast(array, src_array):
        array[...] = move_array(src_array, self.device)

    return apply_inplace(
        self,
        "copy_",
        lambda _, s: to(s, self.device, self.dtype).expand(self.shape).clone(),
        src,
        fast=fast,
    )
