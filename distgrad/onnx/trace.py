"""Tracing for export: run a model once with an interceptor that records every
``Function.apply`` (the op class, its arguments, its outputs and where the user's code called
it), then name each tensor argument by where it came from.

Every tensor an op receives resolves to a ``Ref``: a graph input, a parameter or buffer of the
module, an output of an earlier call, or a constant (anything else, e.g. a mask built with
numpy inside ``forward``). Outputs are found through their autograd node, which also follows
in-place ops and user ``Function``s, and through their array, which follows ``detach()``.
"""

from __future__ import annotations

import os
import sys
import types
from typing import NamedTuple

from ..autograd import Tensor, enable_grad
from ..autograd.function import pop_interceptor, push_interceptor

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Ref(NamedTuple):
    """Where a tensor came from: ``kind`` is 'input' (``key`` = position), 'param' or 'buffer'
    (its name), 'out' (``(call index, output index)``) or 'const' (the array itself)."""

    kind: str
    key: object


class Call:
    """One recorded op call: ``refs[i]`` is the Ref of tensor argument ``i`` (None for other
    arguments); ``outputs`` are tensors or None."""

    __slots__ = ("op", "args", "outputs", "where", "refs")

    def __init__(self, op, args, outputs, where):
        self.op, self.args, self.outputs, self.where = op, args, outputs, where
        self.refs = ()

    @property
    def name(self) -> str:
        return (
            f"{self.op.__name__} ({self.op.__module__}.{self.op.__qualname__}) used at {self.where}"
        )


def _user_frame() -> str:
    """The innermost caller outside distgrad (``file:line in function``)."""
    first = sys._getframe(2)
    frame: types.FrameType | None = first
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    frame = frame or first
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


class _Recorder:
    """The interceptor: records calls and resolves their tensor arguments as they happen."""

    def __init__(self, inputs, named):
        self.calls = []
        self._by_node, self._by_id, self._by_array = {}, {}, {}
        self._alive = []  # keeps every keyed object alive, so ids stay unique
        self._frames = []  # len(calls) when each active call began
        for i, t in enumerate(inputs):
            if isinstance(t, Tensor):
                self._register(t, Ref("input", i))
        for ref, t in named:
            self._register(t, ref)

    def _register(self, t: Tensor, ref: Ref) -> None:
        self._alive.append((t, t.grad_fn, t.array))
        if t.grad_fn is not None:
            self._by_node[(id(t.grad_fn), t.output_nr)] = ref
        self._by_id[id(t)] = ref
        self._by_array[id(t.array)] = ref

    def resolve(self, t: Tensor) -> Ref:
        if t.grad_fn is not None:
            ref = self._by_node.get((id(t.grad_fn), t.output_nr))
            if ref is not None:
                return ref
        ref = self._by_id.get(id(t)) or self._by_array.get(id(t.array))
        return ref if ref is not None else Ref("const", t.array)

    def before(self, cls, args):
        self._frames.append(len(self.calls))
        return args

    def after(self, cls, args, outputs):
        outs = outputs if isinstance(outputs, tuple) else (outputs,)
        composite = len(self.calls) > self._frames.pop()
        if composite and self._composite_outputs(outs):
            return
        call = Call(cls, args, outs, _user_frame())
        call.refs = tuple(self.resolve(a) if isinstance(a, Tensor) else None for a in args)
        index = len(self.calls)
        self.calls.append(call)
        for k, o in enumerate(outs):
            if o is not None:
                self._register(o, Ref("out", (index, k)))

    def _composite_outputs(self, outs) -> bool:
        """Ops were recorded while this call ran (a user Function's forward): its outputs are
        those ops' outputs (or its inputs). Register them under their new node; False if one
        is not."""
        refs: list = []
        for o in outs:
            if o is None:
                refs.append(None)
                continue
            ref = self._by_id.get(id(o)) or self._by_array.get(id(o.array))
            if ref is None:
                return False
            refs.append(ref)
        for o, ref in zip(outs, refs):
            if o is not None:
                self._register(o, ref)
        return True


def trace(fn, inputs: tuple, named) -> tuple:
    """Run ``fn(*inputs)`` recording its ops; ``named`` lists ``(Ref, tensor)`` for the
    parameters and buffers. Returns ``(calls, output refs, output tensors)`` where the
    outputs are ``fn``'s result flattened (None entries dropped)."""
    recorder = _Recorder(inputs, named)
    push_interceptor(recorder)
    try:
        with enable_grad():
            result = fn(*inputs)
    finally:
        pop_interceptor(recorder)
    outputs = list(_flatten(result))
    for t in outputs:
        if not isinstance(t, Tensor):
            raise TypeError(
                f"ONNX export: the model must return tensors (or tuples/lists of "
                f"them), got {type(t).__name__}"
            )
    return recorder.calls, [recorder.resolve(t) for t in outputs], outputs


def _flatten(result):
    if isinstance(result, (tuple, list)):
        for r in result:
            yield from _flatten(r)
    elif result is not None:
        yield result
