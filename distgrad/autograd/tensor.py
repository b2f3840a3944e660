"""``Tensor``: an n-dimensional array (numpy on CPU, cupy on GPU) that records the operations
applied to it so that ``backward()`` can compute gradients.

Operators and most methods (``x + y``, ``x.sum()``, ``x.reshape``...) are installed by the ops
layer (``distgrad.ops``), which this module cannot import.

Internal API for the layers above autograd (ops, optim, amp, jit, onnx, nn, data,
distributed, checkpoint). Code outside ``distgrad/autograd`` uses only these (and the public
PyTorch API: ``requires_grad``, ``grad``, ``grad_fn``, ``output_nr``, ``detach()``...), never the
private attributes:

- ``t.array``: the numpy/cupy array, shared (read it; writing into it goes through the next
  two so that autograd's saved-tensor checks see the change).
- ``t.write_array_(values)``: copy ``values`` into the storage in place and count the change.
- ``t.bump_version()``: count an in-place change made directly on ``t.array`` (an ``out=``
  ufunc, an optimizer's update, a collective writing into the buffer).
- ``t.version``: how many in-place changes the storage has seen (PyTorch's ``t._version``).
- ``t.set_array(array)``: hold another array (a new storage: nothing to count).
- ``t.share_version(other)`` / ``t.shares_version(other)``: make ``t`` (a view of ``other``'s
  storage made outside an op) share ``other``'s version counter / whether it does.
- ``t.set_grad_array(array)``: ``.grad`` becomes a tensor holding ``array`` (or None), without
  the ``.grad`` setter's checks (the caller guarantees shape, dtype and device).
- ``t.with_history(array)``: a tensor holding ``array`` at ``t``'s place in the graph (same
  ``grad_fn``, ``output_nr`` and ``requires_grad``, its own version counter): what an in-place
  op computes from.
- ``t.take_history_(other)``: ``t`` takes ``other``'s place in the graph (``grad_fn``,
  ``output_nr``, ``requires_grad``): ``t`` now holds the result of an in-place op.
- ``autograd.graph.get_gradient_edge(t)``: the (node, output_nr) gradients for ``t`` flow into
  (a leaf's ``AccumulateGrad``), as PyTorch's.
"""

from __future__ import annotations

import operator
import weakref

import numpy as np

from ..backend import (
    array_module_for,
    device_of,
    from_numpy_dtype,
    get_default_dtype,
    is_array,
    is_floating,
)
from . import function as _function_module
from .function import BackwardNode, RemovableHandle, _add_hook

__all__ = ["Tensor", "VersionCounter"]


class VersionCounter:
    """Counts in-place changes of a tensor's storage; shared by a tensor and its views."""

    # A class-level start value instead of an ``__init__``: one counter is made per tensor,
    # and a class without ``__init__`` is instantiated in C.
    value = 0


class AccumulateGrad(BackwardNode):
    """The graph node of a leaf tensor: adds incoming gradients into ``tensor.grad``."""

    _is_accumulator = True

    def __init__(self, tensor: Tensor):
        # Run as soon as ready, before any other node (as PyTorch's AccumulateGrad), so that a
        # leaf's post-accumulate-grad hooks fire during backward, not after it.
        self._seq = float("inf")
        self.variable_ref = weakref.ref(tensor)
        self._input_meta = ((tensor._array.shape, tensor._array.dtype),)

    @property
    def variable(self):
        """The leaf tensor whose ``.grad`` this node accumulates into."""
        return self.variable_ref()


class Tensor:
    """A multi-dimensional array with autograd. Create tensors with ``distgrad.tensor``,
    ``distgrad.zeros``, ... rather than this constructor, which wraps an existing array."""

    __slots__ = (
        "_array",
        "_requires_grad",
        "_grad",
        "_grad_fn",
        "_output_nr",
        "_version",
        "_accumulator",
        "_hooks",
        "_post_acc_hooks",
        "_retains_grad",
        "__weakref__",
    )

    def __init__(self, array=None, requires_grad: bool = False, *sizes):
        if type(array) is not np.ndarray and not is_array(array):
            array, requires_grad = _legacy_array(array, requires_grad, sizes)
        self._array = array
        self._grad = None
        self._grad_fn = None
        self._output_nr = 0
        self._version = VersionCounter()
        self._accumulator = None
        self._hooks = None
        self._post_acc_hooks = None
        self._retains_grad = False
        self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, array, grad_fn, output_nr, counter):
        t = cls(array)
        t._requires_grad = grad_fn is not None
        t._grad_fn = grad_fn
        t._output_nr = output_nr
        if counter is not None:
            t._version = counter
        return t

    @classmethod
    def _alias(cls, other: Tensor) -> Tensor:
        """A detached tensor sharing ``other``'s array and version counter (``detach()``)."""
        t = cls(other._array)
        t._version = other._version
        return t

    # ---- array, dtype, device, shape ----------------------------------------------------
    # The most read accessors are C-level getters (attrgetter): the per-op path reads them.
    array = property(
        operator.attrgetter("_array"),
        doc="""The underlying numpy (CPU) or cupy (GPU) array, shared, not copied. Changing it
        in place bypasses autograd's version checks unless followed by ``bump_version()``;
        prefer tensor ops.""",
    )

    # ---- internal API for the layers above autograd (see the module docstring) -----------
    def write_array_(self, values) -> None:
        """Copy ``values`` (an array or scalar) into this tensor's storage, in place, and count
        the change (version + 1)."""
        self._array[...] = values
        self._version.value += 1

    def bump_version(self) -> None:
        """Count an in-place change made directly on ``self.array``, so that a backward that
        saved this tensor raises instead of using the changed values."""
        self._version.value += 1

    @property
    def version(self) -> int:
        """How many in-place changes this tensor's storage has seen."""
        return self._version.value

    def set_array(self, array) -> None:
        """Hold ``array`` from now on (another storage; nothing is counted)."""
        self._array = array

    def share_version(self, other: Tensor) -> None:
        """Share ``other``'s version counter (``self`` views ``other``'s storage)."""
        self._version = other._version

    def shares_version(self, other: Tensor) -> bool:
        """Whether ``self`` and ``other`` share one version counter (one storage)."""
        return self._version is other._version

    def set_grad_array(self, array) -> None:
        """Make ``.grad`` a tensor holding ``array`` (None clears it), without the ``.grad``
        setter's checks: the caller guarantees shape, dtype and device."""
        self._grad = None if array is None else Tensor(array)

    def with_history(self, array) -> Tensor:
        """A tensor holding ``array`` at this tensor's place in the graph (same ``grad_fn``,
        ``output_nr``, ``requires_grad``; its own version counter)."""
        t = Tensor(array)
        t._grad_fn, t._output_nr, t._requires_grad = (
            self._grad_fn,
            self._output_nr,
            self._requires_grad,
        )
        return t

    def take_history_(self, other: Tensor) -> None:
        """Take ``other``'s place in the graph (``grad_fn``, ``output_nr``,
        ``requires_grad``): ``self`` now holds the result of an in-place op."""
        self._grad_fn, self._output_nr, self._requires_grad = (
            other._grad_fn,
            other._output_nr,
            other._requires_grad,
        )

    @property
    def data(self) -> Tensor:
        """A tensor sharing this tensor's storage, detached from autograd (as PyTorch's
        ``.data``: in-place changes through it are not seen by autograd's version checks)."""
        return Tensor(self._array)

    @data.setter
    def data(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"tensor.data must be set to a Tensor, got {type(value).__name__}")
        self._array = value._array

    @property
    def dtype(self):
        """The element type (``distgrad.float32``, ...)."""
        return from_numpy_dtype(self._array.dtype)

    @property
    def device(self):
        """The device the data lives on (``cpu`` or ``cuda:N``)."""
        return device_of(self._array)

    @property
    def is_cuda(self) -> bool:
        """Whether the data is on a CUDA device."""
        return self.device.type == "cuda"

    shape = property(operator.attrgetter("_array.shape"), doc="The size of each dimension.")

    def size(self, dim: int | None = None):
        """The shape, or the size of dimension ``dim`` when given."""
        return self._array.shape if dim is None else self._array.shape[dim]

    ndim = property(operator.attrgetter("_array.ndim"), doc="The number of dimensions.")

    def dim(self) -> int:
        """The number of dimensions."""
        return self._array.ndim

    def numel(self) -> int:
        """The number of elements."""
        return int(self._array.size)

    def element_size(self) -> int:
        """The size of one element in bytes."""
        return self._array.itemsize

    @property
    def itemsize(self) -> int:
        """The size of one element in bytes."""
        return self._array.itemsize

    def is_floating_point(self) -> bool:
        """Whether the dtype is a floating-point type."""
        return is_floating(self._array.dtype)

    def is_contiguous(self) -> bool:
        """Whether the data is laid out in row-major order without gaps."""
        return bool(self._array.flags.c_contiguous)

    def stride(self, dim: int | None = None):
        """The step in elements between neighbours along each dimension (or along ``dim``)."""
        strides = tuple(s // self._array.itemsize for s in self._array.strides)
        return strides if dim is None else strides[dim]

    def __len__(self) -> int:
        if self._array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._array.shape[0]

    # ---- autograd state ----------------------------------------------------------------
    def _set_requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    requires_grad = property(
        operator.attrgetter("_requires_grad"),
        _set_requires_grad,
        doc="Whether autograd records operations on this tensor.",
    )

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set whether autograd records operations on this (leaf) tensor."""
        if self._grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach()."
                )
            return self
        if requires_grad and not (is_floating(self._array.dtype) or self._array.dtype.kind == "c"):
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients, got {self.dtype} "
                f"of shape {list(self.shape)}"
            )
        self._requires_grad = bool(requires_grad)
        return self

    grad_fn = property(
        operator.attrgetter("_grad_fn"),
        doc="The graph node that produced this tensor (None for a leaf).",
    )

    @property
    def is_leaf(self) -> bool:
        """Whether the tensor was not produced by a recorded operation (its gradient accumulates in ``.grad``)."""
        return self._grad_fn is None

    output_nr = property(
        operator.attrgetter("_output_nr"), doc="Which output of ``grad_fn`` this tensor is."
    )

    @property
    def _version_value(self) -> int:
        return self._version.value

    @property
    def grad(self):
        """The accumulated gradient of a leaf (``None`` until a backward reaches it)."""
        if self._grad_fn is not None and not self._retains_grad:
            import warnings

            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during autograd.backward(). If you "
                "indeed want the .grad field to be populated for a non-leaf Tensor, use "
                ".retain_grad() on the non-leaf Tensor.",
                UserWarning,
                stacklevel=2,
            )
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"assigned grad must be a Tensor or None, got {type(value).__name__}"
                )
            if value.shape != self.shape:
                raise RuntimeError(
                    f"assigned grad has data of a different size: grad shape "
                    f"{list(value.shape)}, tensor shape {list(self.shape)}"
                )
            if value._array.dtype != self._array.dtype:
                raise RuntimeError(
                    f"assigned grad has data of a different type: grad "
                    f"{value.dtype}, tensor {self.dtype}"
                )
            if value.device != self.device:
                raise RuntimeError(
                    f"assigned grad has data located on a different device: "
                    f"grad on {value.device}, tensor on {self.device}"
                )
        self._grad = value

    def _edge(self):
        """The (node, output_nr) that gradients for this tensor flow into."""
        if self._grad_fn is not None:
            return (self._grad_fn, self._output_nr)
        acc = self._accumulator
        if acc is None:
            acc = self._accumulator = AccumulateGrad(self)
        return (acc, 0)

    def detach(self) -> Tensor:
        """A new tensor sharing storage, with no graph history."""
        return Tensor._alias(self)

    def detach_(self) -> Tensor:
        """Detach this tensor from the graph in place (it becomes a leaf); return self."""
        self._grad_fn = None
        self._requires_grad = False
        return self

    def retain_grad(self) -> None:
        """Populate ``.grad`` of this non-leaf tensor during backward (no-op on leaves)."""
        if self._grad_fn is None:
            if not self._requires_grad:
                raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return
        if self._retains_grad:
            return
        node = self._grad_fn
        if node._retain_grad is None:
            node._retain_grad = {}
        node._retain_grad[self._output_nr] = weakref.ref(self)
        self._retains_grad = True

    @property
    def retains_grad(self) -> bool:
        """Whether :meth:`retain_grad` was called on this non-leaf tensor."""
        return self._retains_grad

    def register_hook(self, hook) -> RemovableHandle:
        """``hook(grad)`` runs when this tensor's gradient is computed, before it is used or
        accumulated; returning a tensor replaces the gradient."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._grad_fn is not None:
            return self._grad_fn._add_tensor_pre_hook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = {}
        return _add_hook(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook) -> RemovableHandle:
        """``hook(tensor)`` runs after this leaf's ``.grad`` is final for the current backward."""
        if self._grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._post_acc_hooks is None:
            self._post_acc_hooks = {}
        return _add_hook(self._post_acc_hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate the gradient of this tensor w.r.t. graph leaves into their ``.grad``."""
        from .engine import backward

        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # ---- conversion to Python / numpy ----------------------------------------------------
    def _host_array(self):
        xp = array_module_for(self._array)
        return self._array if xp is np else xp.asnumpy(self._array)

    def numpy(self, force: bool = False) -> np.ndarray:
        """The numpy array (shared on CPU, copied from GPU)."""
        if self._requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. "
                "Use tensor.detach().numpy() instead."
            )
        if not force and self.device.type != "cpu":
            raise TypeError(
                f"can't convert {self.device} device type tensor to numpy. Use "
                f"Tensor.cpu() to copy the tensor to host memory first."
            )
        return self._host_array()

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._array.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._array.size} elements cannot be converted to Scalar"
            )
        return self._host_array().reshape(()).item()

    def tolist(self):
        """The data as (nested) Python lists of Python numbers."""
        return self._host_array().tolist()

    def __array__(self, dtype=None, copy=None):
        arr = self._host_array()
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        return arr.copy() if copy and arr is self._array else arr  # np.array(t) copies

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._array.dtype.kind not in "iub":
            raise TypeError(
                f"only integer tensors of a single element can be converted to an "
                f"index, got {self.dtype}"
            )
        return int(self.item())

    def __bool__(self):
        if self._array.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with {self._array.size} elements is ambiguous"
            )
        return bool(self.item())

    __hash__ = object.__hash__
    __array_ufunc__ = None  # numpy defers to Tensor's reflected operators (array @ tensor)

    def __reduce__(self):
        return (
            _rebuild_tensor,
            (self._host_array(), self._requires_grad and self.is_leaf, str(self.device)),
        )

    def __deepcopy__(self, memo):
        if self._grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) "
                "support the deepcopy protocol at the moment"
            )
        t = type(self).__new__(type(self))
        Tensor.__init__(t, self._array.copy(), requires_grad=self._requires_grad)
        if self._grad is not None:
            t._grad = Tensor(self._grad._array.copy())
        memo[id(self)] = t
        return t

    def __format__(self, spec: str) -> str:
        # as PyTorch: a 0-d tensor formats as its Python number (f"{loss:.4f}")
        if self._array.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __repr__(self):
        body = np.array2string(self._host_array(), separator=", ", precision=4, prefix="tensor(")
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self._array.dtype not in (np.float32, np.int64, np.bool_):
            extras.append(f"dtype={self.dtype}")
        if self._grad_fn is not None:
            extras.append(f"grad_fn=<{self._grad_fn.name()}>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"


_new_object = object.__new__


def _plain_tensor(array) -> Tensor:
    """``Tensor(array)`` for a numpy/cupy array, made without the constructor's call and
    checks: the per-op path wraps every op output with it."""
    t = _new_object(Tensor)
    t._array = array
    t._grad = None
    t._grad_fn = None
    t._output_nr = 0
    t._version = VersionCounter()
    t._accumulator = None
    t._hooks = None
    t._post_acc_hooks = None
    t._retains_grad = False
    t._requires_grad = False
    return t


_function_module.Tensor = Tensor
_function_module._plain_tensor = _plain_tensor


def _legacy_array(data, second, sizes):
    """The array of PyTorch's legacy constructor ``Tensor(data)`` / ``Tensor(*sizes)``:
    Python data become the default float dtype; ints are sizes (``Tensor(2, 3)``, zero-filled
    where PyTorch leaves memory uninitialized); ``Tensor()`` is empty. (A numpy/cupy array is
    wrapped as it is, without a copy or a dtype change: the documented raw constructor.)"""
    dtype = get_default_dtype().np
    if isinstance(data, np.generic):
        return np.asarray(data), second
    return _legacy_data(data, second, sizes, dtype), False


def _legacy_data(data, second, sizes, dtype):
    if data is None and second is False and not sizes:
        return np.empty((0,), dtype)
    dims = (data, second, *sizes) if second is not False else (data,)
    if all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims):
        if any(d < 0 for d in dims):
            raise RuntimeError(f"Tensor(): negative dimension in size {list(dims)}")
        return np.zeros(tuple(int(d) for d in dims), dtype)
    if second is not False or sizes:
        raise TypeError(
            f"Tensor() takes data (a sequence or number) or sizes (ints), got "
            f"{', '.join(type(d).__name__ for d in dims)}"
        )
    if isinstance(data, Tensor):
        return data._array.astype(dtype, copy=False)
    if isinstance(data, (list, tuple, float, bool)):
        try:
            array = np.array(data, dtype=dtype)
        except (ValueError, TypeError) as e:
            raise TypeError(
                f"Tensor(): could not make a tensor from {type(data).__name__}: {e}"
            ) from None
        return array
    raise TypeError(
        f"Tensor(): expected a sequence, a number, sizes or an array, got {type(data).__name__}"
    )


def _rebuild_tensor(array, requires_grad, device):
    t = Tensor(array, requires_grad=requires_grad)
    if device != "cpu":
        from ..backend import device as make_device

        t._array = make_device(device).xp.asarray(array)
    return t
