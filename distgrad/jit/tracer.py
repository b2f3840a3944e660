"""``trace``: record the ops of one eager run of a function or module into a static ``Graph``
and return a callable that replays it.

What a trace captures, and what it freezes:

- Every ``Function.apply`` the run makes (seen through an interceptor), with its arguments:
  the traced inputs, tensors produced by earlier ops, *external* tensors (module parameters
  and buffers, tensors captured by closures: read live at every call, so optimizer updates
  and ``load_state_dict`` take effect), and constants (Python values, arrays).
- Python control flow is frozen: an ``if`` on a tensor's value, a loop whose length depends
  on data, ``module.training`` take the path of the example run. Python side effects (prints,
  counters such as BatchNorm's ``num_batches_tracked``) are not repeated. In-place updates
  made *inside* ops are (BatchNorm's running statistics).
- Dropout masks are drawn afresh at each replay, from the same seeded stream and in the same
  order as an eager run: with the same seed, a replay gives the eager run's masks.
- Values computed outside autograd are constants of the trace: ops distgrad runs without a
  ``Function`` (comparisons, argmax/argmin, logical ops, nonzero), ``.item()``/numpy code.
  Those that are a reshape/cast of an input (cross_entropy's class indices) are recomputed
  from that input. ``check_trace`` (on by default) finds them by running the function a
  second time on permuted inputs (RNG state and mutated buffers restored), and warns
  (``TracerWarning``) about any value or path that depends on the inputs in another way; a
  dependence that permuting the inputs does not change (a sum) goes unnoticed.
- Autocast active around ``trace`` is recorded (its casts are ops) and replayed; autocast
  around a replay changes nothing; entering autocast inside the traced function raises.
- Inputs must have the traced shapes, dtypes, devices and ``requires_grad``; anything else
  raises ``TraceError`` (trace again for a new shape). Modules must be in the traced
  train/eval mode.
- Gradients: a replay is one autograd node (``TracedGraphBackward``) whose backward replays
  every op's backward on arrays; ``out.backward()`` fills ``.grad`` as eager does, with the
  same values. The node is differentiable once (no ``create_graph`` through it).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..autograd import Tensor, grad_mode
from ..autograd.engine import is_backward_running
from ..autograd.function import active_interceptors, pop_interceptor, push_interceptor
from ..backend import array_module_for, is_array
from ..backend import random as _random
from ..nn import Module
from ..ops import dropout as _dropout
from .graph import Graph, InputView, RandomArray, Step, TracedGraph

__all__ = ["trace", "TracedFunction", "TraceError", "TracerWarning"]


class TraceError(RuntimeError):
    """A function cannot be traced as written, or a traced callable got inputs it was not
    traced for."""


class TracerWarning(UserWarning):
    """A traced value or path depends on the inputs in a way the replay cannot follow."""


def _is_array(x) -> bool:
    return is_array(x) and not isinstance(x, np.generic)


class _Recorder:
    """The interceptor that records one eager run into ops over numbered slots."""

    def __init__(self, inputs):
        self.ops = []  # [Step]
        self.n_slots = 0
        self.constants = {}  # slot -> value
        self.first_use = {}  # constant or external slot -> the first Step using it
        self.externals = {}  # slot -> tensor
        self.error = None
        self._by_edge = {}  # (id(grad_fn), output_nr) -> slot
        self._by_tensor = {}  # id(tensor) -> (slot, version)
        self._by_array = {}  # id(array) -> slot
        self._random = {}  # id(mask array) -> RandomArray
        self._keep = []  # keeps recorded objects alive so their ids stay unique
        self._frames = []
        for t in inputs:
            self._register(t, self._new_slot())

    # ---- interceptor protocol ------------------------------------------------------------
    def before(self, cls, args):
        innermost = active_interceptors()[-1]
        if innermost is not self:
            raise TraceError(
                f"an interceptor ({type(innermost).__name__}, e.g. "
                f"autocast) was activated inside the traced function, before "
                f"{cls.__name__}; activate it around the trace instead (with "
                f"autocast(): traced = jit.trace(fn, inputs)): casts are then "
                f"recorded and replayed"
            )
        self._frames.append(len(self.ops))
        return args

    def after(self, cls, args, outputs):
        start = self._frames.pop()
        if is_backward_running():
            self.error = (
                f"{cls.__name__} ran inside a backward pass during tracing; "
                f"backward()/autograd.grad() inside a traced function cannot be "
                f"replayed: trace the forward and call backward on its result"
            )
            return
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        setup = []
        arg_slots = [self._slot_of_arg(a, setup) for a in args]
        self._drop_since(start)  # ops that a user Function's forward ran: part of this op
        record = grad_mode.is_grad_enabled() and any(
            isinstance(a, Tensor) and a.requires_grad for a in args
        )
        needs = tuple(isinstance(a, Tensor) and a.requires_grad and record for a in args)
        out_slots = [None if o is None else self._register(o, self._new_slot()) for o in outs]
        op = Step(
            cls,
            arg_slots,
            out_slots,
            needs if record else (),
            setup,
            [isinstance(a, Tensor) for a in args],
            [None if o is None else (o.array.shape, o.array.dtype) for o in outs],
            single,
            [a.array.dtype if isinstance(a, Tensor) else None for a in args],
        )
        for slot in arg_slots:
            if slot in self.constants or slot in self.externals:
                self.first_use.setdefault(slot, op)
        self._keep.append((args, outputs))
        self.ops.append(op)

    # ---- slots ---------------------------------------------------------------------------
    def _new_slot(self) -> int:
        self.n_slots += 1
        return self.n_slots - 1

    def _register(self, t: Tensor, slot: int) -> int:
        self._by_tensor[id(t)] = (slot, t.version)
        self._by_array[id(t.array)] = slot
        if t.grad_fn is not None:
            self._by_edge[(id(t.grad_fn), t.output_nr)] = slot
        self._keep.append(t)
        return slot

    def slot_of_tensor(self, t: Tensor) -> int:
        if t.grad_fn is not None:  # also finds the snapshot an in-place op works on
            slot = self._by_edge.get((id(t.grad_fn), t.output_nr))
            if slot is not None:
                return slot
        entry = self._by_tensor.get(id(t))
        if entry is not None:
            slot, version = entry
            if t.version != version:
                raise TraceError(
                    f"a tensor of shape {list(t.shape)} ({t.dtype}) was modified in place "
                    f"outside autograd inside the traced function (no gradient recorded the "
                    f"change, so a replay could not repeat it). Use the out-of-place form "
                    f"(y = x.add(1) rather than x.add_(1))."
                )
            return slot
        slot = self._by_array.get(id(t.array))  # detach() / .data of a traced value
        if slot is not None:
            return slot
        slot = self._register(t, self._new_slot())
        self.externals[slot] = t
        return slot

    def _slot_of_arg(self, a, setup) -> int:
        if isinstance(a, Tensor):
            return self.slot_of_tensor(a)
        if _is_array(a):
            slot = self._by_array.get(id(a))  # an input's raw array
            if slot is not None:
                return slot
            make = self._random.get(id(a))
            if make is not None:
                slot = self._new_slot()
                setup.append((slot, make))
                return slot
        slot = self._new_slot()
        self.constants[slot] = a
        return slot

    def _drop_since(self, start) -> None:
        """Forget the ops recorded since ``start`` (the recorder is the innermost interceptor,
        so they ran inside the current op's forward) and their constants."""
        for op in self.ops[start:]:
            for slot in op.args:
                if self.first_use.get(slot) is op:
                    del self.first_use[slot]
                    self.constants.pop(slot, None)
        del self.ops[start:]

    # ---- dropout masks -------------------------------------------------------------------
    def record_mask(self, shape, p, dtype, device):
        mask = _original_mask(shape, p, dtype, device)
        self._random[id(mask)] = RandomArray(_original_mask, (shape, p, dtype, device))
        self._keep.append(mask)
        return mask


_original_mask = _dropout._mask


def _run_recorded(fn, inputs):
    """Run ``fn(*inputs)`` once eagerly, recording its ops; returns the recorder, the output
    structure, the output slots and the output tensors."""
    recorder = _Recorder(inputs)
    push_interceptor(recorder)
    _dropout._mask = recorder.record_mask
    try:
        out = fn(*inputs)
    finally:
        _dropout._mask = _original_mask
        pop_interceptor(recorder)
    if recorder.error:
        raise TraceError(recorder.error)
    leaves = []
    structure = _flatten(out, leaves)
    return recorder, structure, [recorder.slot_of_tensor(t) for t in leaves], leaves


# ---- output structures -----------------------------------------------------------------------
def _flatten(out, leaves):
    """The structure of ``out`` (nested tuples/lists/dicts of tensors), tensors into leaves."""
    if isinstance(out, Tensor):
        leaves.append(out)
        return len(leaves) - 1
    if isinstance(out, (tuple, list)):
        return type(out), [_flatten(o, leaves) for o in out]
    if isinstance(out, dict):
        return dict, {k: _flatten(v, leaves) for k, v in out.items()}
    raise TraceError(
        f"a traced function must return tensors (or tuples, lists, dicts of "
        f"them); got {type(out).__name__}"
    )


def _unflatten(spec, leaves):
    if isinstance(spec, int):
        return leaves[spec]
    kind, items = spec
    if kind is dict:
        return {k: _unflatten(v, leaves) for k, v in items.items()}
    values = [_unflatten(v, leaves) for v in items]
    return kind(*values) if hasattr(kind, "_fields") else kind(values)  # namedtuples


# ---- check_trace: a second run on permuted inputs --------------------------------------------
def _permuted(t: Tensor, rng) -> Tensor:
    a = t.array
    xp = array_module_for(a)
    order = xp.asarray(rng.permutation(a.size))
    return Tensor(a.reshape(-1)[order].reshape(a.shape), requires_grad=t.requires_grad)


def _arrays_in(value):
    if _is_array(value):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _arrays_in(v)


def _same(a, b) -> bool:
    if a is b:
        return True
    if _is_array(a) or _is_array(b):
        return (
            _is_array(a)
            and _is_array(b)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(array_module_for(a).array_equal(a, b))
        )
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    try:
        return bool(a == b)
    except Exception:
        return False


def _view_of_input(c1, c2, inputs1, inputs2):
    """The index of the input that constants ``c1``/``c2`` (seen in the two runs) are a
    reshape/cast of, or None."""
    if not (_is_array(c1) and _is_array(c2)):
        return None
    for k, (x1, x2) in enumerate(zip(inputs1, inputs2)):
        if x1.array.size == c1.size and all(
            _same(x.array.reshape(c.shape).astype(c.dtype, copy=False), c)
            for x, c in ((x1, c1), (x2, c2))
        ):
            return k
    return None


def _check(fn, rec, inputs, out_slots):
    """Run ``fn`` again on permuted inputs and compare with the first recording: bind the
    values that are reshapes of an input to it; warn about what else differs."""
    rng = np.random.default_rng(0)
    probe_inputs = [_permuted(t, rng) for t in inputs]
    state = _random.get_rng_state()
    saved = [
        (a, a.copy())
        for v in rec.constants.values()
        for a in _arrays_in(v)
        if getattr(a.flags, "writeable", True)
    ]
    try:
        probe, _, probe_out, _ = _run_recorded(fn, probe_inputs)
    except Exception as exc:  # the check is best effort: report, keep the trace
        warnings.warn(
            f"check_trace: the traced function failed on permuted inputs ({exc!r}); "
            f"the trace was not checked for input-dependent values",
            TracerWarning,
            stacklevel=3,
        )
        return
    finally:
        for array, copy in saved:
            array[...] = copy
        _random.set_rng_state(state)
    same_path = (
        len(probe.ops) == len(rec.ops)
        and all(
            a.fn is b.fn
            and a.args == b.args
            and a.outs == b.outs
            and [s for s, _ in a.setup] == [s for s, _ in b.setup]
            for a, b in zip(rec.ops, probe.ops)
        )
        and set(rec.constants) == set(probe.constants)
        and list(rec.externals) == list(probe.externals)
        and out_slots == probe_out
    )
    if not same_path:
        warnings.warn(
            "the traced function ran other ops for other input values (control flow "
            "that depends on the data): the trace replays the example inputs' path",
            TracerWarning,
            stacklevel=3,
        )
        return
    for slot in list(rec.constants) + list(rec.externals):
        if slot in rec.constants:
            v1, v2 = rec.constants[slot], probe.constants[slot]
        elif rec.externals[slot] is probe.externals[slot]:
            continue  # a parameter, buffer or captured tensor, read live
        else:  # a tensor made inside the function without autograd (comparison, argmax...)
            v1, v2 = rec.externals[slot].array, probe.externals[slot].array
        op = rec.first_use.get(slot)
        if _same(v1, v2) or op is None and slot not in out_slots:  # equal, or unused
            continue
        k = None if op is None else _view_of_input(v1, v2, inputs, probe_inputs)
        if k is None:
            where = (
                "an output" if op is None else f"argument {op.args.index(slot)} of {op.fn.__name__}"
            )
            warnings.warn(
                f"{where} depends on the input values outside autograd (an op with "
                f"no gradient such as a comparison or argmax, raw array code, or a "
                f"branch on the data); the trace keeps its traced value",
                TracerWarning,
                stacklevel=3,
            )
            continue
        rec.constants.pop(slot, None)
        rec.externals.pop(slot, None)
        op.setup += ((slot, InputView(k, v1.shape, v1.dtype)),)


# ---- trace -----------------------------------------------------------------------------------
def _as_inputs(example_inputs) -> tuple:
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"trace: example_inputs[{i}] must be a Tensor, got "
                f"{type(t).__name__} (pass other values through a closure: they "
                f"are constants of the trace)"
            )
    return inputs


def _spec(t: Tensor) -> tuple:
    return t.array.shape, t.array.dtype, type(t.array), t.requires_grad


def _describe(spec) -> str:
    shape, dtype, kind, requires_grad = spec
    device = "cpu" if kind is np.ndarray else "cuda"
    return f"shape {list(shape)}, dtype {dtype}, device {device}, requires_grad={requires_grad}"


def trace(fn, example_inputs, *, check_trace: bool = True) -> TracedFunction:
    """Record the ops of ``fn(*example_inputs)`` (a function or a Module) into a static graph
    and return a callable that replays it on new inputs of the same shapes and dtypes.

    ``check_trace`` runs ``fn`` a second time on permuted inputs to find values that depend on
    the inputs outside autograd (see the module docstring); pass False for functions with
    side effects that must run exactly once. Tracing runs ``fn`` eagerly (forward only)."""
    inputs = _as_inputs(example_inputs)
    module = fn if isinstance(fn, Module) else None
    grad_enabled = grad_mode.is_grad_enabled()
    rec, structure, out_slots, leaves = _run_recorded(fn, inputs)
    if check_trace:
        _check(fn, rec, inputs, out_slots)
    diff = [s for s, t in zip(out_slots, leaves) if t.requires_grad]
    tensors = list(inputs) + list(rec.externals.values())
    xp = array_module_for(tensors[0].array) if tensors else np
    names = {}
    if module is not None:
        by_id = {
            id(t): n for n, t in list(module.named_parameters()) + list(module.named_buffers())
        }
        names = {s: by_id[id(t)] for s, t in rec.externals.items() if id(t) in by_id}
    graph = Graph(
        rec.ops,
        rec.n_slots,
        len(inputs),
        list(rec.externals.items()),
        rec.constants,
        out_slots,
        diff,
        xp,
        names,
    )
    return TracedFunction(
        fn,
        graph,
        [_spec(t) for t in inputs],
        structure,
        [t.requires_grad for t in leaves],
        module,
        grad_enabled,
    )


class TracedFunction:
    """A traced function or module: call it like the original. ``graph`` is the recorded
    ``Graph`` (``print(traced.graph)`` lists its ops)."""

    def __init__(self, fn, graph: Graph, in_spec, structure, differentiable, module, grad_enabled):
        self.fn, self.graph = fn, graph
        self._in_spec, self._structure = in_spec, structure
        self._differentiable = differentiable
        self._ext_spec = [_spec(t) for t in graph.externals]
        self._traced_grad = grad_enabled
        self._modes = [] if module is None else [(m, m.training) for m in module.modules()]

    def check_inputs(self, inputs) -> None:
        """Raise ``TraceError`` unless ``inputs`` match what was traced."""
        if len(inputs) != len(self._in_spec):
            raise TraceError(f"traced with {len(self._in_spec)} inputs, called with {len(inputs)}")
        for i, (t, spec) in enumerate(zip(inputs, self._in_spec)):
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"traced function: input {i} must be a Tensor, got {type(t).__name__}"
                )
            if _spec(t) != spec:
                raise TraceError(
                    f"input {i} has {_describe(_spec(t))}, but the trace was "
                    f"recorded for {_describe(spec)}; trace again for these "
                    f"inputs (a trace replays fixed shapes and dtypes)"
                )
        for t, spec in zip(self.graph.externals, self._ext_spec):
            if _spec(t) != spec:
                raise TraceError(
                    f"a tensor the traced function reads (a parameter or buffer) "
                    f"now has {_describe(_spec(t))}, traced with "
                    f"{_describe(spec)}; trace again"
                )
        for m, training in self._modes:
            if m.training != training:
                raise TraceError(
                    f"{type(m).__name__} was traced in "
                    f"{'training' if training else 'eval'} mode and is now in "
                    f"the other one (dropout and batch norm differ); trace again"
                )

    def __call__(self, *inputs):
        self.check_inputs(inputs)
        args = inputs + tuple(self.graph.externals)
        if (
            not self._traced_grad
            and grad_mode.is_grad_enabled()
            and any(t.requires_grad for t in args)
        ):
            raise TraceError(
                "this function was traced under no_grad, so its replays have no "
                "backward; trace it again with gradients enabled to differentiate "
                "them"
            )
        if any(isinstance(i, _Recorder) for i in active_interceptors()):
            raise TraceError(
                "a traced function was called inside jit.trace; trace the outer "
                "function with the original one instead"
            )
        plain = []
        # not through interceptors: what autocast did at trace time is in the graph already
        diff = TracedGraph._apply((self.graph, plain, *args))
        diff, plain = iter(diff), iter(plain)
        leaves = [next(diff) if d else Tensor(next(plain)) for d in self._differentiable]
        return _unflatten(self._structure, leaves)

    def __repr__(self):
        return (
            f"TracedFunction({getattr(self.fn, '__name__', type(self.fn).__name__)}, "
            f"{len(self.graph)} ops)"
        )
