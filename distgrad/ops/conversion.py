"""Dtype and device conversion: ``to``, ``float()``..., ``cpu()``/``cuda()``, ``clone``,
``contiguous``, ``type_as``. Casts between floating dtypes and device moves are
differentiable."""

from __future__ import annotations

import numpy as np

from ..autograd import Op, Tensor
from ..backend import Device, as_dtype
from ..backend import device as make_device
from ._helpers import graph_xp, tensor_method

__all__ = ["clone"]


class Cast(Op):
    @staticmethod
    def forward(ctx, x, np_dtype):
        ctx.src = x.dtype
        return x.astype(np_dtype)

    @staticmethod
    def backward(ctx, g):
        return _cast(g, ctx.src), None


class ToDevice(Op):
    @staticmethod
    def forward(ctx, x, device):
        ctx.src_device = _device_of_array(x)
        return move_array(x, device)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):
            return g.to(ctx.src_device), None
        return move_array(g, ctx.src_device), None


class Clone(Op):
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g


def _device_of_array(x):
    from ..backend import device_of

    return device_of(x)


def move_array(array, device):
    """``array`` on ``device`` (no copy when it is already there)."""
    if device.type == "cpu":
        return array if isinstance(array, np.ndarray) else array.get()
    cp = device.xp
    if isinstance(array, cp.ndarray):
        if array.device.id == device.index:
            return array
        with cp.cuda.Device(device.index):
            return cp.copy(array)  # GPU to GPU (cupy.asarray would keep the source GPU's)
    with cp.cuda.Device(device.index):
        return cp.asarray(array)


def _cast(g, np_dtype):
    if isinstance(g, Tensor):
        return g.to(as_dtype(np_dtype))
    return g.astype(np_dtype, copy=False)


@graph_xp.register("astype")
def _graph_astype(x, dtype):
    return x.to(as_dtype(dtype))


def _names_dtype(name: str) -> bool:
    try:
        as_dtype(name)
        return True
    except TypeError:
        return False


def parse_to_args(args, kwargs):
    """``(dtype, device, copy)`` from the arguments of ``to()`` (PyTorch's overloads)."""
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, str):
            if _names_dtype(a):
                dtype = a
            else:  # a device; Device() says what is wrong with a bad one
                device = a
        elif isinstance(a, Device) or isinstance(a, int) and not isinstance(a, bool):
            device = a
        elif a is not None:
            dtype = a
    return (
        None if dtype is None else as_dtype(dtype),
        None if device is None else make_device(device),
        copy,
    )


@tensor_method("to")
def to(self, *args, **kwargs):
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``; returns ``self``
    when nothing changes (unless ``copy=True``). Differentiable."""
    dtype, device, copy = parse_to_args(args, dict(kwargs))
    out = self
    if device is not None and device != self.device:
        out = ToDevice.apply(out, device)
    if dtype is not None and dtype.np != out.array.dtype:
        out = Cast.apply(out, dtype.np)
    if copy and out is self:
        out = Clone.apply(self)
    return out


@tensor_method("type")
def type_(self, dtype=None):
    """With no argument, the type name (``'distgrad.FloatTensor'``-style); else ``to(dtype)``."""
    if dtype is None:
        return f"distgrad.{self.dtype.name}"
    if hasattr(dtype, "dtype_name"):  # a legacy constructor: t.type(LongTensor)
        dtype = as_dtype(dtype.dtype_name)
    return to(self, dtype)


@tensor_method("type_as")
def type_as(self, other):
    """This tensor cast to ``other``'s dtype."""
    return to(self, other.dtype)


@tensor_method("cpu")
def cpu(self):
    """This tensor in host memory (itself if already there)."""
    return to(self, "cpu")


@tensor_method("cuda")
def cuda(self, device=None):
    """This tensor on a CUDA device (default: the current one)."""
    return to(
        self,
        make_device(
            "cuda"
            if device is None
            else device
            if not isinstance(device, int)
            else f"cuda:{device}"
        ),
    )


def _cast_method(name, dtype_name):
    def method(self):
        return to(self, as_dtype(dtype_name))

    method.__name__ = name
    method.__doc__ = f"``self.to(distgrad.{dtype_name})``."
    tensor_method(name)(method)


for _name, _dt in (
    ("float", "float32"),
    ("double", "float64"),
    ("half", "float16"),
    ("long", "int64"),
    ("int", "int32"),
    ("bool", "bool"),
    ("byte", "uint8"),
):
    _cast_method(_name, _dt)


@tensor_method("clone")
def clone(input):
    """A copy with its own storage; differentiable."""
    return Clone.apply(input)


@tensor_method("contiguous")
def contiguous(self):
    """``self`` if already C-contiguous, else a contiguous copy."""
    return self if self.array.flags.c_contiguous else Clone.apply(self)


graph_xp.register("copy")(clone)
