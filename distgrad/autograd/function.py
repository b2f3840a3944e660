"""The op contract: ``Op``, one differentiable op on arrays, forward and backward side by side;
``Function``, PyTorch's tensors-in/tensors-out ``autograd.Function``, an adapter over ``Op``.
An op's ``ctx`` is the backward node of the graph (``tensor.grad_fn``), as in PyTorch.

Built-in ops subclass ``Op``: their ``forward(ctx, *args)`` receives the raw numpy/cupy arrays
of tensor arguments and returns arrays, and their ``backward(ctx, *grads)`` receives and
returns arrays. When a backward runs with ``create_graph=True`` the same code receives tensors
instead and ``ctx.xp`` is a differentiable numpy-like namespace, so one backward formula serves
first and higher-order gradients. User Functions see tensors, exactly as in PyTorch; the engine,
``jit`` and ``onnx`` know only the array-level contract (``array_forward``/``array_backward``).
"""

from __future__ import annotations

import itertools
import traceback
from typing import Any

import numpy as np

from ..backend import array_module_for, is_floating
from . import grad_mode
from .grad_mode import _state

__all__ = ["Op", "Function", "BackwardNode", "once_differentiable", "RemovableHandle"]

_sequence = itertools.count()
_anomaly = {"enabled": False, "check_nan": True}
# The differentiable numpy-like namespace used by create_graph backwards; the ops layer
# installs it (autograd cannot import ops).
_graph_namespace = None
Tensor: Any = None  # set by tensor.py once the class exists (it imports this module)
_plain_tensor: Any = None  # tensor.py's Tensor(array) without the constructor call


def set_graph_namespace(namespace) -> None:
    global _graph_namespace
    _graph_namespace = namespace


class RemovableHandle:
    """Returned by ``register_*hook``; ``remove()`` takes the hook out."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        """Remove the hook this handle was returned for (a second call does nothing)."""
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def add_hook(hooks: dict, fn) -> RemovableHandle:
    """Put ``fn`` into the ``{id: hook}`` dict ``hooks``; the handle's ``remove()`` takes it
    out (the registry behind every ``register_*hook``)."""
    handle = RemovableHandle(hooks)
    hooks[handle.id] = fn
    return handle


_add_hook = add_hook


# One value given to ``save_for_backward`` is kept as a plain tuple (the cheapest object to
# make and free, one per saved value per op): ``(array, tensor, output_nr, counter, version)``,
# the array plus enough to detect an in-place change (the version counter and the version
# seen at save time; ``None, 0`` for a constant) and to rebuild the tensor (the input tensor
# itself, or the output number of an output of this node).
_Saved = tuple


class _NeedsInputGrad:
    """``ctx.needs_input_grad``: whether each argument of forward is a tensor that requires
    grad, i.e. has a graph edge. Computed from the edges on first read and then kept as an
    instance value (a non-data descriptor: assignments, e.g. a jit replay's, override it), so
    that recording an op builds no tuple for it."""

    def __get__(self, node, owner=None) -> Any:
        if node is None:
            return self
        needs = node.__dict__["needs_input_grad"] = tuple([e is not None for e in node._next])
        return needs


class BackwardNode:
    """A node of the backward graph. For an op ``Foo`` the node class is ``FooBackward`` and the
    node is the ``ctx`` its forward and backward receive."""

    _function: Any = None
    _is_accumulator = False
    # Creation order (PyTorch's sequence_nr): among ready nodes the engine runs the newest
    # first. Set by ``_run`` (the per-op path) when it records the node (a node is made per
    # op call, so it has no ``__init__``: a class without one is instantiated in C).
    _seq = 0
    _device = None  # the cupy Device a GPU op ran under; its backward runs there too
    tensor_args = None  # in a jit replay: which arguments of forward were tensors
    # Per-node state starts as these class-level defaults (one node is made per recorded op,
    # so its constructor sets only the sequence number); assignments make instance values.
    _to_save: tuple = ()
    _saved: list | None = None
    _freed = False
    _dirty: tuple = ()
    _non_differentiable: tuple = ()
    _materialize_grads = True
    _create_graph = False
    _xp: Any = np  # the op's array module (numpy or cupy)
    # The array namespace for forward/backward formulas: ``_xp``, or the differentiable one
    # while the backward is being recorded (``create_graph=True``; the engine sets it).
    xp: Any = np
    _next: tuple = ()
    _input_meta: tuple = ()
    _output_meta: tuple = ()
    _pre_hooks: dict | None = None
    _post_hooks: dict | None = None
    _tensor_pre_hooks: dict | None = None  # {output_nr: {id: hook}}
    _retain_grad: dict | None = None  # {output_nr: weakref to tensor}
    _trace: str | None = None
    needs_input_grad = _NeedsInputGrad()
    _packed = False  # saved values went through saved_tensors_hooks' pack hook
    _saved_as_tensors = False  # saved values come back as tensors even in a first-order backward
    # A jit replay's buffer planning (ops that declare ``writes_out_buffer`` /
    # ``writes_grad_buffer``): the array this op's output / first input gradient went into at
    # the previous replay, to be written again (same shape and dtype); None: allocate.
    # ``work_buffer`` (``writes_work_buffer``): a free array shaped like the first argument
    # for forward's scratch values, which the op may keep on ctx for its backward.
    out_buffer: Any = None
    grad_buffer: Any = None
    work_buffer: Any = None

    @property
    def metadata(self) -> dict:
        """A dict for users' own annotations of this node (PyTorch's ``Node.metadata``)."""
        d = self.__dict__.get("_metadata")
        if d is None:
            d = self.__dict__["_metadata"] = {}
        return d

    # ---- ctx API used inside forward/backward -------------------------------------------
    def save_for_backward(self, *values) -> None:
        """Keep values for backward: arrays in an ``Op``, tensors in a ``Function``."""
        self._to_save = values

    @property
    def saved_tensors(self) -> tuple:
        """The tensors saved by forward for backward."""
        if self._freed:
            raise RuntimeError(
                f"Trying to backward through the graph a second time (or directly access saved "
                f"tensors after they have already been freed) in {self.name()}. Saved "
                f"intermediate values of the graph are freed when you call .backward() or "
                f"autograd.grad(). Specify retain_graph=True if you need to backward through "
                f"the graph a second time or if you need to access saved tensors after calling "
                f"backward."
            )
        saved = self._saved
        if saved is None:
            return self._to_save
        if self._packed:
            return tuple([self._unpack_hooked(s) for s in saved])
        if self._create_graph or self._saved_as_tensors:
            return tuple([self._unpack(s) for s in saved])
        out = []  # the first-order backward of an Op: the arrays, once their versions check
        for s in saved:
            if s is not None:
                counter = s[3]
                if counter is not None and counter.value != s[4]:
                    self._unpack(s)  # raises
                s = s[0]
            out.append(s)
        return tuple(out)

    def _unpack(self, s: _Saved | None):
        if s is None:
            return None
        array, tensor, output_nr, counter, version = s
        if counter is not None and counter.value != version:
            shape = tuple(array.shape)
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{array.dtype} of shape {list(shape)}], which is output "
                f"{output_nr if tensor is None else 0} of {self.name()}, is at version "
                f"{counter.value}; expected version {version} instead. Hint: replace the "
                f"in-place op (x.add_(...), x[...] = ..., x += ...) by its out-of-place form "
                f"(x = x + ...), or clone() the tensor before changing it."
            )
        return self._saved_tensor(s) if self._create_graph or self._saved_as_tensors else array

    def _unpack_hooked(self, s):
        """A saved value packed by ``saved_tensors_hooks``: ``unpack_hook`` gives it back."""
        if type(s) is not _Packed:
            return self._unpack(s)
        t = s.unpack(s.packed)
        if not isinstance(t, Tensor):
            raise TypeError(
                f"Output of saved tensor unpack_hook expected to be a Tensor but got result of "
                f"type {type(t).__name__}"
            )
        if t._version is s.counter and s.counter.value != s.version:  # not packed into a copy
            tensor = t if s.output_nr is None else None
            self._unpack((t._array, tensor, s.output_nr, s.counter, s.version))
        if not (self._create_graph or self._saved_as_tensors):
            return t._array
        if s.output_nr is not None:  # an output re-enters the graph at this node
            return Tensor._make(t._array, self, s.output_nr, t._version)
        edge = s.edge
        if edge is None:
            return t
        out = Tensor._make(t._array, None, 0, t._version)
        out._requires_grad = True
        if edge[0]._is_accumulator:  # a leaf's: gradients still reach its .grad
            out._accumulator = edge[0]
        else:
            out._grad_fn, out._output_nr = edge
        return out

    def _saved_tensor(self, s: _Saved):
        array, tensor, output_nr, counter, _ = s
        if tensor is not None:
            return tensor
        if output_nr is not None:
            return Tensor._make(array, self, output_nr, counter)
        return Tensor(array) if hasattr(array, "shape") else array  # scalars stay

    def mark_dirty(self, *tensors) -> None:
        """Declare inputs that forward modified in place (and returns)."""
        self._dirty = tensors

    def mark_non_differentiable(self, *outputs) -> None:
        """Declare outputs that are not differentiable (indices, masks)."""
        self._non_differentiable = outputs

    def set_materialize_grads(self, value: bool) -> None:
        """If False, backward receives None for outputs that got no gradient."""
        self._materialize_grads = bool(value)

    # ---- graph API (what tensor.grad_fn users read) -------------------------------------
    def name(self) -> str:
        """The node's class name, e.g. ``"MulBackward"``."""
        return type(self).__name__

    @property
    def next_functions(self) -> tuple:
        """``(node, output_nr)`` of each input's producer (``(None, 0)`` for inputs without gradient)."""
        return tuple(e if e is not None else (None, 0) for e in self._next)

    def register_hook(self, fn) -> RemovableHandle:
        """``fn(grad_inputs, grad_outputs)`` after this node's backward; may return new inputs."""
        if self._post_hooks is None:
            self._post_hooks = {}
        return _add_hook(self._post_hooks, fn)

    def register_prehook(self, fn) -> RemovableHandle:
        """``fn(grad_outputs)`` before this node's backward; may return new grad_outputs."""
        if self._pre_hooks is None:
            self._pre_hooks = {}
        return _add_hook(self._pre_hooks, fn)

    def _add_tensor_pre_hook(self, output_nr: int, fn) -> RemovableHandle:
        if self._tensor_pre_hooks is None:
            self._tensor_pre_hooks = {}
        return _add_hook(self._tensor_pre_hooks.setdefault(output_nr, {}), fn)

    def _release(self) -> None:
        if self._saved is not None:
            self._saved = None
            self._freed = True

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    def __call__(self, *grads):
        """Run this node's backward on arrays or tensors (as torchviz-style tools do)."""
        return self._function.backward(self, *grads)


class Op:
    """Base class of built-in ops: the one contract the engine, ``jit`` and ``onnx`` know.

    ``forward(ctx, *args)`` receives the raw numpy/cupy arrays of tensor arguments (other
    arguments as given) and returns arrays; ``backward(ctx, *grads)`` receives and returns
    arrays, one gradient (or None) per argument of ``forward``. With ``create_graph=True`` the
    same backward receives tensors and ``ctx.xp`` is the differentiable namespace, so one
    formula serves first and higher-order gradients; a backward that cannot run that way sets
    ``once_differentiable = True``. Call an op with ``YourOp.apply(*args)``.

    ``array_forward`` / ``array_backward`` are what the engine and a ``jit`` replay call: for
    an ``Op`` they are ``forward`` / ``backward`` themselves; ``Function`` (tensors in, tensors
    out) adapts them.
    """

    once_differentiable: bool = False
    # View ops (reshape, transpose, basic indexing...): an output array that aliases the first
    # argument's memory shares its version counter, so in-place changes through either one are
    # seen by the saved-tensor checks of the other.
    is_view: bool = False
    # How ``distgrad.amp.autocast`` casts this op's floating inputs: "lower" (to the autocast
    # dtype: matmul, conv), "float32" (reductions, softmax, norms, losses) or None (run in
    # the widest floating input dtype).
    autocast: str | None = None
    _node_base: type[BackwardNode] = BackwardNode
    _backward_cls: type[BackwardNode] = BackwardNode

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "on_arrays" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__}: the on_arrays flag is gone; an op on arrays subclasses "
                f"distgrad.autograd.Op (class {cls.__name__}(Op): ...), a Function on tensors "
                f"subclasses Function"
            )
        if getattr(cls.backward, "__once_differentiable__", False):
            cls.once_differentiable = True
        cls._backward_cls = type(
            f"{cls.__name__}Backward",
            (cls._node_base,),
            {"_function": cls, "__module__": cls.__module__},
        )
        cls._bind_contract()

    @classmethod
    def _bind_contract(cls) -> None:
        # An op on arrays is its own array-level contract (no adapter call per op).
        cls.array_forward = staticmethod(cls.forward)
        cls.array_backward = staticmethod(cls.backward)

    @staticmethod
    def forward(ctx, *args):
        """Compute the output arrays from the input arrays; ``ctx`` saves what backward needs. Subclasses implement it."""
        raise NotImplementedError("an Op subclass must implement forward(ctx, *args)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        """Given the gradients of the outputs, return one gradient (or ``None``) per forward argument."""
        raise NotImplementedError("an Op subclass must implement backward(ctx, *grads)")

    array_forward = forward
    array_backward = backward

    # Whether forward receives the argument tensors themselves (a Function: their identity
    # tells inputs returned, marked dirty or saved) rather than their arrays.
    _tensors_in = False

    @classmethod
    def apply(cls, *args):
        """Run the op on ``args``, recording the graph when an input requires grad."""
        if _interceptors:
            return _intercepted_apply(cls, args)
        return _run(cls, args)

    @classmethod
    def _apply(cls, args):
        """``apply`` on the argument tuple, past the interceptors."""
        return _run(cls, args)


def _run(cls, args):
    """The per-op path: one loop over the arguments (gathering the graph edges too when
    recording), the forward, the outputs wrapped and connected; no helper calls in the common
    case."""
    ctx = cls._backward_cls()
    first = None
    arrays = []
    record = False
    if _state.grad_enabled:
        edges, in_meta = [], []
        for a in args:
            if isinstance(a, Tensor):
                array = a._array
                arrays.append(array)
                if first is None:
                    first = array
                if a._requires_grad:
                    record = True
                    node = a._grad_fn
                    if node is not None:
                        edges.append((node, a._output_nr))
                    else:  # a leaf: its accumulator, made on first use
                        node = a._accumulator
                        edges.append((node, 0) if node is not None else a._edge())
                    in_meta.append((array.shape, array.dtype))
                    continue
            else:
                arrays.append(a)
            edges.append(None)
            in_meta.append(None)
        if record:  # (ctx.needs_input_grad follows from the edges when read)
            ctx._seq = next(_sequence)
            ctx._next = tuple(edges)
            ctx._input_meta = tuple(in_meta)
    else:
        for a in args:
            if isinstance(a, Tensor):
                arrays.append(a._array)
                if first is None:
                    first = a._array
            else:
                arrays.append(a)
    raw = list(args) if cls._tensors_in else arrays
    if first is None or type(first) is np.ndarray:
        out = cls.array_forward(ctx, *raw)
    else:
        ctx._xp = ctx.xp = xp = array_module_for(first)
        if xp is np:
            out = cls.array_forward(ctx, *raw)
        else:  # a GPU op runs with its first tensor's GPU current (cupy's rule)
            ctx._device = first.device
            with ctx._device:
                out = cls.array_forward(ctx, *raw)
    if type(out) is np.ndarray and not ctx._dirty and not cls.is_view:
        single, outputs = True, (_plain_tensor(out),)
    else:
        single = not isinstance(out, tuple)
        outputs = _wrap_outputs(cls, ctx, args, raw, (out,) if single else out)
    if record:
        _connect(cls, ctx, args, raw, outputs)
    if ctx._to_save:
        ctx._to_save = ()
    return outputs[0] if single else outputs


class _FunctionNode(BackwardNode):
    """The ctx of a ``Function``: its saved values are tensors, in every backward."""

    _saved_as_tensors = True


class Function(Op):
    """Base class of differentiable operations on tensors (PyTorch's
    ``torch.autograd.Function``).

    Subclass it with static ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)`` and
    call ``YourFunction.apply(*args)``: forward receives tensors (detached, under no_grad),
    backward receives and returns tensors, one gradient (or None) per argument of
    ``forward``. The ctx API is the same as an ``Op``'s. This class is the adapter that runs
    such a Function through the array-level ``Op`` contract.
    """

    _node_base = _FunctionNode

    _tensors_in = True

    @classmethod
    def _bind_contract(cls) -> None:
        pass  # array_forward / array_backward stay the adapter below

    @classmethod
    def array_forward(cls, ctx, *args):
        """Run the user's forward on tensors. ``args`` are the call's arguments (eager) or, in
        a ``jit`` replay, arrays for the arguments that were tensors (``ctx.tensor_args``)."""
        replay = ctx.tensor_args is not None
        if replay:
            inputs = [Tensor(a) if t else a for a, t in zip(args, ctx.tensor_args)]
        else:
            inputs = [Tensor._alias(a) if isinstance(a, Tensor) else a for a in args]
        if not ctx.needs_input_grad:
            ctx.needs_input_grad = (False,) * len(args)
        with grad_mode.no_grad():
            out = cls.forward(ctx, *inputs)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        if replay:
            outs = tuple(o._array if isinstance(o, Tensor) else o for o in outs)
        else:  # an input returned: itself when marked dirty, else a new tensor sharing it
            originals = {id(i): a for i, a in zip(inputs, args) if isinstance(a, Tensor)}
            dirty = {id(d) for d in ctx._dirty}
            ctx._dirty = tuple(originals.get(id(d), d) for d in ctx._dirty)
            ctx._to_save = tuple(originals.get(id(v), v) for v in ctx._to_save)
            outs = tuple(
                o
                if id(o) not in originals
                else originals[id(o)]
                if id(o) in dirty
                else Tensor._alias(o)
                for o in outs
            )
        return outs[0] if single else outs

    @classmethod
    def array_backward(cls, ctx, *grads):
        """Run the user's backward: arrays in and out (tensors inside); under
        ``create_graph`` tensors in and out, recorded."""
        if ctx._create_graph:
            return cls.backward(ctx, *grads)
        with grad_mode.no_grad():
            result = cls.backward(ctx, *[None if g is None else Tensor(g) for g in grads])
        if isinstance(result, tuple):
            return tuple(r._array if isinstance(r, Tensor) else r for r in result)
        return result._array if isinstance(result, Tensor) else result


# Interceptors see every op call: ``before(cls, args) -> args`` may rewrite the arguments
# (autocast), ``after(cls, args, outputs)`` observes the result (tracing) and may return
# replacement outputs (autocast). Innermost last.
_interceptors: list = []


def push_interceptor(interceptor) -> None:
    """Activate an object with ``before``/``after`` methods for every ``Function.apply``."""
    _interceptors.append(interceptor)


def pop_interceptor(interceptor) -> None:
    """Deactivate an interceptor activated by ``push_interceptor``."""
    _interceptors.remove(interceptor)


def active_interceptors() -> tuple:
    """The active interceptors, innermost last."""
    return tuple(_interceptors)


def autocasting(*tensors) -> bool:
    """Whether an active interceptor casts op inputs to a common dtype (``casts_inputs``, as
    autocast's) and the tensors are all floating: an op then leaves their dtypes to it."""
    return any(getattr(i, "casts_inputs", False) for i in _interceptors) and all(
        t is None or t.is_floating_point() for t in tensors
    )


def _intercepted_apply(cls, args):
    active = list(_interceptors)
    for interceptor in active:
        args = interceptor.before(cls, args)
    outputs = _run(cls, args)
    for interceptor in reversed(active):
        replaced = interceptor.after(cls, args, outputs)
        if replaced is not None:
            outputs = replaced
    return outputs


def _wrap_outputs(cls, ctx, args, raw, outs):
    """Tensors for the arrays (or tensors) forward returned. An input returned as an output
    is the input itself when marked dirty, else a new tensor sharing its storage."""
    wrapped = []
    for o in outs:
        if o is None:
            wrapped.append(None)
            continue
        if not isinstance(o, Tensor) and (not hasattr(o, "shape") or isinstance(o, np.generic)):
            scalar, o = o, np.asarray(o)  # numpy ufuncs give scalars for 0-d arrays
            ctx._to_save = tuple(o if v is scalar else v for v in ctx._to_save)
        if ctx._dirty:
            for a, r in zip(args, raw):
                if o is r:
                    o = a if any(o is d for d in ctx._dirty) else Tensor._alias(a)
                    break
        if not isinstance(o, Tensor):
            array = o
            o = Tensor(array)
            if (
                cls.is_view
                and raw
                and not array.flags.owndata
                and array_module_for(array).may_share_memory(array, raw[0])
            ):
                o._version = args[0]._version  # a view: in-place changes count for both
        wrapped.append(o)
    return tuple(wrapped)


def _connect(cls, ctx, args, raw, outputs):
    """Record the graph (its edges to the inputs are set): saved values, outputs' grad_fn."""
    non_diff = ctx._non_differentiable
    dirty = ctx._dirty
    meta = []
    nr = -1
    for o in outputs:
        nr += 1
        if o is None:
            meta.append(None)
            continue
        array = o._array
        dtype = array.dtype
        meta.append((array.shape, dtype))
        if (
            dtype.kind not in "fc"
            and not is_floating(dtype)
            or non_diff
            and any(o is n or getattr(n, "_array", None) is array for n in non_diff)
        ):
            continue
        if dirty and any(o is a for a in args):  # the input now carries this node
            if o._grad_fn is None and o._requires_grad:
                raise RuntimeError(
                    f"a leaf Variable that requires grad is being used in an in-place "
                    f"operation ({cls.__name__})."
                )
            o._version.value += 1
        o._requires_grad = True
        o._grad_fn = ctx
        o._output_nr = nr
    ctx._output_meta = tuple(meta)
    if ctx._to_save:
        saved = []
        for v in ctx._to_save:  # an input, else an output (by identity), a tensor, a constant
            if v is not None:
                for a, r in zip(args, raw):
                    if v is r and isinstance(a, Tensor):
                        counter = a._version
                        v = (a._array, a, None, counter, counter.value)
                        break
                else:
                    nr = 0
                    for o in outputs:
                        if o is not None and (v is o or v is o._array):
                            counter = o._version
                            v = (o._array, None, nr, counter, counter.value)
                            break
                        nr += 1
                    else:
                        v = _saved_entry(v)
            saved.append(v)
        ctx._saved = saved
        if _saved_hooks:
            _pack_all(ctx, saved, outputs)
    if _anomaly["enabled"]:
        ctx._trace = _user_stack()


# ``(pack_hook, unpack_hook)`` pairs of the active ``autograd.graph.saved_tensors_hooks``
# contexts, innermost last (the innermost packs).
_saved_hooks: list = []


class _Packed:
    """A saved value as ``pack_hook`` returned it, plus what unpacking needs: the version seen
    at save time (checked when ``unpack_hook`` gives back the same tensor) and the graph
    position (the edge of a saved input, the output number of a saved output), so that a
    ``create_graph`` backward differentiates through it. It keeps no reference to the array."""

    __slots__ = ("packed", "unpack", "output_nr", "counter", "version", "edge")

    def __init__(self, packed, unpack, output_nr, counter, version, edge):
        self.packed = packed
        self.unpack = unpack
        self.output_nr = output_nr
        self.counter = counter
        self.version = version
        self.edge = edge


def _pack_all(ctx, saved, outputs) -> None:
    """Pass every saved array/tensor of ``ctx`` through the innermost pack hook."""
    pack, unpack = _saved_hooks[-1]
    for i, s in enumerate(saved):
        if s is None:
            continue
        array, tensor, nr = s[0], s[1], s[2]
        if not hasattr(array, "shape") or isinstance(array, np.generic):
            continue  # a constant (shape, scalar): not a tensor, kept as is
        if tensor is None:
            tensor = outputs[nr] if nr is not None else Tensor(array)
        counter = tensor._version
        version = counter.value
        edge = tensor._edge() if tensor._requires_grad and nr is None else None
        packed = pack(tensor)
        if counter.value != version:
            raise RuntimeError(
                "A saved tensor pack hook is modifying its input in place. Tensors provided as "
                "input to pack hook can not be modified by in-place operations as this can "
                "lead to unexpected side-effects. Please open an issue if you need to perform "
                "in-place operations on the input to a pack hook."
            )
        saved[i] = _Packed(packed, unpack, nr, s[3], s[4], edge)
    ctx._packed = True


def _user_stack(limit: int = 12) -> str:
    """The forward call's stack, without distgrad's own frames (for anomaly mode)."""
    package = __file__.rsplit("/autograd/", 1)[0]
    frames = [f for f in traceback.extract_stack() if not f.filename.startswith(package)]
    return "".join(traceback.format_list(frames[-limit:]))


def _saved_entry(value):
    """The saved entry of a value that is neither an input nor an output: a tensor (with its
    version) or a constant."""
    if isinstance(value, Tensor):
        counter = value._version
        return (value._array, value, None, counter, counter.value)
    return (value, None, None, None, 0)


def once_differentiable(backward):
    """Decorator for a Function's backward that cannot itself be differentiated. Setting the
    class attribute ``once_differentiable = True`` has the same effect."""
    backward.__once_differentiable__ = True
    return backward
