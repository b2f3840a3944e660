"""PyTorch's legacy and convenience tensor API that real programs still use.

Typed constructors (``LongTensor([1, 2])``, ``FloatTensor(2, 3)``, ``isinstance(t,
LongTensor)``, ``t.type(LongTensor)``), ``new_zeros``/``new_ones``/``new_full``/
``new_empty``/``new_tensor``, ``nelement``, the device predicates (``is_cpu``, ``is_xpu``,
``is_mps``, ...) and ``autograd.Variable``-style wrapping."""

from __future__ import annotations

from ..autograd import Tensor
from ..backend import as_dtype
from . import creation
from ._helpers import tensor_method
from .conversion import to

__all__ = [
    "FloatTensor",
    "DoubleTensor",
    "HalfTensor",
    "BFloat16Tensor",
    "ByteTensor",
    "CharTensor",
    "ShortTensor",
    "IntTensor",
    "LongTensor",
    "BoolTensor",
    "is_tensor",
    "is_floating_point",
    "numel",
]


class _LegacyTensorType(type):
    """Metaclass of the typed constructors: ``isinstance(t, LongTensor)`` tests the dtype."""

    dtype_name: str

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Tensor) and obj.dtype == as_dtype(cls.dtype_name)

    def __call__(cls, *args, device=None):
        dtype = as_dtype(cls.dtype_name)
        if not args:
            return creation.empty(0, dtype=dtype, device=device)
        if all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            return creation.zeros(*args, dtype=dtype, device=device)  # sizes
        if len(args) == 1 and isinstance(args[0], Tensor):
            return to(args[0], dtype)
        if len(args) != 1:
            raise TypeError(
                f"{cls.__name__}() takes data (a sequence or number) or sizes (ints), got "
                f"{', '.join(type(a).__name__ for a in args)}"
            )
        return creation.tensor(args[0], dtype=dtype, device=device)

    @property
    def dtype(cls):
        return as_dtype(cls.dtype_name)


def _legacy_type(name: str, dtype_name: str):
    doc = (
        f"``{name}(data)``: a {dtype_name} tensor of ``data``; ``{name}(*sizes)``: a zero-filled "
        f"one (PyTorch leaves it uninitialized); ``isinstance(t, {name})`` tests the dtype."
    )
    return _LegacyTensorType(name, (), {"dtype_name": dtype_name, "__doc__": doc})


FloatTensor = _legacy_type("FloatTensor", "float32")
DoubleTensor = _legacy_type("DoubleTensor", "float64")
HalfTensor = _legacy_type("HalfTensor", "float16")
BFloat16Tensor = _legacy_type("BFloat16Tensor", "bfloat16")
ByteTensor = _legacy_type("ByteTensor", "uint8")
CharTensor = _legacy_type("CharTensor", "int8")
ShortTensor = _legacy_type("ShortTensor", "int16")
IntTensor = _legacy_type("IntTensor", "int32")
LongTensor = _legacy_type("LongTensor", "int64")
BoolTensor = _legacy_type("BoolTensor", "bool")


def is_tensor(obj) -> bool:
    """Whether ``obj`` is a distgrad Tensor."""
    return isinstance(obj, Tensor)


def is_floating_point(input: Tensor) -> bool:
    """Whether ``input``'s dtype is a floating-point type."""
    return input.is_floating_point()


def numel(input: Tensor) -> int:
    """The number of elements of ``input``."""
    return input.numel()


@tensor_method("nelement")
def nelement(self) -> int:
    """The number of elements (an alias of ``numel``)."""
    return self.numel()


def _same(self, dtype, device):
    return (self.dtype if dtype is None else dtype), (self.device if device is None else device)


@tensor_method("new_zeros")
def new_zeros(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Zeros of ``size`` with this tensor's dtype and device unless given."""
    dtype, device = _same(self, dtype, device)
    return creation.zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


@tensor_method("new_ones")
def new_ones(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Ones of ``size`` with this tensor's dtype and device unless given."""
    dtype, device = _same(self, dtype, device)
    return creation.ones(*size, dtype=dtype, device=device, requires_grad=requires_grad)


@tensor_method("new_empty")
def new_empty(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An uninitialized tensor of ``size`` with this tensor's dtype and device unless given."""
    dtype, device = _same(self, dtype, device)
    return creation.empty(*size, dtype=dtype, device=device, requires_grad=requires_grad)


@tensor_method("new_full")
def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``fill_value`` everywhere, with this tensor's dtype and device unless given."""
    dtype, device = _same(self, dtype, device)
    return creation.full(size, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


@tensor_method("new_tensor")
def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A copy of ``data`` with this tensor's dtype and device unless given."""
    dtype, device = _same(self, dtype, device)
    return creation.tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def _device_predicate(kind: str):
    def predicate(self) -> bool:
        return self.device.type == kind

    predicate.__doc__ = f"Whether the tensor is on a {kind} device" + (
        "." if kind in ("cpu", "cuda") else f" (always False: distgrad has no {kind} backend)."
    )
    return property(predicate)


for _kind in ("cpu", "xpu", "mps", "meta", "ipu", "hpu", "xla", "mtia"):
    setattr(Tensor, f"is_{_kind}", _device_predicate(_kind))
Tensor.is_sparse = property(  # type: ignore[method-assign,assignment]
    lambda self: False, doc="Always False: distgrad tensors are dense."
)
Tensor.is_quantized = property(  # type: ignore[method-assign,assignment]
    lambda self: False, doc="Always False: no quantized tensors."
)
Tensor.is_complex = lambda self: False  # type: ignore[method-assign]
Tensor.is_complex.__doc__ = "Always False: distgrad has no complex dtypes."


def _inplace_shape(name: str):
    def method(self, *args):
        if self.requires_grad:
            raise RuntimeError(
                f"{name}(): distgrad changes the shape of a tensor in place only when it does "
                f"not require grad; use the out-of-place {name[:-1]}() instead"
            )
        self.data = getattr(self, name[:-1])(*args)
        return self

    method.__name__ = name
    method.__doc__ = f"In-place ``{name[:-1]}`` (tensors that do not require grad)."
    return tensor_method(name)(method)


for _name in ("unsqueeze_", "squeeze_", "t_", "transpose_", "swapaxes_", "swapdims_"):
    _inplace_shape(_name)
