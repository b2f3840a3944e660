"""The static graph a trace records, and its replay on raw arrays.

A ``Graph`` is a flat list of ``Step`` records over numbered value slots: the traced function's
inputs, the "external" tensors it read (module parameters and buffers, read live at each
call), constants, and each op's outputs. Replaying it calls every op's ``array_forward(ctx,
*arrays)`` on the slots' arrays with ctx objects allocated once and reused, then (for
gradients) every recorded op's ``backward`` in reverse order — no Tensor, graph node or engine
work per op. One replay is one autograd node, ``TracedGraphBackward``, so ``loss.backward()``
after a replay accumulates into the parameters' ``.grad`` through the ordinary engine (hooks,
DataParallel and all).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import BackwardNode, Op
from ..autograd.engine import retains_graph

__all__ = ["Graph", "Step", "TracedGraph", "RandomArray", "InputView"]

_SCALARS = (np.generic, int, float, complex)


class RandomArray:
    """A setup step that draws a fresh random array per replay (a dropout mask), from the same
    stream and in the same order as the eager run would."""

    random = True

    def __init__(self, draw, args):
        self.draw, self.args = draw, args

    def __call__(self, vals):
        return self.draw(*self.args)


class InputView:
    """A setup step for an array that wrappers computed outside autograd as a reshape/cast of
    an input (class indices), recomputed from that input per replay."""

    random = False

    def __init__(self, slot, shape, dtype):
        self.slot, self.shape, self.dtype = slot, shape, dtype

    def __call__(self, vals):
        return vals[self.slot].reshape(self.shape).astype(self.dtype, copy=False)


class Step:
    """One recorded op call: ``outs = fn.array_forward(ctx, *slots[args])``.

    ``needs`` is the call's ``needs_input_grad`` (empty when it recorded no graph: then it has
    no backward); ``grad_edges`` the (argument position, slot, dtype) of the arguments that
    receive gradients (``in_dtypes``: each argument's dtype, None for non-tensors);
    ``setup`` the (slot, make) pairs computed right before the op (``make(slots)``: a fresh
    dropout mask, a reshaped input); ``tensor_args`` which arguments were tensors (the ctx
    is told: a user Function's adapter wraps those); ``out_meta`` the outputs' (shape, dtype), for zero gradients.
    """

    __slots__ = (
        "fn",
        "args",
        "outs",
        "needs",
        "grad_edges",
        "setup",
        "tensor_args",
        "out_meta",
        "single",
        "planned",
    )

    def __init__(self, fn, args, outs, needs, setup, tensor_args, out_meta, single, in_dtypes):
        self.fn, self.args, self.outs, self.needs = fn, tuple(args), tuple(outs), tuple(needs)
        self.grad_edges = tuple(
            (i, s, in_dtypes[i])
            for i, s in enumerate(self.args)
            if i < len(self.needs) and self.needs[i]
        )
        self.setup, self.tensor_args = tuple(setup), tuple(tensor_args)
        self.out_meta, self.single = tuple(out_meta), single
        self.planned = False  # set by Graph: the output goes into a buffer kept across replays

    @property
    def recorded(self) -> bool:
        return bool(self.needs) and any(self.needs)


class Graph:
    """Steps over ``n_slots`` value slots. ``arg_slots``: the slots filled per call (inputs, then
    externals); ``constants``: slot -> value, filled once; ``outputs``: the returned slots,
    of which ``diff_outputs`` carry gradients and ``plain_outputs`` do not; ``externals``: the
    tensors read live at each call (``external_names`` names them where known)."""

    def __init__(
        self,
        ops,
        n_slots,
        n_inputs,
        externals,
        constants,
        outputs,
        diff_outputs,
        xp,
        external_names=None,
    ):
        self.ops = list(ops)
        self.n_slots, self.n_inputs, self.xp = n_slots, n_inputs, xp
        self.externals = [t for _, t in externals]
        self.external_names = external_names or {}
        self.arg_slots = tuple(range(n_inputs)) + tuple(s for s, _ in externals)
        self.outputs = tuple(outputs)
        self.diff_outputs = tuple(diff_outputs)
        self.plain_outputs = tuple(s for s in outputs if s not in set(diff_outputs))
        self.constant_slots = frozenset(constants)
        self._template = [None] * n_slots
        for slot, value in constants.items():
            self._template[slot] = value
        self._backward_ops = [
            (i, op) for i, op in reversed(list(enumerate(self.ops))) if op.recorded
        ]
        self._dead_after = _dead_after(self.ops, self.outputs, self.constant_slots)
        returned = set(self.outputs)
        for op in self.ops:
            op.planned = (
                op.single
                and getattr(op.fn, "writes_out_buffer", False)
                and op.outs[0] not in returned
            )
        self._grad_planned = frozenset(
            index
            for index, op in self._backward_ops
            if getattr(op.fn, "writes_grad_buffer", False) and op.grad_edges
        )
        self._pool = []

    @property
    def has_backward(self) -> bool:
        """Whether the graph was captured with a backward pass."""
        return bool(self._backward_ops)

    @property
    def has_random(self) -> bool:
        """Whether the graph draws random numbers (dropout, ...), replayed from the live generator."""
        return any(make.random for op in self.ops for _, make in op.setup)

    # ---- ctx objects, allocated once and reused ------------------------------------------
    def take_ctxs(self) -> _Contexts:
        """Hand over the recorded backward contexts of the last replay (each once), with the
        buffers that replay's outputs were written into (``ctxs.buffers``)."""
        if self._pool:
            return self._pool.pop()
        ctxs = _Contexts()
        for op in self.ops:
            ctx = op.fn._backward_cls()
            ctx._xp = ctx.xp = self.xp
            ctx.needs_input_grad = op.needs
            ctx.tensor_args = op.tensor_args
            ctxs.append(ctx)
        return ctxs

    def give_back(self, ctxs: _Contexts) -> None:
        """Drop everything one replay left on its ctx objects (saved arrays, intermediates
        that ops keep as ctx attributes: as much memory as the activations) and keep the
        objects for the next replay. Holding them until the next replay overwrote them made
        a step's peak memory twice eager's, and the replay slower than eager."""
        for ctx in ctxs:
            _clear(ctx)
        if not self._pool:
            self._pool.append(ctxs)

    # ---- replay ------------------------------------------------------------------------
    def run_forward(self, ctxs: _Contexts, arrays) -> list:
        """Every op's forward on arrays; returns the filled slots.

        Buffer planning: an op that declares ``writes_out_buffer`` finds its output array of
        the previous replay (on this ctx set) in ``ctx.out_buffer`` and writes its output into
        it, so a replayed step allocates (and page-faults) nothing for those outputs and reuses
        cache-warm memory. A buffer lives with its ctx set: a replay whose saved values are
        still held (``retain_graph=True``, backward not yet run) keeps its buffers, and the
        next replay gets another set. Returned values never use one."""
        vals = self._template.copy()
        for slot, array in zip(self.arg_slots, arrays):
            vals[slot] = array
        buffers = ctxs.buffers
        for op, ctx, dead in zip(self.ops, ctxs, self._dead_after):
            for slot, make in op.setup:
                vals[slot] = make(vals)
            args = [vals[i] for i in op.args]
            if op.planned:
                slot = op.outs[0]
                buffer = ctx.out_buffer = buffers.get(slot)
                out = op.fn.array_forward(ctx, *args)
                if isinstance(out, _SCALARS):
                    out = _array_output(ctx, out)
                if buffer is None or _root(out) is not _root(buffer):
                    _adopt(buffers, slot, out, args)
                vals[slot] = out
            elif op.single:
                out = op.fn.array_forward(ctx, *args)
                vals[op.outs[0]] = _array_output(ctx, out) if isinstance(out, _SCALARS) else out
            else:
                out = op.fn.array_forward(ctx, *args)
                for slot, o in zip(op.outs, out):
                    if slot is not None:
                        vals[slot] = _array_output(ctx, o) if isinstance(o, _SCALARS) else o
            for slot in dead:  # as eager: an intermediate nothing reads again is freed now
                vals[slot] = None
        if buffers:
            _release_escaped(buffers, [vals[s] for s in self.outputs])
        return vals

    def run_backward(self, ctxs: _Contexts, out_grads, release: bool = False) -> tuple:
        """Every recorded op's backward, newest first (the engine's order, so gradients are
        summed in the same order as eager); returns the gradients of the argument slots.
        ``release``: free each op's saved values right after its backward, as the engine
        does without ``retain_graph``."""
        grads = [None] * self.n_slots
        planned, buffers = self._grad_planned, ctxs.grad_buffers
        for slot, g in zip(self.diff_outputs, out_grads):
            if g is not None:
                grads[slot] = g if grads[slot] is None else grads[slot] + g
        for index, op in self._backward_ops:
            ctx = ctxs[index]
            if op.single:
                gs = [grads[op.outs[0]]]
                if gs[0] is None:
                    continue
                grads[op.outs[0]] = None
            else:
                gs = [None if s is None else grads[s] for s in op.outs]
                if all(g is None for g in gs):
                    continue
                for s in op.outs:
                    if s is not None:
                        grads[s] = None
                if ctx._materialize_grads:
                    for nr, g in enumerate(gs):
                        if g is None and op.out_meta[nr] is not None:
                            gs[nr] = self.xp.zeros(*op.out_meta[nr])
            if index in planned:
                buffer = ctx.grad_buffer = buffers.get(index)
                result = op.fn.array_backward(ctx, *gs)
                first = result[0] if isinstance(result, tuple) else result
                if first is not None and (buffer is None or _root(first) is not _root(buffer)):
                    _adopt(buffers, index, first, gs)
            else:
                result = op.fn.array_backward(ctx, *gs)
            if release:
                _clear(ctx)
            if not isinstance(result, tuple):
                result = (result,)
            for i, slot, dtype in op.grad_edges:
                g = result[i]
                if g is None:
                    continue
                if g.dtype is not dtype and g.dtype != dtype:  # bfloat16 input, as the engine
                    g = g.astype(dtype)
                grads[slot] = g if grads[slot] is None else grads[slot] + g
        out = [grads[s] for s in self.arg_slots]
        if buffers or ctxs.buffers:  # gradients leave the replay (into .grad): never a buffer
            owned = _owned(buffers, ctxs.buffers)
            for i, g in enumerate(out):
                if g is not None and id(_root(g)) in owned:
                    out[i] = g.copy()
        return tuple(out)

    # ---- description ---------------------------------------------------------------------
    def __len__(self):
        return len(self.ops)

    def __str__(self):
        def name(slot):
            return self.external_names.get(slot, f"%{slot}")

        const = self.constant_slots
        head = ", ".join(name(s) for s in self.arg_slots)
        lines = [f"graph({head}):"]
        for op in self.ops:
            args = ", ".join("const" if s in const else name(s) for s in op.args)
            outs = ", ".join("_" if s is None else f"%{s}" for s in op.outs)
            lines.append(f"  {outs} = {op.fn.__name__}({args})")
        lines.append(f"  return ({', '.join(name(s) for s in self.outputs)})")
        return "\n".join(lines)


class _Contexts(list):
    """The ctx objects of one replay, and the buffers its planned outputs (``buffers``: slot
    -> array) and planned input gradients (``grad_buffers``: step index -> array) went into;
    the next replay on this set writes into the same arrays."""

    def __init__(self):
        super().__init__()
        self.buffers: dict = {}
        self.grad_buffers: dict = {}


def _root(a):
    """The array owning ``a``'s memory (numpy and cupy point a view's ``base`` at it)."""
    base = getattr(a, "base", None)
    return a if base is None else base


def _adopt(buffers: dict, key, out, args) -> None:
    """Keep ``out`` (a fresh output, or a view covering all of a fresh array) as the buffer
    for ``key``; anything that may be shared (a view of an argument, part of an array, a
    scalar) is not kept."""
    root = _root(out)
    if (
        getattr(out, "ndim", 0) > 0
        and root.size == out.size
        and isinstance(root, type(out))
        and all(root is not a and root is not _root(a) for a in args if a is not None)
    ):
        buffers[key] = out
    else:
        buffers.pop(key, None)


def _owned(*buffer_dicts) -> dict:
    """id of the memory owner of every buffer -> (dict, key)."""
    return {id(_root(b)): (d, k) for d in buffer_dicts for k, b in d.items()}


def _release_escaped(buffers: dict, returned) -> None:
    """Drop the buffers that a returned value is (a view of): the caller keeps those arrays,
    so the next replay must not write into them."""
    owner = _owned(buffers)
    for a in returned:
        hit = owner.get(id(_root(a)))
        if hit is not None:
            del buffers[hit[1]]


def _clear(ctx) -> None:
    """Drop what a replay left on a ctx (saved arrays, intermediates ops keep as attributes),
    keeping what the graph set once."""
    fixed = (ctx._xp, ctx.needs_input_grad, ctx.tensor_args)
    ctx.__dict__.clear()
    ctx._xp = ctx.xp = fixed[0]
    ctx.needs_input_grad, ctx.tensor_args = fixed[1], fixed[2]


def _dead_after(ops, outputs, constants) -> list:
    """Per step, the slots that no later step (nor a setup step) reads and that are not
    returned: the replay drops them right after that step, so a forward's peak memory is
    eager's (what backward needs, ops keep on their ctx)."""
    last_use: dict = {}
    for index, op in enumerate(ops):
        for slot in op.args:
            last_use[slot] = index
        for slot, make in op.setup:
            last_use[slot] = index
            read = getattr(make, "slot", None)  # an InputView reads another slot
            if read is not None:
                last_use[read] = index
        for slot in op.outs:
            if slot is not None:
                last_use.setdefault(slot, index)
    keep = set(outputs) | set(constants)
    dead: list = [[] for _ in ops]
    for slot, index in last_use.items():
        if slot not in keep:
            dead[index].append(slot)
    return [tuple(d) for d in dead]


def _array_output(ctx, value):
    """numpy ufuncs give scalars for 0-d results: make them arrays (and what forward saved)."""
    array = np.asarray(value)
    ctx._to_save = tuple(array if v is value else v for v in ctx._to_save)
    return array


class _ReplayNode(BackwardNode):
    """The node of one replay: the engine frees a node's saved values after its backward
    (without retain_graph), which here hands the replay's ctx objects back to the graph for
    the next call."""

    graph: Any = None
    ctxs: Any = None

    def _release(self) -> None:
        ctxs = getattr(self, "ctxs", None)
        if ctxs is not None:
            self.ctxs = None
            self.graph.give_back(ctxs)
            self._freed = True


class TracedGraph(Op):
    """One replay of a ``Graph`` as a single autograd node. ``apply(graph, plain, *tensors)``:
    the inputs then the externals; returns the differentiable outputs and appends the others
    (integer results, values that needed no gradient) to the list ``plain``."""

    once_differentiable = True
    _node_base = _ReplayNode

    @staticmethod
    def forward(ctx, graph, plain, *arrays):
        ctxs = graph.take_ctxs()
        vals = graph.run_forward(ctxs, arrays)
        plain.extend(vals[s] for s in graph.plain_outputs)
        ctx.graph = graph
        if ctx.needs_input_grad and graph.has_backward:
            ctx.ctxs = ctxs
        else:
            ctx.ctxs = None
            graph.give_back(ctxs)
        return tuple(vals[s] for s in graph.diff_outputs)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.ctxs is None:
            raise RuntimeError(
                "Trying to backward through a traced graph a second time: its saved values are "
                "freed after the first backward. Specify retain_graph=True on the first "
                "backward to go through it again."
            )
        return (None, None) + ctx.graph.run_backward(ctx.ctxs, grads, not retains_graph())
