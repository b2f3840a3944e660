"""What every op family shares: operand preparation (promotion, device checks), gradient
un-broadcasting, in-place application, Tensor-method registration and the differentiable
numpy-like namespace used by ``create_graph`` backwards."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Tensor, grad_mode
from ..autograd.function import set_graph_namespace
from ..backend import as_dtype, get_default_dtype, is_array, is_floating, result_type

__all__ = [
    "tensor_method",
    "as_tensor",
    "prepare_operands",
    "unbroadcast",
    "apply_inplace",
    "broadcast_error",
    "check_broadcast",
    "graph_xp",
    "normalize_dim",
    "normalize_dims",
    "check_same_device",
    "write_out",
]


def tensor_method(*names: str):
    """Also install the decorated function as ``Tensor.<name>`` for each name (default: the
    function's own name)."""

    def register(fn):
        for name in names or (fn.__name__,):
            setattr(Tensor, name, fn)
        return fn

    return register


def as_tensor(x, like: Tensor | None = None, dtype=None) -> Tensor:
    """``x`` if it is a Tensor, else a constant tensor on ``like``'s device."""
    if isinstance(x, Tensor):
        return x
    xp = np if like is None else like.device.xp
    if dtype is None and isinstance(x, (bool, numbers.Number)) and not is_array(x):
        dtype = result_type(x)
    elif dtype is None and not is_array(x):
        arr = np.asarray(x)
        dtype = get_default_dtype() if arr.dtype.kind == "f" else arr.dtype
    arr = xp.asarray(x, dtype=None if dtype is None else as_dtype(dtype).np)
    return Tensor(arr)


def shape_of(x) -> tuple:
    """The shape of an array, tensor or Python scalar (``np.shape`` without its cost)."""
    shape = getattr(x, "shape", None)
    return () if shape is None else shape


_TENSOR_DEVICE = Tensor.device  # a subclass may say otherwise (tests fake devices so)


def check_same_device(op: str, *tensors: Tensor | None) -> None:
    """Raise PyTorch's error unless the tensors among ``tensors`` share one device."""
    for t in tensors:
        if isinstance(t, Tensor) and (
            type(t.array) is not np.ndarray or type(t).device is not _TENSOR_DEVICE
        ):
            break
    else:
        return  # all numpy arrays: all on the CPU
    devices = {t.device for t in tensors if isinstance(t, Tensor)}
    if len(devices) > 1:
        names = ", ".join(dict.fromkeys(str(t.device) for t in tensors if isinstance(t, Tensor)))
        raise RuntimeError(
            f"{op}: expected all tensors to be on the same device, but found at "
            f"least two devices, {names}. Move them with .to(device) first."
        )


def prepare_operands(op: str, a, b, floating: bool = False):
    """Promote the two operands of a binary op to one dtype as PyTorch does (Python scalars
    become constants of that dtype on the tensors' device). ``floating`` promotes integer
    results to the default float dtype (true division). Returns ``(a, b)``: tensors or raw
    constant arrays, ready for ``apply``."""
    operands = (a, b)
    # the common cases first: two tensors of one dtype, a float tensor and a Python number
    if isinstance(a, Tensor):
        x = a.array
        if isinstance(b, Tensor):
            y = b.array
            if x.dtype == y.dtype and (not floating or x.dtype.kind in "fc"):
                if (
                    type(x) is not np.ndarray
                    or type(y) is not np.ndarray
                    or type(a).device is not _TENSOR_DEVICE
                    or type(b).device is not _TENSOR_DEVICE
                ):
                    check_same_device(op, a, b)
                return operands
        elif type(b) in (float, int) and x.dtype.kind == "f":
            return operands  # numpy keeps a float array's dtype for a Python scalar
    elif isinstance(b, Tensor) and type(a) in (float, int) and b.array.dtype.kind == "f":
        return operands
    for x in operands:
        if (
            isinstance(x, (str, bytes))
            or x is None
            or not (isinstance(x, (Tensor, numbers.Number, np.generic, list, tuple)) or is_array(x))
        ):
            names = ", ".join(
                f"'{'Tensor' if isinstance(v, Tensor) else type(v).__name__}'" for v in operands
            )
            raise TypeError(f"{op}(): unsupported operand type(s): {names}")
    tensors = [x for x in operands if isinstance(x, Tensor)]
    if len(tensors) == len(operands) and all(
        t.array.dtype == tensors[0].array.dtype for t in tensors[1:]
    ):
        if len(tensors) > 1:
            check_same_device(op, *tensors)
        if not floating or tensors[0].array.dtype.kind in "fc":
            return operands
    dtype = result_type(*operands)
    if floating and not dtype.is_floating_point:
        dtype = get_default_dtype()
    if len(tensors) > 1:
        check_same_device(op, *tensors)
    xp = tensors[0].device.xp if tensors else np
    out = []
    for x in operands:
        if isinstance(x, Tensor):
            out.append(x if x.array.dtype == dtype.np else x.to(dtype))
        else:
            out.append(xp.asarray(x, dtype=dtype.np))
    return tuple(out)


def broadcast_error(op: str, a, b, out=None) -> RuntimeError | None:
    """PyTorch's error for shapes ``a`` and ``b`` that do not broadcast (or whose broadcast
    shape is not the in-place output's shape ``out``); None when they do."""
    ndim = max(len(a), len(b))
    shapes = f"(shapes {list(a)} and {list(b)})"
    a, b = (1,) * (ndim - len(a)) + tuple(a), (1,) * (ndim - len(b)) + tuple(b)
    for d in range(ndim):
        if a[d] != b[d] and 1 not in (a[d], b[d]):
            return RuntimeError(
                f"{op}: the size of tensor a ({a[d]}) must match the size of "
                f"tensor b ({b[d]}) at non-singleton dimension {d} {shapes}"
            )
    full = tuple(max(x, y) for x, y in zip(a, b))
    if out is not None and full != tuple(out):
        return RuntimeError(
            f"{op}: output with shape {list(out)} doesn't match the broadcast shape {list(full)}"
        )
    return None


def check_broadcast(op: str, *shapes, out=None) -> None:
    """Raise PyTorch's error unless ``shapes`` broadcast together (to exactly ``out``, the
    shape of an in-place result, if given)."""
    full = ()
    for shape in shapes + ((out,) if out is not None else ()):
        error = broadcast_error(op, full, tuple(shape))
        if error is not None:
            raise error
        full = tuple(np.broadcast_shapes(full, tuple(shape)))
    if out is not None and full != tuple(out):
        error = broadcast_error(op, full, (), out=out)
        if error is not None:
            raise error


def unbroadcast(xp, grad, shape):
    """Sum ``grad`` down to ``shape`` (the reverse of broadcasting); works on arrays and, in
    create_graph backwards, on tensors."""
    if grad.shape == shape:
        return grad
    shape = tuple(shape)
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = xp.sum(grad, axis=axes, keepdims=True)
    return xp.reshape(grad, shape)


def normalize_dim(dim: int, ndim: int, op: str = "") -> int:
    """Wrap a negative dim; raise PyTorch's IndexError for one out of range."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"{op + ': ' if op else ''}Dimension out of range (expected to be in "
            f"range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim % n


def normalize_dims(dim, ndim: int, op: str = "") -> tuple:
    """``dim`` (None, an int or a sequence) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    return tuple(sorted({normalize_dim(d, ndim, op) for d in dim}))


def _kind(np_dtype) -> str:
    """numpy's kind letter, 'f' for bfloat16 too."""
    return "f" if is_floating(np_dtype) else np_dtype.kind


def _check_inplace_target(self: Tensor, result_dtype, op: str) -> None:
    if grad_mode.is_grad_enabled() and self.requires_grad and self.grad_fn is None:
        raise RuntimeError(
            f"a leaf Variable that requires grad is being used in an in-place operation "
            f"({op} on a tensor of shape {list(self.shape)}). Wrap it in `with "
            f"distgrad.no_grad():` if you mean to change the parameter itself."
        )
    kind = _kind(result_dtype) if result_dtype is not None else None
    if (
        kind is not None
        and kind != _kind(self.array.dtype)
        and "biuf".index(kind) > "biuf".index(_kind(self.array.dtype))
    ):
        raise RuntimeError(
            f"{op}: result type {result_dtype} can't be cast to the desired "
            f"output type {self.array.dtype}"
        )


def apply_inplace(self: Tensor, op: str, compute, *args, fast=None) -> Tensor:
    """Make ``self`` hold ``compute(self, *args)`` in place (same storage), recording the graph.

    ``fast(self_array, *raw_args)``, when given, does the update with an ``out=`` ufunc and is
    used when nothing needs gradients. With gradients, ``compute`` runs on a snapshot of
    ``self`` (its graph edge, a copy of its values), as PyTorch saves the original ``self``."""
    record = grad_mode.is_grad_enabled() and (
        self.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args)
    )
    if not record:
        _check_inplace_target(self, None, op)
        if fast is not None:
            raw = [a.array if isinstance(a, Tensor) else a for a in args]
            try:
                fast(self.array, *raw)
            except TypeError as e:  # numpy's "Cannot cast ufunc ... output" (a casting error)
                if "cast" not in str(e):
                    raise
                raise cast_error(result_type(self, *args), self.dtype) from None
            self.bump_version()
        else:
            with grad_mode.no_grad():
                result = compute(self, *args)
            _check_inplace_target(self, result.array.dtype, op)
            self.write_array_(result.array)
        return self
    _check_inplace_target(self, None, op)
    snapshot = self.with_history(self.array.copy())
    result = compute(snapshot, *args)
    _check_inplace_target(self, result.array.dtype, op)
    self.write_array_(result.array)
    self.take_history_(result)
    return self


_TORCH_TYPE_NAMES = {
    "float32": "Float",
    "float64": "Double",
    "float16": "Half",
    "bfloat16": "BFloat16",
    "int64": "Long",
    "int32": "Int",
    "int16": "Short",
    "int8": "Char",
    "uint8": "Byte",
    "bool": "Bool",
}


def cast_error(result_dtype, out_dtype) -> RuntimeError:
    """PyTorch's error for an in-place/out= result that cannot be cast to the output."""
    name = _TORCH_TYPE_NAMES.get
    return RuntimeError(
        f"result type {name(result_dtype.name, result_dtype.name)} can't be cast to the "
        f"desired output type {name(out_dtype.name, out_dtype.name)}"
    )


class _GraphNamespace:
    """numpy-compatible functions implemented with distgrad ops, so that a backward written
    as ``xp.exp(x) * g`` is itself differentiable. Op families register what they provide."""

    def register(self, *names):
        def decorate(fn):
            for name in names or (fn.__name__,):
                setattr(self, name, fn)
            return fn

        return decorate

    def __getattr__(self, name):
        raise NotImplementedError(
            f"double backward needs xp.{name}, which distgrad's differentiable namespace does not "
            f"provide; the op whose backward uses it should be marked once_differentiable or "
            f"the function registered with graph_xp.register"
        )


graph_xp = _GraphNamespace()
set_graph_namespace(graph_xp)


def write_out(op: str, result: Tensor, out) -> Tensor:
    """PyTorch's ``out=``: ``result`` written into ``out`` (resized when its shape differs,
    cast to ``out``'s dtype when that is a safe cast) and ``out`` returned. As in PyTorch,
    ``out=`` does not record gradients."""
    if out is None:
        return result
    if not isinstance(out, Tensor):
        raise TypeError(f"{op}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if grad_mode.is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise RuntimeError(
            f"{op}(): functions with out=... arguments don't support automatic "
            f"differentiation, but one of the arguments requires grad."
        )
    if not np.can_cast(result.array.dtype, out.array.dtype, casting="same_kind"):
        raise RuntimeError(
            f"{op}(): result type {result.dtype} can't be cast to the desired output type "
            f"{out.dtype}"
        )
    if out.shape == result.shape:
        out.array[...] = result.array
    else:  # resized, as PyTorch does for an out tensor of another shape
        out.data = Tensor(result.array.astype(out.array.dtype, copy=False))
    return out
